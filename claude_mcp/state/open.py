"""Which store a server uses: PostgreSQL when a `postgresql://` URL is configured, else SQLite
(`sqlite:///path`, or `state.sqlite3` in the state directory)."""

from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError
from .store import Store

SQLITE_FILE = "state.sqlite3"


def store_for(url: str | None, state_dir: Path) -> Store:
    """A store (not yet opened) for a `state_url`, or the default SQLite one."""
    if url is None:
        from .sqlite import SqliteStore

        return SqliteStore(state_dir / SQLITE_FILE)
    if url.startswith("sqlite://"):
        from .sqlite import SqliteStore

        return SqliteStore(Path(url.removeprefix("sqlite://")))
    try:
        from .postgres import PostgresStore
    except ImportError:
        raise ConfigError(
            "state_url names PostgreSQL, but its driver is not installed: pip install 'claude-mcp[postgres]'"
        ) from None
    return PostgresStore(url)
