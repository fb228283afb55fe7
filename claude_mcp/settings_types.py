"""Value types shared by the settings, the policy and the agent/MCP specs."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import StringConstraints

PermissionMode = Literal["default", "acceptEdits", "plan", "dontAsk", "auto", "bypassPermissions"]
Effort = Literal["low", "medium", "high", "xhigh", "max"]

# Model ids from the Messages API (`claude-sonnet-4-5-20250929`), CLI aliases (`sonnet`,
# `opus[1m]`) and provider ids (Bedrock `us.anthropic.claude-…-v1:0`, Vertex `…@2025…`).
ModelName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@/\[\]-]{0,199}$")]
# A tool name or a permission rule such as `Bash(git *)` or `mcp__github__create_issue`.
ToolRule = Annotated[str, StringConstraints(min_length=1, max_length=500, pattern=r"^[^\x00-\x1f,]+$")]
PathText = Annotated[str, StringConstraints(min_length=1, max_length=4096, pattern=r"^[^\x00]+$")]
PromptText = Annotated[str, StringConstraints(max_length=200_000)]
