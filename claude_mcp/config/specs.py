"""Shapes a call (or the config) can hand to the CLI: MCP servers and agent definitions.

They follow the CLI's own JSON (`--mcp-config`, `--agents`), so a definition written for
Claude Code works here unchanged; snake_case names are accepted too.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, StringConstraints, Tag

from .types import Effort, ModelName, PermissionMode, ToolRule

ServerName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
"""An MCP server's or an agent's name (it becomes part of tool names such as `mcp__name__tool`)."""


class StdioServer(BaseModel):
    """An MCP server Claude starts as a subprocess."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["stdio"] = Field("stdio", description="`stdio` (the default when `type` is left out).")
    command: Annotated[str, StringConstraints(min_length=1, max_length=4096)] = Field(
        description="The executable Claude starts."
    )
    args: list[str] = Field(default_factory=list, max_length=100, description="Its arguments.")
    env: dict[str, str] = Field(default_factory=dict, description="More environment for it (never logged).")


class RemoteServer(BaseModel):
    """An MCP server Claude reaches over HTTP (Streamable HTTP) or the legacy SSE transport."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["http", "sse"] = Field(description="`http` (Streamable HTTP) or `sse`.")
    url: Annotated[str, StringConstraints(pattern=r"^https?://", max_length=4096)] = Field(
        description="Its URL (`http://` or `https://`)."
    )
    headers: dict[str, str] = Field(default_factory=dict, description="Headers sent with each request (never logged).")


def _server_kind(value: Any) -> str:
    kind = value.get("type", "stdio") if isinstance(value, dict) else getattr(value, "type", "stdio")
    return "stdio" if kind == "stdio" else "remote"


# As in the CLI's JSON, a server without `type` is a stdio one.
McpServer = Annotated[
    Annotated[StdioServer, Tag("stdio")] | Annotated[RemoteServer, Tag("remote")], Discriminator(_server_kind)
]


class AgentSpec(BaseModel):
    """A named agent: what it is for, its instructions, and the tools and model it works with."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    description: str = Field(..., min_length=1, max_length=2000, description="When to use this agent.")
    prompt: str = Field(..., min_length=1, max_length=200_000, description="The agent's instructions.")
    tools: list[ToolRule] | None = Field(None, description="The tools it may use (default: all).")
    disallowed_tools: list[ToolRule] | None = Field(
        None, alias="disallowedTools", description="Tools it may not use (also `disallowedTools`)."
    )
    model: ModelName | None = Field(None, description="Its model (default: the call's).")
    permission_mode: PermissionMode | None = Field(
        None, alias="permissionMode", description="Its permission mode (also `permissionMode`)."
    )
    max_turns: int | None = Field(None, ge=1, alias="maxTurns", description="Its most turns (also `maxTurns`).")
    effort: Effort | None = Field(None, description="How much effort it spends.")

    def cli_definition(self) -> dict[str, Any]:
        """The CLI's `--agents` JSON for this agent."""
        return self.model_dump(by_alias=True, exclude_none=True)


def unknown_agent(agent: str, known: Iterable[str]) -> str:
    """Why `agent` cannot run, and how to define one when none is."""
    names = ", ".join(known)
    if names:
        return f"Unknown agent {agent!r}; known agents: {names}."
    return (
        f"Unknown agent {agent!r}: no agents are defined. Pass one in this call's `agents` argument, e.g. "
        f'{{"{agent[:64]}": {{"description": "when to use it", "prompt": "its instructions"}}}} (optional: tools, '
        f"model), or define it in the server's config as [agents.{agent[:64]}] with description and prompt."
    )
