"""A caller's own tools, offered to Claude without running them here.

The CLI runs every tool itself, so the tools a caller defines (the Messages API's `tools`) are
given to it as an in-process MCP server (`client`, so Claude sees `mcp__client__NAME`) whose
handlers run nothing: each call goes to whoever the current run says (`ToolRelay.caller`),
which hands it to the caller and waits for the result. The relay belongs to the CLI process it
was started with; a warm process is reused only for the same tools, and each run points the
relay at its own caller.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from claude_agent_sdk import McpSdkServerConfig, SdkMcpTool, create_sdk_mcp_server

SERVER = "client"
PREFIX = f"mcp__{SERVER}__"


@dataclass(frozen=True, slots=True)
class ClientTool:
    """One tool of the caller's: its name, description and JSON Schema for the input."""

    name: str
    description: str
    input_schema: dict[str, Any] = field(hash=False)

    @property
    def mcp_name(self) -> str:
        return PREFIX + self.name


@dataclass(frozen=True, slots=True)
class ToolAnswer:
    """What the caller answered to a tool call."""

    text: str
    is_error: bool = False


ToolCaller = Callable[[str, dict[str, Any]], Awaitable[ToolAnswer]]
"""Hands a call (the caller's tool name, the input) to the caller and waits for the answer."""


@dataclass(frozen=True, slots=True)
class ClientTools:
    """The tools a run offers, and who answers their calls during that run."""

    tools: tuple[ClientTool, ...]
    caller: ToolCaller


def tools_key(tools: tuple[ClientTool, ...]) -> str:
    """What identifies a set of tools (a warm process is reused only for the same set)."""
    return json.dumps([[t.name, t.description, t.input_schema] for t in tools], sort_keys=True)


class ToolRelay:
    """The in-process MCP server of one CLI process, relaying calls to the current run's caller."""

    def __init__(self, tools: tuple[ClientTool, ...]) -> None:
        self.tools = tools
        self.key = tools_key(tools)
        self.caller: ToolCaller | None = None
        """Who answers calls during the current turn; None between turns."""

    def server(self) -> McpSdkServerConfig:
        return create_sdk_mcp_server(SERVER, tools=[self._tool(t) for t in self.tools])

    def allowed(self) -> list[str]:
        """What the CLI may call without asking (the caller decides what its tools do): every tool of
        this server, by one rule (a rule per tool would put thousands of names on the command line)."""
        return [f"mcp__{SERVER}"]

    def _tool(self, spec: ClientTool) -> SdkMcpTool[Any]:
        schema = {"type": "object", **spec.input_schema}
        schema.setdefault("properties", {})  # without it the SDK takes the schema for a name → type map

        async def handler(arguments: dict[str, Any]) -> dict[str, Any]:
            if self.caller is None:
                answer = ToolAnswer("Nobody is waiting to run this tool now; answer without it.", is_error=True)
            else:
                answer = await self.caller(spec.name, arguments)
            return {"content": [{"type": "text", "text": answer.text}], "is_error": answer.is_error}

        return SdkMcpTool(name=spec.name, description=spec.description, input_schema=schema, handler=handler)
