"""`/v1/messages`, `/v1/messages/count_tokens` and `/v1/models`: the Anthropic Messages API over
the bridge, so an unmodified Anthropic SDK works with only its base URL pointed here."""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..bridge.tenancy import Tenancy
from ..config.limits import InputLimits
from ..config.types import SESSION_ID_PATTERN
from ..errors import ClaudeMCPError, TooLarge
from .attachments import message_prompt
from .auth import caller_of
from .claude_code import ClaudeCode
from .client_tools import ToolRuns
from .errors import api_error_of
from .history import Turn
from .inputs import Bodies, describe, read_capped
from .serving import SESSION_HEADER, ApiTurn, Begin, Outcome, RunEndpointResponse, RunResponse, ToolCall
from .shapes import ApiError, MessagesRequest, api_id, message_id, usage_of
from .stream import Delta, Event, MessageStream

logger = logging.getLogger(__name__)

UNKNOWN_CREATED_AT = "1970-01-01T00:00:00Z"
"""Claude Code does not say when a model was released; the epoch stands for "unknown"."""
COUNT_TOKENS_REFUSED = (
    "count_tokens is not supported by this server: a Claude Code run adds its own system prompt, tools and "
    "context to your messages, so a count of the messages alone would not be what the run uses."
)


def sse(event: Event) -> bytes:
    name, data = event
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


class AnthropicRenderer:
    """A run as one Messages API message: streamed events, or the whole message."""

    def __init__(self, model: str, mcp_servers: frozenset[str] = frozenset()) -> None:
        self.stream = MessageStream(message_id(), model, mcp_servers)

    def opening(self) -> list[bytes]:
        return [sse(event) for event in self.stream.start()]

    def delta(self, delta: Delta) -> list[bytes]:
        return [sse(event) for event in self.stream.feed(delta)]

    def ping(self) -> bytes:
        return sse(("ping", {"type": "ping"}))

    def closing(self, outcome: Outcome) -> list[bytes]:
        return [sse(event) for event in self.stream.finish(usage_of(outcome.result.usage), outcome.result.result)]

    def stream_error(self, error: ApiError) -> bytes:
        return sse(("error", error.body()))

    def paused(self, call: ToolCall) -> list[bytes]:
        return [sse(event) for event in self.stream.pause(call.id, call.name, call.input, usage_of(call.usage))]

    def paused_body(self, call: ToolCall) -> dict[str, Any]:
        usage = usage_of(call.usage)
        self.stream.pause(call.id, call.name, call.input, usage)
        return self.stream.message(self.stream.blocks, usage)

    def body(self, outcome: Outcome) -> dict[str, Any]:
        usage = usage_of(outcome.result.usage)
        self.stream.finish(usage, outcome.result.result)
        return self.stream.message(self.stream.blocks, usage)

    def error_body(self, error: ApiError) -> dict[str, Any]:
        return error.body()


def error_response(error: ApiError, request_id: str) -> Response:
    headers = {"request-id": request_id}
    if error.retry_after_s:
        headers["retry-after"] = str(error.retry_after_s)
    return JSONResponse(error.body(), status_code=error.status, headers=headers)


async def in_api_shape(
    work: Callable[[str], Awaitable[Response | dict[str, Any]]], failed: ApiError, *, caller_credentials: bool = False
) -> Response:
    """`work`'s answer (given the request's id), with a `request-id` header; any failure an error
    in the API's shape (`failed` for an unexpected one, which is logged), never a traceback."""
    request_id = api_id("req_")
    try:
        answer = await work(request_id)
    except ApiError as error:
        return error_response(error, request_id)
    except ClaudeMCPError as exc:
        return error_response(api_error_of(exc, caller_credentials=caller_credentials), request_id)
    except Exception:
        logger.exception("an API request failed")
        return error_response(failed, request_id)
    if isinstance(answer, Response):
        answer.headers["request-id"] = request_id
        return answer
    return JSONResponse(answer, headers={"request-id": request_id})


def turn_of(body: MessagesRequest, limits: InputLimits, session_id: str | None = None) -> ApiTurn:
    """What a Messages API request asks of Claude Code (in `/v1/messages` and in a batch);
    `ApiError` for what a run cannot honour, or what is over the server's input `limits` (413)."""
    try:
        limits.client_tools(body.tools)
        if refusals := body.refusals():
            raise ApiError(400, "invalid_request_error", " ".join(refusals))
        turns: list[Turn] = [(m.role, m.text()) for m in body.messages[:-1]]
        turns.append(("user", message_prompt(body.messages[-1], len(body.messages) - 1)))
        limits.prompt(turns[-1][1], field="messages", what="The last message")
        limits.system_prompt(system := body.system_text(), field="system")
        own: dict[str, Any] = {"system_prompt": system} if system else {}
        if body.thinking is not None:
            own["thinking"] = body.thinking
        settings = (body.claude_code or ClaudeCode()).call_settings(model=body.model, **own)
    except ValidationError as exc:
        raise ApiError(400, "invalid_request_error", describe(exc)) from None
    except TooLarge as exc:
        raise api_error_of(exc) from None
    agent = body.claude_code.agent if body.claude_code else None
    return ApiTurn(turns[-1][1], turns[:-1], settings, session_id, agent, tuple(body.mcp_servers or ()))


def _messages_request(data: Any, limits: InputLimits, session_id: str | None) -> tuple[MessagesRequest, ApiTurn]:
    """A decoded `/v1/messages` body and the turn it asks for (all of it slow for a large body)."""
    body = MessagesRequest.model_validate(data)
    return body, turn_of(body, limits, session_id)


def requested_session(request: Request) -> str | None:
    """The conversation a request names in `x-claude-session-id`, if any."""
    named = request.headers.get(SESSION_HEADER)
    if named is None:
        return None
    if not SESSION_ID_PATTERN.match(named):
        raise ApiError(400, "invalid_request_error", f"{SESSION_HEADER} must be a session id (a UUID).")
    return named


class MessagesApi:
    """The Anthropic-shaped endpoints."""

    def __init__(self, tenancy: Tenancy, heartbeat_s: float, bodies: Bodies) -> None:
        self.tenancy = tenancy
        self.heartbeat_s = heartbeat_s
        self.bodies = bodies
        self.tool_runs = ToolRuns(tenancy)
        """Runs waiting for the result of a call of one of the client's tools."""

    async def create(self, request: Request) -> Response:
        request_id = api_id("req_")
        try:
            caller = caller_of(request, self.tenancy)  # first: a stranger's body is never read
            session_id = requested_session(request)
            body, turn = await self.bodies.read(
                request,
                self.bodies.request,
                functools.partial(_messages_request, limits=self.bodies.limits, session_id=session_id),
            )
            result, tools = body.messages[-1].tool_result(), body.client_tools()
        except ApiError as error:
            return error_response(error, request_id)
        begin: Begin | None = None
        if result is not None:  # the answer to a call of one of the client's tools: the run goes on
            begin = functools.partial(self.tool_runs.resume, caller, result, turn)
        elif tools:
            begin = functools.partial(self.tool_runs.start, caller, turn, tools)
        response = RunResponse(
            self.tenancy,
            caller,
            turn,
            AnthropicRenderer(body.model, frozenset(server.name for server in body.mcp_servers or ())),
            stream=body.stream,
            heartbeat_s=self.heartbeat_s,
            request_id=request_id,
            begin=begin,
        )
        return RunEndpointResponse(response)

    async def count_tokens(self, request: Request) -> Response:
        request_id = api_id("req_")
        try:
            caller_of(request, self.tenancy)
            await read_capped(request, self.bodies.request)  # an over-cap body is refused as on /v1/messages
        except ApiError as error:
            return error_response(error, request_id)
        return error_response(ApiError(400, "invalid_request_error", COUNT_TOKENS_REFUSED), request_id)

    async def _models(self, request: Request) -> list[dict[str, Any]]:
        caller = caller_of(request, self.tenancy)
        try:
            async with self.tenancy.bridge_for(caller.tenant, caller.credential) as bridge:
                offered = await bridge.models()
        except ClaudeMCPError as exc:
            raise api_error_of(exc, caller_credentials=caller.credential is not None) from None
        listed: dict[str, dict[str, Any]] = {}
        for model in offered:
            name = str(model.get("displayName") or model.get("value"))
            for model_id in (model.get("value"), model.get("resolvedModel")):
                if model_id and model_id != "default" and model_id not in listed:
                    listed[str(model_id)] = {
                        "type": "model",
                        "id": str(model_id),
                        "display_name": name,
                        "created_at": UNKNOWN_CREATED_AT,
                    }
        return list(listed.values())

    async def list_models(self, request: Request) -> Response:
        request_id = api_id("req_")
        try:
            models = await self._models(request)
        except ApiError as error:
            return error_response(error, request_id)
        return JSONResponse(
            {
                "data": models,
                "has_more": False,
                "first_id": models[0]["id"] if models else None,
                "last_id": models[-1]["id"] if models else None,
            },
            headers={"request-id": request_id},
        )

    async def get_model(self, request: Request) -> Response:
        request_id = api_id("req_")
        wanted = request.path_params["model_id"]
        try:
            found = [m for m in await self._models(request) if m["id"] == wanted]
            if not found:
                raise ApiError(404, "not_found_error", f"model: {wanted} is not offered by this server's Claude Code.")
        except ApiError as error:
            return error_response(error, request_id)
        return JSONResponse(found[0], headers={"request-id": request_id})
