"""`claude-mcp config CLIENT --url URL`: register a hosted claude-mcp over Streamable HTTP.

Each client in the remote form its own documentation shows. No key is ever written: the client
finds the sign-in from the server's 401 (OAuth, or the built-in page where the person pastes
their own key). claude.ai, Claude Desktop and ChatGPT keep remote servers in the account, not in
a file, so for them `config` prints the steps and `--write` is refused.
"""

from __future__ import annotations

import ipaddress
import json
import shlex
import shutil
import subprocess
from typing import Any
from urllib.parse import urlsplit

from ..errors import ConfigError
from .clients import append_codex, client_path, merge_json

AUTHENTICATE = "In Claude Code: /mcp → {name} → Authenticate; a browser tab opens at the server's sign-in page."
CONNECTOR_STEPS = (
    "Claude Desktop and claude.ai (the same account's connectors; ChatGPT alike, in developer mode): "
    "Settings → Connectors → Add custom connector → a name and {url} → Connect: the server's sign-in page "
    "opens in the browser; after Allow, the connector's tools can be enabled in a chat."
)
DESKTOP_WRITE = (
    "Claude Desktop adds remote servers in the app, not in claude_desktop_config.json: run without --write "
    "for the steps (Settings → Connectors → Add custom connector)."
)

ENTRIES: dict[str, tuple[str, dict[str, Any]]] = {
    "vscode": ("servers", {"type": "http"}),
    "cursor": ("mcpServers", {}),
    "windsurf": ("mcpServers", {}),
    "gemini": ("mcpServers", {}),
    "zed": ("context_servers", {"source": "custom"}),
}
"""Each JSON client's section and the fixed fields of a remote entry (the URL's key is `URL_KEYS`)."""
URL_KEYS = {"vscode": "url", "cursor": "url", "windsurf": "serverUrl", "gemini": "httpUrl", "zed": "url"}


def checked_url(url: str) -> str:
    """The server's MCP endpoint: https, or http only to this machine (a token must not cross a network in clear)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme not in ("http", "https") or not host:
        raise ConfigError(f"--url {url!r} is not an http(s) URL: give the server's endpoint, e.g. https://host/mcp.")
    if parts.username is not None or parts.password is not None:
        raise ConfigError("--url carries a user name or password: leave it out, the client signs in by OAuth.")
    if parts.scheme == "http" and not _loopback(host):
        raise ConfigError(
            f"--url {url!r} is plain http to another machine: the sign-in and its tokens would cross the network "
            "unencrypted; use https (http is allowed for localhost only)."
        )
    return url


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _entry(client: str, url: str) -> dict[str, Any]:
    return {**ENTRIES[client][1], URL_KEYS[client]: url}


def _codex_section(name: str, url: str) -> str:
    return f"[mcp_servers.{name}]\nurl = {json.dumps(url)}\ntool_timeout_sec = 600\n"


def _claude_add(name: str, url: str) -> list[str]:
    return ["claude", "mcp", "add", "--scope", "user", "--transport", "http", name, url]


def registration(client: str, name: str, url: str) -> str:
    """What to add to the client, as text to paste or run, or the steps to take in its app."""
    if client == "claude-code":
        return shlex.join(_claude_add(name, url)) + "\n# " + AUTHENTICATE.format(name=name)
    if client == "claude-desktop":
        return CONNECTOR_STEPS.format(url=url)
    if client == "codex":
        return f"# {client_path(client)}\n{_codex_section(name, url)}# Then sign in: `codex mcp login {name}`."
    section = ENTRIES[client][0]
    snippet = {section: {name: _entry(client, url)}}
    return f"# {client_path(client)}\n{json.dumps(snippet, indent=2)}\n# The client opens the server's sign-in page."


def write(client: str, name: str, url: str) -> str:
    """Add the registration to the client's config; say what was done and what the person does next."""
    if client == "claude-desktop":
        raise ConfigError(DESKTOP_WRITE)
    if client == "claude-code":
        claude = shutil.which("claude")
        if claude is None:
            raise ConfigError("`claude` is not on PATH; run the printed `claude mcp add …` command yourself.")
        argv = [claude, *_claude_add(name, url)[1:]]
        done = subprocess.run(argv, capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL)
        if done.returncode != 0:
            raise ConfigError(f"`claude mcp add` failed: {(done.stderr or done.stdout).strip()[:500]}")
        return f"Registered {name!r} ({url}) with Claude Code (user scope).\n" + AUTHENTICATE.format(name=name)
    if client == "codex":
        return append_codex(name, _codex_section(name, url)) + f" Sign in with `codex mcp login {name}`."
    path = client_path(client)
    assert path is not None
    return merge_json(path, ENTRIES[client][0], name, _entry(client, url), "The client opens the sign-in page.")
