"""The tools this server publishes, in one table: each family (conversations, sessions, agents,
jobs, usage) is a module of small named handlers with their `ToolSpec`s; `running` holds the shared
progress and input-round plumbing."""

from __future__ import annotations

from . import agents, conversations, jobs, sessions, usage
from .spec import ToolSpec

INSTRUCTIONS = (
    "Delegate work to Claude (Claude Code). `ask` sends a prompt and returns Claude's answer with a "
    "session_id; pass that session_id to a later `ask` to continue the same conversation. "
    "`stream_ask` does the same while streaming the answer as progress notifications."
)

TOOLS: tuple[ToolSpec, ...] = (*conversations.TOOLS, *sessions.TOOLS, *agents.TOOLS, *jobs.TOOLS, *usage.TOOLS)
"""Every tool, in the order `tools/list` shows them."""


def build_tools() -> list[ToolSpec]:
    """The tools this server publishes."""
    return list(TOOLS)


__all__ = ["INSTRUCTIONS", "TOOLS", "ToolSpec", "build_tools"]
