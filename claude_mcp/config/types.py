"""Value types shared by the settings, the policy, the agent/MCP specs and the tool arguments."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, StringConstraints
from typing_extensions import TypeAliasType

# In claude-agent-sdk's order: typing caches Literals by their set of values, so with another order the
# schemas (and the README's reference) would follow whichever module was imported first.
PermissionMode = Literal["default", "acceptEdits", "plan", "bypassPermissions", "dontAsk", "auto"]
Effort = Literal["low", "medium", "high", "xhigh", "max"]

# Model ids from the Messages API (`claude-sonnet-4-5-20250929`), CLI aliases (`sonnet`,
# `opus[1m]`) and provider ids (Bedrock `us.anthropic.claude-…-v1:0`, Vertex `…@2025…`).
ModelName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@/\[\]-]{0,199}$")]
# A tool name or a permission rule such as `Bash(git *)` or `mcp__github__create_issue`.
ToolRule = Annotated[str, StringConstraints(min_length=1, max_length=500, pattern=r"^[^\x00-\x1f,]+$")]
PathText = Annotated[str, StringConstraints(min_length=1, max_length=4096, pattern=r"^[^\x00]+$")]
PromptText = str
"""A prompt or system prompt: its size is the policy's to bound (`config.limits`), the same on every surface."""

JsonValue = TypeAliasType("JsonValue", "str | bool | int | float | list[JsonValue] | dict[str, JsonValue] | None")
"""Any JSON value. Unlike `pydantic.JsonValue`, whose schema is `{}`, its schema says so: a
recursive `anyOf` of typed branches, which strict tool-schema checks accept."""
JsonObject = dict[str, JsonValue]
"""A JSON object whose values are any JSON."""

SESSION_ID_PATTERN = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def _uuid_of(what: str) -> AfterValidator:
    def check(value: str) -> str:
        if not SESSION_ID_PATTERN.match(value):
            raise ValueError(f"a {what} is a UUID such as 3f2c…-…; use the {what} of an earlier result")
        return value

    return AfterValidator(check)


SessionId = Annotated[str, _uuid_of("session_id")]
"""A conversation's id, as an earlier result returned it."""
JobId = Annotated[str, _uuid_of("job_id")]
