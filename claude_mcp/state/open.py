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


async def check_reachable(url: str) -> None:
    """A `ConfigError` in one line, within seconds, when `url` names a PostgreSQL database that
    cannot be reached (SQLite needs no check)."""
    if url.startswith("sqlite://"):
        return
    try:
        from .postgres import check_reachable as reach
    except ImportError:
        raise ConfigError(
            "state_url names PostgreSQL, but its driver is not installed: pip install 'claude-mcp[postgres]'"
        ) from None
    await reach(url)


def describe(url: str | None, state_dir: Path) -> str:
    """The store a `state_url` (or the state directory) names, as a person reads it."""
    if url is None:
        return f"SQLite at {state_dir / SQLITE_FILE}"
    if url.startswith("sqlite://"):
        return f"SQLite at {url.removeprefix('sqlite://')}"
    try:
        from .postgres import where
    except ImportError:
        return "PostgreSQL"
    return where(url)
