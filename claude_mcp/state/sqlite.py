"""`SqliteStore`: the state in one SQLite file, for one process.

One connection, used only from anyio's worker threads and one call at a time (a capacity
limiter of one): every statement runs off the event loop, and a multi-statement transaction
runs whole inside one call, so nothing can interleave with it. That single serialized
connection is also what makes each append's read-fold-write of the session summary atomic.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.to_thread
from claude_agent_sdk import SessionKey, SessionStoreEntry

from . import _sql
from ._sql import Params, SqlStore, Statement

T = TypeVar("T")

_MIN_SQLITE = (3, 35, 0)  # RETURNING


def _dict_row(cursor: sqlite3.Cursor, row: tuple[Any, ...]) -> dict[str, Any]:
    return {column[0]: value for column, value in zip(cursor.description, row, strict=True)}


def _in_transaction(conn: sqlite3.Connection, work: Callable[[sqlite3.Connection], T]) -> T:
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = work(conn)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return result


def _connect(path: Path) -> sqlite3.Connection:
    if sqlite3.sqlite_version_info < _MIN_SQLITE:
        raise RuntimeError(f"SQLite {sqlite3.sqlite_version} is too old for the state store (3.35 or newer)")
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))  # SQLite gives its -wal and -shm files this mode
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    try:
        conn.row_factory = _dict_row
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA busy_timeout = 5000")
        _in_transaction(conn, _migrate)
    except BaseException:
        conn.close()
        raise
    return conn


def _migrate(conn: sqlite3.Connection) -> None:
    conn.execute(_sql.SCHEMA_VERSION_DDL)
    current = conn.execute(_sql.CURRENT_VERSION_SQL).fetchone()["version"]
    for version, statements in _sql.migrations_after(current, "sqlite"):
        for statement in statements:
            conn.execute(statement)
        conn.execute(_sql.RECORD_VERSION_SQL, (version, time.time()))


class SqliteStore(SqlStore):
    """The default store: one SQLite file (mode 0600, in a directory created 0700)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._conn: sqlite3.Connection | None = None
        self._limiter: anyio.CapacityLimiter | None = None

    async def open(self) -> None:
        self._limiter = anyio.CapacityLimiter(1)
        self._conn = await anyio.to_thread.run_sync(_connect, self._path, limiter=self._limiter)

    async def ping(self) -> None:
        await self._run(lambda conn: conn.execute("SELECT 1").fetchone())

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await anyio.to_thread.run_sync(conn.close, limiter=self._limiter)

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run `work` on the connection in the worker thread, after any call before it."""
        conn = self._conn
        if conn is None:
            raise RuntimeError("the store is not open")
        return await anyio.to_thread.run_sync(work, conn, limiter=self._limiter)

    async def _fetch(self, sql: str, params: Params = ()) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = await self._run(lambda conn: conn.execute(sql, params).fetchall())
        return rows

    async def _execute(self, sql: str, params: Params = ()) -> int:
        return await self._run(lambda conn: conn.execute(sql, params).rowcount)

    async def _transaction(self, statements: list[Statement]) -> None:
        def work(conn: sqlite3.Connection) -> None:
            for sql, params in statements:
                conn.execute(sql, params)

        await self._run(lambda conn: _in_transaction(conn, work))

    async def _serialized(self, key: str, statements: list[Statement]) -> int:
        def work(conn: sqlite3.Connection) -> int:
            changed = 0
            for sql, params in statements:
                changed = conn.execute(sql, params).rowcount
            return changed

        return await self._run(lambda conn: _in_transaction(conn, work))  # BEGIN IMMEDIATE: the one writer

    def _dump(self, value: Any) -> Any:
        return json.dumps(value)

    def _load(self, value: Any) -> Any:
        return None if value is None else json.loads(value)

    def _as_text(self, column: str) -> str:
        return column

    def _skip_locked(self) -> str:
        return ""

    def _json_text(self, column: str, field: str) -> str:
        return f"json_extract({column}, '$.{field}')"

    async def _append(self, namespace: str, key: SessionKey, entries: list[SessionStoreEntry]) -> None:
        where = _sql.key_params(namespace, key)
        uuids = sorted({uuid for entry in entries if (uuid := _sql.entry_uuid(entry)) is not None})

        def work(conn: sqlite3.Connection) -> None:
            mtime = conn.execute(
                "INSERT INTO transcript_keys (namespace, project_key, session_id, subpath, mtime) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (namespace, project_key, session_id, subpath) "
                "DO UPDATE SET mtime = max(transcript_keys.mtime, excluded.mtime) RETURNING mtime",
                [*where, time.time_ns() // 1_000_000],
            ).fetchone()["mtime"]
            stored: set[str] = set()
            if uuids:
                sql = f"{_sql.STORED_UUIDS}({_sql.marks(len(uuids))})"
                stored = {row["uuid"] for row in conn.execute(sql, [*where, *uuids])}
            fresh = _sql.fresh_entries(entries, stored)
            conn.executemany(
                _sql.INSERT_ENTRY, [[*where, _sql.entry_uuid(entry), json.dumps(entry)] for entry in fresh]
            )
            if key.get("subpath"):
                return
            row = conn.execute(_sql.SELECT_SUMMARY, where[:3]).fetchone()
            data = _sql.folded(key, row, None if row is None else json.loads(row["data"]), fresh)
            conn.execute(_sql.UPSERT_SUMMARY, [*where[:3], mtime, json.dumps(data)])

        await self._run(lambda conn: _in_transaction(conn, work))

    async def take_permission_answer(self, job_id: str, permission_id: str) -> dict[str, Any] | None:
        def work(conn: sqlite3.Connection) -> dict[str, Any] | None:
            row = conn.execute("SELECT permission_answer FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
            stored = None if row is None else self._load(row["permission_answer"])
            if stored is None or stored.get("permission_id") != permission_id:
                return None
            conn.execute("UPDATE jobs SET permission_answer = NULL WHERE job_id = ?", (job_id,))
            answer: dict[str, Any] = stored["answer"]
            return answer

        return await self._run(lambda conn: _in_transaction(conn, work))
