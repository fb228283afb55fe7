"""`claude-mcp doctor`: checks what a working set-up needs, and says how to fix what is not.

It finds the CLI and checks it starts, names the credential the CLI would use (never the
secret), validates the config and every path in it, and checks the roots. Exit status 1 if
anything needs fixing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import anyio

from ..bridge.walls import choose_isolation, sandbox_problem
from ..config.policy import Policy
from ..errors import ConfigError
from ..oauth.issuer import IssuerUnavailable
from ..oauth.jwt_tokens import JwtVerifier
from ..state.sticky import default_state_dir


@dataclass(frozen=True)
class Finding:
    ok: bool
    what: str
    fix: str | None = None

    def __str__(self) -> str:
        mark = "ok " if self.ok else "FIX"
        return f"[{mark}] {self.what}" + (f"\n      → {self.fix}" if self.fix else "")


def bundled_cli() -> Path | None:
    import claude_agent_sdk

    path = Path(claude_agent_sdk.__file__).parent / "_bundled" / "claude"
    return path if path.is_file() else None


def find_cli(policy: Policy) -> tuple[str | None, str]:
    """The CLI the server will run, and where that choice came from."""
    if policy.cli_path:
        return policy.cli_path, "configured (cli_path or CLAUDE_MCP_CLI)"
    if (bundled := bundled_cli()) is not None:
        return str(bundled), "bundled with claude-agent-sdk"
    return shutil.which("claude"), "found on PATH"


def _run(argv: list[str], env: Mapping[str, str]) -> subprocess.CompletedProcess[str] | None:
    try:
        return subprocess.run(
            argv, capture_output=True, text=True, timeout=60, env=dict(env), stdin=subprocess.DEVNULL, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None


def check_cli(policy: Policy, env: Mapping[str, str]) -> tuple[list[Finding], str | None]:
    cli, source = find_cli(policy)
    if cli is None or not Path(cli).exists():
        return [
            Finding(
                False,
                f"Claude Code CLI not found ({source}: {cli or 'nothing'})",
                "Reinstall claude-agent-sdk (its wheel bundles the CLI), or set CLAUDE_MCP_CLI / cli_path "
                "to a `claude` executable.",
            )
        ], None
    done = _run([cli, "--version"], env)
    if done is None or done.returncode != 0:
        detail = (done.stderr or done.stdout).strip()[:200] if done else "it did not run"
        return [Finding(False, f"the CLI at {cli} does not start: {detail}", "Check the file is executable.")], None
    return [Finding(True, f"CLI {done.stdout.strip()} at {cli} ({source})")], cli


_ENV_CREDENTIALS = (
    ("ANTHROPIC_API_KEY", "an API key (ANTHROPIC_API_KEY)"),
    ("CLAUDE_CODE_OAUTH_TOKEN", "a subscription OAuth token (CLAUDE_CODE_OAUTH_TOKEN)"),
    ("ANTHROPIC_AUTH_TOKEN", "a bearer token (ANTHROPIC_AUTH_TOKEN)"),
    ("CLAUDE_CODE_USE_BEDROCK", "Amazon Bedrock (CLAUDE_CODE_USE_BEDROCK)"),
    ("CLAUDE_CODE_USE_VERTEX", "Google Vertex AI (CLAUDE_CODE_USE_VERTEX)"),
)


def check_credential(cli: str, env: Mapping[str, str]) -> Finding:
    for variable, description in _ENV_CREDENTIALS:
        if env.get(variable):
            return Finding(True, f"credential: {description}")
    done = _run([cli, "auth", "status"], env)
    try:
        status = json.loads(done.stdout) if done is not None else {}
    except json.JSONDecodeError:
        status = {}
    if status.get("loggedIn"):
        return Finding(True, f"credential: the CLI's own login ({status.get('authMethod', 'unknown method')})")
    return Finding(
        False,
        "Claude is not logged in, and no API key or token is set",
        "Run `claude /login` as the user the server runs as, or set ANTHROPIC_API_KEY (or "
        "CLAUDE_CODE_OAUTH_TOKEN, from `claude setup-token`) in the environment or in the config's [cli_env].",
    )


def check_paths(policy: Policy) -> list[Finding]:
    findings = []
    for root in policy.roots:
        if not root.is_dir():
            findings.append(Finding(False, f"root {root} does not exist", "Create it, or fix `roots` / --root."))
        elif not os.access(root, os.R_OK | os.X_OK):
            findings.append(Finding(False, f"root {root} is not readable", "Fix its permissions."))
        else:
            findings.append(Finding(True, f"root {root}"))
    state = policy.state_dir or default_state_dir(policy.cli_env)
    existing = next((p for p in (state, *state.parents) if p.exists()), None)
    if existing is None or not os.access(existing, os.W_OK):
        findings.append(Finding(False, f"session state {state} is not writable", "Set state_dir to a writable place."))
    for name, server in policy.mcp_servers.items():
        command = getattr(server, "command", None)
        if command is not None and shutil.which(command) is None:
            findings.append(Finding(False, f"mcp_servers.{name}: command {command!r} not found", "Fix the command."))
    for name, tenant in policy.tenants.items():
        try:
            tenant.digest(name, os.environ)
            tenant.credentials(name, os.environ)
            token = "token" if tenant.has_token else "no token (reached through [oauth])"
            credential = "the server's credential" if tenant.credential == "server" else "its credential present"
            findings.append(Finding(True, f"tenant {name}: {token}, {credential}"))
        except ConfigError as exc:
            findings.append(Finding(False, str(exc), "Set the variable in the server's environment."))
    return findings


def check_isolation(policy: Policy) -> Finding:
    """Whether the walls this configuration asks for can be built here (a server for several users
    never runs unsandboxed by accident)."""
    several = bool(policy.tenants) or policy.credentials == "caller"
    try:
        isolation = choose_isolation(policy, several_users=several)
    except ConfigError as exc:
        return Finding(False, str(exc), "Remove `isolation`, or acknowledge it as the message says.")
    if isolation == "none":
        return Finding(
            True,
            "isolation: none (one person's server): each CLI gets an environment from an allowlist; "
            "a server for several users (or beyond loopback) runs each user's Claude in a bubblewrap sandbox",
        )
    problem = sandbox_problem(policy.bwrap_path)
    if problem is not None:
        return Finding(False, f"isolation: sandbox, but {problem}", "The server refuses to start until it can.")
    return Finding(True, "isolation: sandbox (bubblewrap works here: user and PID namespaces allowed)")


def check_oauth(policy: Policy) -> list[Finding]:
    """Whether the identity provider `[oauth]` names answers with its signing keys (external JWTs only)."""
    oauth = policy.oauth
    if oauth is None or not oauth.accepts_oauth or oauth.authorization_server != "external":
        return []
    if oauth.introspection_endpoint is not None:
        return [Finding(True, f"[oauth] issuer {oauth.issuer}: tokens introspected at {oauth.introspection_endpoint}")]
    try:
        keys = anyio.run(JwtVerifier(oauth, frozenset(policy.tenants)).fetch_keys)
    except IssuerUnavailable as exc:
        return [
            Finding(
                False,
                f"[oauth] issuer {oauth.issuer}: {exc}",
                "Check `issuer` (exactly as in the tokens' `iss`) and that this machine reaches it, or set `jwks_uri`.",
            )
        ]
    found = f"[oauth] issuer {oauth.issuer}: {len(keys)} signing keys"
    return [Finding(True, found) if keys else Finding(False, found, "Its key set is empty: check `jwks_uri`.")]


def diagnose(config: Path | None) -> list[Finding]:
    findings = []
    try:
        policy = Policy.load(config)
        findings.append(Finding(True, f"config {config}" if config else "no config file (defaults)"))
    except ConfigError as exc:
        findings.append(Finding(False, str(exc), "Fix the config file; README.md's Settings reference lists them all."))
        policy = Policy()
    env = {**os.environ, **policy.cli_env}
    cli_findings, cli = check_cli(policy, env)
    findings += cli_findings
    if cli is not None:
        findings.append(check_credential(cli, env))
    from .usage import store_name  # (the store `serve` and `usage` would use with this config)

    store = Finding(True, f"store: {store_name(policy)}")
    return [*findings, *check_paths(policy), store, check_isolation(policy), *check_oauth(policy)]
