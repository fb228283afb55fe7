"""`/v1/files`: the Files API (beta `files-api-2025-04-14`) in its own shapes — upload (multipart),
list with paging (the SDK's `page` cursor, or `after_id`/`before_id`), metadata, content,
delete — so the `anthropic` SDK's `beta.files` calls work unchanged, and a `file_id` can stand
for an image or a document in a message.

Files are kept per namespace in the shared store (`state.files`: any replica serves them; one
caller never sees another's — a file of another namespace is "not found", as one that never
was), counted against the namespace's `files_quota_mb`, and gone after `file_ttl_s`. An upload is
read through the same capped reader as every other body (`max_file_mb`).
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request
from starlette.responses import Response

from ..bridge.tenancy import Tenancy
from ..config.limits import KiB
from ..state.files import FileRecord, FileStore
from .anthropic import in_api_shape
from .auth import caller_of
from .file_blocks import file_store
from .inputs import BodyCap, query_int, read_capped
from .shapes import ApiError, api_id

FILE_ID = re.compile(r"^file_[0-9a-f]{24}$")
INTERNAL = ApiError(500, "api_error", "The server failed to answer (the server log has details); retry.")
Handler = Callable[[Request, FileStore, str], Awaitable[dict[str, Any] | Response]]


def metadata(record: FileRecord) -> dict[str, Any]:
    """A file as the Files API shows it."""
    created = datetime.fromtimestamp(record.created_at, UTC).isoformat().replace("+00:00", "Z")
    return {
        "type": "file",
        "id": record.file_id,
        "filename": record.filename,
        "mime_type": record.mime_type,
        "size_bytes": record.size_bytes,
        "created_at": created,
        "downloadable": True,
    }


def not_found(file_id: str) -> ApiError:
    shown = file_id if len(file_id) <= 40 else f"{file_id[:40]}…"
    return ApiError(404, "not_found_error", f"File not found: {shown}")


def _printable(text: str, most: int) -> str:
    """`text` without control characters or lone surrogates (no store takes a NUL; PostgreSQL no
    surrogate), at most `most` characters."""
    return "".join(ch for ch in text[: most * 2] if ch.isprintable() and not 0xD800 <= ord(ch) <= 0xDFFF)[:most]


def checked_id(request: Request) -> str:
    file_id = str(request.path_params["file_id"])
    if not FILE_ID.match(file_id):
        raise not_found(file_id)
    return file_id


async def _one(body: bytes, headers: Any) -> UploadFile:
    """The `file` part of a multipart body (already read within its cap)."""

    async def stream() -> AsyncGenerator[bytes, None]:
        yield body

    try:
        form = await MultiPartParser(headers, stream(), max_files=1, max_fields=10).parse()
    except MultiPartException as exc:
        raise ApiError(400, "invalid_request_error", f"The upload is not a multipart form: {exc.message}") from None
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise ApiError(400, "invalid_request_error", "file: send the file as the multipart field `file`.")
    return upload


class FilesApi:
    """The Files endpoints, for the namespace each request's caller has."""

    def __init__(self, tenancy: Tenancy) -> None:
        self.tenancy = tenancy
        self.cap = BodyCap.of(tenancy.policy, "max_file_mb")

    async def _serve(self, request: Request, handler: Handler, *, body: bool = False) -> Response:
        async def work(request_id: str) -> dict[str, Any] | Response:
            caller = caller_of(request, self.tenancy)  # first: a stranger's body is never read
            raw = await read_capped(request, self.cap) if body else b""
            async with self.tenancy.bridge_for(caller.tenant, caller.credential) as bridge:
                request.state.raw = raw
                request.state.policy = bridge.policy
                return await handler(request, file_store(bridge), bridge.namespace)

        return await in_api_shape(work, INTERNAL, caller_credentials=self.tenancy.takes_caller_credentials)

    async def upload(self, request: Request) -> Response:
        return await self._serve(request, _upload, body=True)

    async def list(self, request: Request) -> Response:
        return await self._serve(request, _list)

    async def retrieve(self, request: Request) -> Response:
        return await self._serve(request, _retrieve)

    async def content(self, request: Request) -> Response:
        return await self._serve(request, _content)

    async def delete(self, request: Request) -> Response:
        return await self._serve(request, _delete)


async def _upload(request: Request, store: FileStore, namespace: str) -> dict[str, Any]:
    upload = await _one(request.state.raw, request.headers)
    content = await upload.read()
    policy = request.state.policy
    now = time.time()
    filename = _printable(upload.filename or "", 255) or "upload"
    mime_type = _printable(upload.content_type or "", 100) or "application/octet-stream"
    record = FileRecord(
        namespace=namespace,
        file_id=api_id("file_"),
        filename=filename,
        mime_type=mime_type,
        size_bytes=len(content),
        created_at=now,
        expires_at=now + policy.file_ttl_s,
    )
    quota = int(policy.files_quota_mb * KiB * KiB)
    if not await store.put_file(record, content, quota):
        raise ApiError(
            400,
            "invalid_request_error",
            f"This upload would take your files past the {policy.files_quota_mb:g} MiB you may keep on this server "
            "(its `files_quota_mb` setting): delete files first, or wait until they expire.",
        )
    return metadata(record)


async def _list(request: Request, store: FileStore, namespace: str) -> dict[str, Any]:
    limit = query_int(request.query_params, "limit", default=20, low=1, high=1000)
    query = request.query_params
    cursors = {name: query[name] for name in ("page", "after_id", "before_id") if name in query}
    if len(cursors) > 1:
        raise ApiError(400, "invalid_request_error", "Send one of page, after_id and before_id, not several.")
    for name, value in cursors.items():
        if not FILE_ID.match(value):
            raise ApiError(400, "invalid_request_error", f"{name} must be a cursor (a file id) this server gave.")
    before_id, after_id = cursors.get("before_id"), cursors.get("after_id") or cursors.get("page")
    found = await store.list_files(namespace, now=time.time(), limit=limit + 1, before_id=before_id, after_id=after_id)
    page = found[-limit:] if before_id is not None else found[:limit]
    data = [metadata(record) for record in page]
    return {
        "data": data,
        "has_more": len(found) > limit,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "next_page": data[-1]["id"] if data and len(found) > limit and before_id is None else None,
    }


async def _retrieve(request: Request, store: FileStore, namespace: str) -> dict[str, Any]:
    file_id = checked_id(request)
    record = await store.get_file(namespace, file_id, time.time())
    if record is None:
        raise not_found(file_id)
    return metadata(record)


async def _content(request: Request, store: FileStore, namespace: str) -> Response:
    file_id = checked_id(request)
    now = time.time()
    record, content = await store.get_file(namespace, file_id, now), await store.file_content(namespace, file_id, now)
    if record is None or content is None:
        raise not_found(file_id)
    return Response(content, media_type=record.mime_type)


async def _delete(request: Request, store: FileStore, namespace: str) -> dict[str, Any]:
    file_id = checked_id(request)
    if not await store.delete_file(namespace, file_id):
        raise not_found(file_id)
    return {"id": file_id, "type": "file_deleted"}
