"""What an HTTP API request carries, taken within bounds: the one place every endpoint reads a
number from its query string or its body from the connection.

- `query_int`: a query parameter that is a number is a plain decimal integer within bounds, or
  the request is refused with a 400 `invalid_request_error` that says what is accepted.
- `Bodies.read`: a body is read only after the caller is authenticated (the endpoints call it
  then), at most its cap (`max_request_mb`, `max_batch_mb`): a `Content-Length` over the cap is
  refused before a byte is read, a body without one as soon as it passes the cap — 413
  `request_too_large`. A body over `OFF_LOOP_BYTES` is decoded and validated on a worker thread,
  so other requests keep being served meanwhile (see `ManyPerRequest` in `shapes`). A body whose
  JSON escapes leave a lone surrogate in any of its texts is refused with a 400 naming where (no
  store or CLI could carry it).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import anyio
import anyio.to_thread
from pydantic import ValidationError
from starlette.datastructures import QueryParams
from starlette.requests import ClientDisconnect, Request

from ..config.limits import LONE_SURROGATE
from ..config.policy import Policy
from ..errors import ClaudeMCPError
from .errors import api_error_of
from .shapes import ApiError

T = TypeVar("T")

MiB = 1024 * 1024
OFF_LOOP_BYTES = 256 * 1024
"""Bodies larger than this are decoded on a worker thread (a 256 KiB body takes ~25 ms at most)."""
DECODERS = 1
"""Large bodies decoded at once (the work holds the GIL, so more threads would not be faster; the
rest wait, which also bounds the memory their decoded forms take together)."""
MOST_PROBLEMS_NAMED = 10
INTEGER = re.compile(r"-?[0-9]{1,18}")
"""A plain decimal integer: no sign but minus, no exponent, point, space, underscore or non-ASCII digit."""
DECLARED_LENGTH = re.compile(r"[0-9]{1,20}")
SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
"""A JSON escape of a surrogate: in a pair it decodes to one character, alone it stays a surrogate."""

BodySetting = Literal["max_request_mb", "max_batch_mb", "max_file_mb"]


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        trim: Callable[[int], int] = ctypes.CDLL(ctypes.util.find_library("c")).malloc_trim
    except (OSError, AttributeError, TypeError):  # not glibc: nothing to call
        return None
    return trim


_TRIM = _malloc_trim()


def give_back_memory() -> None:
    """Hand the C heap's free pages back to the system (glibc's `malloc_trim`; elsewhere nothing).
    A large body's decoded form, once dropped, would otherwise stay in the server's RSS: glibc keeps
    freed memory for reuse (a worker thread's in an arena of its own), and a hostile walk of bodies of
    a million items took the server +300 MB for good. Called after such a body, on a worker thread
    (the call releases the GIL; it takes a few ms)."""
    if _TRIM is not None:
        _TRIM(0)


def decoded_then_trimmed(raw: bytes, parse: Callable[[Any], T]) -> T:
    """`decoded`, then `give_back_memory` (whatever it ended with)."""
    try:
        return decoded(raw, parse)
    finally:
        give_back_memory()


def _shown(text: str) -> str:
    """A client's text quoted in an error message, cut short."""
    return repr(text if len(text) <= 40 else f"{text[:40]}…")


def query_int(query: QueryParams, name: str, *, default: int, low: int, high: int, meaning: str | None = None) -> int:
    """The integer query parameter `name` (`default` when absent), within [low, high]; otherwise
    `ApiError` 400 saying what is accepted (`meaning`, or the bounds)."""
    text = query.get(name)
    if text is None:
        return default
    value = int(text) if INTEGER.fullmatch(text) else None
    if value is None or not low <= value <= high:
        accepted = meaning or f"an integer from {low} to {high}"
        raise ApiError(400, "invalid_request_error", f"{name} must be {accepted}, not {_shown(text)}.")
    return value


def describe(exc: ValidationError) -> str:
    """A validation failure as one line naming each problem's place (the first few of many)."""
    problems = []
    for error in exc.errors(include_url=False, include_input=False)[:MOST_PROBLEMS_NAMED]:
        where = ".".join(str(part) for part in error["loc"]) or "body"
        problems.append(f"{where}: {'unknown field' if error['type'] == 'extra_forbidden' else error['msg']}")
    if (more := exc.error_count() - len(problems)) > 0:
        problems.append(f"and {more} more problems")
    return "; ".join(problems)


@dataclass(frozen=True, slots=True)
class BodyCap:
    """The most bytes one endpoint's request body may hold, and the setting that says so."""

    setting: BodySetting
    mib: float

    @classmethod
    def of(cls, policy: Policy | None, setting: BodySetting) -> BodyCap:
        mib = getattr(policy, setting) if policy is not None else Policy.model_fields[setting].default
        return cls(setting, float(mib))

    @property
    def bytes(self) -> int:
        return int(self.mib * MiB)

    def refusal(self) -> ApiError:
        return ApiError(
            413,
            "request_too_large",
            f"The request body is larger than this server accepts here: {self.mib:g} MiB (its `{self.setting}` "
            "setting). Send less — a shorter prompt or history, or a batch split into several.",
        )


def declared_length(request: Request) -> int | None:
    """The body's size as its `Content-Length` declares it, if it does."""
    text = request.headers.get("content-length")
    return int(text) if text is not None and DECLARED_LENGTH.fullmatch(text.strip()) else None


async def read_capped(request: Request, cap: BodyCap) -> bytes:
    """The whole body, or `ApiError` 413 as soon as it is known to be over `cap` — before it is
    read when `Content-Length` says so, else once what has arrived passes it."""
    declared = declared_length(request)
    if declared is not None and declared > cap.bytes:
        raise cap.refusal()
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > cap.bytes:
                raise cap.refusal()
            chunks.append(chunk)
    except ClientDisconnect:
        raise ApiError(400, "invalid_request_error", "The connection closed before the request body ended.") from None
    return b"".join(chunks)


def _switch_point(value: dict[str, Any]) -> dict[str, Any]:
    """Called for each JSON object decoded: one line of Python, where CPython may hand the GIL to
    the event loop's thread (the C decoder holds it otherwise, however large the body)."""
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def lone_surrogate_at(data: Any) -> str | None:
    """Where in decoded JSON a text (a value or a key) holds a lone surrogate, if one does."""
    stack: list[tuple[str, Any]] = [("body", data)]
    while stack:
        at, value = stack.pop()
        if isinstance(value, str):
            if LONE_SURROGATE.search(value):
                return at
        elif isinstance(value, dict):
            for key, inner in value.items():
                if LONE_SURROGATE.search(key):
                    return f"{at} (a key)"
                stack.append((key if at == "body" else f"{at}.{key}", inner))
        elif isinstance(value, list):
            stack.extend((str(index) if at == "body" else f"{at}.{index}", inner) for index, inner in enumerate(value))
    return None


def decoded(raw: bytes, parse: Callable[[Any], T]) -> T:
    """`parse` (a model's `model_validate`, and whatever else is slow for a large body) applied to
    the JSON in `raw`; `ApiError` 400 naming what is wrong."""
    try:
        data = json.loads(raw, object_hook=_switch_point, parse_constant=_no_constant)
    except UnicodeDecodeError:
        raise ApiError(400, "invalid_request_error", "The request body is not UTF-8 JSON.") from None
    except RecursionError:
        raise ApiError(400, "invalid_request_error", "The request body's JSON is nested too deeply.") from None
    except ValueError as exc:
        raise ApiError(400, "invalid_request_error", f"The request body is not valid JSON: {exc}.") from None
    if SURROGATE_ESCAPE.search(raw) and (at := lone_surrogate_at(data)) is not None:
        raise ApiError(
            400,
            "invalid_request_error",
            f"{_shown(at)} holds a lone surrogate (a \\uD800-\\uDFFF escape not in a pair), which is not Unicode text. "
            "Send UTF-8 text.",
        )
    try:
        return parse(data)
    except ValidationError as exc:
        problems = describe(exc)
    except ClaudeMCPError as exc:  # what the request asks is refused (its texts, its sizes): in the API's shape
        raise api_error_of(exc) from None
    del data  # freed here, not by whoever handles the error (for a large body, on the event loop)
    raise ApiError(400, "invalid_request_error", problems)


class Bodies:
    """Reads and decodes the HTTP APIs' request bodies within the policy's caps; shared by the
    endpoints, so that at most `DECODERS` large bodies are decoded at once."""

    def __init__(self, policy: Policy | None) -> None:
        self.request = BodyCap.of(policy, "max_request_mb")
        """`/v1/messages`, `/v1/messages/count_tokens`, `/v1/chat/completions`."""
        self.batch = BodyCap.of(policy, "max_batch_mb")
        """`POST /v1/messages/batches`."""
        self.limits = (policy or Policy()).input_limits
        """What one request's fields may hold (the server's: a tenant's policy may only lower them)."""
        self._decoders = anyio.CapacityLimiter(DECODERS)

    async def read(self, request: Request, cap: BodyCap, parse: Callable[[Any], T]) -> T:
        """The body, read within `cap` (call it once the caller is authenticated), then `decode`d."""
        return await self.decode(await read_capped(request, cap), parse)

    async def decode(self, raw: bytes, parse: Callable[[Any], T]) -> T:
        """`decoded(raw, parse)`: on a worker thread when the body is over `OFF_LOOP_BYTES`."""
        if len(raw) <= OFF_LOOP_BYTES:
            return decoded(raw, parse)
        work = functools.partial(decoded_then_trimmed, raw, parse)
        return await anyio.to_thread.run_sync(work, limiter=self._decoders)
