"""`claude-mcp config CLIENT [--write]`: the registration each popular MCP client needs.

The entry always uses the absolute path of the installed executable, so the client finds it
whatever its own PATH. `--write` merges it into the client's config file, after a backup,
and refuses to replace an entry of the same name.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError

CLIENTS = ("claude-desktop", "claude-code", "cursor", "vscode", "windsurf", "zed", "codex", "gemini")


def launcher() -> tuple[str, list[str]]:
    """The absolute path of `claude-mcp`, or of this Python with `-m claude_mcp` if it is not on PATH."""
    found = shutil.which("claude-mcp")
    if found:
        return str(Path(found).absolute()), []
    return sys.executable, ["-m", "claude_mcp"]


def _home() -> Path:
    return Path(os.environ.get("HOME") or Path.home())


def _claude_desktop_path() -> Path:
    if sys.platform == "darwin":
        return _home() / "Library/Application Support/Claude/claude_desktop_config.json"
    if sys.platform == "win32":
        return Path(os.environ.get("APPDATA", _home())) / "Claude/claude_desktop_config.json"
    return Path(os.environ.get("XDG_CONFIG_HOME") or _home() / ".config") / "Claude/claude_desktop_config.json"


@dataclass(frozen=True)
class ClientConfig:
    """Where a client keeps its MCP servers, and the shape of one entry."""

    path: Callable[[], Path]
    section: tuple[str, ...]
    entry: Callable[[str, list[str]], dict[str, Any]]
    note: str = ""


def _plain(command: str, args: list[str]) -> dict[str, Any]:
    return {"command": command, "args": args}


JSON_CLIENTS: dict[str, ClientConfig] = {
    "claude-desktop": ClientConfig(_claude_desktop_path, ("mcpServers",), _plain, "Restart Claude Desktop."),
    "cursor": ClientConfig(lambda: _home() / ".cursor/mcp.json", ("mcpServers",), _plain),
    "vscode": ClientConfig(
        lambda: Path.cwd() / ".vscode/mcp.json",
        ("servers",),
        lambda c, a: {"type": "stdio", "command": c, "args": a},
        "This is the workspace's .vscode/mcp.json; VS Code asks you to start the server once.",
    ),
    "windsurf": ClientConfig(lambda: _home() / ".codeium/windsurf/mcp_config.json", ("mcpServers",), _plain),
    "zed": ClientConfig(
        lambda: Path(os.environ.get("XDG_CONFIG_HOME") or _home() / ".config") / "zed/settings.json",
        ("context_servers",),
        lambda c, a: {"source": "custom", "command": c, "args": a, "env": {}},
    ),
    "gemini": ClientConfig(
        lambda: _home() / ".gemini/settings.json",
        ("mcpServers",),
        lambda c, a: {"command": c, "args": a, "timeout": 600_000},
        "The 600 s tool timeout leaves room for long runs (progress keeps the call alive too).",
    ),
}


def _codex_path() -> Path:
    return Path(os.environ.get("CODEX_HOME") or _home() / ".codex") / "config.toml"


def _codex_section(name: str, command: str, args: list[str]) -> str:
    return (
        f"[mcp_servers.{name}]\ncommand = {json.dumps(command)}\nargs = {json.dumps(args)}\n"
        "startup_timeout_sec = 30\ntool_timeout_sec = 600\n"
    )


def registration(client: str, name: str, args: list[str]) -> str:
    """What to add to the client's configuration, as text to paste or run."""
    command, prefix = launcher()
    args = [*prefix, *args]
    if client == "claude-code":
        return " ".join(["claude", "mcp", "add", "--scope", "user", name, "--", command, *args])
    if client == "codex":
        return f"# {_codex_path()}\n" + _codex_section(name, command, args)
    spec = JSON_CLIENTS[client]
    snippet: Any = {name: spec.entry(command, args)}
    for key in reversed(spec.section):
        snippet = {key: snippet}
    note = f"\n# {spec.note}" if spec.note else ""
    return f"# {spec.path()}\n{json.dumps(snippet, indent=2)}{note}"


def _backup(path: Path) -> Path | None:
    if not path.exists():
        return None
    backup = path.with_name(f"{path.name}.bak-{time.strftime('%Y%m%d-%H%M%S')}")
    shutil.copy2(path, backup)
    return backup


def write(client: str, name: str, args: list[str]) -> str:
    """Merge the registration into the client's config; say what was done."""
    command, prefix = launcher()
    args = [*prefix, *args]
    if client == "claude-code":
        claude = shutil.which("claude")
        if claude is None:
            raise ConfigError("`claude` is not on PATH; run the printed `claude mcp add …` command yourself.")
        argv = [claude, "mcp", "add", "--scope", "user", name, "--", command, *args]
        done = subprocess.run(argv, capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL)
        if done.returncode != 0:
            raise ConfigError(f"`claude mcp add` failed: {(done.stderr or done.stdout).strip()[:500]}")
        return f"Registered {name!r} with Claude Code (user scope)."
    if client == "codex":
        path = _codex_path()
        text = path.read_text() if path.exists() else ""
        if f"[mcp_servers.{name}]" in text:
            raise ConfigError(f"{path} already has [mcp_servers.{name}]; remove it first, or pass --name.")
        backup = _backup(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + ("\n" if text and not text.endswith("\n") else "") + _codex_section(name, command, args))
        return f"Added [mcp_servers.{name}] to {path}" + (f" (backup: {backup})" if backup else "") + "."
    spec = JSON_CLIENTS[client]
    path = spec.path()
    try:
        document = json.loads(path.read_text()) if path.exists() and path.read_text().strip() else {}
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path} is not valid JSON ({exc}); fix it or add the entry by hand.") from None
    section = document
    for key in spec.section:
        section = section.setdefault(key, {})
    if name in section:
        raise ConfigError(f"{path} already has an entry {name!r}; remove it first, or pass --name.")
    section[name] = spec.entry(command, args)
    backup = _backup(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n")
    return (
        f"Added {name!r} to {path}"
        + (f" (backup: {backup})" if backup else "")
        + (f". {spec.note}" if spec.note else ".")
    )
