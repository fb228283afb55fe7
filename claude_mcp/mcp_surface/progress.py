"""Turning a run's messages into MCP progress: answer text as it streams, tool activity,
queue position and heartbeats.

A progress `message` is either a chunk of the answer (only from `stream_ask`) or a status
line, which always starts with `STATUS_PREFIX`; so a client can show both, and the chunks
alone concatenate to the final text.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import anyio
from claude_agent_sdk import Message

from ..bridge.observer import activity_of, text_delta
from ..bridge.permissions import Asker, PermissionAnswer, PermissionRequest

STATUS_PREFIX = "▸ "

SendProgress = Callable[[float, str], Awaitable[None]]


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
