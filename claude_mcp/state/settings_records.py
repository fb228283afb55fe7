"""What a conversation was explicitly told, so a follow-up that omits a setting keeps it.

The CLI itself remembers only the model and the *first* turn's system prompt; a warm process
remembers everything but dies with the server. This registry records the settings each call
set explicitly (the sticky ones), keyed by session id, so a follow-up continues with what the
conversation last used, warm or cold, before or after a restart. `FileSettingsStore` keeps
one small JSON file per session; a Redis or PostgreSQL store implements the same protocol.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Protocol

from pydantic import ValidationError

from ..config.call_settings import CallSettings

logger = logging.getLogger(__name__)

PER_CALL_ONLY = frozenset({"timeout_s", "json_schema", "mcp_servers"})
"""Settings that apply to one call and never stick to the conversation (MCP servers may carry
credentials in their env or headers, which are not written to disk)."""


def sticky(settings: CallSettings) -> CallSettings:
    """The explicitly set settings that stick to a conversation."""
    return CallSettings.model_validate(settings.model_dump(exclude_unset=True, exclude=set(PER_CALL_ONLY)))


class SessionSettingsStore(Protocol):
    def load(self, session_id: str) -> CallSettings | None: ...

    def save(self, session_id: str, settings: CallSettings) -> None: ...

    def delete(self, session_id: str) -> None: ...


class MemorySettingsStore:
    """For tests and for servers that should remember nothing across restarts."""

    def __init__(self) -> None:
        self._settings: dict[str, CallSettings] = {}

    def load(self, session_id: str) -> CallSettings | None:
        return self._settings.get(session_id)

    def save(self, session_id: str, settings: CallSettings) -> None:
        self._settings[session_id] = settings

    def delete(self, session_id: str) -> None:
        self._settings.pop(session_id, None)


class FileSettingsStore:
    """One JSON file per session in `directory` (session ids are validated UUIDs)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _path(self, session_id: str) -> Path:
        return self.directory / f"{session_id}.json"

    def load(self, session_id: str) -> CallSettings | None:
        try:
            return CallSettings.model_validate_json(self._path(session_id).read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValidationError, json.JSONDecodeError):
            logger.warning("ignoring unreadable settings record for session %s", session_id)
            return None

    def save(self, session_id: str, settings: CallSettings) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        with tempfile.NamedTemporaryFile("w", dir=self.directory, delete=False, suffix=".tmp") as handle:
            handle.write(settings.model_dump_json(exclude_unset=True))
        Path(handle.name).replace(self._path(session_id))

    def delete(self, session_id: str) -> None:
        self._path(session_id).unlink(missing_ok=True)


def default_state_dir(cli_env: dict[str, str]) -> Path:
    """`claude-mcp/` inside the Claude config directory the CLI uses (so tenants stay apart)."""
    config = cli_env.get("CLAUDE_CONFIG_DIR") or os.environ.get("CLAUDE_CONFIG_DIR")
    if config:
        return Path(config) / "claude-mcp" / "sessions"
    home = cli_env.get("HOME") or os.environ.get("HOME") or str(Path.home())
    return Path(home) / ".claude" / "claude-mcp" / "sessions"
