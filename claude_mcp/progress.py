"""Turning a run's messages into MCP progress: answer text as it streams, tool activity,
queue position and heartbeats.

A progress `message` is either a chunk of the answer (only from `stream_ask`) or a status
line, which always starts with `STATUS_PREFIX`; so a client can show both, and the chunks
alone concatenate to the final text.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from pathlib import PurePath
from typing import Any, Protocol

import anyio
from claude_agent_sdk import AssistantMessage, Message, StreamEvent, ToolUseBlock

from .permissions import Asker, PermissionAnswer, PermissionRequest

STATUS_PREFIX = "▸ "

SendProgress = Callable[[float, str], Awaitable[None]]


class RunObserver(Protocol):
    """Told what a call is doing: its queue position while it waits, then each CLI message."""

    async def queued(self, position: int) -> None: ...

    async def message(self, message: Message) -> None: ...

    async def waiting_for_session(self) -> None: ...

    async def ask_permission(self, request: PermissionRequest) -> PermissionAnswer | None:
        """Ask whoever waits on the run; None when nobody can be asked."""
        ...


def text_delta(message: Message) -> str | None:
    """The answer text a streamed event adds (top-level only; sub-agents' text is not the answer)."""
    if not isinstance(message, StreamEvent) or message.parent_tool_use_id is not None:
        return None
    event = message.event
    if event.get("type") != "content_block_delta":
        return None
    delta = event.get("delta") or {}
    return delta.get("text") if delta.get("type") == "text_delta" else None


def _short(text: Any, limit: int = 80) -> str:
    line = str(text).strip().splitlines()[0] if str(text).strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def describe_tool_use(block: ToolUseBlock) -> str:
    """What a tool use does, in words a person can follow."""
    args = block.input
    path = args.get("file_path") or args.get("path") or args.get("notebook_path")
    name = PurePath(str(path)).name if path else None
    match block.name:
        case "Bash":
            return f"Running Bash: `{_short(args.get('command', ''))}`"
        case "Read":
            return f"Reading {path}"
        case "Write":
            return f"Writing {path}"
        case "Edit" | "MultiEdit" | "NotebookEdit":
            return f"Editing {path}"
        case "Grep" | "Glob":
            return f"Searching for `{_short(args.get('pattern', ''))}`"
        case "WebFetch" | "WebSearch":
            return f"{block.name}: {_short(args.get('url') or args.get('query', ''))}"
        case "Agent" | "Task":
            return f"Starting a sub-agent: {_short(args.get('description', ''))}"
        case _:
            return f"Using {block.name}" + (f" on {name}" if name else "")


def activity_of(message: Message) -> list[str]:
    """Status lines for what a message shows Claude doing (top-level tool uses)."""
    if not isinstance(message, AssistantMessage) or message.parent_tool_use_id is not None:
        return []
    return [describe_tool_use(block) for block in message.content if isinstance(block, ToolUseBlock)]


class ProgressReporter:
    """Sends progress for one call: monotonically increasing, never silent for long."""

    def __init__(
        self, send: SendProgress, *, stream_text: bool, heartbeat_s: float, asker: Asker | None = None
    ) -> None:
        self._send = send
        self.asker = asker
        self._stream_text = stream_text
        self._heartbeat_s = heartbeat_s
        self._count = 0
        self._started = time.monotonic()
        self._last_sent = self._started

    async def _emit(self, message: str) -> None:
        self._count += 1
        self._last_sent = time.monotonic()
        await self._send(self._count, message)

    async def status(self, text: str) -> None:
        await self._emit(STATUS_PREFIX + text)

    async def queued(self, position: int) -> None:
        await self.status(f"queued, position {position}")

    async def waiting_for_session(self) -> None:
        await self.status("waiting for the previous call on this conversation to finish")

    async def ask_permission(self, request: PermissionRequest) -> PermissionAnswer | None:
        if self.asker is None:
            return None
        await self.status(f"asking for permission: {request.description}")
        return await self.asker(request)

    async def message(self, message: Message) -> None:
        if self._stream_text and (chunk := text_delta(message)):
            await self._emit(chunk)
        for line in activity_of(message):
            await self.status(line)

    async def heartbeat(self) -> None:
        """Run until cancelled: a status line whenever nothing was sent for `heartbeat_s`."""
        while True:
            await anyio.sleep(max(0.05, self._last_sent + self._heartbeat_s - time.monotonic()))
            if time.monotonic() - self._last_sent >= self._heartbeat_s:
                await self.status(f"working ({time.monotonic() - self._started:.0f} s)")
