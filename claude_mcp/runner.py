"""One run of the CLI: start it through claude-agent-sdk, send the prompt, watch it, stop it.

The watch covers what the CLI does not: a call timeout, and an inactivity watchdog while
the model is streaming (the CLI itself waits five minutes on a stalled stream). Whatever
happens, the CLI and every process it started are gone when `run_prompt` returns.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import anyio
from claude_agent_sdk import (
    AssistantMessage,
    ClaudeAgentOptions,
    ClaudeSDKClient,
    ClaudeSDKError,
    CLIConnectionError,
    CLIJSONDecodeError,
    CLINotFoundError,
    Message,
    ProcessError,
    ResultMessage,
    SystemMessage,
    TextBlock,
    ToolResultBlock,
    ToolUseBlock,
    UserMessage,
)

from .errors import ClaudeMCPError, CLIFailed, CLINotFound, RunTimeout, SessionNotFound
from .process_tree import process_tree, terminate_tree

logger = logging.getLogger(__name__)

EventSink = Callable[[Message], Awaitable[None]]
"""Receives every message of a run as it arrives (for progress reporting)."""

_UNKNOWN_SESSION = "No conversation found with session ID"


@dataclass
class RunOutcome:
    """The CLI's result message and the answer text streamed before it."""

    result: ResultMessage
    text: str
    api_error_status: int | None


@dataclass
class _Watch:
    """What the run is waiting on, for the inactivity watchdog."""

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


def _cli_pid(client: ClaudeSDKClient) -> int | None:
    # The SDK exposes no pid; its transport holds the anyio Process. Needed to stop the
    # CLI's own children, which the SDK leaves running (see process_tree).
    process = getattr(getattr(client, "_transport", None), "_process", None)
    return getattr(process, "pid", None)


async def run_prompt(
    options: ClaudeAgentOptions,
    prompt: str,
    *,
    timeout_s: float,
    stall_timeout_s: float,
    time_left_s: float | None = None,
    on_message: EventSink | None = None,
) -> RunOutcome:
    """Run one prompt in a fresh CLI process and return its result. Raises `ClaudeMCPError`.

    The run is stopped after `time_left_s` (default: `timeout_s`, the call's whole timeout).
    """
    stderr_tail: deque[str] = deque(maxlen=30)

    def on_stderr(line: str) -> None:
        stderr_tail.append(line)
        logger.debug("claude stderr: %s", line)

    options.stderr = on_stderr
    client = ClaudeSDKClient(options)
    watch = _Watch(session_id=options.resume if not options.fork_session else None)
    outcome: RunOutcome | None = None
    try:
        with anyio.fail_after(timeout_s if time_left_s is None else time_left_s):
            try:
                await client.connect()
                await client.query(prompt)
                messages = client.receive_messages()
                while outcome is None:
                    with anyio.move_on_after(stall_timeout_s if watch.waiting_on_model else None) as idle:
                        message = await anext(messages)
                    if idle.cancelled_caught:
                        raise CLIFailed(
                            f"The model stream stalled: nothing arrived for {stall_timeout_s:g} s, so the run "
                            "was stopped. Retry; if it keeps happening, check the network or the API status.",
                            session_id=watch.session_id,
                        )
                    watch.observe(message)
                    if on_message is not None:
                        await on_message(message)
                    if isinstance(message, ResultMessage):
                        outcome = RunOutcome(message, "".join(watch.text), message.api_error_status)
            except StopAsyncIteration:
                raise CLIFailed(_died_message(None, stderr_tail), session_id=watch.session_id) from None
            except CLINotFoundError as exc:
                raise CLINotFound(
                    f"The Claude Code CLI was not found ({exc}). Reinstall claude-agent-sdk (it bundles the CLI) "
                    "or point CLAUDE_MCP_CLI / cli_path in the config at a `claude` executable."
                ) from None
            except ProcessError as exc:
                raise _process_failure(exc, stderr_tail, watch.session_id) from None
            except CLIJSONDecodeError as exc:
                raise CLIFailed(
                    f"The CLI wrote output that is not JSON ({str(exc)[:200]}); the run was stopped.",
                    session_id=watch.session_id,
                ) from None
            except (CLIConnectionError, ClaudeSDKError) as exc:
                raise CLIFailed(_died_message(str(exc), stderr_tail), session_id=watch.session_id) from None
    except TimeoutError:
        raise RunTimeout(
            f"The run took longer than its timeout ({timeout_s:g} s) and was stopped. Continue it with the "
            "session_id to pick up where it left off, or pass a larger timeout_s.",
            session_id=watch.session_id,
        ) from None
    finally:
        await _close(client, graceful=outcome is not None)
    return outcome


async def _close(client: ClaudeSDKClient, *, graceful: bool) -> None:
    """Stop the CLI and all it started; gracefully (stdin EOF) after a result, at once otherwise."""
    with anyio.CancelScope(shield=True):
        pid = _cli_pid(client)
        tree = process_tree(pid) if pid is not None else []
        if not graceful:
            await terminate_tree(tree)
        try:
            await client.disconnect()
        except Exception:  # closing must not mask the run's own outcome
            logger.debug("disconnect failed", exc_info=True)
        await terminate_tree(tree)


def _died_message(detail: str | None, stderr_tail: deque[str]) -> str:
    text = "The Claude Code CLI stopped before giving a result"
    if detail:
        text += f": {detail.splitlines()[0][:300]}"
    if stderr_tail:
        text += f". Its last output: {' | '.join(list(stderr_tail)[-3:])[:500]}"
    return text + ". Details are in the server log."


def _process_failure(exc: ProcessError, stderr_tail: deque[str], session_id: str | None) -> ClaudeMCPError:
    detail = "\n".join([str(exc), *stderr_tail])
    if _UNKNOWN_SESSION in detail:
        return SessionNotFound(
            "No conversation with that session_id exists on this server; start a new one by omitting session_id."
        )
    logger.warning("claude exited abnormally (exit code %s)", exc.exit_code)
    return CLIFailed(_died_message(f"exit code {exc.exit_code}", stderr_tail), session_id=session_id)
