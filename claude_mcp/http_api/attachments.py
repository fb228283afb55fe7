"""Images and documents in a request: the Messages API's `image` and `document` blocks, and chat
completions' `image_url` and `file` parts, checked as the Messages API checks them (media type,
base64 data that is what it says, the size limits of `config/limits.py`) and handed to the run
as the Messages API's own blocks, which the CLI's streaming input takes. Pure.

Sources: `base64` data (and plain `text` for a document), or a `file` uploaded to `/v1/files`
(its `file_id`; the run gets its data, `file_blocks.with_files`). A `url` source is refused:
this server fetches nothing on a caller's behalf.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any

from ..config.content import Prompt
from ..config.limits import ATTACHMENTS_MOST_BYTES, DOCUMENT_MOST_BYTES, IMAGE_MOST_BYTES, MOST_IMAGES, KiB
from .shapes import ApiError, MessageParam

IMAGE_SIGNATURES: dict[str, tuple[bytes, ...]] = {
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/gif": (b"GIF87a", b"GIF89a"),
    "image/webp": (b"RIFF",),
}
DOCUMENT_SIGNATURES: dict[str, tuple[bytes, ...]] = {"application/pdf": (b"%PDF-",)}
DATA_URL = re.compile(r"^data:(?P<media_type>[\w.+-]+/[\w.+-]+);base64,(?P<data>.*)$", re.DOTALL)
URL_REFUSED = (
    "url sources are not fetched by this server (it fetches nothing on a caller's behalf): send the data as base64."
)
FILE_ID = re.compile(r"^file_[0-9a-f]{24}$")


def _bad(where: str, message: str) -> ApiError:
    return ApiError(400, "invalid_request_error", f"{where}: {message}")


def _mib(size: int) -> str:
    return f"{size / KiB / KiB:.1f} MiB"


def _checked_data(where: str, data: Any, media_type: str, signatures: tuple[bytes, ...], most: int) -> None:
    if not isinstance(data, str) or not data:
        raise _bad(f"{where}.source.data", "base64 data is required.")
    if len(data) > most:
        raise ApiError(
            413,
            "request_too_large",
            f"{where}.source.data: {_mib(len(data))} of base64, more than the {_mib(most)} this server (as the "
            "Messages API) takes for one.",
        )
    try:
        head = base64.b64decode(data[:64], validate=True)
        base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise _bad(f"{where}.source.data", "not valid base64.") from None
    if not head.startswith(signatures) or (media_type == "image/webp" and head[8:12] != b"WEBP"):
        raise _bad(f"{where}.source", f"the data is not {media_type} (its media_type says it is).")


def file_block(where: str, kind: Any, file_id: Any) -> dict[str, Any]:
    """A block whose data is an uploaded file's, to be read from the store before the run
    (`file_blocks.with_files`); until then its size counts as nothing."""
    if not isinstance(file_id, str) or not FILE_ID.match(file_id):
        raise _bad(f"{where}.file_id", "not a file id (file_…) this server gave.")
    return {"type": kind, "source": {"type": "file", "file_id": file_id}}


def attachment(where: str, block: dict[str, Any]) -> dict[str, Any]:
    """An `image` or `document` block as the run is given it (its type and source), once checked;
    `ApiError` otherwise (413 for data over its limit)."""
    kind, source = block.get("type"), block.get("source")
    if not isinstance(source, dict):
        raise _bad(f"{where}.source", "an object is required.")
    source_type = source.get("type")
    if source_type == "url":
        raise _bad(f"{where}.source", URL_REFUSED)
    if source_type == "file":
        return file_block(where, kind, source.get("file_id"))
    media_type = source.get("media_type")
    if kind == "document" and source_type == "text":
        if media_type != "text/plain" or not isinstance(source.get("data"), str):
            raise _bad(f"{where}.source", "a text source has media_type 'text/plain' and its text as data.")
        if len(source["data"]) > DOCUMENT_MOST_BYTES:
            raise ApiError(413, "request_too_large", f"{where}.source.data: the document is too large.")
        return {"type": kind, "source": {"type": "text", "media_type": "text/plain", "data": source["data"]}}
    if source_type != "base64":
        raise _bad(f"{where}.source.type", f"{source_type!r} is not a source this server takes; send 'base64'.")
    signatures = (IMAGE_SIGNATURES if kind == "image" else DOCUMENT_SIGNATURES).get(str(media_type))
    if signatures is None:
        known = ", ".join(IMAGE_SIGNATURES if kind == "image" else DOCUMENT_SIGNATURES)
        raise _bad(f"{where}.source.media_type", f"{media_type!r} is not supported for a {kind}; send one of {known}.")
    most = IMAGE_MOST_BYTES if kind == "image" else DOCUMENT_MOST_BYTES
    _checked_data(where, source.get("data"), str(media_type), signatures, most)
    return {"type": kind, "source": {"type": "base64", "media_type": media_type, "data": source["data"]}}


def chat_attachment(where: str, part: dict[str, Any]) -> dict[str, Any]:
    """A chat completions `image_url` or `file` part as the Messages API block it stands for."""
    if part.get("type") == "image_url":
        image = part.get("image_url")
        url = image.get("url") if isinstance(image, dict) else None
        if not isinstance(url, str) or not (found := DATA_URL.match(url)):
            raise _bad(
                f"{where}.image_url.url", "send the image as a data URL (data:image/png;base64,…); " + URL_REFUSED
            )
        source = {"type": "base64", "media_type": found["media_type"], "data": found["data"]}
        return attachment(where, {"type": "image", "source": source})
    file = part.get("file")
    if not isinstance(file, dict):
        raise _bad(f"{where}.file", "an object is required.")
    if file.get("file_id") is not None:
        return file_block(f"{where}.file", "document", file.get("file_id"))
    data = file.get("file_data")
    if not isinstance(data, str) or not (found := DATA_URL.match(data)):
        raise _bad(f"{where}.file.file_data", "send the file as a data URL (data:application/pdf;base64,…).")
    kind = "image" if found["media_type"] in IMAGE_SIGNATURES else "document"
    return attachment(where, {"type": kind, "source": {"type": "base64", **found.groupdict()}})


@dataclass
class Attachments:
    """A turn's images and documents so far, within the limits for one request."""

    blocks: list[dict[str, Any]]
    images: int = 0
    size: int = 0

    def add(self, block: dict[str, Any]) -> None:
        self.images += block["type"] == "image"
        self.size += len(block["source"].get("data") or "")
        if self.images > MOST_IMAGES:
            raise _bad("messages", f"more than {MOST_IMAGES} images in one request (the Messages API's own limit).")
        if self.size > ATTACHMENTS_MOST_BYTES:
            raise ApiError(
                413,
                "request_too_large",
                f"the request's images and documents hold {_mib(self.size)}, more than the "
                f"{_mib(ATTACHMENTS_MOST_BYTES)} one request may carry.",
            )
        self.blocks.append(block)


def message_prompt(message: MessageParam, index: int) -> str:
    """The last user message of a request as the prompt it is: its text, with its images and
    documents (checked) as a `Prompt`'s blocks."""
    found = Attachments([])
    for at, block in message.attachments():
        found.add(attachment(f"messages.{index}.content.{at}", block))
    return Prompt(message.text(), found.blocks) if found.blocks else message.text()
