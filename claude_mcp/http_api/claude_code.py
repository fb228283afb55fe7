"""The `claude_code` object of an HTTP API request: Claude Code's own settings for the run (what
an SDK sends with `extra_body={"claude_code": {...}}`), the same settings the MCP tools take as
arguments (`ClaudeCodeSettings`), under the same policy ceilings, plus `agent`."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from ..config.call_settings import CHECKED, CallSettings, ClaudeCodeSettings
from ..config.specs import ServerName


class ClaudeCode(ClaudeCodeSettings):
    """Claude Code's settings for one request; unknown keys are refused."""

    agent: ServerName | None = Field(
        None, description="Run the conversation as this agent: one of the server's, or one defined in `agents`."
    )

    def call_settings(self, **model_and_prompt: Any) -> CallSettings:
        """These settings (as set) with the request's own model and system prompt."""
        own = self.model_dump(exclude_unset=True, exclude={"agent"})
        return CallSettings.model_validate({**own, **model_and_prompt}, context={CHECKED: True})
