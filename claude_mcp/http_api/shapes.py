"""The Messages API's request and response shapes (the subset a Claude Code run can honour),
and its error objects.

Fields a run cannot honour are refused with an `invalid_request_error` that says so, never
silently dropped where that would change what the caller asked for.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, field_validator
from pydantic.fields import FieldInfo

from ..bridge.client_tools import ClientTool
from ..config.call_settings import Thinking
from ..config.limits import MOST_BLOCKS, MOST_ITEMS, MOST_MESSAGES, MOST_TOOLS, FewFields
from .claude_code import ClaudeCode
from .mcp_params import MOST_SERVERS, McpServerParam

ErrorType = Literal[
    "invalid_request_error",
    "authentication_error",
    "permission_error",
    "not_found_error",
    "rate_limit_error",
    "api_error",
    "overloaded_error",
    "request_too_large",
]


class ApiError(Exception):
    """An error in the Messages API's own shape, with its HTTP status."""

    def __init__(self, status: int, type: ErrorType, message: str, *, retry_after_s: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.type = type
        self.message = message
        self.retry_after_s = retry_after_s

    def body(self) -> dict[str, Any]:
        return {"type": "error", "error": {"type": self.type, "message": self.message}}


def at_most(items: int, default: Any = ...) -> Any:
    """A list or object field of at most `items` items, whose validation stops at its first wrong
    item: a hostile body of a million wrong-typed items costs one error, not a million built."""
    field: FieldInfo = Field(default, max_length=items, fail_fast=True)
    return field


class ManyPerRequest(FewFields):
    """A shape one request may hold by the hundred thousand (messages, content blocks, a batch's
    requests), and a request itself. Validating each calls one line of Python (`FewFields`' check of
    its number of fields), where CPython may hand the GIL to the event loop's thread: a large body is
    validated on a worker thread (`inputs.Bodies`), and pydantic-core would otherwise hold the GIL for
    the whole of it, stalling every other request."""


class TextBlock(ManyPerRequest):
    model_config = ConfigDict(extra="ignore")

    type: Literal["text"]
    text: str


class OtherBlock(ManyPerRequest):
    """A content block other than text (images, documents, tool use/results, thinking)."""

    model_config = ConfigDict(extra="allow")

    type: str


@dataclass(frozen=True, slots=True)
class ToolResult:
    """A user message's answer to a call of one of the client's tools."""

    tool_use_id: str
    text: str
    is_error: bool


def _field(block: OtherBlock, name: str) -> Any:
    return (block.model_extra or {}).get(name)


def _result_text(block: OtherBlock) -> str:
    content = _field(block, "content")
    if content is None or isinstance(content, str):
        return content or ""
    texts = []
    for part in content if isinstance(content, list) else [content]:
        if not isinstance(part, dict) or part.get("type") != "text":
            kind = part.get("type") if isinstance(part, dict) else type(part).__name__
            raise ApiError(
                400,
                "invalid_request_error",
                f"tool_result content of type {kind!r} is not supported by this server; send the result as text.",
            )
        texts.append(str(part.get("text", "")))
    return "\n\n".join(texts)


def _block_text(block: OtherBlock) -> str:
    """A tool call or result as text: how the history of a conversation records it."""
    if block.type == "tool_use":
        tool_input = json.dumps(_field(block, "input"), sort_keys=True, ensure_ascii=False)
        return f"[tool call {_field(block, 'id')}: {_field(block, 'name')} {tool_input}]"
    error = " (error)" if _field(block, "is_error") else ""
    return f"[tool result {_field(block, 'tool_use_id')}{error}: {_result_text(block)}]"


ATTACHMENT_TYPES = ("image", "document")
"""Blocks that go to the run as they are (`attachments`), not as text."""
HISTORY_ONLY = ("thinking", "redacted_thinking", "mcp_tool_use", "mcp_tool_result")
"""An earlier answer's blocks that are not its text: what the conversation already holds."""


class MessageParam(ManyPerRequest):
    model_config = ConfigDict(extra="forbid")

    role: Literal["user", "assistant"]
    content: str | Annotated[list[TextBlock | OtherBlock], at_most(MOST_BLOCKS)]

    def text(self) -> str:
        """The message's text (tool calls and results written out as text; images and documents,
        which go with it as blocks, left out); `ApiError` if it holds blocks a Claude Code prompt
        cannot carry."""
        if isinstance(self.content, str):
            return self.content
        texts = []
        for block in self.content:
            if isinstance(block, TextBlock):
                texts.append(block.text)
            elif block.type in ("tool_use", "tool_result"):
                texts.append(_block_text(block))
            elif block.type not in HISTORY_ONLY and block.type not in ATTACHMENT_TYPES:
                raise ApiError(
                    400,
                    "invalid_request_error",
                    f"content blocks of type {block.type!r} are not supported by this server (Claude Code takes "
                    "text prompts); send the content as text.",
                )
        return "\n\n".join(texts)

    def attachments(self) -> list[tuple[int, dict[str, Any]]]:
        """The message's image and document blocks, each with its index, as sent."""
        if isinstance(self.content, str):
            return []
        found = []
        for index, block in enumerate(self.content):
            if isinstance(block, OtherBlock) and block.type in ATTACHMENT_TYPES:
                found.append((index, {"type": block.type, **(block.model_extra or {})}))
        return found

    def tool_result(self) -> ToolResult | None:
        """The tool result this message answers a pending tool call with, if it holds one."""
        if isinstance(self.content, str):
            return None
        results = [b for b in self.content if isinstance(b, OtherBlock) and b.type == "tool_result"]
        if not results:
            return None
        if len(results) > 1 or len(self.content) > 1:
            raise ApiError(
                400,
                "invalid_request_error",
                "a message that answers a tool call must hold exactly one tool_result block (this server asks for "
                "one tool call at a time) and nothing else.",
            )
        block = results[0]
        return ToolResult(str(_field(block, "tool_use_id") or ""), _result_text(block), bool(_field(block, "is_error")))


class SystemBlock(ManyPerRequest):
    model_config = ConfigDict(extra="ignore")

    type: Literal["text"]
    text: str


TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")

UNSUPPORTED = {
    "stop_sequences": "stop_sequences cannot be honoured: Claude Code decides when its answer ends.",
    "top_p": "top_p is not supported: Claude Code sets the sampling itself.",
    "top_k": "top_k is not supported: Claude Code sets the sampling itself.",
    "service_tier": "service_tier is not supported by this server.",
    "container": "container is not supported by this server.",
}


class MessagesRequest(ManyPerRequest):
    """`POST /v1/messages`."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(..., min_length=1, max_length=200)
    messages: list[MessageParam] = Field(..., min_length=1, max_length=MOST_MESSAGES, fail_fast=True)
    max_tokens: int = Field(..., ge=1)
    system: str | Annotated[list[SystemBlock], at_most(MOST_BLOCKS)] | None = None
    stream: bool = False
    metadata: dict[str, Any] | None = at_most(MOST_ITEMS, None)
    temperature: float | None = Field(None, ge=0, le=1)
    stop_sequences: list[str] | None = at_most(MOST_ITEMS, None)
    top_p: float | None = None
    top_k: int | None = None
    tools: list[dict[str, Any]] | None = at_most(MOST_TOOLS, None)
    tool_choice: dict[str, Any] | None = at_most(MOST_ITEMS, None)
    thinking: Thinking | None = None
    service_tier: str | None = None
    container: str | None = None
    mcp_servers: list[McpServerParam] | None = at_most(MOST_SERVERS, None)
    claude_code: ClaudeCode | None = None
    """Claude Code's own settings for the run (an extension of the API: `extra_body`)."""

    @field_validator("messages")
    @classmethod
    def _ends_with_the_user(cls, messages: list[MessageParam]) -> list[MessageParam]:
        if messages[-1].role != "user":
            raise ValueError("the last message must have role 'user' (this server does not continue a prefill)")
        return messages

    def refusals(self) -> list[str]:
        """What this request asks for that a Claude Code run cannot honour."""
        reasons = [reason for name, reason in UNSUPPORTED.items() if getattr(self, name) not in (None, [])]
        if self.temperature is not None and self.temperature != 1:
            reasons.append("temperature is not supported: Claude Code sets the sampling itself (omit it, or send 1).")
        choice = (self.tool_choice or {}).get("type", "auto")
        if choice not in ("auto", "none"):
            reasons.append(
                f"tool_choice {choice!r} cannot be honoured: Claude Code decides whether to call a tool (send "
                "'auto' or 'none')."
            )
        names: set[str] = set()
        for index, tool in enumerate(self.tools or []):
            where = f"tools.{index}"
            if tool.get("type") not in (None, "custom"):
                reasons.append(
                    f"{where}: tools of type {tool.get('type')!r} (Anthropic-defined and server tools) are not "
                    "supported by this server; define your own tools with name, description and input_schema."
                )
                continue
            name = tool.get("name")
            if not isinstance(name, str) or not TOOL_NAME.match(name):
                reasons.append(f"{where}.name must match {TOOL_NAME.pattern}.")
            elif name in names:
                reasons.append(f"{where}.name: tool {name!r} is defined twice.")
            else:
                names.add(name)
            schema = tool.get("input_schema")
            if not isinstance(schema, dict) or schema.get("type", "object") != "object":
                reasons.append(f"{where}.input_schema must be a JSON Schema of type 'object'.")
        return reasons

    def client_tools(self) -> tuple[ClientTool, ...]:
        """The caller's own tools to offer the run (none with tool_choice 'none'); call `refusals` first."""
        if (self.tool_choice or {}).get("type") == "none":
            return ()
        return tuple(
            ClientTool(str(t["name"]), str(t.get("description") or ""), dict(t["input_schema"]))
            for t in self.tools or []
        )

    def system_text(self) -> str | None:
        if self.system is None or isinstance(self.system, str):
            return self.system or None
        return "\n\n".join(block.text for block in self.system) or None


def api_id(prefix: str) -> str:
    """An id in the APIs' style: `msg_…`, `req_…`, `toolu_…`, `chatcmpl-…`."""
    return f"{prefix}{uuid.uuid4().hex[:24]}"


def message_id() -> str:
    return api_id("msg_")


def usage_of(usage: dict[str, Any] | None) -> dict[str, int]:
    """The Messages API's usage object from the CLI's (its totals over the whole run)."""
    usage = usage or {}
    return {
        "input_tokens": int(usage.get("input_tokens") or 0),
        "output_tokens": int(usage.get("output_tokens") or 0),
        "cache_creation_input_tokens": int(usage.get("cache_creation_input_tokens") or 0),
        "cache_read_input_tokens": int(usage.get("cache_read_input_tokens") or 0),
    }
