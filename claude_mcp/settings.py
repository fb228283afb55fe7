"""Per-call settings: the one model that is both the tools' input schema and the CLI mapping.

Every field is optional and flat, so an MCP client writes `{"prompt": "…", "model": "haiku"}`.
`claude_mcp.options.build_options` maps a checked `CallSettings` onto `ClaudeAgentOptions`;
`claude_mcp.policy.Policy.resolve` fills defaults and enforces the server's ceilings.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import jsonschema
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from .settings_types import Effort, ModelName, PathText, PermissionMode, PromptText, ToolRule
from .specs import AgentSpec, McpServer, ServerName

_SESSION_ID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def _uuid_of(what: str) -> AfterValidator:
    def check(value: str) -> str:
        if not _SESSION_ID.match(value):
            raise ValueError(f"a {what} is a UUID such as 3f2c…-…; use the {what} of an earlier result")
        return value

    return AfterValidator(check)


SessionId = Annotated[str, _uuid_of("session_id")]
"""A conversation's id, as an earlier result returned it."""
JobId = Annotated[str, _uuid_of("job_id")]


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
    tools: list[ToolRule] | None = Field(
        None, max_length=100, description='Restrict Claude\'s built-in tools to these (e.g. `["Read", "Grep"]`).'
    )
    mcp_servers: dict[ServerName, McpServer] | None = Field(
        None,
        max_length=20,
        description="MCP servers Claude may use during this call, as in Claude's `--mcp-config` "
        "(stdio: command/args/env; http or sse: url/headers). Their tools are named `mcp__<name>__<tool>`.",
    )
    agents: dict[ServerName, AgentSpec] | None = Field(
        None,
        max_length=50,
        description="Sub-agents Claude may delegate to (the shape of Claude's `--agents`), besides the server's.",
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

    def over(self, base: CallSettings) -> CallSettings:
        """These settings where set, `base`'s elsewhere (the set fields stay marked as set)."""
        return CallSettings.model_validate(
            {**base.model_dump(exclude_unset=True), **self.model_dump(include=set(SETTING_NAMES), exclude_unset=True)}
        )

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


class RunAgentArgs(CallSettings):
    """Arguments of `run_agent`: which agent, what to do, and how long to wait inline."""

    agent: ServerName = Field(..., description="A named agent (see `list_agents`) or one passed in `agents`.")
    prompt: PromptText = Field(..., min_length=1, description="The task for the agent.")
    session_id: SessionId | None = Field(None, description="Continue this conversation instead of starting one.")
    wait_s: float | None = Field(
        None,
        ge=0,
        le=600,
        description="Wait this long for the result before returning a job handle (default: the server's, ~25 s).",
    )


class JobArgs(BaseModel):
    """Names one background job."""

    model_config = ConfigDict(extra="forbid")

    job_id: JobId = Field(..., description="The job_id that `run_agent` returned.")


class GetJobArgs(JobArgs):
    wait_s: float = Field(0, ge=0, le=600, description="Wait up to this long for the job to finish (long-poll).")
    permission_id: str | None = Field(None, max_length=100, description="Answer this pending permission request…")
    decision: Literal["allow_once", "allow_session", "deny"] | None = Field(None, description="…with this decision.")
    reason: str | None = Field(None, max_length=2000, description="Why (told to Claude on a denial).")

    @model_validator(mode="after")
    def _decision_with_id(self) -> GetJobArgs:
        if (self.permission_id is None) != (self.decision is None):
            raise ValueError("permission_id and decision go together")
        return self


class NoArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
