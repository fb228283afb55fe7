"""`claude-mcp doctor --client CLIENT`: what that MCP client will actually start.

A client starts the server from its registered entry with a bare environment (the official MCP
SDKs pass HOME, PATH, SHELL, TERM, USER and LOGNAME, plus the entry's `env`), so the shell's
`doctor` can be all green while the client's server has no key or no root. This reads the
entry the client reads and checks its command, its root and the login it will have, in that
environment.
"""

from __future__ import annotations

import json
import os
import shutil
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..config.policy import Policy
from ..errors import ConfigError
from . import jsonc
from .clients import CREDENTIALS, JSON_CLIENTS, client_path
from .doctor import Finding, check_cli, check_credential

CLIENT_ENV = ("HOME", "LOGNAME", "PATH", "SHELL", "TERM", "USER")
"""What the official MCP SDKs' stdio clients pass a server of the environment they run in."""


def _entry(client: str, name: str) -> tuple[Path, dict[str, Any] | None]:
    """Where the client keeps its servers, and the entry `name` (None: not there)."""
    if client == "claude-code":
        path = Path(os.environ.get("HOME") or Path.home()) / ".claude.json"
        section = "mcpServers"
    else:
        found = client_path(client)
        assert found is not None
        path, section = found, JSON_CLIENTS[client].section if client in JSON_CLIENTS else "mcp_servers"
    if not path.is_file():
        return path, None
    try:
        text = path.read_text()
        document = tomllib.loads(text) if client == "codex" else jsonc.loads(text or "{}")
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path} cannot be read ({exc})") from None
    entry = document.get(section, {}).get(name) if isinstance(document, dict) else None
    return path, entry if isinstance(entry, dict) else None


def _option(args: list[str], flag: str) -> list[str]:
    return [args[i + 1] for i, arg in enumerate(args[:-1]) if arg == flag]


def client_env(entry: Mapping[str, Any], environ: Mapping[str, str]) -> dict[str, str]:
    """The environment the client gives the server: its own few variables, then the entry's `env`
    (a VS Code `${input:…}` value stands for a key VS Code asks for, so it counts as set)."""
    env = {k: environ[k] for k in CLIENT_ENV if k in environ}
    for key, value in (entry.get("env") or {}).items():
        env[str(key)] = "(asked by the client)" if str(value).startswith("${input:") else str(value)
    return env


def diagnose_client(client: str, name: str = "claude") -> list[Finding]:
    """What the client's entry `name` will start: its command, root, and credential in its environment."""
    try:
        path, entry = _entry(client, name)
    except ConfigError as exc:
        return [Finding(False, str(exc), "Fix the file, or register again.")]
    if entry is None:
        return [Finding(False, f"{client}: no entry {name!r} in {path}", f"Run `claude-mcp config {client} --write`.")]
    command, args = str(entry.get("command", "")), [str(a) for a in entry.get("args") or []]
    findings = [Finding(True, f"{client}: entry {name!r} in {path}")]
    url = next((entry[k] for k in ("url", "serverUrl", "httpUrl") if k in entry), None)
    if not command and url is not None:  # `config CLIENT --url`: nothing runs here, the client signs in there
        return [*findings, Finding(True, f"a hosted server at {url}: the client signs in there (nothing starts here)")]
    if not (Path(command).is_absolute() and os.access(command, os.X_OK)) and shutil.which(command) is None:
        findings.append(Finding(False, f"command {command!r} not found", f"Run `claude-mcp config {client} --write`."))
    env = client_env(entry, os.environ)
    configs, roots = _option(args, "--config"), _option(args, "--root")
    try:
        policy = Policy.load(Path(configs[-1]) if configs else None, roots=roots or None, cli_path=None)
    except ConfigError as exc:
        return [*findings, Finding(False, str(exc), "Fix the config file the entry names.")]
    if not roots and "roots" not in policy.model_fields_set:
        findings.append(
            Finding(
                False,
                "no root: the server works where the client starts it (often /), which it refuses",
                f"Run `claude-mcp config {client} --write --root DIR` (or from your project's directory).",
            )
        )
    for root in policy.roots if roots or "roots" in policy.model_fields_set else ():
        ok = root.is_dir() and root != Path(root.anchor)
        findings.append(Finding(ok, f"root {root}", None if ok else "Register again with --root DIR (a project)."))
    cli_findings, cli = check_cli(policy, {**env, **policy.cli_env})
    findings += cli_findings
    if cli is not None:
        given = next((k for k in CREDENTIALS if k in env), None)
        credential = check_credential(cli, {**env, **policy.cli_env})
        if not credential.ok:
            credential = Finding(
                False,
                f"the server {client} starts has no credential: its environment is {', '.join(sorted(env))}",
                f"Export ANTHROPIC_API_KEY (or CLAUDE_CODE_OAUTH_TOKEN) and register again, or log in once with "
                f"`claude /login` as {env.get('USER', 'this user')} (HOME={env.get('HOME', '?')}).",
            )
        elif given is not None:
            credential = Finding(True, f"credential: {given}, from the entry's env ({json.dumps(str(path))})")
        findings.append(credential)
    return findings
