"""A live CLI process: start it through claude-agent-sdk, run turns on it, watch it, stop it.

One `CLIProcess` serves one conversation; a warm session keeps it open between calls so a
follow-up skips the CLI's cold start. The watch covers what the CLI does not: a call
timeout, and an inactivity watchdog while the model is streaming (the CLI itself waits five
minutes on a stalled stream). A turn that fails in any way leaves the process closed, and
closing stops the CLI and every process it started.
"""

from __future__ import annotations

import logging
import re
import uuid
import warnings
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import anyio
from claude_agent_sdk import (
    AssistantMessage,
    CanUseToolShadowedWarning,
    ClaudeAgentOptions,
    ClaudeSDKClient,
    ClaudeSDKError,
    CLIConnectionError,
    CLIJSONDecodeError,
    CLINotFoundError,
    Message,
    PermissionMode,
    PermissionResultAllow,
    PermissionResultDeny,
    ProcessError,
    ResultMessage,
    SystemMessage,
    TextBlock,
    ToolPermissionContext,
    ToolResultBlock,
    ToolUseBlock,
    UserMessage,
)

from ..config.content import user_content
from ..errors import ClaudeMCPError, CLIFailed, CLINotFound, RunTimeout, SessionNotFound, StreamStalled
from . import instrument
from .cli_files import CliFiles, spill
from .launcher import EventSink, RunOutcome, StartUps
from .permissions import Asker, PermissionGate
from .process_tree import process_tree, terminate_tree
from .run_end import classify_exit
from .turn_usage import UsageCounter

logger = logging.getLogger(__name__)

QUOTED_PATH = re.compile(r"""(['"])/[^'"]*\1""")
"""A path the SDK quotes in its words (the CLI it could not start): for the log, not the caller."""


@dataclass
class _Watch:
    """What a turn is waiting on, for the inactivity watchdog."""

    pending_tools: set[str] = field(default_factory=set)
    session_id: str | None = None
    text: list[str] = field(default_factory=list)

    @property
    def waiting_on_model(self) -> bool:
        return not self.pending_tools

    def observe(self, message: Message) -> None:
        if isinstance(message, SystemMessage) and message.subtype == "init":
            self.session_id = message.data.get("session_id", self.session_id)
        elif isinstance(message, AssistantMessage) and message.parent_tool_use_id is None:
            self.session_id = message.session_id or self.session_id
            for block in message.content:
                if isinstance(block, ToolUseBlock):
                    self.pending_tools.add(block.id)
                elif isinstance(block, TextBlock):
                    self.text.append(block.text)
        elif (
            isinstance(message, UserMessage)
            and message.parent_tool_use_id is None
            and isinstance(message.content, list)
        ):
            for block in message.content:
                if isinstance(block, ToolResultBlock):
                    self.pending_tools.discard(block.tool_use_id)


def _answers(result: ResultMessage, prompt_uuid: str) -> bool:
    """Whether a result answers our prompt (a background sub-agent can wake the CLI for another)."""
    if result.user_message_uuids:
        return prompt_uuid in result.user_message_uuids
    return result.user_message_uuid in (None, prompt_uuid)


async def _one(message: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
    yield message


class CLIProcess:
    """One `claude` process, kept open across turns of one conversation."""

    def __init__(
        self,
        options: ClaudeAgentOptions,
        gate: PermissionGate | None = None,
        *,
        startups: StartUps | None = None,
        files: CliFiles | None = None,
    ) -> None:
        """`files`: what `cli_files.spill` wrote for this process (removed once it has started)."""
        self.options = options
        self._files = files or CliFiles()
        self._startups = startups or StartUps()
        self.asker: Asker | None = None
        """Who is asked when a tool use needs approval during the current turn."""
        self._gate = gate
        if gate is not None and (gate.mode == "client" or gate.rules):
            options.can_use_tool = self._can_use_tool
        self.session_id: str | None = options.resume if not options.fork_session else None
        self._stderr_tail: deque[str] = deque(maxlen=30)
        options.stderr = self._on_stderr
        self._client = ClaudeSDKClient(options)
        self._started = False
        self.turns = 0
        """Turns this process has run (0: it has not yet answered a prompt)."""
        self.closed = False
        self._usage = UsageCounter()
        """The running totals the CLI reported after the last turn (each turn's usage is the difference)."""

    def _source(self) -> str:
        """Which kind of process a turn runs on: started for it, a spare's first turn, or warm."""
        return "cold" if not self.alive else "spare" if self.turns == 0 else "warm"

    def _on_stderr(self, line: str) -> None:
        self._stderr_tail.append(line)
        logger.debug("claude stderr: %s", line)

    async def _can_use_tool(
        self, tool: str, tool_input: dict[str, Any], context: ToolPermissionContext
    ) -> PermissionResultAllow | PermissionResultDeny:
        assert self._gate is not None
        cwd = str(self.options.cwd or "")
        return await self._gate.decide(self.session_id, tool, tool_input, cwd, self.asker)

    @property
    def pid(self) -> int | None:
        # The SDK exposes no pid; its transport holds the anyio Process. Needed to stop the
        # CLI's own children, which the SDK leaves running (see process_tree).
        process = getattr(getattr(self._client, "_transport", None), "_process", None)
        pid = getattr(process, "pid", None)
        return pid if isinstance(pid, int) else None

    @property
    def alive(self) -> bool:
        process = getattr(getattr(self._client, "_transport", None), "_process", None)
        return self._started and not self.closed and getattr(process, "returncode", 0) is None

    async def _connect(self) -> None:
        if not self._started:
            self._started = True
            with warnings.catch_warnings(), instrument.cli_start():
                # Asking about tools the call also auto-approves is intended: the CLI asks only
                # about what its rules leave open.
                warnings.simplefilter("ignore", CanUseToolShadowedWarning)
                try:
                    await self._client.connect()
                finally:
                    self._files.remove()  # read as the CLI started

    async def start(self, timeout_s: float = 60, *, prime: bool = False) -> None:
        """Start the CLI without a prompt (a spare process, ready for a new conversation).
        `prime`: also have it build its system prompt and tool definitions now, the work it
        otherwise does on the first prompt (it asks the model nothing and writes no transcript)."""
        watch = _Watch()
        try:
            with self._startups.starting(), anyio.fail_after(timeout_s), self._sdk_errors(watch):
                await self._connect()
                if prime:
                    await self._prime()
        except BaseException:
            await self.close(graceful=False)
            raise

    async def _prime(self) -> None:
        with anyio.move_on_after(10):
            try:
                await self._client.get_context_usage()
            except Exception as exc:  # the SDK raises a bare Exception for a refused control request
                logger.debug("could not prime a spare CLI process (it still serves): %s", exc)

    async def turn(
        self,
        prompt: str,
        *,
        timeout_s: float,
        stall_timeout_s: float,
        time_left_s: float | None = None,
        on_message: EventSink | None = None,
    ) -> RunOutcome:
        """Send one prompt and wait for its result. Raises `ClaudeMCPError`; the process is
        then closed. `time_left_s` (default `timeout_s`) bounds the turn, start-up included."""
        watch = _Watch(session_id=self.session_id)
        prompt_uuid = str(uuid.uuid4())
        outcome: RunOutcome | None = None
        try:
            time_limit = anyio.fail_after(timeout_s if time_left_s is None else time_left_s)
            first = self.turns == 0
            with (
                self._startups.starting() if first else nullcontext(lambda: None) as answered,
                instrument.turn(self._source(), self.options.model) as meter,
                time_limit,
                self._sdk_errors(watch),
            ):
                await self._connect()
                message_in = {
                    "type": "user",
                    "uuid": prompt_uuid,
                    "message": {"role": "user", "content": user_content(prompt)},
                    "parent_tool_use_id": None,
                    "session_id": self.session_id or "default",
                }
                await self._client.query(_one(message_in))
                outcome = await self._until_result(watch, prompt_uuid, stall_timeout_s, answered, on_message)
                meter.finished(outcome.usage, outcome.result.num_turns)
        except TimeoutError:
            raise RunTimeout(
                f"The run took longer than its timeout ({timeout_s:g} s) and was stopped. Continue it with the "
                "session_id to pick up where it left off, or pass a larger timeout_s.",
                session_id=watch.session_id,
            ) from None
        finally:
            if outcome is None:
                await self.close(graceful=False)
        return outcome

    async def _until_result(
        self,
        watch: _Watch,
        prompt_uuid: str,
        stall_timeout_s: float,
        answered: Callable[[], None],
        on_message: EventSink | None,
    ) -> RunOutcome:
        """Read the CLI's messages until the result that answers our prompt, passing each on;
        `StreamStalled` if the model says nothing for `stall_timeout_s` while it has the turn."""
        messages = self._client.receive_messages()
        try:
            while True:
                with anyio.move_on_after(stall_timeout_s if watch.waiting_on_model else None) as idle:
                    message = await anext(messages)
                if idle.cancelled_caught:
                    raise StreamStalled(
                        f"The model stream stalled: nothing arrived for {stall_timeout_s:g} s, so the run "
                        "was stopped. Retry; if it keeps happening, check the network or the API status.",
                        session_id=watch.session_id,
                    )
                watch.observe(message)
                if not isinstance(message, SystemMessage):
                    answered()
                self.session_id = watch.session_id or self.session_id
                if on_message is not None:
                    await on_message(message)
                if isinstance(message, ResultMessage) and _answers(message, prompt_uuid):
                    self.turns += 1
                    self.session_id = message.session_id
                    usage = self._usage.turn(message, self.options.model)
                    return RunOutcome(message, "".join(watch.text), message.api_error_status, usage)
        finally:
            await messages.aclose()  # type: ignore[attr-defined]  # an async generator

    @contextmanager
    def _sdk_errors(self, watch: _Watch) -> Iterator[None]:
        """Translate the SDK's exceptions into errors whose messages say what to do."""
        try:
            yield
        except StopAsyncIteration:
            raise CLIFailed(self._died_message(None), session_id=watch.session_id) from None
        except CLINotFoundError as exc:
            raise CLINotFound(
                f"The Claude Code CLI was not found ({exc}). Reinstall claude-agent-sdk (it bundles the CLI) "
                "or point CLAUDE_MCP_CLI / cli_path in the config at a `claude` executable."
            ) from None
        except ProcessError as exc:
            raise self._process_failure(exc, watch.session_id) from None
        except CLIJSONDecodeError as exc:
            raise CLIFailed(
                f"The CLI wrote output that is not JSON ({str(exc)[:200]}); the run was stopped.",
                session_id=watch.session_id,
            ) from None
        except (CLIConnectionError, ClaudeSDKError) as exc:
            raise CLIFailed(self._died_message(str(exc)), session_id=watch.session_id) from None

    async def server_info(self) -> dict[str, Any] | None:
        """What the started CLI says of itself (its models, commands, agents, version)."""
        return await self._client.get_server_info()

    async def set_model(self, model: str | None) -> None:
        await self._client.set_model(model)
        self.options.model = model

    async def set_permission_mode(self, mode: PermissionMode) -> None:
        await self._client.set_permission_mode(mode)
        self.options.permission_mode = mode

    async def close(self, *, graceful: bool = True) -> None:
        """Stop the CLI and all it started: gracefully (stdin EOF) or at once."""
        if self.closed:
            return
        self.closed = True
        self._files.remove()
        with anyio.CancelScope(shield=True):
            pid = self.pid
            tree = process_tree(pid) if pid is not None else []
            if not graceful:
                await terminate_tree(tree)
            try:
                await self._client.disconnect()
            except Exception:  # closing must not mask the run's own outcome
                logger.debug("disconnect failed", exc_info=True)
            await terminate_tree(tree)

    def _died_message(self, detail: str | None) -> str:
        text = "The Claude Code CLI stopped before giving a result"
        if detail:
            logger.warning("the CLI stopped: %s", detail.splitlines()[0][:1000])
            shown = QUOTED_PATH.sub(r"\1…\1", detail.splitlines()[0][:300])  # no path of this machine
            text += f": {shown}"
        if self._stderr_tail:
            text += f". Its last output: {' | '.join(list(self._stderr_tail)[-3:])[:500]}"
        return text + ". Details are in the server log."

    def _process_failure(self, exc: ProcessError, session_id: str | None) -> ClaudeMCPError:
        if classify_exit(exc, self._stderr_tail).kind == "session_not_found":
            return SessionNotFound()
        logger.warning("claude exited abnormally (exit code %s)", exc.exit_code)
        return CLIFailed(self._died_message(f"exit code {exc.exit_code}"), session_id=session_id)


class SdkLauncher:
    """The production launcher: the real `claude` binary, started through claude-agent-sdk."""

    def __init__(self) -> None:
        self.startups = StartUps()

    def launch(self, options: ClaudeAgentOptions, gate: PermissionGate | None = None) -> CLIProcess:
        return CLIProcess(options, gate, startups=self.startups, files=spill(options))
