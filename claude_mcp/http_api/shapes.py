"""The Messages API's request and response shapes (the subset a Claude Code run can honour),
and its error objects.

Fields a run cannot honour are refused with an `invalid_request_error` that says so, never
silently dropped where that would change what the caller asked for.
"""

from __future__ import annotations

import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

ErrorType = Literal[
    "invalid_request_error",
    "authentication_error",
    "permission_error",
    "not_found_error",
    "rate_limit_error",
    "api_error",
    "overloaded_error",
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


class TextBlock(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: Literal["text"]
    text: str


class OtherBlock(BaseModel):
    """A content block other than text (images, documents, tool use/results, thinking)."""

    model_config = ConfigDict(extra="allow")

    type: str


class MessageParam(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["user", "assistant"]
    content: str | list[TextBlock | OtherBlock]

    def text(self) -> str:
        """The message's text; `ApiError` if it holds blocks a Claude Code prompt cannot carry."""
        if isinstance(self.content, str):
            return self.content
        texts = []
        for block in self.content:
            if isinstance(block, TextBlock):
                texts.append(block.text)
            elif block.type not in ("thinking", "redacted_thinking"):  # an earlier answer's thinking: history only
                raise ApiError(
                    400,
                    "invalid_request_error",
                    f"content blocks of type {block.type!r} are not supported by this server (Claude Code takes "
                    "text prompts); send the content as text.",
                )
        return "\n\n".join(texts)


class SystemBlock(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: Literal["text"]
    text: str


UNSUPPORTED = {
    "stop_sequences": "stop_sequences cannot be honoured: Claude Code decides when its answer ends.",
    "top_p": "top_p is not supported: Claude Code sets the sampling itself.",
    "top_k": "top_k is not supported: Claude Code sets the sampling itself.",
    "tools": "tools (client-side tools) are not supported by this server yet; Claude Code's own tools are "
    "governed by the server policy.",
    "tool_choice": "tool_choice is not supported by this server yet.",
    "thinking": "thinking cannot be set per request here: Claude Code decides its thinking (use the `effort` "
    "of the server policy).",
    "service_tier": "service_tier is not supported by this server.",
    "container": "container is not supported by this server.",
    "mcp_servers": "mcp_servers in the request body is not supported; configure MCP servers in the server policy.",
}


class MessagesRequest(BaseModel):
    """`POST /v1/messages`."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(..., min_length=1, max_length=200)
    messages: list[MessageParam] = Field(..., min_length=1)
    max_tokens: int = Field(..., ge=1)
    system: str | list[SystemBlock] | None = None
    stream: bool = False
    metadata: dict[str, Any] | None = None
    temperature: float | None = Field(None, ge=0, le=1)
    stop_sequences: list[str] | None = None
    top_p: float | None = None
    top_k: int | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: dict[str, Any] | None = None
    thinking: dict[str, Any] | None = None
    service_tier: str | None = None
    container: str | None = None
    mcp_servers: list[dict[str, Any]] | None = None

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
        return reasons

    def system_text(self) -> str | None:
        if self.system is None or isinstance(self.system, str):
            return self.system or None
        return "\n\n".join(block.text for block in self.system) or None


def message_id() -> str:
    return f"msg_{uuid.uuid4().hex[:24]}"


def usage_of(usage: dict[str, Any] | None) -> dict[str, int]:
    """The Messages API's usage object from the CLI's (its totals over the whole run)."""
    usage = usage or {}
    return {
        "input_tokens": int(usage.get("input_tokens") or 0),
        "output_tokens": int(usage.get("output_tokens") or 0),
        "cache_creation_input_tokens": int(usage.get("cache_creation_input_tokens") or 0),
        "cache_read_input_tokens": int(usage.get("cache_read_input_tokens") or 0),
    }
