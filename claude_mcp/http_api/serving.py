"""One HTTP API request as one bridge run, streamed or not.

`RunResponse` is the ASGI response: it runs the turn in a task (the caller's bridge held for
the whole run), watches for the client going away (which cancels the run and stops its CLI
process tree), and renders what the run produces through a `Renderer` (the Anthropic or the
OpenAI shape). Until the run has started, a failure is an ordinary HTTP error; after that, a
streamed response ends with the API's in-stream error event. A run with the client's own tools
outlives its request (`client_tools`): a response then reads the part of it up to the next
tool call (`paused`) or its end. Over 300 lines: the exchange (start, stream, pause, errors,
disconnect) is one state machine, clearer whole than cut.
"""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from claude_agent_sdk import Message, SystemMessage
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from ..bridge.client_tools import ClientTools
from ..bridge.permissions import PermissionAnswer, PermissionRequest
from ..bridge.results import AskResult
from ..bridge.tenancy import Tenancy
from ..config.call_settings import CallSettings
from ..config.content import with_blocks_of
from ..errors import ClaudeMCPError
from .auth import ApiCaller
from .errors import api_error_of
from .file_blocks import with_files
from .history import CARRIED, Turn, carried_prompt, digest
from .mcp_connector import with_servers
from .mcp_params import McpServerParam
from .shapes import ApiError
from .stream import Delta, MessageStream, deltas_of

SESSION_HEADER = "x-claude-session-id"
STOPPED = ApiError(500, "api_error", "The run stopped before it gave an answer (the server log has details); retry.")


@dataclass(frozen=True, slots=True)
class ApiTurn:
    """What one request asks: the last user message, the history before it, the settings, and
    (optionally) the conversation it names explicitly."""

    prompt: str
    history: list[Turn]
    settings: CallSettings
    session_id: str | None = None
    agent: str | None = None
    """Run the conversation as this agent (`claude_code.agent`)."""
    mcp_servers: tuple[McpServerParam, ...] = ()
    """The request's own MCP servers (the MCP connector's), checked against the policy when it runs."""


@dataclass(frozen=True, slots=True)
class Outcome:
    result: AskResult


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A call of one of the client's tools, which the client runs (`id` is ours, `toolu_…`)."""

    id: str
    name: str
    input: dict[str, Any]
    usage: dict[str, int] | None = None
    """What the model calls since the response began used (input, output and cache tokens)."""


Item = tuple[str, Any]
"""("started", session_id | None), ("delta", Delta), ("paused", ToolCall), ("done", Outcome) or
("failed", ApiError)."""


@dataclass(frozen=True, slots=True)
class Attached:
    """A run a response reads: its items, and what stops it if the response ends first (the
    client went away) other than on a tool call."""

    items: MemoryObjectReceiveStream[Item]
    abandon: Callable[[], None]


Begin = Callable[[anyio.abc.TaskGroup], Awaitable[Attached]]
"""Starts (or continues) the run a response reads, in the response's tasks or elsewhere."""


class Renderer(Protocol):
    def opening(self) -> list[bytes]: ...

    def delta(self, delta: Delta) -> list[bytes]: ...

    def ping(self) -> bytes | None: ...

    def closing(self, outcome: Outcome) -> list[bytes]: ...

    def stream_error(self, error: ApiError) -> bytes: ...

    def body(self, outcome: Outcome) -> dict[str, Any]: ...

    def paused(self, call: ToolCall) -> list[bytes]: ...

    def paused_body(self, call: ToolCall) -> dict[str, Any]: ...

    def error_body(self, error: ApiError) -> dict[str, Any]: ...


class TurnObserver:
    """Passes a run's answer to the response as it streams (a `RunObserver`). `turn` is the
    request being answered, `answer` its answer so far."""

    def __init__(self, out: MemoryObjectSendStream[Item], turn: ApiTurn) -> None:
        self.out = out
        self.turn = turn
        self.session_id = turn.session_id
        self._started = False
        self.answer = MessageStream("", "")

    def client_tools(self) -> ClientTools | None:
        """The client's own tools the run offers (none here)."""
        return None

    async def queued(self, position: int) -> None:
        return None

    async def waiting_for_session(self) -> None:
        return None

    async def ask_permission(self, request: PermissionRequest) -> PermissionAnswer | None:
        return None  # nobody to ask over this API: the policy decides, the rest is denied

    async def message(self, message: Message) -> None:
        if not self._started:
            if isinstance(message, SystemMessage) and message.subtype == "init":
                self.session_id = str(message.data.get("session_id") or self.session_id)
            self._started = True
            await self.out.send(("started", self.session_id))
        for delta in deltas_of(message):
            self.answer.feed(delta)
            await self.out.send(("delta", delta))


async def run_turn(tenancy: Tenancy, caller: ApiCaller, observer: TurnObserver) -> None:
    """Run the observer's turn on the caller's bridge, continuing the conversation its history is,
    and record the conversation it has become (up to the request answered last); report
    everything on the observer's `out`."""
    out, turn = observer.out, observer.turn
    async with out:
        try:
            async with tenancy.bridge_for(caller.tenant, caller.credential) as bridge:
                session_id = turn.session_id
                if session_id is None and turn.history:
                    session_id = await bridge.histories.session_for(digest(turn.history))
                prompt = await with_files(turn.prompt, bridge)
                if session_id is None and turn.history:
                    prompt = with_blocks_of(carried_prompt(turn.history, turn.prompt), prompt)
                    bridge.policy.input_limits.prompt(prompt, field="messages", what=CARRIED)
                observer.session_id = session_id
                result = await bridge.ask(
                    prompt,
                    session_id=session_id,
                    settings=await with_servers(turn.settings, turn.mcp_servers, bridge.policy),
                    observer=observer,
                    client_tools=observer.client_tools(),
                    agent=turn.agent,
                )
                turn = observer.turn  # with client tools, the request that continued the run last
                answer = observer.answer.text() or result.result
                so_far = [*turn.history, ("user", turn.prompt), ("assistant", answer)]
                await bridge.histories.remember(digest(so_far), result.session_id)
            await out.send(("done", Outcome(result)))
        except ClaudeMCPError as exc:
            await out.send(("failed", api_error_of(exc, caller_credentials=caller.credential is not None)))
        except ApiError as exc:
            await out.send(("failed", exc))


class RunResponse:
    """The ASGI response of one API request that runs Claude."""

    def __init__(
        self,
        tenancy: Tenancy,
        caller: ApiCaller,
        turn: ApiTurn,
        renderer: Renderer,
        *,
        stream: bool,
        heartbeat_s: float,
        request_id: str,
        begin: Begin | None = None,
    ) -> None:
        """`begin`: how the run starts (default: in this response's own tasks)."""
        self._tenancy, self._caller, self._turn = tenancy, caller, turn
        self._renderer = renderer
        self._stream = stream
        self._heartbeat_s = heartbeat_s
        self._request_id = request_id
        self._begin = begin or self._in_own_tasks
        self._paused = False
        """Whether the response ended on a tool call, which the run now waits for the client to answer."""

    async def _in_own_tasks(self, tasks: anyio.abc.TaskGroup) -> Attached:
        out, items = anyio.create_memory_object_stream[Item](math.inf)
        tasks.start_soon(run_turn, self._tenancy, self._caller, TurnObserver(out, self._turn))
        return Attached(items, lambda: None)  # cancelled with the response's tasks

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async with anyio.create_task_group() as tasks:
            try:
                run = await self._begin(tasks)
            except (ApiError, ClaudeMCPError) as exc:
                own = self._caller.credential is not None
                error = exc if isinstance(exc, ApiError) else api_error_of(exc, caller_credentials=own)
                await self._json(send, error.status, self._renderer.error_body(error), None, error.retry_after_s)
                return
            tasks.start_soon(_cancel_on_disconnect, receive, tasks.cancel_scope)
            try:
                if self._stream:
                    await self._streamed(run.items, send)
                else:
                    await self._whole(run.items, send)
            finally:
                tasks.cancel_scope.cancel()
                if not self._paused:
                    run.abandon()

    def _headers(self, content_type: str, session_id: str | None, extra: dict[str, str] | None = None) -> list[Any]:
        headers = {"content-type": content_type, "request-id": self._request_id, **(extra or {})}
        if session_id:
            headers[SESSION_HEADER] = session_id
        return [(k.encode(), v.encode()) for k, v in headers.items()]

    async def _json(
        self, send: Send, status: int, body: dict[str, Any], session_id: str | None, retry: int | None
    ) -> None:
        extra = {"retry-after": str(retry)} if retry else None
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": self._headers("application/json", session_id, extra),
            }
        )
        await send({"type": "http.response.body", "body": json.dumps(body).encode()})

    async def _whole(self, items: MemoryObjectReceiveStream[Item], send: Send) -> None:
        session_id = None
        async for kind, value in items:
            if kind == "started":
                session_id = value
            elif kind == "delta":
                self._renderer.delta(value)
            elif kind == "paused":
                await self._json(send, 200, self._renderer.paused_body(value), session_id, None)
                self._paused = True
                return
            elif kind == "done":
                await self._json(send, 200, self._renderer.body(value), value.result.session_id, None)
                return
            elif kind == "failed":
                await self._json(send, value.status, self._renderer.error_body(value), None, value.retry_after_s)
                return
        await self._json(send, 500, self._renderer.error_body(STOPPED), None, None)

    async def _streamed(self, items: MemoryObjectReceiveStream[Item], send: Send) -> None:
        started = False

        async def write(chunks: list[bytes]) -> None:
            if chunks:  # one write per step: a block's start and its first delta leave together
                await send({"type": "http.response.body", "body": b"".join(chunks), "more_body": True})

        async def start(session_id: str | None) -> None:
            nonlocal started
            started = True
            headers = self._headers("text/event-stream; charset=utf-8", session_id, {"cache-control": "no-cache"})
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await write(self._renderer.opening())

        while True:
            item: Item | None = None
            with anyio.move_on_after(self._heartbeat_s if started else math.inf):
                try:
                    item = await items.receive()
                except anyio.EndOfStream:
                    if not started:
                        await self._json(send, 500, self._renderer.error_body(STOPPED), None, None)
                        return
                    await write([self._renderer.stream_error(STOPPED)])
                    break
            if item is None:
                if (ping := self._renderer.ping()) is not None:
                    await write([ping])
                continue
            kind, value = item
            if kind == "failed" and not started:
                await self._json(send, value.status, self._renderer.error_body(value), None, value.retry_after_s)
                return
            if not started:
                await start(value if kind == "started" else value.result.session_id if kind == "done" else None)
            if kind == "delta":
                await write(self._renderer.delta(value))
            elif kind == "paused":
                await write(self._renderer.paused(value))
                self._paused = True
                break
            elif kind == "done":
                await write(self._renderer.closing(value))
                break
            elif kind == "failed":
                await write([self._renderer.stream_error(value)])
                break
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _cancel_on_disconnect(receive: Receive, scope: anyio.CancelScope) -> None:
    """The client went away: stop the run (and its CLI process tree)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            scope.cancel()
            return


class RunEndpointResponse(Response):
    """A Starlette `Response` (what an endpoint returns) that hands the whole ASGI exchange to a
    `RunResponse`."""

    def __init__(self, run: RunResponse) -> None:
        self._run = run

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._run(scope, receive, send)
