"""`ClaudeBridge`: the Python API under the MCP tools.

    async with ClaudeBridge(Policy.load()) as claude:
        first = await claude.ask("Remember the word kiwi", model="haiku")
        again = await claude.ask("Which word?", session_id=first.session_id)

Every call is checked against the policy, run in the CLI, and either returns an `AskResult`
or raises a `ClaudeMCPError` whose message says what to fix.
"""

from __future__ import annotations

import logging
import os
from types import TracebackType
from typing import Any, Protocol, Self

import anyio
from claude_agent_sdk import Message
from pydantic import ValidationError

from .errors import ClaudeMCPError, DepthExceeded, InvalidArguments
from .options import DEPTH_ENV, RunTarget, build_options
from .policy import Policy
from .results import AskResult, failure_of
from .runner import run_prompt
from .settings import CallSettings
from .slots import RunSlots

logger = logging.getLogger(__name__)


def current_depth() -> int:
    """How many claude-mcp servers are above this one (0 when a person started it)."""
    try:
        return max(0, int(os.environ.get(DEPTH_ENV, "0")))
    except ValueError:
        return 0


class RunObserver(Protocol):
    """Told what a call is doing: its queue position while it waits, then each CLI message."""

    async def queued(self, position: int) -> None: ...

    async def message(self, message: Message) -> None: ...


class RunFailed(ClaudeMCPError):
    """The CLI gave a result, but an error one; `result` holds it for the caller."""

    def __init__(self, error: ClaudeMCPError, result: AskResult) -> None:
        super().__init__(error.message, session_id=error.session_id)
        self.kind = error.kind
        self.cause = error
        self.result = result


class ClaudeBridge:
    """Delegates prompts to Claude Code under a server policy."""

    def __init__(self, policy: Policy | None = None, *, depth: int | None = None) -> None:
        self.policy = policy or Policy()
        self.depth = current_depth() if depth is None else depth
        self.slots = RunSlots(self.policy.max_concurrent, self.policy.max_queued)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None

    async def ask(
        self,
        prompt: str,
        *,
        session_id: str | None = None,
        settings: CallSettings | None = None,
        observer: RunObserver | None = None,
        **setting_values: Any,
    ) -> AskResult:
        """Ask Claude; continue `session_id` if given. Settings as a model or as keywords."""
        if settings is None:
            try:
                settings = CallSettings(**setting_values)
            except ValidationError as exc:
                raise InvalidArguments(f"invalid settings: {exc}") from None
        elif setting_values:
            raise TypeError("pass settings either as a CallSettings or as keywords, not both")
        return await self._run(prompt, settings, RunTarget(resume=session_id), observer)

    async def _run(
        self, prompt: str, settings: CallSettings, target: RunTarget, observer: RunObserver | None
    ) -> AskResult:
        if self.depth >= self.policy.max_depth:
            raise DepthExceeded(
                f"Refused: this claude-mcp server is already {self.depth} level(s) deep in a chain of Claude "
                f"delegations and the policy allows max_depth={self.policy.max_depth}. Do the work directly "
                "instead of delegating further."
            )
        resolved = self.policy.resolve(settings)
        options = build_options(resolved, self.policy, target=target, child_depth=self.depth + 1)
        started = anyio.current_time()
        async with self.slots.slot(observer.queued if observer else None, timeout_s=resolved.timeout_s):
            outcome = await run_prompt(
                options,
                prompt,
                timeout_s=resolved.timeout_s,
                time_left_s=resolved.timeout_s - (anyio.current_time() - started),
                stall_timeout_s=self.policy.stall_timeout_s,
                on_message=observer.message if observer else None,
            )
        result = AskResult.from_message(outcome.result, outcome.text)
        failure = failure_of(result, outcome.api_error_status)
        if failure is not None:
            logger.info("run ended with an error: %s", failure.kind)
            raise RunFailed(failure, result)
        return result
