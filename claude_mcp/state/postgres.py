"""`PostgresStore`: the state in PostgreSQL, shared by several replicas.

A psycopg 3 async connection pool (autocommit; explicit transactions where a write depends
on a read). The schema is migrated at `open()` under a transaction-scoped advisory lock, so
replicas starting together migrate it once. An append takes the transcript key's row lock
first (its upsert) and reads the summary `FOR UPDATE`, so appends to one session serialize.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from claude_agent_sdk import SessionKey, SessionStoreEntry
from psycopg import AsyncConnection, Error, OperationalError
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import DictRow, dict_row
from psycopg.types.json import Json, Jsonb
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from ..errors import ConfigError, StoreUnavailable
from . import _sql
from ._sql import Params, SqlStore, Statement

logger = logging.getLogger(__name__)

WAIT_S = 5.0
"""How long a query waits for a connection (and a new connection to open) before the store is
unavailable: a caller is refused in seconds, not minutes."""
_MIGRATION_LOCK = 0x636C617564655F6D  # b"claude_m": the advisory lock id that guards migrations

Connection = AsyncConnection[DictRow]


def _pg(sql: str) -> str:
    """The shared queries' `?` placeholders in psycopg's style (they contain no other `?` or `%`)."""
    return sql.replace("?", "%s")


def where(url: str) -> str:
    """The database a URL names, as a person reads it (host, port and database; never the password)."""
    try:
        parts = conninfo_to_dict(url)
    except Error:
        return "PostgreSQL (an unreadable state_url)"
    host = parts.get("host") or "localhost"
    return f"PostgreSQL at {host}:{parts.get('port') or 5432}/{parts.get('dbname') or parts.get('user') or ''}"


async def check_reachable(url: str, wait_s: float = WAIT_S) -> None:
    """One connection to the database, within `wait_s`: a `ConfigError` in one line when it cannot
    be made (down, unknown host, wrong password or database), not a pool retrying for 30 s."""
    reason = f"no answer within {wait_s:g} s"
    with anyio.move_on_after(wait_s + 1):
        try:
            conn = await Connection.connect(url, connect_timeout=max(2, int(wait_s)), autocommit=True)
        except Error as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            reason = first.rsplit("failed: ", 1)[-1].removeprefix("FATAL:").strip().rstrip(".")
        else:
            await conn.close()
            return
    raise ConfigError(
        f"cannot reach {where(url)}: {reason}. Check state_url (or CLAUDE_MCP_STATE_URL / --state-url) "
        "and that the database is up."
    )


class PostgresStore(SqlStore):
    """The shared store: a PostgreSQL database (`url`: a libpq connection URI or string)."""

    def __init__(self, url: str, *, max_connections: int = 10, wait_s: float = WAIT_S) -> None:
        self._url = url
        self._max_connections = max_connections
        self._wait_s = wait_s
        self._pool: AsyncConnectionPool[Connection] | None = None

    async def open(self) -> None:
        await check_reachable(self._url, self._wait_s)
        pool = AsyncConnectionPool(
            self._url,
            open=False,
            min_size=1,
            max_size=self._max_connections,
            connection_class=Connection,
            kwargs={"autocommit": True, "row_factory": dict_row, "connect_timeout": max(2, int(self._wait_s))},
            timeout=self._wait_s,
        )
        await pool.open(wait=True, timeout=self._wait_s + 5)
        try:
            async with pool.connection() as conn, conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
                await conn.execute(_sql.SCHEMA_VERSION_DDL)
                row = await (await conn.execute(_sql.CURRENT_VERSION_SQL)).fetchone()
                assert row is not None
                for version, statements in _sql.migrations_after(row["version"], "postgres"):
                    for statement in statements:
                        await conn.execute(statement)
                    await conn.execute(_pg(_sql.RECORD_VERSION_SQL), (version, time.time()))
        except BaseException:
            await pool.close()
            raise
        self._pool = pool

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[Connection]:
        if self._pool is None:
            raise RuntimeError("the store is not open")
        try:
            async with self._pool.connection() as conn:
                yield conn
        except (PoolTimeout, OperationalError) as exc:
            logger.warning("the store cannot be reached: %s", type(exc).__name__)
            raise StoreUnavailable() from None

    async def ping(self) -> None:
        await self._fetch("SELECT 1")

    async def _fetch(self, sql: str, params: Params = ()) -> list[dict[str, Any]]:
        async with self._connection() as conn:
            cursor = await conn.execute(_pg(sql), params)
            return await cursor.fetchall() if cursor.description else []

    async def _execute(self, sql: str, params: Params = ()) -> int:
        async with self._connection() as conn:
            return (await conn.execute(_pg(sql), params)).rowcount

    async def _transaction(self, statements: list[Statement]) -> None:
        async with self._connection() as conn, conn.transaction():
            for sql, params in statements:
                await conn.execute(_pg(sql), params)

    async def _serialized(self, key: str, statements: list[Statement]) -> int:
        changed = 0
        async with self._connection() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (key,))
            for sql, params in statements:  # each reads what was committed before it (read committed)
                changed = (await conn.execute(_pg(sql), params)).rowcount
        return changed

    def _dump(self, value: Any) -> Any:
        return Jsonb(value)

    def _load(self, value: Any) -> Any:
        return value  # psycopg decodes json and jsonb

    def _as_text(self, column: str) -> str:
        return f"{column}::text"

    def _skip_locked(self) -> str:
        return " FOR UPDATE SKIP LOCKED"

    def _json_text(self, column: str, field: str) -> str:
        return f"{column}->>'{field}'"

    async def _append(self, namespace: str, key: SessionKey, entries: list[SessionStoreEntry]) -> None:
        where = _sql.key_params(namespace, key)
        uuids = sorted({uuid for entry in entries if (uuid := _sql.entry_uuid(entry)) is not None})
        async with self._connection() as conn, conn.transaction():
            cursor = await conn.execute(
                "INSERT INTO transcript_keys (namespace, project_key, session_id, subpath, mtime) "
                "VALUES (%s, %s, %s, %s, floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint) "
                "ON CONFLICT (namespace, project_key, session_id, subpath) "
                "DO UPDATE SET mtime = greatest(transcript_keys.mtime, excluded.mtime) RETURNING mtime",
                where,
            )
            key_row = await cursor.fetchone()
            assert key_row is not None
            stored: set[str] = set()
            if uuids:
                cursor = await conn.execute(_pg(f"{_sql.STORED_UUIDS}({_sql.marks(len(uuids))})"), [*where, *uuids])
                stored = {row["uuid"] for row in await cursor.fetchall()}
            fresh = _sql.fresh_entries(entries, stored)
            if fresh:
                async with conn.cursor() as many:
                    rows = [[*where, _sql.entry_uuid(entry), Json(entry)] for entry in fresh]
                    await many.executemany(_pg(_sql.INSERT_ENTRY), rows)
            if key.get("subpath"):
                return
            cursor = await conn.execute(_pg(_sql.SELECT_SUMMARY + " FOR UPDATE"), where[:3])
            row = await cursor.fetchone()
            data = _sql.folded(key, row, None if row is None else row["data"], fresh)
            await conn.execute(_pg(_sql.UPSERT_SUMMARY), [*where[:3], key_row["mtime"], Json(data)])

    async def take_permission_answer(self, job_id: str, permission_id: str) -> dict[str, Any] | None:
        rows = await self._fetch(
            "UPDATE jobs SET permission_answer = NULL "
            "FROM (SELECT job_id, permission_answer FROM jobs WHERE job_id = ? FOR UPDATE) AS old "
            "WHERE jobs.job_id = old.job_id AND old.permission_answer->>'permission_id' = ? "
            "RETURNING old.permission_answer AS stored",
            (job_id, permission_id),
        )
        if not rows:
            return None
        answer: dict[str, Any] = rows[0]["stored"]["answer"]
        return answer
