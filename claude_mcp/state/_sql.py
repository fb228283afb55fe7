"""What the two SQL backends share: the schema and its migrations, rows <-> records, the
queries that read the same in both dialects, and the transcript adapter.

Queries are written once with `?` placeholders; `PostgresStore` turns them into `%s`. What
differs (the connection, transactions that read before they write, JSON in and out) is left
to each backend. Over 300 lines because it is the one home of the SQL both backends share;
splitting it would give the same statement two homes.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, Literal, Self

import anyio
from claude_agent_sdk import (
    SessionKey,
    SessionListSubkeysKey,
    SessionStore,
    SessionStoreEntry,
    SessionStoreListEntry,
    SessionSummaryEntry,
    fold_session_summary,
)

from . import _usage_sql, files, oauth_grants
from .store import BATCH_EXPIRED, BatchOutcome, BatchRecord, JobRecord, SessionRecord

Dialect = Literal["sqlite", "postgres"]
Params = Sequence[Any]
Statement = tuple[str, Params]

SCHEMA_VERSION_DDL = (
    "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied_at DOUBLE PRECISION NOT NULL)"
)
CURRENT_VERSION_SQL = "SELECT coalesce(max(version), 0) AS version FROM schema_version"
RECORD_VERSION_SQL = "INSERT INTO schema_version (version, applied_at) VALUES (?, ?)"

# `{json}`: a document the store queries (JSONB on PostgreSQL). `{blob}`: an opaque SDK document
# kept verbatim (JSON on PostgreSQL, which unlike JSONB accepts "\u0000" in strings). `{bytes}`: bytes.
_TYPES: dict[Dialect, dict[str, str]] = {
    "sqlite": {"seq": "INTEGER PRIMARY KEY", "json": "TEXT", "blob": "TEXT", "bytes": "BLOB"},
    "postgres": {
        "seq": "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
        "json": "JSONB",
        "blob": "JSON",
        "bytes": "BYTEA",
    },
}

_MIGRATIONS: list[list[str]] = [
    [
        """CREATE TABLE transcript_entries (
            seq {seq}, namespace TEXT NOT NULL, project_key TEXT NOT NULL, session_id TEXT NOT NULL,
            subpath TEXT NOT NULL, uuid TEXT, entry {blob} NOT NULL)""",
        "CREATE INDEX transcript_entries_key ON transcript_entries (namespace, project_key, session_id, subpath, seq)",
        """CREATE UNIQUE INDEX transcript_entries_uuid
            ON transcript_entries (namespace, project_key, session_id, subpath, uuid)""",
        """CREATE TABLE transcript_keys (
            namespace TEXT NOT NULL, project_key TEXT NOT NULL, session_id TEXT NOT NULL, subpath TEXT NOT NULL,
            mtime BIGINT NOT NULL, PRIMARY KEY (namespace, project_key, session_id, subpath))""",
        """CREATE TABLE transcript_summaries (
            namespace TEXT NOT NULL, project_key TEXT NOT NULL, session_id TEXT NOT NULL,
            mtime BIGINT NOT NULL, data {blob} NOT NULL, PRIMARY KEY (namespace, project_key, session_id))""",
        """CREATE TABLE sessions (
            namespace TEXT NOT NULL, session_id TEXT NOT NULL, cwd TEXT, title TEXT, first_prompt TEXT,
            created_at DOUBLE PRECISION NOT NULL, updated_at DOUBLE PRECISION NOT NULL, forked_from TEXT,
            warm_replica TEXT, settings {json} NOT NULL, PRIMARY KEY (namespace, session_id))""",
        "CREATE INDEX sessions_recent ON sessions (namespace, updated_at DESC, session_id)",
        """CREATE TABLE jobs (
            job_id TEXT PRIMARY KEY, namespace TEXT NOT NULL, status TEXT NOT NULL, agent TEXT, session_id TEXT,
            created_at DOUBLE PRECISION NOT NULL, updated_at DOUBLE PRECISION NOT NULL,
            finished_at DOUBLE PRECISION, result {json}, error TEXT, progress {json} NOT NULL, text TEXT NOT NULL,
            pending_permission {json}, replica TEXT, lease_expires_at DOUBLE PRECISION,
            permission_answer {json}, cancel_requested BOOLEAN NOT NULL DEFAULT FALSE)""",
        "CREATE INDEX jobs_recent ON jobs (namespace, created_at DESC)",
        "CREATE INDEX jobs_leases ON jobs (status, lease_expires_at)",
        "CREATE TABLE locks (key TEXT PRIMARY KEY, holder TEXT NOT NULL, expires_at DOUBLE PRECISION NOT NULL)",
    ],
    [  # 2: which conversation a Messages API history continues
        """CREATE TABLE histories (
            namespace TEXT NOT NULL, digest TEXT NOT NULL, session_id TEXT NOT NULL,
            created_at DOUBLE PRECISION NOT NULL, PRIMARY KEY (namespace, digest))""",
    ],
    [  # 3: jobs queued in the store, claimed by any replica with a free run slot
        "ALTER TABLE jobs ADD COLUMN request {json}",
        "ALTER TABLE jobs ADD COLUMN tool TEXT",
        "ALTER TABLE jobs ADD COLUMN batch_id TEXT",
        "ALTER TABLE jobs ADD COLUMN custom_id TEXT",
        "CREATE INDEX jobs_queue ON jobs (namespace, status, created_at)",
        "CREATE INDEX jobs_batch ON jobs (namespace, batch_id)",
    ],
    [  # 4: Message Batches (their requests are the jobs with the batch's id)
        """CREATE TABLE batches (
            namespace TEXT NOT NULL, batch_id TEXT NOT NULL, created_at DOUBLE PRECISION NOT NULL,
            expires_at DOUBLE PRECISION NOT NULL, request_count INTEGER NOT NULL,
            cancel_initiated_at DOUBLE PRECISION, ended_at DOUBLE PRECISION, PRIMARY KEY (namespace, batch_id))""",
        "CREATE INDEX batches_recent ON batches (namespace, created_at DESC, batch_id DESC)",
        "CREATE INDEX batches_age ON batches (created_at)",
        "CREATE UNIQUE INDEX jobs_batch_request ON jobs (namespace, batch_id, custom_id)",
    ],
    _usage_sql.MIGRATION,  # 5: what each run used, per model (quotas and usage reports)
    _usage_sql.CHAIN_MIGRATION,  # 6: the budget a chain of delegations shares
    _usage_sql.HEADS_MIGRATION,  # 7: the chain a CLI process's current turn belongs to
    [  # 8: why a job failed, for the APIs that type their errors (a batch's errored requests)
        "ALTER TABLE jobs ADD COLUMN error_kind TEXT",
        "ALTER TABLE jobs ADD COLUMN error_status INTEGER",
    ],
    _usage_sql.AGE_MIGRATION,  # 9: chain accounts and heads are forgotten once their turns are long over
    oauth_grants.MIGRATION,  # 10: the built-in OAuth authorization server's clients, grants and tokens
    files.MIGRATION,  # 11: files uploaded through the Files API
    oauth_grants.LIMITS_MIGRATION,  # 12: the built-in authorization server's unused clients and sign-in attempts
]
SCHEMA_VERSION = len(_MIGRATIONS)


def migrations_after(current: int, dialect: Dialect) -> list[tuple[int, list[str]]]:
    """The migrations a database at `current` still needs, numbered, in order."""
    if current > SCHEMA_VERSION:
        raise RuntimeError(
            f"the state database is at schema version {current}, newer than this claude-mcp knows "
            f"({SCHEMA_VERSION}); upgrade claude-mcp"
        )
    return [
        (version, [sql.format(**_TYPES[dialect]) for sql in statements])
        for version, statements in enumerate(_MIGRATIONS, start=1)
        if version > current
    ]


def marks(n: int) -> str:
    return ", ".join("?" * n)


# A record field is a column of the same name (`cancel_requested` is never written by `save_job`).
_SESSION_COLUMNS = list(SessionRecord.model_fields)
_BATCH_COLUMNS = list(BatchRecord.model_fields)
_JOB_COLUMNS = [name for name in JobRecord.model_fields if name != "cancel_requested"]
_JSON_COLUMNS = frozenset({"settings", "result", "progress", "pending_permission", "request"})


def _upsert(table: str, columns: list[str], conflict: str, where: str = "") -> str:
    updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c not in conflict)
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks(len(columns))}) "
        f"ON CONFLICT ({conflict}) DO UPDATE SET {updates}{where}"
    )


_PUT_SESSION = _upsert("sessions", _SESSION_COLUMNS, "namespace, session_id")
_PUT_BATCH = _upsert("batches", _BATCH_COLUMNS, "namespace, batch_id")
_SAVE_JOB = _upsert("jobs", _JOB_COLUMNS, "job_id", " WHERE jobs.namespace = excluded.namespace")


# A job's Message Batch, in a query on `jobs`; and the cancellation of the batch's queued jobs.
_ITS_BATCH = "SELECT 1 FROM batches b WHERE b.namespace = jobs.namespace AND b.batch_id = jobs.batch_id"
_CANCEL_QUEUED = (
    "UPDATE jobs SET status = 'cancelled', error = ?, finished_at = ?, updated_at = ?, lease_expires_at = NULL "
    "WHERE namespace = ? AND batch_id = ? AND status = 'queued'"
)

# Appending a batch: `STORED_UUIDS` (+ the batch's uuid marks), insert the fresh entries, then
# for a main transcript read the summary, fold, and write it back with the key's new mtime.
WHERE_KEY = "namespace = ? AND project_key = ? AND session_id = ? AND subpath = ?"
STORED_UUIDS = f"SELECT uuid FROM transcript_entries WHERE {WHERE_KEY} AND uuid IN "
INSERT_ENTRY = (
    "INSERT INTO transcript_entries (namespace, project_key, session_id, subpath, uuid, entry) "
    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"
)
SELECT_SUMMARY = (
    "SELECT mtime, data FROM transcript_summaries WHERE namespace = ? AND project_key = ? AND session_id = ?"
)
UPSERT_SUMMARY = (
    "INSERT INTO transcript_summaries (namespace, project_key, session_id, mtime, data) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (namespace, project_key, session_id) DO UPDATE SET mtime = excluded.mtime, data = excluded.data"
)


def key_params(namespace: str, key: SessionKey) -> list[Any]:
    """The `WHERE_KEY` parameters ('' for the main transcript)."""
    return [namespace, key["project_key"], key["session_id"], key.get("subpath") or ""]


def entry_uuid(entry: SessionStoreEntry) -> str | None:
    uuid = entry.get("uuid")
    return uuid if isinstance(uuid, str) else None


def fresh_entries(entries: list[SessionStoreEntry], stored: set[str]) -> list[SessionStoreEntry]:
    """The entries not stored yet: a uuid already stored (or earlier in the batch) is a repeat."""
    seen = set(stored)
    fresh: list[SessionStoreEntry] = []
    for entry in entries:
        uuid = entry_uuid(entry)
        if uuid is not None:
            if uuid in seen:
                continue
            seen.add(uuid)
        fresh.append(entry)
    return fresh


def folded(key: SessionKey, row: dict[str, Any] | None, data: Any, entries: list[SessionStoreEntry]) -> Any:
    """The summary's data after `entries`, from the stored row (None: the first batch) and its decoded data.
    The adapter stamps the mtime when it writes (the fold keeps the previous one)."""
    prev: SessionSummaryEntry | None = None
    if row is not None:
        prev = {"session_id": key["session_id"], "mtime": int(row["mtime"]), "data": data}
    return fold_session_summary(prev, key, entries)["data"]


class SqlStore(_usage_sql.UsageQueries, oauth_grants.OAuthGrantQueries, files.FileQueries, ABC):
    """The `Store` methods whose SQL reads the same in both dialects (the usage table's in `_usage_sql`)."""

    @abstractmethod
    async def open(self) -> None: ...

    @abstractmethod
    async def close(self) -> None: ...

    async def __aenter__(self) -> Self:
        """Open for the block, closed after it (`async with SqliteStore(path) as store:`)."""
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @abstractmethod
    async def _fetch(self, sql: str, params: Params = ()) -> list[dict[str, Any]]: ...

    @abstractmethod
    async def _execute(self, sql: str, params: Params = ()) -> int:
        """Run one statement; the number of rows it changed."""

    @abstractmethod
    async def _transaction(self, statements: list[Statement]) -> None: ...

    @abstractmethod
    def _dump(self, value: Any) -> Any:
        """A value for a `{json}` column."""

    @abstractmethod
    def _load(self, value: Any) -> Any:
        """A JSON column's value as Python (None stays None)."""

    @abstractmethod
    def _as_text(self, column: str) -> str:
        """A JSON column as its text (so that decoding it can happen off the event loop)."""

    @abstractmethod
    def _json_text(self, column: str, field: str) -> str:
        """SQL for a JSON column's top-level string field."""

    @abstractmethod
    async def _append(self, namespace: str, key: SessionKey, entries: list[SessionStoreEntry]) -> None:
        """Store a non-empty batch and fold it into the summary, atomically per session."""

    def transcripts(self, namespace: str) -> SessionStore:
        return SqlTranscripts(self, namespace)

    # Rows <-> records.
    def _params(self, record: SessionRecord | JobRecord | BatchRecord, columns: list[str]) -> list[Any]:
        values = record.model_dump(mode="json")
        return [self._dump(values[c]) if c in _JSON_COLUMNS and values[c] is not None else values[c] for c in columns]

    def _decode(self, row: dict[str, Any], columns: list[str]) -> dict[str, Any]:
        return {c: self._load(row[c]) if c in _JSON_COLUMNS else row[c] for c in columns}

    def _session(self, row: dict[str, Any]) -> SessionRecord:
        return SessionRecord.model_validate(self._decode(row, _SESSION_COLUMNS))

    def _job(self, row: dict[str, Any]) -> JobRecord:
        return JobRecord.model_validate(
            {**self._decode(row, _JOB_COLUMNS), "cancel_requested": bool(row["cancel_requested"])}
        )

    # The session index.
    async def put_session(self, record: SessionRecord) -> None:
        await self._execute(_PUT_SESSION, self._params(record, _SESSION_COLUMNS))

    async def get_session(self, namespace: str, session_id: str) -> SessionRecord | None:
        rows = await self._fetch(
            "SELECT * FROM sessions WHERE namespace = ? AND session_id = ?", (namespace, session_id)
        )
        return self._session(rows[0]) if rows else None

    async def list_sessions(self, namespace: str, *, limit: int, offset: int) -> list[SessionRecord]:
        rows = await self._fetch(
            "SELECT * FROM sessions WHERE namespace = ? ORDER BY updated_at DESC, session_id LIMIT ? OFFSET ?",
            (namespace, limit, offset),
        )
        return [self._session(row) for row in rows]

    async def count_sessions(self, namespace: str) -> int:
        rows = await self._fetch("SELECT count(*) AS n FROM sessions WHERE namespace = ?", (namespace,))
        return int(rows[0]["n"])

    async def delete_session(self, namespace: str, session_id: str) -> bool:
        await self._execute("DELETE FROM histories WHERE namespace = ? AND session_id = ?", (namespace, session_id))
        sql = "DELETE FROM sessions WHERE namespace = ? AND session_id = ?"
        return await self._execute(sql, (namespace, session_id)) > 0

    async def set_warm(self, namespace: str, session_id: str, replica: str | None) -> None:
        sql = "UPDATE sessions SET warm_replica = ? WHERE namespace = ? AND session_id = ?"
        await self._execute(sql, (replica, namespace, session_id))

    # Jobs.
    async def save_job(self, record: JobRecord) -> None:
        if not await self._execute(_SAVE_JOB, self._params(record, _JOB_COLUMNS)):
            raise ValueError(f"job {record.job_id} belongs to another namespace")

    async def get_job(self, namespace: str, job_id: str) -> JobRecord | None:
        rows = await self._fetch("SELECT * FROM jobs WHERE namespace = ? AND job_id = ?", (namespace, job_id))
        return self._job(rows[0]) if rows else None

    async def list_jobs(self, namespace: str, *, limit: int = 100) -> list[JobRecord]:
        sql = (
            "SELECT * FROM jobs WHERE namespace = ? AND batch_id IS NULL ORDER BY created_at DESC, job_id DESC LIMIT ?"
        )
        return [self._job(row) for row in await self._fetch(sql, (namespace, limit))]

    async def count_jobs(self, namespace: str) -> int:
        rows = await self._fetch(
            "SELECT count(*) AS n FROM jobs WHERE namespace = ? AND batch_id IS NULL", (namespace,)
        )
        return int(rows[0]["n"])

    async def request_cancel(self, namespace: str, job_id: str) -> bool:
        sql = "UPDATE jobs SET cancel_requested = TRUE WHERE namespace = ? AND job_id = ?"
        return await self._execute(sql, (namespace, job_id)) > 0

    async def cancel_requested(self, job_ids: list[str]) -> list[str]:
        if not job_ids:
            return []
        sql = f"SELECT job_id FROM jobs WHERE cancel_requested AND job_id IN ({marks(len(job_ids))})"
        return [row["job_id"] for row in await self._fetch(sql, job_ids)]

    async def answer_permission(self, namespace: str, job_id: str, permission_id: str, answer: dict[str, Any]) -> bool:
        sql = (
            "UPDATE jobs SET permission_answer = ? WHERE namespace = ? AND job_id = ? AND status = 'running' "
            f"AND {self._json_text('pending_permission', 'permission_id')} = ?"
        )
        stored = self._dump({"permission_id": permission_id, "answer": answer})
        return await self._execute(sql, (stored, namespace, job_id, permission_id)) > 0

    async def renew_leases(self, replica: str, job_ids: list[str], until: float) -> list[str]:
        if not job_ids:
            return []
        sql = (
            "UPDATE jobs SET lease_expires_at = ? WHERE replica = ? AND status IN ('running', 'queued') "
            f"AND job_id IN ({marks(len(job_ids))}) RETURNING job_id"
        )
        return [row["job_id"] for row in await self._fetch(sql, (until, replica, *job_ids))]

    async def fail_expired_jobs(self, now: float, message: str) -> list[JobRecord]:
        sql = (
            "UPDATE jobs SET status = 'failed', error = ?, finished_at = ?, updated_at = ?, pending_permission = NULL, "
            "lease_expires_at = NULL WHERE status IN ('running', 'queued') AND lease_expires_at < ? RETURNING *"
        )
        rows = await self._fetch(sql, (message, now, now, now))
        return sorted((self._job(row) for row in rows), key=lambda job: (job.created_at, job.job_id))

    async def expire_jobs(self, finished_before: float) -> int:
        sql = (
            "DELETE FROM jobs WHERE status IN ('completed', 'failed', 'cancelled') AND finished_at < ? "
            f"AND (batch_id IS NULL OR NOT EXISTS ({_ITS_BATCH}))"
        )
        return await self._execute(sql, (finished_before,))

    @abstractmethod
    def _skip_locked(self) -> str:
        """What a claim's row-picking subquery ends with, so concurrent claims pass each other by."""

    async def claim_jobs(
        self, namespace: str, replica: str, limit: int, *, now: float, lease_until: float, job_id: str | None = None
    ) -> list[JobRecord]:
        if limit <= 0:
            return []
        only = "AND job_id = ? " if job_id is not None else ""
        # The rows are picked once, in a CTE (PostgreSQL runs a locking CTE exactly once; a
        # subquery in `IN (…)` or `FROM` may be rescanned, each time skipping other rows).
        sql = (
            "WITH queue AS (SELECT job_id AS picked FROM jobs WHERE namespace = ? AND status = 'queued' "
            f"AND (replica IS NULL OR replica = ?) AND NOT cancel_requested {only}"
            f"AND (batch_id IS NULL OR NOT EXISTS ({_ITS_BATCH} AND b.expires_at <= ?)) "
            f"ORDER BY created_at, job_id LIMIT ?{self._skip_locked()}) "
            "UPDATE jobs SET status = 'running', replica = ?, lease_expires_at = ?, updated_at = ? "
            "FROM queue WHERE jobs.job_id = queue.picked AND jobs.status = 'queued' RETURNING *"
        )
        params: list[Any] = [namespace, replica, *([job_id] if job_id is not None else []), now, limit]
        rows = await self._fetch(sql, [*params, replica, lease_until, now])
        return sorted((self._job(row) for row in rows), key=lambda job: (job.created_at, job.job_id))

    async def cancel_queued(self, namespace: str, job_id: str, now: float, message: str) -> bool:
        sql = (
            "UPDATE jobs SET status = 'cancelled', error = ?, finished_at = ?, updated_at = ?, lease_expires_at = NULL "
            "WHERE namespace = ? AND job_id = ? AND status = 'queued'"
        )
        return await self._execute(sql, (message, now, now, namespace, job_id)) > 0

    # Leases on named locks.
    async def try_lock(self, key: str, holder: str, until: float, now: float) -> bool:
        sql = (
            "INSERT INTO locks (key, holder, expires_at) VALUES (?, ?, ?) ON CONFLICT (key) DO UPDATE "
            "SET holder = excluded.holder, expires_at = excluded.expires_at "
            "WHERE locks.expires_at < ? OR locks.holder = excluded.holder RETURNING holder"
        )
        rows = await self._fetch(sql, (key, holder, until, now))
        return bool(rows) and rows[0]["holder"] == holder

    async def unlock(self, key: str, holder: str) -> None:
        await self._execute("DELETE FROM locks WHERE key = ? AND holder = ?", (key, holder))

    async def put_history(self, namespace: str, digest: str, session_id: str, now: float) -> None:
        await self._execute(
            "INSERT INTO histories (namespace, digest, session_id, created_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (namespace, digest) DO UPDATE SET session_id = excluded.session_id",
            (namespace, digest, session_id, now),
        )

    async def session_for_history(self, namespace: str, digest: str) -> str | None:
        rows = await self._fetch(
            "SELECT session_id FROM histories WHERE namespace = ? AND digest = ?", (namespace, digest)
        )
        return str(rows[0]["session_id"]) if rows else None

    # Message Batches.
    def _batch(self, row: dict[str, Any]) -> BatchRecord:
        return BatchRecord.model_validate({c: row[c] for c in _BATCH_COLUMNS})

    async def put_batch(self, record: BatchRecord) -> None:
        await self._execute(_PUT_BATCH, self._params(record, _BATCH_COLUMNS))

    async def get_batch(self, namespace: str, batch_id: str) -> BatchRecord | None:
        rows = await self._fetch("SELECT * FROM batches WHERE namespace = ? AND batch_id = ?", (namespace, batch_id))
        return self._batch(rows[0]) if rows else None

    async def list_batches(
        self, namespace: str, *, limit: int, before_id: str | None = None, after_id: str | None = None
    ) -> list[BatchRecord]:
        # Keyset pagination on (created_at, batch_id): a page costs the same wherever it starts.
        cursor = "(SELECT created_at, batch_id FROM batches WHERE namespace = ? AND batch_id = ?)"
        where, params = ["namespace = ?"], [namespace]
        if after_id is not None:
            where.append(f"(created_at, batch_id) < {cursor}")
            params += [namespace, after_id]
        if before_id is not None:
            where.append(f"(created_at, batch_id) > {cursor}")
            params += [namespace, before_id]
        # Just newer than `before_id`: the oldest of the newer ones, read upwards, then turned round.
        order = "ASC" if before_id is not None else "DESC"
        sql = f"SELECT * FROM batches WHERE {' AND '.join(where)} ORDER BY created_at {order}, batch_id {order} LIMIT ?"
        batches = [self._batch(row) for row in await self._fetch(sql, [*params, limit])]
        return batches[::-1] if before_id is not None else batches

    async def batch_jobs(
        self, namespace: str, batch_id: str, *, limit: int, after_custom_id: str | None = None
    ) -> list[JobRecord]:
        after = "AND custom_id > ? " if after_custom_id is not None else ""
        sql = f"SELECT * FROM jobs WHERE namespace = ? AND batch_id = ? {after}ORDER BY custom_id LIMIT ?"
        params = [namespace, batch_id, *([after_custom_id] if after_custom_id is not None else []), limit]
        return [self._job(row) for row in await self._fetch(sql, params)]

    async def batch_counts(self, namespace: str, batch_ids: list[str]) -> dict[str, dict[BatchOutcome, int]]:
        counts: dict[str, dict[BatchOutcome, int]] = {batch_id: {} for batch_id in batch_ids}
        if not batch_ids:
            return counts
        sql = (
            "SELECT batch_id, CASE WHEN status = 'cancelled' AND error = ? THEN 'expired' ELSE status END AS outcome, "
            f"count(*) AS n FROM jobs WHERE namespace = ? AND batch_id IN ({marks(len(batch_ids))}) GROUP BY 1, 2"
        )
        for row in await self._fetch(sql, [BATCH_EXPIRED, namespace, *batch_ids]):
            counts[row["batch_id"]][row["outcome"]] = int(row["n"])
        return counts

    async def count_batch_jobs(self, namespace: str) -> int:
        sql = (
            "SELECT count(*) AS n FROM jobs WHERE namespace = ? AND status IN ('queued', 'running') "
            "AND batch_id IS NOT NULL"
        )
        return int((await self._fetch(sql, (namespace,)))[0]["n"])

    async def cancel_batch(self, namespace: str, batch_id: str, now: float, message: str) -> BatchRecord | None:
        which = (namespace, batch_id)
        await self._transaction(
            [
                (
                    "UPDATE batches SET cancel_initiated_at = coalesce(cancel_initiated_at, ?) "
                    "WHERE namespace = ? AND batch_id = ? AND ended_at IS NULL",
                    (now, *which),
                ),
                (_CANCEL_QUEUED, (message, now, now, *which)),
                (
                    "UPDATE jobs SET cancel_requested = TRUE WHERE namespace = ? AND batch_id = ? "
                    "AND status = 'running'",
                    which,
                ),
            ]
        )
        return await self.get_batch(namespace, batch_id)

    async def expire_batch(self, namespace: str, batch_id: str, now: float) -> int:
        return await self._execute(_CANCEL_QUEUED, (BATCH_EXPIRED, now, now, namespace, batch_id))

    async def end_batch(self, namespace: str, batch_id: str, now: float) -> BatchRecord | None:
        rows = await self._fetch(
            "UPDATE batches SET ended_at = coalesce(ended_at, ?) WHERE namespace = ? AND batch_id = ? RETURNING *",
            (now, namespace, batch_id),
        )
        return self._batch(rows[0]) if rows else None

    async def delete_batch(self, namespace: str, batch_id: str) -> bool:
        if await self.get_batch(namespace, batch_id) is None:
            return False
        which = (namespace, batch_id)
        await self._transaction(
            [
                ("DELETE FROM batches WHERE namespace = ? AND batch_id = ?", which),
                ("DELETE FROM jobs WHERE namespace = ? AND batch_id = ?", which),
            ]
        )
        return True

    async def expire_batches(self, created_before: float) -> int:
        rows = await self._fetch("SELECT count(*) AS n FROM batches WHERE created_at < ?", (created_before,))
        if not (expired := int(rows[0]["n"])):
            return 0
        await self._transaction(
            [
                (
                    f"DELETE FROM jobs WHERE batch_id IS NOT NULL AND EXISTS ({_ITS_BATCH} AND b.created_at < ?)",
                    (created_before,),
                ),
                ("DELETE FROM batches WHERE created_at < ?", (created_before,)),
            ]
        )
        return expired


class SqlTranscripts:
    """claude-agent-sdk's `SessionStore` over one namespace's rows.

    Every method is defined on this class itself, and it subclasses nothing: the SDK counts an
    optional method as implemented only when the adapter's class overrides the Protocol's."""

    def __init__(self, store: SqlStore, namespace: str) -> None:
        self._store = store
        self._namespace = namespace

    async def append(self, key: SessionKey, entries: list[SessionStoreEntry]) -> None:
        if entries:
            await self._store._append(self._namespace, key, entries)

    async def load(self, key: SessionKey) -> list[SessionStoreEntry] | None:
        rows = await self._store._fetch(
            f"SELECT {self._store._as_text('e.entry')} AS entry FROM transcript_keys k "
            "LEFT JOIN transcript_entries e ON e.namespace = k.namespace "
            "AND e.project_key = k.project_key AND e.session_id = k.session_id AND e.subpath = k.subpath "
            "WHERE k.namespace = ? AND k.project_key = ? AND k.session_id = ? AND k.subpath = ? ORDER BY e.seq",
            (self._namespace, key["project_key"], key["session_id"], key.get("subpath") or ""),
        )
        if not rows:
            return None
        # A long transcript is thousands of documents: decode them in a worker thread.
        texts = [row["entry"] for row in rows if row["entry"] is not None]
        entries: list[SessionStoreEntry] = await anyio.to_thread.run_sync(lambda: [json.loads(t) for t in texts])
        return entries

    async def list_sessions(self, project_key: str) -> list[SessionStoreListEntry]:
        rows = await self._store._fetch(
            "SELECT session_id, mtime FROM transcript_keys WHERE namespace = ? AND project_key = ? AND subpath = ''",
            (self._namespace, project_key),
        )
        return [{"session_id": row["session_id"], "mtime": int(row["mtime"])} for row in rows]

    async def list_session_summaries(self, project_key: str) -> list[SessionSummaryEntry]:
        rows = await self._store._fetch(
            "SELECT session_id, mtime, data FROM transcript_summaries WHERE namespace = ? AND project_key = ?",
            (self._namespace, project_key),
        )
        return [
            {"session_id": row["session_id"], "mtime": int(row["mtime"]), "data": self._store._load(row["data"])}
            for row in rows
        ]

    async def delete(self, key: SessionKey) -> None:
        where = "namespace = ? AND project_key = ? AND session_id = ?"
        params: list[Any] = [self._namespace, key["project_key"], key["session_id"]]
        subpath = key.get("subpath")
        if subpath:
            await self._store._transaction(
                [
                    (f"DELETE FROM transcript_keys WHERE {where} AND subpath = ?", [*params, subpath]),
                    (f"DELETE FROM transcript_entries WHERE {where} AND subpath = ?", [*params, subpath]),
                ]
            )
        else:  # the key rows first: an append locks its key row before anything else
            tables = ("transcript_keys", "transcript_entries", "transcript_summaries")
            await self._store._transaction([(f"DELETE FROM {table} WHERE {where}", params) for table in tables])

    async def list_subkeys(self, key: SessionListSubkeysKey) -> list[str]:
        rows = await self._store._fetch(
            "SELECT subpath FROM transcript_keys WHERE namespace = ? AND project_key = ? AND session_id = ? "
            "AND subpath <> '' ORDER BY subpath",
            (self._namespace, key["project_key"], key["session_id"]),
        )
        return [row["subpath"] for row in rows]
