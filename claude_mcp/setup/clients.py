"""`claude-mcp config CLIENT [--write]`: the registration each popular MCP client needs.

An MCP client starts its servers with a bare environment (the official SDKs pass HOME, PATH,
SHELL, TERM, USER and LOGNAME) from a directory of its own choosing, often `/`. So a
registration carries what the server needs and would not find there: the absolute path of the
installed executable, a `--root` (the directory `config` is run from unless told), and the
Claude credential of the shell `config` runs in (with the endpoint and provider switches) as
the entry's `env`. `--write` merges it into the client's config file after a backup (comments
in JSONC settings kept), refuses to replace an entry of the same name, and makes a file that
now holds a key readable by its owner only.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from . import jsonc

CLIENTS = ("claude-desktop", "claude-code", "cursor", "vscode", "windsurf", "zed", "codex", "gemini")
CREDENTIALS = ("ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN", "ANTHROPIC_AUTH_TOKEN")
"""The credentials a registration can carry, in the order the CLI prefers them (the first set one is carried)."""
CARRIED_SETTINGS = (
    "ANTHROPIC_BASE_URL",
    "CLAUDE_CODE_USE_BEDROCK",
    "CLAUDE_CODE_USE_VERTEX",
    "AWS_REGION",
    "AWS_PROFILE",
    "ANTHROPIC_VERTEX_PROJECT_ID",
    "CLOUD_ML_REGION",
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC",
    "DISABLE_TELEMETRY",
)
"""Where and how Claude is reached, carried when set (none of them a secret)."""


@dataclass(frozen=True)
class Carried:
    """What a registration gives the server: its `serve` arguments, and the environment it carries
    (`secret`: the name of the credential variable among them, if any)."""

    args: list[str]
    env: dict[str, str] = field(default_factory=dict)
    secret: str | None = None

    def shown(self) -> dict[str, str]:
        """The environment as printed: the secret a placeholder (a terminal's scrollback is no place for it)."""
        return {k: f"<your {k}>" if k == self.secret else v for k, v in self.env.items()}


def carried(serve_args: list[str], environ: Mapping[str, str], *, with_key: bool = True) -> Carried:
    """The registration's arguments and environment, from the shell `config` runs in."""
    env = {k: environ[k] for k in CARRIED_SETTINGS if environ.get(k)}
    secret = next((k for k in CREDENTIALS if environ.get(k)), None) if with_key else None
    if secret is not None:
        env = {secret: environ[secret], **env}
    return Carried(serve_args, env, secret)


def chosen_root(root: Path | None, cwd: Path) -> Path:
    """The root to register: `--root`, else the directory `config` runs in; never `/`, always a directory."""
    chosen = (root or cwd).expanduser().resolve()
    if chosen == Path(chosen.anchor):
        raise ConfigError(
            f"the root would be {chosen}, so Claude could work anywhere on the disk: run `config` from your "
            "project's directory, or pass --root DIR."
        )
    if not chosen.is_dir():
        raise ConfigError(f"root {chosen} does not exist or is not a directory: create it, or fix --root.")
    return chosen


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


Entry = Callable[[str, list[str], dict[str, str]], dict[str, Any]]


@dataclass(frozen=True)
class ClientConfig:
    """Where a client keeps its MCP servers, and the shape of one entry."""

    path: Callable[[], Path]
    section: str
    entry: Entry
    note: str = ""


def _plain(command: str, args: list[str], env: dict[str, str]) -> dict[str, Any]:
    return {"command": command, "args": args, **({"env": env} if env else {})}


def _input_id(variable: str) -> str:
    return "claude-mcp-" + variable.lower().replace("_", "-")


def _vscode(command: str, args: list[str], env: dict[str, str]) -> dict[str, Any]:
    # A workspace's .vscode/mcp.json is often committed: the key is an input VS Code asks for once and keeps.
    env = {k: f"${{input:{_input_id(k)}}}" if k in CREDENTIALS else v for k, v in env.items()}
    return {"type": "stdio", "command": command, "args": args, **({"env": env} if env else {})}


JSON_CLIENTS: dict[str, ClientConfig] = {
    "claude-desktop": ClientConfig(_claude_desktop_path, "mcpServers", _plain, "Restart Claude Desktop."),
    "cursor": ClientConfig(lambda: _home() / ".cursor/mcp.json", "mcpServers", _plain),
    "vscode": ClientConfig(
        lambda: Path.cwd() / ".vscode/mcp.json",
        "servers",
        _vscode,
        "This is the workspace's .vscode/mcp.json; VS Code asks you to start the server once (and for the key "
        "once: it keeps it, not the file).",
    ),
    "windsurf": ClientConfig(lambda: _home() / ".codeium/windsurf/mcp_config.json", "mcpServers", _plain),
    "zed": ClientConfig(
        lambda: Path(os.environ.get("XDG_CONFIG_HOME") or _home() / ".config") / "zed/settings.json",
        "context_servers",
        lambda c, a, e: {"source": "custom", "command": c, "args": a, "env": e},
    ),
    "gemini": ClientConfig(
        lambda: _home() / ".gemini/settings.json",
        "mcpServers",
        lambda c, a, e: {**_plain(c, a, e), "timeout": 600_000},
        "The 600 s tool timeout leaves room for long runs (progress keeps the call alive too).",
    ),
}


def client_path(client: str) -> Path | None:
    """The config file the client reads its MCP servers from (None: Claude Code keeps its own)."""
    if client == "codex":
        return _codex_path()
    return JSON_CLIENTS[client].path() if client in JSON_CLIENTS else None


def _codex_path() -> Path:
    return Path(os.environ.get("CODEX_HOME") or _home() / ".codex") / "config.toml"


def _codex_section(name: str, command: str, args: list[str], env: dict[str, str]) -> str:
    section = (
        f"[mcp_servers.{name}]\ncommand = {json.dumps(command)}\nargs = {json.dumps(args)}\n"
        "startup_timeout_sec = 30\ntool_timeout_sec = 600\n"
    )
    if env:
        section += f"\n[mcp_servers.{name}.env]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in env.items())
    return section


def _vscode_inputs(env: Mapping[str, str]) -> list[dict[str, Any]]:
    return [
        {"type": "promptString", "id": _input_id(k), "description": f"{k} for Claude (claude-mcp)", "password": True}
        for k in env
        if k in CREDENTIALS
    ]


def registration(client: str, name: str, given: Carried) -> str:
    """What to add to the client's configuration, as text to paste or run (a key shown as a placeholder)."""
    command, prefix = launcher()
    args = [*prefix, *given.args]
    if client == "claude-code":
        env = [f'{k}="${k}"' if k == given.secret else shlex.quote(f"{k}={v}") for k, v in given.env.items()]
        flags = [part for pair in env for part in ("-e", pair)]
        head = shlex.join(["claude", "mcp", "add", "--scope", "user", name])
        return " ".join([head, *flags, "--", shlex.join([command, *args])])
    if client == "codex":
        return f"# {_codex_path()}\n" + _codex_section(name, command, args, given.shown())
    spec = JSON_CLIENTS[client]
    snippet: dict[str, Any] = {spec.section: {name: spec.entry(command, args, given.shown())}}
    if client == "vscode" and (inputs := _vscode_inputs(given.env)):
        snippet["inputs"] = inputs
    note = f"\n# {spec.note}" if spec.note else ""
    return f"# {spec.path()}\n{json.dumps(snippet, indent=2)}{note}"


def _backup(path: Path) -> Path | None:
    if not path.exists():
        return None
    backup = path.with_name(f"{path.name}.bak-{time.strftime('%Y%m%d-%H%M%S')}")
    shutil.copy2(path, backup)
    backup.chmod(0o600)
    return backup


def _save(path: Path, text: str, *, secret: bool) -> None:
    """Write the file; one that holds a key is readable by its owner only (created so, never briefly wider)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if secret:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(text)
    else:
        path.write_text(text)


def write(client: str, name: str, given: Carried) -> str:
    """Merge the registration into the client's config; say what was done."""
    command, prefix = launcher()
    args = [*prefix, *given.args]
    if client == "claude-code":
        claude = shutil.which("claude")
        if claude is None:
            raise ConfigError("`claude` is not on PATH; run the printed `claude mcp add …` command yourself.")
        flags = [part for k, v in given.env.items() for part in ("-e", f"{k}={v}")]
        argv = [claude, "mcp", "add", "--scope", "user", name, *flags, "--", command, *args]  # -e takes several
        done = subprocess.run(argv, capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL)
        if done.returncode != 0:
            raise ConfigError(f"`claude mcp add` failed: {(done.stderr or done.stdout).strip()[:500]}")
        return f"Registered {name!r} with Claude Code (user scope)."
    path = client_path(client)
    assert path is not None
    secret = given.secret is not None and client != "vscode"
    if client == "codex":
        return append_codex(name, _codex_section(name, command, args, given.env), secret=secret)
    spec = JSON_CLIENTS[client]
    inputs = _vscode_inputs(given.env) if client == "vscode" else []
    return merge_json(path, spec.section, name, spec.entry(command, args, given.env), spec.note, inputs, secret=secret)


def append_codex(name: str, section: str, *, secret: bool = False) -> str:
    """Append `section` (the TOML of `[mcp_servers.NAME]`) to Codex's config.toml after a backup; say what was done."""
    path = _codex_path()
    text = path.read_text() if path.exists() else ""
    if f"[mcp_servers.{name}]" in text:
        raise ConfigError(f"{path} already has [mcp_servers.{name}]; remove it first, or pass --name.")
    backup = _backup(path)
    sep = "\n" if text and not text.endswith("\n") else ""
    _save(path, text + sep + section, secret=secret)
    return f"Added [mcp_servers.{name}] to {path}" + (f" (backup: {backup})" if backup else "") + "."


def merge_json(
    path: Path,
    section: str,
    name: str,
    entry: dict[str, Any],
    note: str = "",
    inputs: list[dict[str, Any]] | None = None,
    *,
    secret: bool = False,
) -> str:
    """Add `entry` as `section[name]` of the JSON(C) file at `path` (comments kept, a backup made)."""
    text = path.read_text() if path.exists() else ""
    try:
        document = jsonc.loads(text) if text.strip() else {}
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path} is not valid JSON ({exc}); fix it or add the entry by hand.") from None
    if not isinstance(document, dict) or not isinstance(document.get(section, {}), dict):
        raise ConfigError(f"{path} does not hold a JSON object with an object {section!r}; add the entry by hand.")
    if name in document.get(section, {}):
        raise ConfigError(f"{path} already has an entry {name!r}; remove it first, or pass --name.")
    text = jsonc.insert_member(text, section, (name, entry))
    known = {item.get("id") for item in document.get("inputs", []) if isinstance(item, dict)}
    for item in inputs or ():
        if item["id"] not in known:
            text = jsonc.insert_member(text, "inputs", item)
    backup = _backup(path)
    _save(path, text if text.endswith("\n") else text + "\n", secret=secret)
    return f"Added {name!r} to {path}" + (f" (backup: {backup})" if backup else "") + (f". {note}" if note else ".")


def key_note(client: str, given: Carried, *, written: bool = True) -> str:
    """What the user should know about the credential the registration carries (or does not)."""
    if given.secret is not None and not written and client != "vscode":
        if client == "claude-code":
            put = f"Run from a shell that has your {given.secret}, it puts the key in Claude Code's ~/.claude.json"
        else:
            put = f"With your {given.secret} in place of the placeholder, the key is then in {client_path(client)}"
        return (
            f"{put}: anyone who can read that file can use it. To keep keys out of client config files, log in "
            "once with `claude /login` and register with --no-key."
        )
    if given.secret is None:
        return (
            "No Claude key or token in this shell's environment, so none is registered: the server will use "
            "Claude's own login (run `claude /login`, or `claude setup-token` and export CLAUDE_CODE_OAUTH_TOKEN "
            "before `config`). Check with `claude-mcp doctor --client " + client + "`."
        )
    if client == "vscode":
        return f"{given.secret} is not written to the file: VS Code asks for it when it first starts the server."
    where = (
        "Claude Code's ~/.claude.json"
        if client == "claude-code"
        else f"{client_path(client)} (now readable by you only)"
    )
    return (
        f"Your {given.secret} is now in {where}: anyone who can read that file can use it. "
        "To keep keys out of client config files, log in once with `claude /login` and register with --no-key."
    )
