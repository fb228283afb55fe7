"""The `claude-mcp` command: `claude-mcp serve [--config PATH] [flags]`, `usage`, `doctor`, `config`, …"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gc
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import anyio

from ._version import __version__
from .bridge.claude import ClaudeBridge
from .bridge.tenancy import Tenancy
from .bridge.walls import WalledLauncher, choose_isolation, walls_for
from .config.policy import Policy
from .config.tenants import token_hash
from .errors import ConfigError
from .setup import usage
from .setup.clients import CLIENTS, registration, write
from .setup.doctor import diagnose
from .state.sticky import default_state_dir
from .telemetry import logs, tracing
from .telemetry.logs import LOG_FORMATS
from .web.app import LOOPBACK, TRANSPORTS, McpSessions, check_binding
from .web.serve import serve

logger = logging.getLogger("claude_mcp")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="claude-mcp", description="Claude Code as an MCP server.")
    parser.add_argument("--version", action="version", version=f"claude-mcp {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve_cmd = commands.add_parser("serve", help="serve MCP (stdio by default)")
    serve_cmd.add_argument("--config", type=Path, help="policy file (TOML)")
    serve_cmd.add_argument("--transport", choices=TRANSPORTS, default="stdio", help="stdio, http (/mcp) or sse")
    serve_cmd.add_argument("--host", default="127.0.0.1", help="HTTP address (default: loopback only)")
    serve_cmd.add_argument("--port", type=int, default=8765, help="HTTP port (0: any free port)")
    serve_cmd.add_argument(
        "--root", action="append", dest="roots", metavar="DIR", help="allowed working-directory root (repeatable)"
    )
    serve_cmd.add_argument("--model", help="default model for calls that name none")
    serve_cmd.add_argument(
        "--permission-mode",
        action="append",
        dest="permission_modes",
        metavar="MODE",
        help="permission mode calls may use (repeatable; replaces the policy's list)",
    )
    serve_cmd.add_argument("--max-turns", type=int)
    serve_cmd.add_argument("--max-budget-usd", type=float)
    serve_cmd.add_argument("--timeout", type=float, dest="default_timeout_s", help="default call timeout (s)")
    serve_cmd.add_argument("--max-timeout", type=float, dest="max_timeout_s", help="largest call timeout (s)")
    serve_cmd.add_argument("--api-retries", type=int, help="API retries the CLI makes (default 2)")
    serve_cmd.add_argument("--max-depth", type=int, help="how deep claude-mcp may delegate to itself")
    serve_cmd.add_argument("--cli-path", help="the claude executable (default: the bundled one)")
    serve_cmd.add_argument(
        "--state-url", help="postgresql://… to share state between replicas (default: SQLite in the state dir)"
    )
    serve_cmd.add_argument(
        "--credentials",
        choices=["server", "caller"],
        help="whose Claude credential runs use: the server's, or each HTTP caller's own (X-Claude-Credential)",
    )
    serve_cmd.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    serve_cmd.add_argument(
        "--log-format", default="text", choices=LOG_FORMATS, help="text (default), or one JSON object per line"
    )
    serve_cmd.add_argument(
        "--drain-grace",
        type=float,
        dest="drain_grace_s",
        metavar="SECONDS",
        help="over HTTP, how long a SIGTERM may take: running calls finish, then are stopped (default 10)",
    )
    commands.add_parser(
        "hash-token", help="read a tenant's token on stdin, print the token_sha256 to put in the config"
    )
    doctor_cmd = commands.add_parser("doctor", help="check the CLI, the credential, the config and the roots")
    doctor_cmd.add_argument("--config", type=Path, help="policy file (TOML) to check")
    usage_cmd = commands.add_parser("usage", help="what every tenant or caller used: runs, tokens, USD")
    usage_cmd.add_argument("--config", type=Path, help="policy file (TOML) naming the store")
    usage_cmd.add_argument("--state-url", help="postgresql://… (default: the config's store, or SQLite)")
    usage_cmd.add_argument("--since", default="30d", help="7d, 24h, 30m, or an ISO date or time (default: 30d)")
    usage_cmd.add_argument("--by", choices=["day", "model", "namespace"], default="day", help="sum by (default: day)")
    usage_cmd.add_argument("--format", choices=["table", "csv", "json"], default="table", dest="output_format")
    config_cmd = commands.add_parser("config", help="print (or --write) the registration for an MCP client")
    config_cmd.add_argument("client", choices=CLIENTS)
    config_cmd.add_argument("--write", action="store_true", help="merge it into the client's config (with a backup)")
    config_cmd.add_argument("--name", default="claude", help="the server's name in the client (default: claude)")
    config_cmd.add_argument("--config", type=Path, help="a policy file the registered server should use")
    return parser


def load_policy(args: argparse.Namespace) -> Policy:
    overrides: dict[str, Any] = {
        key: getattr(args, key)
        for key in (
            "roots",
            "permission_modes",
            "max_turns",
            "max_budget_usd",
            "default_timeout_s",
            "max_timeout_s",
            "api_retries",
            "max_depth",
            "cli_path",
            "state_url",
            "credentials",
            "drain_grace_s",
        )
    }
    policy = Policy.load(args.config, **overrides)
    if args.model:
        policy = policy.model_copy(update={"defaults": policy.defaults.model_copy(update={"model": args.model})})
    return policy


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    if args.command == "hash-token":
        print(token_hash(sys.stdin.readline().strip()))
        return
    if args.command == "doctor":
        findings = diagnose(args.config)
        print("\n".join(map(str, findings)))
        sys.exit(0 if all(f.ok for f in findings) else 1)
    if args.command == "usage":
        _usage(args)
        return
    if args.command == "config":
        serve_args = ["serve", *(["--config", str(args.config.resolve())] if args.config else [])]
        try:
            print(
                write(args.client, args.name, serve_args)
                if args.write
                else registration(args.client, args.name, serve_args)
            )
        except ConfigError as exc:
            print(f"claude-mcp: {exc}", file=sys.stderr)
            sys.exit(2)
        return
    logs.configure(args.log_level, args.log_format)
    try:
        policy = load_policy(args)
    except ConfigError as exc:
        logs.announce(f"claude-mcp: {exc}", level=logging.ERROR)
        sys.exit(2)
    try:
        if policy.credentials == "caller" and args.transport == "stdio":
            raise ConfigError(
                'credentials = "caller" needs an HTTP transport (--transport http or sse): callers send their '
                "credential in the X-Claude-Credential header. Over stdio the server uses your own login."
            )
        hidden = (args.config.resolve(),) if args.config else ()
        if args.transport != "stdio" and (policy.tenants or policy.credentials == "caller"):
            tenancy = Tenancy.from_policy(policy, policy.tenants, hidden=hidden)
        else:  # stdio is the local user, with their own Claude login
            launcher = _own_launcher(policy, args, hidden)
            tenancy = Tenancy.single(
                ClaudeBridge(policy.model_copy(update={"isolation": launcher.walls.isolation}), launcher=launcher)
            )
        if args.transport != "stdio":
            check_binding(args.host, tenancy)
        metrics_token = _metrics_token(policy) if args.transport != "stdio" else None
    except ConfigError as exc:
        logs.announce(f"claude-mcp: {exc}", level=logging.ERROR)
        sys.exit(2)
    who = "callers' own credentials" if tenancy.takes_caller_credentials else "tenants: " + ", ".join(tenancy.bridges)
    logger.info(
        "claude-mcp %s serving on %s (roots: %s; %s)",
        __version__,
        args.transport,
        ", ".join(map(str, policy.roots)),
        who,
    )
    run = functools.partial(
        serve,
        tenancy,
        args.transport,
        host=args.host,
        port=args.port,
        allowed_hosts=policy.allowed_hosts,
        api_heartbeat_s=policy.heartbeat_s if policy.api else None,
        drain_grace_s=policy.drain_grace_s,
        metrics_token=metrics_token,
        max_connections=policy.max_connections,
        sessions=McpSessions(policy.max_mcp_sessions, policy.mcp_session_idle_s),
    )
    # What start-up made (modules, models, the policy) lives as long as the server: keep it out of
    # the garbage collector's full passes, which otherwise stall the event loop for tens of ms.
    gc.freeze()
    stop_tracing = tracing.configure()
    try:
        with contextlib.suppress(KeyboardInterrupt):
            anyio.run(run)
    finally:
        if stop_tracing is not None:
            stop_tracing()


def _own_launcher(policy: Policy, args: argparse.Namespace, hidden: tuple[Path, ...]) -> WalledLauncher:
    """The launcher of a server for one person (stdio, or HTTP without tenants): no sandbox by
    default on loopback (their Claude works on their projects, with their environment's usual
    variables); a sandbox where it listens beyond loopback, or where they ask for one."""
    beyond = args.transport != "stdio" and args.host not in LOOPBACK
    isolation = choose_isolation(policy, several_users=beyond)
    state = policy.state_dir or default_state_dir(policy.cli_env)
    walls = walls_for(policy, state, isolation=isolation, person=not beyond, hidden=hidden)
    config = Path(policy.cli_env.get("CLAUDE_CONFIG_DIR") or Path.home() / ".claude")
    return walls.launcher((*policy.roots, config) if isolation == "sandbox" else ())


def _usage(args: argparse.Namespace) -> None:
    """`claude-mcp usage`: print the store's usage records, summed."""
    now = time.time()
    try:
        policy = Policy.load(args.config, state_url=args.state_url)
        since = usage.since_of(args.since, now)
        rows = anyio.run(functools.partial(usage.usage_rows, policy, since=since, until=now + 1, by=args.by))
    except ConfigError as exc:
        print(f"claude-mcp: {exc}", file=sys.stderr)
        sys.exit(2)
    print(usage.render(rows, args.by, args.output_format))


def _metrics_token(policy: Policy) -> str | None:
    """The operator's token for /metrics, from the variable `metrics_token_env` names (never logged)."""
    if policy.metrics_token_env is None:
        return None
    token = os.environ.get(policy.metrics_token_env, "")
    if not token:
        raise ConfigError(
            f"metrics_token_env names {policy.metrics_token_env}, which is not set: export it (a long random "
            "secret), or remove metrics_token_env."
        )
    return token
