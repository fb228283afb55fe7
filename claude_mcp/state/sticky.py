"""What a conversation was explicitly told, so a follow-up that omits a setting keeps it.

The CLI itself remembers only the model and the *first* turn's system prompt; a warm process
remembers everything but dies with the server. So the settings each call set explicitly (the
sticky ones) are recorded with the conversation in the session index, and a follow-up
continues with what the conversation last used, warm or cold, on any replica, before or after
a restart.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from ..config.call_settings import CallSettings

PER_CALL_ONLY = frozenset({"timeout_s", "json_schema", "mcp_servers"})
"""Settings that apply to one call and never stick to the conversation (MCP servers may carry
credentials in their env or headers, which are never stored)."""


def sticky(settings: CallSettings) -> CallSettings:
    """The explicitly set settings that stick to a conversation."""
    return CallSettings.model_validate(settings.model_dump(exclude_unset=True, exclude=set(PER_CALL_ONLY)))


def config_dir(cli_env: Mapping[str, str]) -> Path:
    """The Claude config directory the CLI uses: `CLAUDE_CONFIG_DIR`, or `.claude` in its home."""
    config = cli_env.get("CLAUDE_CONFIG_DIR") or os.environ.get("CLAUDE_CONFIG_DIR")
    if config:
        return Path(config)
    return Path(cli_env.get("HOME") or os.environ.get("HOME") or str(Path.home())) / ".claude"


def default_state_dir(cli_env: Mapping[str, str]) -> Path:
    """`claude-mcp/` inside the Claude config directory the CLI uses (so tenants stay apart)."""
    return config_dir(cli_env) / "claude-mcp"
