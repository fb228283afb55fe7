"""Client-side tools over `/v1/messages`: a run that stops on a call of one of the caller's tools
and goes on with the next request's `tool_result`.

The CLI runs tools itself, so the caller's tools reach it as an in-process MCP server
(`bridge.client_tools`) whose handler, when Claude calls one, hands the call to the response
(`("paused", ToolCall)`: it ends with the `tool_use` block and `stop_reason: "tool_use"`) and
waits. The run lives in the bridge's own tasks, so it outlives that request; it is parked here
by (namespace, tool_use id) until the request carrying the `tool_result` for that id takes it
over and streams the rest of the same run (the next call, or the final answer). A result that
never comes stops the run after `client_tool_timeout_s`. A response that ends any other way
before the run does (the client went away) stops it too.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import anyio
from claude_agent_sdk import AssistantMessage, Message, StreamEvent, ToolUseBlock

from ..bridge.client_tools import PREFIX, ClientTool, ClientTools, ToolAnswer
from ..bridge.tenancy import Tenancy
from .auth import ApiCaller
from .serving import ApiTurn, Attached, Item, ToolCall, TurnObserver, run_turn
from .shapes import ApiError, ToolResult, api_id, usage_of
from .stream import MessageStream

logger = logging.getLogger(__name__)

CATCH_UP_S = 5.0
"""How long a tool call waits for the run's messages to show Claude's call, so that the text
streamed before the call reaches the response before the call ends it."""


class _Waiter:
    def __init__(self) -> None:
        self.answered = anyio.Event()
        self.answer: ToolAnswer | None = None


class ToolRun(TurnObserver):
    """One run with the client's tools: observed like any run, its tool calls handed to the client."""

    def __init__(
        self, runs: ToolRuns, namespace: str, turn: ApiTurn, tools: tuple[ClientTool, ...], timeout_s: float
    ) -> None:
        out, self.items = anyio.create_memory_object_stream[Item](math.inf)
        super().__init__(out, turn)
        self._runs = runs
        self.namespace = namespace
        self._tools = tools
        self._timeout_s = timeout_s
        self.scope = anyio.CancelScope()
        self._calls_shown: list[str] = []
        self._shown = anyio.Event()
        self._usage = usage_of(None)
        self._output = 0

    def client_tools(self) -> ClientTools:
        return ClientTools(self._tools, self._call)

    async def message(self, message: Message) -> None:
        await super().message(message)
        if isinstance(message, StreamEvent) and message.parent_tool_use_id is None:
            self._count(message.event)
        if isinstance(message, AssistantMessage):
            names = [b.name for b in message.content if isinstance(b, ToolUseBlock) and b.name.startswith(PREFIX)]
            if names:
                self._calls_shown += names
                shown, self._shown = self._shown, anyio.Event()
                shown.set()

    async def run(self, tenancy: Tenancy, caller: ApiCaller) -> None:
        """The whole run, in the bridge's tasks (`run_turn` reports its outcome or failure)."""
        try:
            with self.scope:
                await run_turn(tenancy, caller, self)
        except Exception:  # never let a bug take the bridge's tasks down
            logger.exception("a run with client tools failed unexpectedly")
        finally:
            self._runs.forget(self)

    def _count(self, event: dict[str, Any]) -> None:
        """Add a model call's usage (what a response that ends on a tool call reports). A call's
        output count grows from its `message_start` to its `message_delta`, which may come after
        the tool call has ended the response."""
        if event.get("type") == "message_start":
            usage = (event.get("message") or {}).get("usage") or {}
            for name in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"):
                self._usage[name] += int(usage.get(name) or 0)
            self._output = 0
        elif event.get("type") != "message_delta":
            return
        else:
            usage = event.get("usage") or {}
        output = int(usage.get("output_tokens") or 0)
        if output > self._output:
            self._usage["output_tokens"] += output - self._output
            self._output = output

    def attach(self, turn: ApiTurn) -> None:
        """The request `turn` answers the pending call: its response reads the run from here on."""
        self.turn = turn
        self.answer = MessageStream("", "")
        self._usage = usage_of(None)
        self.out.send_nowait(("started", self.session_id))

    def abandon(self) -> None:
        self.scope.cancel()

    async def _call(self, name: str, tool_input: dict[str, Any]) -> ToolAnswer:
        """Claude called the client's tool `name`: end the response on it and wait for the result."""
        with anyio.move_on_after(CATCH_UP_S):
            while PREFIX + name not in self._calls_shown:
                await self._shown.wait()
        if PREFIX + name in self._calls_shown:
            self._calls_shown.remove(PREFIX + name)
        call = ToolCall(api_id("toolu_"), name, tool_input, dict(self._usage))
        waiter = _Waiter()
        self._runs.park(self, call.id, waiter)
        await self.out.send(("paused", call))
        with anyio.move_on_after(self._timeout_s):
            await waiter.answered.wait()
        if waiter.answer is None:
            logger.info("no result came for client tool call %s in %g s; stopping its run", call.id, self._timeout_s)
            self._runs.forget(self)
            self.scope.cancel()
            return ToolAnswer("No result came for this tool call in time; the run was stopped.", is_error=True)
        return waiter.answer


class ToolRuns:
    """Runs waiting for the result of a call of one of the client's tools, by (namespace, tool_use id)."""

    def __init__(self, tenancy: Tenancy) -> None:
        self._tenancy = tenancy
        self._parked: dict[tuple[str, str], tuple[ToolRun, _Waiter]] = {}

    def __len__(self) -> int:
        return len(self._parked)

    async def start(
        self, caller: ApiCaller, turn: ApiTurn, tools: tuple[ClientTool, ...], tasks: anyio.abc.TaskGroup
    ) -> Attached:
        """Start a run that offers the client's tools, in its bridge's own tasks."""
        async with self._tenancy.bridge_for(caller.tenant, caller.credential) as bridge:
            run = ToolRun(self, bridge.namespace, turn, tools, bridge.policy.client_tool_timeout_s)

            async def body() -> None:
                await run.run(self._tenancy, caller)

            bridge.start_soon(body)
        return Attached(run.items, run.abandon)

    async def resume(
        self, caller: ApiCaller, result: ToolResult, turn: ApiTurn, tasks: anyio.abc.TaskGroup
    ) -> Attached:
        """Hand a tool result to the run waiting for it; the response reads the rest of that run."""
        async with self._tenancy.bridge_for(caller.tenant, caller.credential) as bridge:
            namespace = bridge.namespace
        parked = self._parked.pop((namespace, result.tool_use_id), None)
        if parked is None:
            raise ApiError(
                400,
                "invalid_request_error",
                f"tool_result for tool_use_id {result.tool_use_id!r}: no run on this server is waiting for that "
                "result (it already has it, it waited longer than the server's client_tool_timeout_s and was "
                "stopped, or the id is not one this server gave). Start again from your last user message.",
            )
        run, waiter = parked
        run.attach(turn)
        waiter.answer = ToolAnswer(result.text, result.is_error)
        waiter.answered.set()
        return Attached(run.items, run.abandon)

    def park(self, run: ToolRun, call_id: str, waiter: _Waiter) -> None:
        self._parked[(run.namespace, call_id)] = (run, waiter)

    def forget(self, run: ToolRun) -> None:
        """Drop whatever `run` waits for (it ended, or was stopped)."""
        for key in [key for key, (parked, _) in self._parked.items() if parked is run]:
            del self._parked[key]
