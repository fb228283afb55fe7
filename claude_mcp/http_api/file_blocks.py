"""A prompt's `file` blocks given their files' data: an image or a document named by `file_id`
reaches the run as the base64 block it stands for, read from the caller's own files (another
namespace's file is "not found"), and checked as any image or document sent inline."""

from __future__ import annotations

import base64
import time
from typing import Any

import anyio.to_thread

from ..bridge.claude import ClaudeBridge
from ..config.content import Prompt
from ..state.files import FileQueries, FileStore
from .attachments import IMAGE_SIGNATURES, Attachments, attachment
from .shapes import ApiError

TEXT_TYPES = ("text/plain",)


def file_store(bridge: ClaudeBridge) -> FileStore:
    """The store's Files role (both SQL backends have it)."""
    store = bridge.store
    if not isinstance(store, FileQueries):
        raise ApiError(501, "api_error", "This server's store keeps no files.")
    return store


async def _block_of(store: FileStore, namespace: str, block: dict[str, Any]) -> dict[str, Any]:
    file_id = block["source"]["file_id"]
    where = f"file {file_id}"
    now = time.time()
    record, content = await store.get_file(namespace, file_id, now), await store.file_content(namespace, file_id, now)
    if record is None or content is None:
        raise ApiError(404, "not_found_error", f"File not found: {file_id}")
    kind = "image" if block["type"] == "image" or record.mime_type in IMAGE_SIGNATURES else "document"
    if kind == "document" and record.mime_type in TEXT_TYPES:
        text = content.decode("utf-8", "replace")
        return attachment(where, {"type": kind, "source": {"type": "text", "media_type": "text/plain", "data": text}})
    data = await anyio.to_thread.run_sync(lambda: base64.b64encode(content).decode())
    source = {"type": "base64", "media_type": record.mime_type, "data": data}
    return await anyio.to_thread.run_sync(attachment, where, {"type": kind, "source": source})


async def with_files(prompt: str, bridge: ClaudeBridge) -> str:
    """`prompt` with each of its `file` blocks replaced by the block its file's data makes;
    `ApiError` for a file not found, or not an image or document within the limits."""
    if not isinstance(prompt, Prompt) or not any(b["source"].get("type") == "file" for b in prompt.blocks):
        return prompt
    store, found = file_store(bridge), Attachments([])
    for block in prompt.blocks:
        found.add(await _block_of(store, bridge.namespace, block) if block["source"].get("type") == "file" else block)
    return Prompt(str(prompt), found.blocks)
