"""Per-call settings: the one model that is both the tools' input schema and the CLI mapping.

Every field is optional and flat, so an MCP client writes `{"prompt": "…", "model": "haiku"}`.
`ClaudeCodeSettings` (Claude Code's own settings) is also the `claude_code` object an HTTP API
request may carry; `CallSettings` adds the model, system prompt, MCP servers and timeout.
`claude_mcp.bridge.options.build_options` maps a checked `CallSettings` onto `ClaudeAgentOptions`;
`claude_mcp.config.policy.Policy.resolve` fills defaults and enforces the server's ceilings. The
tools' argument models (`claude_mcp.mcp_surface.arguments`) extend it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, ValidationInfo, field_validator, model_validator

from .limits import JSON_SCHEMA_CEILING_KB, FewFields, KiB, json_size
from .specs import AgentSpec, McpServer, ServerName
from .types import Effort, JsonObject, ModelName, PathText, PermissionMode, PromptText, ToolRule

MOST_AGENTS = 50
"""Most sub-agents one call may define."""
MOST_SERVERS = 20
"""Most MCP servers one call may bring."""


class Thinking(FewFields):
    """Extended thinking, as the Messages API's `thinking`: a fixed budget, adaptive, or off."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["enabled", "adaptive", "disabled"]
    budget_tokens: int | None = Field(None, ge=1024, description="With `enabled`: the most tokens thinking takes.")

    @model_validator(mode="after")
    def _budget_with_enabled(self) -> Thinking:
        if (self.type == "enabled") != (self.budget_tokens is not None):
            raise ValueError("budget_tokens goes with type 'enabled' (and only with it)")
        return self


class ModelSettings(FewFields):
    """Which model a call runs and its system prompt: the HTTP APIs take these from their own
    fields (`model`, `system`), the MCP tools as arguments."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: ModelName | None = Field(None, description="Model alias (`sonnet`, `opus`, `haiku`) or full model id.")
    system_prompt: PromptText | None = Field(None, description="Replaces Claude Code's system prompt entirely.")
    append_system_prompt: PromptText | None = Field(
        None, description="Text appended to the system prompt (Claude Code's, or `system_prompt`)."
    )
    thinking: Thinking | None = Field(
        None,
        description='Extended thinking: `{"type": "enabled", "budget_tokens": N}`, `{"type": "adaptive"}` or '
        '`{"type": "disabled"}` (default: Claude Code\'s).',
    )


class ClaudeCodeSettings(FewFields):
    """Claude Code's own settings for one call: flat arguments of the MCP tools, and the
    `claude_code` object of an HTTP API request. The one definition both read."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cwd: PathText | None = Field(
        None,
        description="Working directory for Claude. Must lie inside the server's allowed roots; "
        "a relative path is taken from the first root.",
    )
    fallback_model: ModelName | None = Field(None, description="Model to use if the main model is overloaded.")
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
    json_schema: JsonObject | None = Field(
        None,
        description="JSON Schema for a structured answer; the result's `structured_output` holds it.",
    )
    add_dirs: list[PathText] | None = Field(
        None, max_length=50, description="Extra directories Claude may access (inside the allowed roots)."
    )
    tools: list[ToolRule] | None = Field(
        None, max_length=100, description='Restrict Claude\'s built-in tools to these (e.g. `["Read", "Grep"]`).'
    )
    agents: dict[ServerName, AgentSpec] | None = Field(
        None,
        max_length=MOST_AGENTS,
        description="Sub-agents Claude may delegate to (the shape of Claude's `--agents`), besides the server's.",
    )

    @field_validator("agents", mode="before")
    @classmethod
    def _few_agents(cls, agents: Any) -> Any:
        return _at_most(agents, MOST_AGENTS, "agents")

    @field_validator("json_schema")
    @classmethod
    def _valid_json_schema(cls, schema: JsonObject | None, info: ValidationInfo) -> JsonObject | None:
        if schema is None or (info.context or {}).get(CHECKED):
            return schema
        if json_size(schema, JSON_SCHEMA_CEILING_KB * KiB) > JSON_SCHEMA_CEILING_KB * KiB:
            # Checked before the (slow) meta-schema check; the policy's `max_json_schema_kb` may be lower.
            raise ValueError(f"the schema is larger than the {JSON_SCHEMA_CEILING_KB} KiB a CLI can be given")
        import jsonschema  # (~0.1 s: imported by the first call with a schema, not by every start)

        try:
            jsonschema.validators.validator_for(schema).check_schema(schema)
        except jsonschema.SchemaError as exc:
            raise ValueError(f"not a valid JSON Schema: {exc.message}") from None
        if schema.get("type", "object") != "object":
            raise ValueError('the schema must describe an object (`"type": "object"`)')
        return schema


class CallSettings(ClaudeCodeSettings, ModelSettings):
    """Settings one call may carry. Unset fields take the server policy's defaults."""

    mcp_servers: dict[ServerName, McpServer] | None = Field(
        None,
        max_length=MOST_SERVERS,
        description="MCP servers Claude may use during this call, as in Claude's `--mcp-config` "
        "(stdio: command/args/env; http or sse: url/headers). Their tools are named `mcp__<name>__<tool>`.",
    )
    timeout_s: float | None = Field(None, gt=0, description="Give up (and stop Claude) after this many seconds.")

    @field_validator("mcp_servers", mode="before")
    @classmethod
    def _few_servers(cls, servers: Any) -> Any:
        return _at_most(servers, MOST_SERVERS, "MCP servers")

    def over(self, base: CallSettings) -> CallSettings:
        """These settings where set, `base`'s elsewhere (the set fields stay marked as set)."""
        return CallSettings.model_validate(
            {**base.model_dump(exclude_unset=True), **self.model_dump(include=set(SETTING_NAMES), exclude_unset=True)},
            context={CHECKED: True},
        )

    def settings(self) -> CallSettings:
        """The per-call settings alone (a tool's other arguments dropped), as the caller set them."""
        return CallSettings.model_validate(
            self.model_dump(include=set(SETTING_NAMES), exclude_unset=True), context={CHECKED: True}
        )

    def sized(self) -> dict[str, Any]:
        """The settings whose size the policy bounds (`InputLimits.settings`), as JSON values."""
        return {
            "system_prompt": self.system_prompt,
            "append_system_prompt": self.append_system_prompt,
            "json_schema": self.json_schema,
            "agents": {name: agent.cli_definition() for name, agent in (self.agents or {}).items()} or None,
            "mcp_servers": {name: server.model_dump() for name, server in (self.mcp_servers or {}).items()} or None,
        }


def _at_most(value: Any, most: int, what: str) -> Any:
    """`value` if it is no object of more than `most` entries. Checked before the entries are: pydantic
    checks a dict's `max_length` only after validating every entry (200,000 of them: 0.3 s and as many
    errors built)."""
    if isinstance(value, dict) and len(value) > most:
        raise ValueError(f"{len(value):,} {what}, where at most {most} are taken")
    return value


SETTING_NAMES: tuple[str, ...] = tuple(CallSettings.model_fields)
CHECKED = "checked"
"""Validation context: the values come from settings already validated (their JSON Schema checked)."""
