"""A scripted stand-in for the CLI: a `Launcher` whose processes answer turns from a script, with
real claude-agent-sdk messages and no `claude` binary, for unit tests of the pool, spares, jobs,
retiring and fencing.

It keeps `CLIProcess`'s contract (see `claude_mcp.bridge.launcher.Process`): a turn streams a
`SystemMessage` init, an `AssistantMessage` and a `ResultMessage`; a new conversation (or a fork)
gets a new session id and `options.resume` continues one; a first turn counts as a start-up in
`launcher.startups` until the model first answers; a turn that fails in any way (a crash, a
timeout, a stall) leaves the process closed; `close` may be called any number of times.

By default a turn echoes its prompt as a successful result. `launcher.script(prompt, Reply(...))`
makes the turns with that prompt answer otherwise: an API error result, a wait on an event (so a
test controls timing without sleeping), or a crash. `launcher.close_wait` / `start_wait` hold
every close / start until set. The launcher keeps every process it launched (with its options),
and `launcher.until(condition)` waits until a condition on them holds.

`scripted_bridge(scripted_policy(tmp_path))` runs a whole `ClaudeBridge` (SQLite under `tmp_path`)
on a scripted launcher; `Watcher` is an observer that keeps what a run tells it.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from claude_agent_sdk import (
    AssistantMessage,
    ClaudeAgentOptions,
    Message,
    PermissionMode,
    ResultMessage,
    SystemMessage,
    TextBlock,
)

from claude_mcp import ClaudeBridge, Policy
from claude_mcp.bridge.launcher import EventSink, Launcher, Process, RunOutcome, StartUps
from claude_mcp.bridge.permissions import Asker, PermissionAnswer, PermissionGate, PermissionRequest
from claude_mcp.bridge.turn_usage import UsageCounter
from claude_mcp.errors import CLIFailed, RunTimeout, StreamStalled
from claude_mcp.telemetry.activity import Activity

MODEL = "claude-scripted-1"
"""The model a process reports when its options name none."""


@dataclass(eq=False)
class Reply:
    """How the turns with one prompt answer."""

    text: str | None = None
    """The answer; None: the prompt, echoed."""
    api_error_status: int | None = None
    """An error result from the model API with this HTTP status (401, 429, 529, …)."""
    wait: anyio.Event | None = None
    """Hold the turn after its init message (before the model answers) until this is set."""
    crash: bool = False
    """The CLI dies after its init message (and the wait): `CLIFailed`, the process closed."""
    cost_usd: float = 0.001
    reached: anyio.Event = field(default_factory=anyio.Event)
    """Set when a turn with this reply has sent its init message (and begins its wait, if any)."""


DEFAULT_MODELS: list[dict[str, Any]] = [
    {"value": "default", "displayName": "Default", "description": "The scripted default"},
    {"value": "opus", "displayName": "Opus", "description": "The scripted opus"},
]


class ScriptedProcess:
    """One scripted CLI process: the `Process` protocol, answering from its launcher's script."""

    def __init__(self, launcher: ScriptedLauncher, options: ClaudeAgentOptions, gate: PermissionGate | None) -> None:
        self.launcher = launcher
        self.options = options
        self.gate = gate
        self.asker: Asker | None = None
        self.session_id: str | None = options.resume if not options.fork_session else None
        self.turns = 0
        self.closed = False
        self.started = False
        self.primed = False
        self.died = False
        self.graceful: bool | None = None
        """How it was closed (None: not closed)."""
        self.exited = anyio.Event()
        """Set once `close` has finished."""
        self.close_wait: anyio.Event | None = None
        """Hold this process's `close` until set (else the launcher's `close_wait`)."""
        self.prompts: list[str] = []
        self.model_changes: list[str | None] = []
        self.mode_changes: list[PermissionMode] = []
        self._cost_usd = 0.0
        self._usage = UsageCounter()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "alive" if self.alive else "new"
        return f"<ScriptedProcess #{self.launcher.processes.index(self)} {state} session={self.session_id}>"

    @property
    def pid(self) -> int | None:
        return None

    @property
    def alive(self) -> bool:
        return self.started and not self.closed and not self.died

    def die(self) -> None:
        """The process exits on its own (it is not closed: `alive` turns False)."""
        self.died = True
        self.launcher.changed()

    async def start(self, timeout_s: float = 60, *, prime: bool = False) -> None:
        try:
            with self.launcher.startups.starting(), anyio.fail_after(timeout_s):
                self.launcher.changed()
                if self.launcher.start_wait is not None:
                    await self.launcher.start_wait.wait()
                if self.launcher.start_fails:
                    raise CLIFailed("The scripted CLI failed to start.")
                self.started = True
                self.primed = prime
        except BaseException:
            await self.close(graceful=False)
            raise
        finally:
            self.launcher.changed()

    async def turn(
        self,
        prompt: str,
        *,
        timeout_s: float,
        stall_timeout_s: float,
        time_left_s: float | None = None,
        on_message: EventSink | None = None,
    ) -> RunOutcome:
        reply = self.launcher.reply_for(prompt)
        outcome: RunOutcome | None = None
        try:
            if self.closed:
                raise CLIFailed("The Claude Code CLI stopped before giving a result.", session_id=self.session_id)
            first = self.turns == 0
            with (
                self.launcher.startups.starting() if first else nullcontext(lambda: None) as answered,
                anyio.fail_after(timeout_s if time_left_s is None else time_left_s),
            ):
                self.started = True
                self.prompts.append(prompt)
                self.launcher.changed()
                session_id = self.session_id or str(uuid.uuid4())
                self.session_id = session_id
                init = {"session_id": session_id, "model": self._model, "cwd": str(self.options.cwd or "")}
                await _send(on_message, SystemMessage("init", init))
                reply.reached.set()
                if reply.wait is not None:
                    with anyio.move_on_after(stall_timeout_s) as idle:
                        await reply.wait.wait()
                    if idle.cancelled_caught:
                        raise StreamStalled(f"The model stream stalled ({stall_timeout_s:g} s).", session_id=session_id)
                if reply.crash:
                    raise CLIFailed("The scripted CLI crashed mid-turn.", session_id=session_id)
                answered()
                outcome = await self._answer(prompt, reply, session_id, on_message)
        except TimeoutError:
            raise RunTimeout(
                f"The run took longer than its timeout ({timeout_s:g} s).", session_id=self.session_id
            ) from None
        finally:
            if outcome is None:
                await self.close(graceful=False)
            self.launcher.changed()
        return outcome

    async def _answer(self, prompt: str, reply: Reply, session_id: str, on_message: EventSink | None) -> RunOutcome:
        status = reply.api_error_status
        text = prompt if reply.text is None else reply.text
        if status is not None:
            text = f"API Error: {status} (scripted)"
        await _send(
            on_message,
            AssistantMessage([TextBlock(text)], model=self._model, session_id=session_id, uuid=str(uuid.uuid4())),
        )
        self._cost_usd += reply.cost_usd
        result = ResultMessage(
            subtype="success",
            duration_ms=1,
            duration_api_ms=1,
            is_error=status is not None,
            num_turns=1,
            session_id=session_id,
            stop_reason="end_turn" if status is None else None,
            total_cost_usd=self._cost_usd,  # the CLI reports the process's running total
            usage={"input_tokens": len(prompt.split()), "output_tokens": len(text.split())},
            result=text,
            api_error_status=status,
            uuid=str(uuid.uuid4()),
            terminal_reason="completed" if status is None else "api_error",
        )
        await _send(on_message, result)
        self.turns += 1
        transcripts = self.launcher.transcripts
        if session_id not in transcripts:  # a new conversation, or a fork (it starts with its origin's)
            origin = self.options.resume if self.options.fork_session else None
            transcripts[session_id] = list(transcripts.get(origin or "", []))
        transcripts[session_id].append(prompt)
        return RunOutcome(result, text, status, self._usage.turn(result, self.options.model))

    @property
    def _model(self) -> str:
        return self.options.model or MODEL

    async def server_info(self) -> dict[str, Any] | None:
        return {"models": self.launcher.models, "commands": [], "output_style": "default"}

    async def set_model(self, model: str | None) -> None:
        self.model_changes.append(model)
        self.options.model = model

    async def set_permission_mode(self, mode: PermissionMode) -> None:
        self.mode_changes.append(mode)
        self.options.permission_mode = mode

    async def close(self, *, graceful: bool = True) -> None:
        if self.closed:
            return
        self.closed = True
        self.graceful = graceful
        self.launcher.changed()
        try:
            hold = self.close_wait or self.launcher.close_wait
            if hold is not None:
                await hold.wait()
        finally:
            self.exited.set()
            self.launcher.changed()


async def _send(on_message: EventSink | None, message: Message) -> None:
    if on_message is not None:
        await on_message(message)


class ScriptedLauncher:
    """Launches `ScriptedProcess`es and keeps every one, in order (`processes`)."""

    def __init__(self, default: Reply | None = None) -> None:
        self.startups = StartUps()
        self.processes: list[ScriptedProcess] = []
        self.default = default or Reply()
        self.replies: dict[str, Reply] = {}
        self.transcripts: dict[str, list[str]] = {}
        """The prompts of every conversation, by session id (a fork starts with its origin's)."""
        self.models = DEFAULT_MODELS
        self.start_wait: anyio.Event | None = None
        """Hold every `start` until set."""
        self.start_fails = False
        """Every `start` fails (`CLIFailed`)."""
        self.close_wait: anyio.Event | None = None
        """Hold every `close` until set."""
        self._changed = anyio.Event()

    def launch(self, options: ClaudeAgentOptions, gate: PermissionGate | None = None) -> ScriptedProcess:
        process = ScriptedProcess(self, options, gate)
        self.processes.append(process)
        self.changed()
        return process

    def script(self, prompt: str, reply: Reply) -> Reply:
        """Turns with this prompt answer with `reply` (returned, for its events)."""
        self.replies[prompt] = reply
        return reply

    def reply_for(self, prompt: str) -> Reply:
        return self.replies.get(prompt, self.default)

    def release_all(self) -> None:
        """Set every event a start, a turn or a close may be held on."""
        held = [self.start_wait, self.close_wait, *(p.close_wait for p in self.processes)]
        for event in [*held, self.default.wait, *(reply.wait for reply in self.replies.values())]:
            if event is not None:
                event.set()

    @property
    def live(self) -> list[ScriptedProcess]:
        return [process for process in self.processes if process.alive]

    def changed(self) -> None:
        """Wake whoever waits in `until` (a process was launched, started, ran, or closed)."""
        self._changed.set()
        self._changed = anyio.Event()

    async def until(self, condition: Callable[[], bool], timeout_s: float = 5) -> None:
        """Wait until `condition()` holds, re-checked whenever a process changes."""
        with anyio.fail_after(timeout_s):
            while not condition():
                await self._changed.wait()


def scripted_policy(tmp_path: Path, **updates: Any) -> Policy:
    """A policy over a fresh directory: its root, state and Claude config all under `tmp_path`."""
    work, home = tmp_path / "work", tmp_path / "home"
    work.mkdir(exist_ok=True)
    env = {"HOME": str(home), "CLAUDE_CONFIG_DIR": str(home / ".claude")}
    return Policy(roots=(work,), state_dir=tmp_path / "state", cli_env=env, **updates)


@asynccontextmanager
async def scripted_bridge(
    policy: Policy, launcher: ScriptedLauncher | None = None, *, depth: int = 0, **kwargs: Any
) -> AsyncIterator[tuple[ClaudeBridge, ScriptedLauncher]]:
    """A running bridge (SQLite in the policy's state dir, an activity of its own) on a scripted
    launcher; on exit, every process it started has been closed."""
    launcher = launcher or ScriptedLauncher()
    async with ClaudeBridge(policy, launcher=launcher, depth=depth, activity=Activity(), **kwargs) as bridge:
        try:
            yield bridge, launcher
        except BaseException:
            launcher.release_all()  # a failed test must not leave the bridge's exit waiting on a held close
            raise
    assert all(process.closed for process in launcher.processes if not process.died), launcher.processes


class Watcher:
    """A `RunObserver` that keeps what it is told: queue positions, messages, waits for the conversation."""

    def __init__(self) -> None:
        self.positions: list[int] = []
        self.queued_once = anyio.Event()
        self.waited = anyio.Event()
        self.messages: list[Message] = []

    async def queued(self, position: int) -> None:
        self.positions.append(position)
        self.queued_once.set()

    async def message(self, message: Message) -> None:
        self.messages.append(message)

    async def waiting_for_session(self) -> None:
        self.waited.set()

    async def ask_permission(self, request: PermissionRequest) -> PermissionAnswer | None:
        return None


def _conforms(launcher: ScriptedLauncher, process: ScriptedProcess) -> tuple[Launcher, Process]:
    """Type-checks that the scripted launcher and process implement the protocols."""
    return launcher, process
