"""Files uploaded through the Files API (`/v1/files`), kept in the shared store so that any
replica serves them: each namespace's own, counted against its storage quota, gone once expired.

A file's bytes live in its row (`BLOB` on SQLite, `BYTEA` on PostgreSQL): the files are small
(the images and documents a run is given), and one store holds everything a replica needs.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, Protocol

from pydantic import BaseModel

MIGRATION = [
    """CREATE TABLE files (
        namespace TEXT NOT NULL, file_id TEXT NOT NULL, filename TEXT NOT NULL, mime_type TEXT NOT NULL,
        size_bytes BIGINT NOT NULL, created_at DOUBLE PRECISION NOT NULL, expires_at DOUBLE PRECISION NOT NULL,
        content {bytes} NOT NULL, PRIMARY KEY (namespace, file_id))""",
    "CREATE INDEX files_recent ON files (namespace, created_at DESC, file_id DESC)",
    "CREATE INDEX files_age ON files (expires_at)",
]


class FileRecord(BaseModel):
    """One uploaded file's metadata (its bytes are read apart: `file_content`)."""

    namespace: str
    file_id: str
    filename: str
    mime_type: str
    size_bytes: int
    created_at: float
    expires_at: float


_COLUMNS = list(FileRecord.model_fields)


class FileStore(Protocol):
    """The Files API's role in the store."""

    async def put_file(self, record: FileRecord, content: bytes, quota_bytes: int) -> bool:
        """Keep the file, unless its namespace's unexpired files and it would hold more than
        `quota_bytes` together (then False); forgets every expired file first."""
        ...

    async def get_file(self, namespace: str, file_id: str, now: float) -> FileRecord | None: ...

    async def file_content(self, namespace: str, file_id: str, now: float) -> bytes | None: ...

    async def list_files(
        self, namespace: str, *, now: float, limit: int, before_id: str | None = None, after_id: str | None = None
    ) -> list[FileRecord]:
        """Newest first; `after_id`: those older than it, `before_id`: those newer."""
        ...

    async def delete_file(self, namespace: str, file_id: str) -> bool: ...


class FileQueries(ABC):
    """`FileStore` in SQL both dialects read the same (a mixin of `SqlStore`)."""

    @abstractmethod
    async def _fetch(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]: ...

    @abstractmethod
    async def _execute(self, sql: str, params: Sequence[Any] = ()) -> int: ...

    @abstractmethod
    async def _serialized(self, key: str, statements: list[tuple[str, Sequence[Any]]]) -> int:
        """Run `statements` in one transaction that no other one serialized on `key` overlaps (on
        PostgreSQL an advisory lock on the key; on SQLite a write transaction from its start); the
        rows the last one changed."""

    async def put_file(self, record: FileRecord, content: bytes, quota_bytes: int) -> bool:
        values = [getattr(record, column) for column in _COLUMNS]
        # The quota is checked by the insert itself, and inserts into one namespace take turns: two
        # uploads at once (on two replicas) would otherwise each count the files without the other's.
        sql = (
            f"INSERT INTO files ({', '.join(_COLUMNS)}, content) "
            f"SELECT {', '.join('?' * (len(_COLUMNS) + 1))} "
            "WHERE (SELECT coalesce(sum(size_bytes), 0) FROM files WHERE namespace = ?) + ? <= ?"
        )
        statements: list[tuple[str, Sequence[Any]]] = [
            ("DELETE FROM files WHERE expires_at <= ?", (record.created_at,)),
            (sql, [*values, content, record.namespace, record.size_bytes, quota_bytes]),
        ]
        return await self._serialized(f"files:{record.namespace}", statements) == 1

    async def get_file(self, namespace: str, file_id: str, now: float) -> FileRecord | None:
        sql = f"SELECT {', '.join(_COLUMNS)} FROM files WHERE namespace = ? AND file_id = ? AND expires_at > ?"
        rows = await self._fetch(sql, (namespace, file_id, now))
        return FileRecord.model_validate(rows[0]) if rows else None

    async def file_content(self, namespace: str, file_id: str, now: float) -> bytes | None:
        sql = "SELECT content FROM files WHERE namespace = ? AND file_id = ? AND expires_at > ?"
        rows = await self._fetch(sql, (namespace, file_id, now))
        return bytes(rows[0]["content"]) if rows else None

    async def list_files(
        self, namespace: str, *, now: float, limit: int, before_id: str | None = None, after_id: str | None = None
    ) -> list[FileRecord]:
        # Keyset pagination on (created_at, file_id), as the batches' list.
        cursor = "(SELECT created_at, file_id FROM files WHERE namespace = ? AND file_id = ?)"
        where, params = ["namespace = ?", "expires_at > ?"], [namespace, now]
        if after_id is not None:
            where.append(f"(created_at, file_id) < {cursor}")
            params += [namespace, after_id]
        if before_id is not None:
            where.append(f"(created_at, file_id) > {cursor}")
            params += [namespace, before_id]
        order = "ASC" if before_id is not None else "DESC"
        sql = (
            f"SELECT {', '.join(_COLUMNS)} FROM files WHERE {' AND '.join(where)} "
            f"ORDER BY created_at {order}, file_id {order} LIMIT ?"
        )
        files = [FileRecord.model_validate(row) for row in await self._fetch(sql, [*params, limit])]
        return files[::-1] if before_id is not None else files

    async def delete_file(self, namespace: str, file_id: str) -> bool:
        return await self._execute("DELETE FROM files WHERE namespace = ? AND file_id = ?", (namespace, file_id)) == 1
