"""How a CLI process is started: the one seam between the bridge and the `claude` binary.

`Launcher.launch(options, gate)` gives a `Process`: something that runs turns of one
conversation and stops with everything it started. The production launcher (`SdkLauncher`, in
`process`) starts the real CLI through claude-agent-sdk; a sandboxing launcher wraps the same
start in an operating-system wall; the tests' scripted launcher answers turns from a script,
without a `claude` binary. Every process a bridge starts goes through its launcher, so the
start-up count (`StartUps`) that spare processes wait on is the launcher's, not a global.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import anyio
from claude_agent_sdk import ClaudeAgentOptions, Message, PermissionMode, ResultMessage

from .permissions import Asker, PermissionGate
from .turn_usage import TurnUsage

EventSink = Callable[[Message], Awaitable[None]]
"""Receives every message of a turn as it arrives (for progress reporting)."""


@dataclass
class RunOutcome:
    """The CLI's result message, the answer text streamed before it, and what the turn used."""

    result: ResultMessage
    text: str
    api_error_status: int | None
    usage: TurnUsage
    """Computed once, by the process (it knows the running totals of its earlier turns)."""


class StartUps:
    """CLI start-ups in flight through one launcher (one server process), from spawning the CLI
    until its first turn hears back from the model. A start-up is CPU-bound, so spare processes
    wait for quiet."""

    def __init__(self) -> None:
        self.count = 0

    @contextmanager
    def starting(self) -> Iterator[Callable[[], None]]:
        """Count a start-up; the yielded function ends it early (when the model first answers)."""
        counted = True
        self.count += 1

        def done() -> None:
            nonlocal counted
            if counted:
                counted = False
                self.count -= 1

        try:
            yield done
        finally:
            done()

    async def quiet(self, max_wait_s: float) -> bool:
        """Wait until no start-up is in flight, at most `max_wait_s`; whether it got quiet."""
        with anyio.move_on_after(max_wait_s):
            while self.count:
                await anyio.sleep(0.02)
            return True
        return False


class Process(Protocol):
    """One CLI process, kept open across the turns of one conversation.

    A turn that fails in any way leaves the process closed; `close` stops the process and
    everything it started, and may be called any number of times."""

    options: ClaudeAgentOptions
    asker: Asker | None
    """Who is asked when a tool use needs approval during the current turn."""
    session_id: str | None
    turns: int
    """Turns this process has run (0: it has not yet answered a prompt)."""
    closed: bool

    @property
    def pid(self) -> int | None: ...

    @property
    def alive(self) -> bool: ...

    async def start(self, timeout_s: float = 60, *, prime: bool = False) -> None:
        """Start without a prompt (a spare); `prime`: also build the system prompt and tools now."""
        ...

    async def turn(
        self,
        prompt: str,
        *,
        timeout_s: float,
        stall_timeout_s: float,
        time_left_s: float | None = None,
        on_message: EventSink | None = None,
    ) -> RunOutcome:
        """Send one prompt and wait for its result; raises `ClaudeMCPError` (the process is then closed)."""
        ...

    async def server_info(self) -> dict[str, Any] | None: ...

    async def set_model(self, model: str | None) -> None: ...

    async def set_permission_mode(self, mode: PermissionMode) -> None: ...

    async def close(self, *, graceful: bool = True) -> None: ...


class Launcher(Protocol):
    """Starts CLI processes; one per server process, shared by its bridges."""

    startups: StartUps

    def launch(self, options: ClaudeAgentOptions, gate: PermissionGate | None = None) -> Process:
        """A process for these options, not yet started (its first `start` or `turn` starts it)."""
        ...
