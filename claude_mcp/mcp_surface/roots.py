"""Where a call works when it names no `cwd`: the client's workspace, if it announces one.

A client with the roots capability answers `roots/list` with its workspace folders. The first of
them inside the server's allowed roots becomes the call's working directory; a root outside them
(or not a local directory) is passed over, never a way out of the roots. Without roots, or when the
client does not answer within a few seconds, the call works in the server's first root.
"""

from __future__ import annotations

import logging
import warnings
from typing import TypeVar
from urllib.parse import unquote, urlparse

import anyio
from mcp.shared.exceptions import MCPDeprecationWarning

from ..config.call_settings import CallSettings
from ..errors import PolicyViolation
from .call import Call

logger = logging.getLogger(__name__)

ROOTS_WAIT_S = 5.0
"""How long a call waits for the client's `roots/list` answer before working in the server's root."""

MOST_ROOTS = 100
"""The most of a client's roots looked at (each is resolved on disk): a workspace has a few."""

Settings = TypeVar("Settings", bound=CallSettings)


def local_path(uri: str) -> str | None:
    """The path of a `file://` URI on this machine (None for any other)."""
    parsed = urlparse(uri)
    if parsed.scheme != "file" or parsed.netloc not in ("", "localhost"):
        return None
    return unquote(parsed.path) or None


async def in_client_root(args: Settings, call: Call) -> Settings:
    """`args` with `cwd` set to the client's first root inside the allowed roots, when the call
    names none and the client offers roots; `args` unchanged otherwise."""
    session = call.ctx.session
    capabilities = session.client_capabilities
    if args.cwd is not None or capabilities is None or capabilities.roots is None or not session.can_send_request:
        return args
    try:
        with anyio.fail_after(ROOTS_WAIT_S), warnings.catch_warnings():
            # Deprecated by the 2026-07-28 revision (SEP-2577); clients of the handshake era still offer it.
            warnings.simplefilter("ignore", MCPDeprecationWarning)
            listed = await session.list_roots()
    except Exception as exc:  # a client that fails or is slow to list its roots still gets its answer
        logger.info("the client's roots/list failed (%s): working in the server's root", type(exc).__name__)
        return args
    for root in listed.roots[:MOST_ROOTS]:
        path = local_path(str(root.uri))
        if path is None:
            continue
        try:
            cwd = call.bridge.policy.check_path("cwd", path)
        except PolicyViolation:
            continue
        return args.model_copy(update={"cwd": str(cwd)})
    return args
