"""Per-call settings: the one model that is both the tools' input schema and the CLI mapping.

Every field is optional and flat, so an MCP client writes `{"prompt": "…", "model": "haiku"}`.
`claude_mcp.options.build_options` maps a checked `CallSettings` onto `ClaudeAgentOptions`;
`claude_mcp.policy.Policy.resolve` fills defaults and enforces the server's ceilings.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import jsonschema
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, field_validator

PermissionMode = Literal["default", "acceptEdits", "plan", "dontAsk", "auto", "bypassPermissions"]
Effort = Literal["low", "medium", "high", "xhigh", "max"]

# Model ids from the Messages API (`claude-sonnet-4-5-20250929`), CLI aliases (`sonnet`,
# `opus[1m]`) and provider ids (Bedrock `us.anthropic.claude-…-v1:0`, Vertex `…@2025…`).
ModelName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@/\[\]-]{0,199}$")]
# A tool name or a permission rule such as `Bash(git *)` or `mcp__github__create_issue`.
ToolRule = Annotated[str, StringConstraints(min_length=1, max_length=500, pattern=r"^[^\x00-\x1f,]+$")]
PathText = Annotated[str, StringConstraints(min_length=1, max_length=4096, pattern=r"^[^\x00]+$")]
PromptText = Annotated[str, StringConstraints(max_length=200_000)]

_SESSION_ID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def _check_session_id(value: str) -> str:
    if not _SESSION_ID.match(value):
        raise ValueError("a session id is a UUID such as 3f2c…-…; use the session_id of an earlier result")
    return value


SessionId = Annotated[str, AfterValidator(_check_session_id)]
"""A conversation's id, as an earlier result returned it."""


class CallSettings(BaseModel):
    """Settings one call may carry. Unset fields take the server policy's defaults."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cwd: PathText | None = Field(
        None,
        description="Working directory for Claude. Must lie inside the server's allowed roots; "
        "a relative path is taken from the first root.",
    )
    model: ModelName | None = Field(None, description="Model alias (`sonnet`, `opus`, `haiku`) or full model id.")
    fallback_model: ModelName | None = Field(None, description="Model to use if the main model is overloaded.")
    system_prompt: PromptText | None = Field(None, description="Replaces Claude Code's system prompt entirely.")
    append_system_prompt: PromptText | None = Field(
        None, description="Text appended to the system prompt (Claude Code's, or `system_prompt`)."
    )
    allowed_tools: list[ToolRule] | None = Field(
        None,
        max_length=200,
        description="Tools or rules approved without asking, e.g. `Read`, `Bash(git *)`.",
    )
    disallowed_tools: list[ToolRule] | None = Field(
        None, max_length=200, description="Tools or rules Claude may not use at all."
    )
    permission_mode: PermissionMode | None = Field(
        None,
        description="How tool permissions are decided; the server policy lists the modes it permits.",
    )
    max_turns: int | None = Field(None, ge=1, description="Stop after this many agentic turns.")
    max_budget_usd: float | None = Field(None, gt=0, description="Stop once the run has cost this much (USD).")
    effort: Effort | None = Field(None, description="How much effort (thinking depth) Claude spends.")
    json_schema: dict[str, Any] | None = Field(
        None,
        description="JSON Schema for a structured answer; the result's `structured_output` holds it.",
    )
    add_dirs: list[PathText] | None = Field(
        None, max_length=50, description="Extra directories Claude may access (inside the allowed roots)."
    )
    timeout_s: float | None = Field(None, gt=0, description="Give up (and stop Claude) after this many seconds.")

    @field_validator("json_schema")
    @classmethod
    def _valid_json_schema(cls, schema: dict[str, Any] | None) -> dict[str, Any] | None:
        if schema is None:
            return None
        try:
            jsonschema.validators.validator_for(schema).check_schema(schema)
        except jsonschema.SchemaError as exc:
            raise ValueError(f"not a valid JSON Schema: {exc.message}") from None
        if schema.get("type", "object") != "object":
            raise ValueError('the schema must describe an object (`"type": "object"`)')
        return schema

    def settings(self) -> CallSettings:
        """The per-call settings alone (a tool's other arguments dropped), as the caller set them."""
        return CallSettings.model_validate(self.model_dump(include=set(SETTING_NAMES), exclude_unset=True))


SETTING_NAMES: tuple[str, ...] = tuple(CallSettings.model_fields)


class AskArgs(CallSettings):
    """Arguments of the `ask` tool: a prompt, an optional session to continue, and settings."""

    prompt: PromptText = Field(..., min_length=1, description="What to ask Claude.")
    session_id: SessionId | None = Field(
        None,
        description="Continue this conversation (a `session_id` from an earlier result). Omit to start a new one.",
    )


class ForkArgs(CallSettings):
    """Arguments of `fork_session`: the conversation to branch, and optionally a first prompt."""

    session_id: SessionId = Field(..., description="The conversation to branch; it stays untouched.")
    prompt: PromptText | None = Field(
        None, min_length=1, description="Ask the new branch this at once. Omit to only create the branch."
    )


class SessionArgs(BaseModel):
    """Names one conversation."""

    model_config = ConfigDict(extra="forbid")

    session_id: SessionId = Field(..., description="The conversation's session_id.")


class ListSessionsArgs(BaseModel):
    """A page of conversations, most recent first."""

    model_config = ConfigDict(extra="forbid")

    limit: int = Field(20, ge=1, le=200, description="How many to return.")
    offset: int = Field(0, ge=0, description="How many to skip.")


class GetSessionArgs(SessionArgs):
    """A page of one conversation's messages, oldest first."""

    limit: int = Field(50, ge=1, le=500, description="How many messages to return.")
    offset: int = Field(0, ge=0, description="How many messages to skip.")
