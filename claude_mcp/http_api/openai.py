"""`/v1/chat/completions`: the OpenAI Chat Completions API over the same runs, for the many
tools that only speak it. System and developer messages become the system prompt; the rest is
the conversation, mapped onto a Claude Code session exactly as for `/v1/messages`."""

from __future__ import annotations

import functools
import json
import time
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..bridge.tenancy import Tenancy
from ..config.content import Prompt
from ..config.limits import MOST_BLOCKS, MOST_ITEMS, MOST_MESSAGES, MOST_TOOLS, InputLimits
from ..errors import TooLarge
from .anthropic import requested_session
from .attachments import Attachments, chat_attachment
from .auth import caller_of
from .claude_code import ClaudeCode
from .errors import api_error_of
from .history import Turn
from .inputs import Bodies, describe
from .serving import ApiTurn, Outcome, RunEndpointResponse, RunResponse, ToolCall
from .shapes import ApiError, ManyPerRequest, api_id, at_most, usage_of
from .stream import Delta, MessageStream

EFFORTS = {"minimal": "low", "low": "low", "medium": "medium", "high": "high"}
ATTACHMENT_PARTS = ("image_url", "file")


class ChatContent(ManyPerRequest):
    model_config = ConfigDict(extra="ignore")

    type: str
    text: str | None = None
    image_url: dict[str, Any] | None = None
    file: dict[str, Any] | None = None


class ChatMessage(ManyPerRequest):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant"]
    content: str | Annotated[list[ChatContent], at_most(MOST_BLOCKS)] | None = None

    def text(self) -> str:
        if self.content is None or isinstance(self.content, str):
            return self.content or ""
        if any(part.type not in ("text", *ATTACHMENT_PARTS) for part in self.content):
            raise ApiError(
                400,
                "invalid_request_error",
                "only text, image_url and file content parts are supported by this server.",
            )
        return "\n\n".join(part.text or "" for part in self.content if part.type == "text")

    def prompt(self, index: int) -> str:
        """The message as a prompt: its text, with its images and files (checked) as blocks."""
        found = Attachments([])
        for at, part in enumerate(self.content if isinstance(self.content, list) else []):
            if part.type in ATTACHMENT_PARTS:
                found.add(chat_attachment(f"messages.{index}.content.{at}", part.model_dump()))
        return Prompt(self.text(), found.blocks) if found.blocks else self.text()


class ChatRequest(ManyPerRequest):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(..., min_length=1, max_length=200)
    messages: list[ChatMessage] = Field(..., min_length=1, max_length=MOST_MESSAGES, fail_fast=True)
    stream: bool = False
    stream_options: dict[str, Any] | None = at_most(MOST_ITEMS, None)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    reasoning_effort: Literal["minimal", "low", "medium", "high"] | None = None
    user: str | None = None
    metadata: dict[str, str] | None = at_most(MOST_ITEMS, None)
    temperature: float | None = None
    top_p: float | None = None
    n: int | None = None
    stop: str | Annotated[list[str], at_most(MOST_ITEMS)] | None = None
    tools: list[dict[str, Any]] | None = at_most(MOST_TOOLS, None)
    tool_choice: Any = None
    response_format: dict[str, Any] | None = at_most(MOST_ITEMS, None)
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: dict[str, Any] | None = at_most(MOST_ITEMS, None)
    logprobs: bool | None = None
    seed: int | None = None
    claude_code: ClaudeCode | None = None
    """Claude Code's own settings for the run (an extension of the API: `extra_body`)."""

    def refusals(self) -> list[str]:
        reasons = []
        if self.temperature not in (None, 1):
            reasons.append("temperature is not supported: Claude Code sets the sampling itself (omit it, or send 1).")
        if self.top_p not in (None, 1):
            reasons.append("top_p is not supported: Claude Code sets the sampling itself.")
        if self.n not in (None, 1):
            reasons.append("n must be 1: a Claude Code run gives one answer.")
        for name in ("stop", "tools", "tool_choice", "response_format", "logit_bias", "seed"):
            if getattr(self, name) not in (None, [], {}):
                reasons.append(f"{name} is not supported by this server.")
        if self.presence_penalty not in (None, 0) or self.frequency_penalty not in (None, 0):
            reasons.append("presence_penalty and frequency_penalty are not supported by this server.")
        if self.logprobs:
            reasons.append("logprobs are not supported by this server.")
        return reasons


def chunk(data: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


class OpenAIRenderer:
    """A run as one chat completion: streamed chunks, or the whole completion."""

    def __init__(self, model: str, include_usage: bool) -> None:
        self.id = api_id("chatcmpl-")
        self.created = int(time.time())
        self.model = model
        self.include_usage = include_usage
        self.answer = MessageStream("", model)

    def _chunk(self, delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
        return chunk(
            {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
             "choices": [choice], **extra}
        )  # fmt: skip

    def opening(self) -> list[bytes]:
        return [self._chunk({"role": "assistant", "content": ""})]

    def delta(self, delta: Delta) -> list[bytes]:
        texts = [
            data["delta"]["text"]
            for name, data in self.answer.feed(delta)
            if name == "content_block_delta" and data["delta"]["type"] == "text_delta"
        ]
        return [self._chunk({"content": text}) for text in texts]

    def ping(self) -> bytes:
        return b": keep-alive\n\n"

    def _usage(self, outcome: Outcome) -> dict[str, int]:
        usage = usage_of(outcome.result.usage)
        prompt = usage["input_tokens"] + usage["cache_read_input_tokens"] + usage["cache_creation_input_tokens"]
        return {"prompt_tokens": prompt, "completion_tokens": usage["output_tokens"],
                "total_tokens": prompt + usage["output_tokens"]}  # fmt: skip

    def closing(self, outcome: Outcome) -> list[bytes]:
        chunks = [] if self.answer.blocks else self.delta(("text", outcome.result.result))
        chunks.append(self._chunk({}, "stop"))
        if self.include_usage:
            chunks.append(
                chunk({"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                       "choices": [], "usage": self._usage(outcome)})
            )  # fmt: skip
        return [*chunks, b"data: [DONE]\n\n"]

    def stream_error(self, error: ApiError) -> bytes:
        return chunk(self.error_body(error))

    def body(self, outcome: Outcome) -> dict[str, Any]:
        text = self.answer.text() or outcome.result.result
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text, "refusal": None},
                    "finish_reason": "stop",
                    "logprobs": None,
                }
            ],
            "usage": self._usage(outcome),
        }

    def error_body(self, error: ApiError) -> dict[str, Any]:
        return {"error": {"message": error.message, "type": error.type, "param": None, "code": None}}

    def paused(self, call: ToolCall) -> list[bytes]:
        raise AssertionError("chat completions offer no client tools, so no run stops on one")

    def paused_body(self, call: ToolCall) -> dict[str, Any]:
        raise AssertionError("chat completions offer no client tools, so no run stops on one")


def openai_error(error: ApiError) -> Response:
    headers = {"retry-after": str(error.retry_after_s)} if error.retry_after_s else None
    body = {"error": {"message": error.message, "type": error.type, "param": None, "code": None}}
    return JSONResponse(body, status_code=error.status, headers=headers)


def chat_turn(data: Any, limits: InputLimits, session_id: str | None) -> tuple[ChatRequest, ApiTurn]:
    """A decoded chat completions body and the turn it asks for (all of it slow for a large body);
    `ApiError` for what a run cannot honour, or what is over the server's input `limits` (413)."""
    body = ChatRequest.model_validate(data)
    if refusals := body.refusals():
        raise ApiError(400, "invalid_request_error", " ".join(refusals))
    system = "\n\n".join(m.text() for m in body.messages if m.role in ("system", "developer")) or None
    said = [(index, m) for index, m in enumerate(body.messages) if m.role in ("user", "assistant")]
    turns: list[Turn] = [(m.role, m.prompt(index) if index == said[-1][0] else m.text()) for index, m in said]
    if not turns or turns[-1][0] != "user":
        raise ApiError(400, "invalid_request_error", "the last message must have role 'user'.")
    try:
        limits.prompt(turns[-1][1], field="messages", what="The last message")
        limits.system_prompt(system, field="messages", what="The system and developer messages")
    except TooLarge as exc:
        raise api_error_of(exc) from None
    fields: dict[str, Any] = {"model": body.model}
    if system:
        fields["system_prompt"] = system
    if body.reasoning_effort:
        fields["effort"] = EFFORTS[body.reasoning_effort]
    claude_code = body.claude_code or ClaudeCode()
    if body.reasoning_effort and claude_code.effort is not None:
        raise ApiError(400, "invalid_request_error", "send reasoning_effort or claude_code.effort, not both.")
    try:
        settings = claude_code.call_settings(**fields)
    except ValidationError as exc:
        raise ApiError(400, "invalid_request_error", describe(exc)) from None
    return body, ApiTurn(turns[-1][1], turns[:-1], settings, session_id, claude_code.agent)


class ChatCompletionsApi:
    def __init__(self, tenancy: Tenancy, heartbeat_s: float, bodies: Bodies) -> None:
        self.tenancy = tenancy
        self.heartbeat_s = heartbeat_s
        self.bodies = bodies

    async def create(self, request: Request) -> Response:
        try:
            caller = caller_of(request, self.tenancy)  # first: a stranger's body is never read
            session_id = requested_session(request)
            body, turn = await self.bodies.read(
                request,
                self.bodies.request,
                functools.partial(chat_turn, limits=self.bodies.limits, session_id=session_id),
            )
        except ApiError as error:
            return openai_error(error)
        include_usage = bool((body.stream_options or {}).get("include_usage"))
        renderer = OpenAIRenderer(body.model, include_usage)
        run = RunResponse(
            self.tenancy,
            caller,
            turn,
            renderer,
            stream=body.stream,
            heartbeat_s=self.heartbeat_s,
            request_id=api_id("req_"),
        )
        return RunEndpointResponse(run)
