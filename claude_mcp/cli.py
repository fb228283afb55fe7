"""The `claude-mcp` command: `claude-mcp serve [--config PATH] [flags]`, `usage`, `doctor`, `config`, …"""

from __future__ import annotations

import argparse
import contextlib
import functools
import logging
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from ._version import __version__

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from mcp.server.lowlevel.server import Server

    from .bridge.walls import WalledLauncher
    from .config.policy import Policy

# Only what every command needs is imported here: `serve` and the others import their own modules
# when they run, so `--help` and `--version` answer at once. The choices are the modules' own
# (`web.app.TRANSPORTS` and `LOOPBACK`, `telemetry.logs.LOG_FORMATS`, `setup.clients.CLIENTS`; a test holds them
# equal).
TRANSPORTS = ("stdio", "http", "sse")
LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LOOPBACK = ("127.0.0.1", "localhost", "::1")
CLIENTS = ("claude-desktop", "claude-code", "cursor", "vscode", "windsurf", "zed", "codex", "gemini")

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
        "--state-url",
        help="postgresql://… to share state between replicas (default: SQLite, ~/.claude/claude-mcp/state.sqlite3 "
        "for one person, ~/.claude-mcp/state.sqlite3 with tenants or callers)",
    )
    serve_cmd.add_argument(
        "--credentials",
        choices=["server", "caller"],
        help="whose Claude credential runs use: the server's, or each HTTP caller's own (X-Claude-Credential)",
    )
    serve_cmd.add_argument("--log-level", default="INFO", type=str.upper, choices=LOG_LEVELS, help="(any case)")
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
    doctor_cmd.add_argument(
        "--client", choices=CLIENTS, help="check what this MCP client will start (its entry's env, root and login)"
    )
    doctor_cmd.add_argument("--name", default="claude", help="the server's name in that client (default: claude)")
    usage_cmd = commands.add_parser("usage", help="what every tenant or caller used: runs, tokens, USD")
    usage_cmd.add_argument("--config", type=Path, help="policy file (TOML) naming the store")
    usage_cmd.add_argument(
        "--state-url",
        help="postgresql://… (default: the config's state_url, else the SQLite store `serve` keeps: "
        "~/.claude/claude-mcp/state.sqlite3 for one person, ~/.claude-mcp/state.sqlite3 with tenants or callers)",
    )
    usage_cmd.add_argument("--since", default="30d", help="7d, 24h, 30m, or an ISO date or time (default: 30d)")
    usage_cmd.add_argument("--by", choices=["day", "model", "namespace"], default="day", help="sum by (default: day)")
    usage_cmd.add_argument("--format", choices=["table", "csv", "json"], default="table", dest="output_format")
    config_cmd = commands.add_parser("config", help="print (or --write) the registration for an MCP client")
    config_cmd.add_argument("client", choices=CLIENTS)
    config_cmd.add_argument("--write", action="store_true", help="merge it into the client's config (with a backup)")
    config_cmd.add_argument("--name", default="claude", help="the server's name in the client (default: claude)")
    config_cmd.add_argument("--config", type=Path, help="a policy file the registered server should use")
    config_cmd.add_argument(
        "--root",
        type=Path,
        help="the directory Claude may work in (default: this directory; with --config: the config's roots)",
    )
    config_cmd.add_argument(
        "--no-key",
        action="store_true",
        help="carry no key or token from this shell: the server uses Claude's own login (`claude /login`)",
    )
    config_cmd.add_argument(
        "--url",
        help="register a hosted server at this MCP endpoint (Streamable HTTP; https unless on this machine): "
        "the client signs in by OAuth, no key is written",
    )
    return parser


def load_policy(args: argparse.Namespace) -> Policy:
    from .config.policy import Policy

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


def _refuse(message: str, *, announce: bool = False) -> NoReturn:
    """One line on stderr (plain, or a JSON log line once logging is set up) and exit status 2."""
    if announce:
        from .telemetry import logs

        logs.announce(f"claude-mcp: {message}", level=logging.ERROR)
    else:
        print(f"claude-mcp: {message}", file=sys.stderr)
    sys.exit(2)


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    try:
        if args.command == "serve":
            _serve(args)
        elif args.command == "hash-token":
            _hash_token()
        elif args.command == "doctor":
            _doctor(args)
        elif args.command == "usage":
            _usage(args)
        elif args.command == "config":
            _config(args)
    except Exception as exc:
        from .errors import ConfigError  # (pydantic: not imported for --help)

        if not isinstance(exc, ConfigError):
            raise
        _refuse(str(exc), announce=args.command == "serve")


def _hash_token() -> None:
    from .config.tenants import token_hash
    from .errors import ConfigError

    token = sys.stdin.readline().strip()
    if not token:
        raise ConfigError(
            'no token on stdin: pipe the tenant\'s token in, e.g. `printf %s "$TOKEN" | claude-mcp hash-token`'
        )
    print(token_hash(token))


def _doctor(args: argparse.Namespace) -> None:
    from .setup.client_check import diagnose_client
    from .setup.doctor import diagnose

    findings = diagnose_client(args.client, args.name) if args.client else diagnose(args.config)
    print("\n".join(map(str, findings)))
    sys.exit(0 if all(f.ok for f in findings) else 1)


def _config(args: argparse.Namespace) -> None:
    from .setup.clients import carried, chosen_root, key_note, registration, write

    if args.url is not None:
        _config_remote(args)
        return
    serve_args = ["serve"]
    if args.config:
        serve_args += ["--config", str(args.config.resolve())]
    if args.root is not None or not args.config:
        serve_args += ["--root", str(chosen_root(args.root, Path.cwd()))]
    given = carried(serve_args, os.environ, with_key=not args.no_key)
    if args.write:
        print(write(args.client, args.name, given))
        print(key_note(args.client, given))
    else:
        print(registration(args.client, args.name, given))
        print("# " + key_note(args.client, given, written=False))


def _config_remote(args: argparse.Namespace) -> None:
    from .errors import ConfigError
    from .setup import remote

    if args.root is not None or args.config or args.no_key:
        raise ConfigError("--url registers a hosted server: --root, --config and --no-key are for a local one.")
    url = remote.checked_url(args.url)
    print(remote.write(args.client, args.name, url) if args.write else remote.registration(args.client, args.name, url))


def _serve(args: argparse.Namespace) -> None:
    import gc

    # Start-up makes thousands of objects that live as long as the server (modules, models, the
    # policy): no collection passes over them while it does (~8% of a start), and none after (below).
    gc.disable()
    from .telemetry import logs

    logs.configure(args.log_level, args.log_format)

    import anyio

    from .errors import ConfigError

    policy = load_policy(args)
    if policy.credentials == "caller" and args.transport == "stdio":
        raise ConfigError(
            'credentials = "caller" needs an HTTP transport (--transport http or sse): callers send their '
            "credential in the X-Claude-Credential header. Over stdio the server uses your own login."
        )
    _check_roots(policy, explicit=bool(args.roots))
    hidden = (args.config.resolve(),) if args.config else ()
    if args.transport == "stdio":  # the local user, with their own Claude login; the bridge loads as it answers
        _refuse_root_as_workspace(policy, explicit=bool(args.roots))
        if policy.state_url is not None:
            from .state.open import check_reachable

            anyio.run(check_reachable, policy.state_url)
        logger.info(
            "claude-mcp %s serving on stdio (roots: %s; tenants: local)", __version__, ", ".join(map(str, policy.roots))
        )
        from .web.serve import serve_stdio_early

        _run_server(functools.partial(serve_stdio_early, functools.partial(_own_server, policy, args, hidden)))
        return
    from .bridge.claude import ClaudeBridge
    from .bridge.tenancy import Tenancy
    from .web.serve import serve

    if policy.tenants or policy.credentials == "caller":
        tenancy = Tenancy.from_policy(policy, policy.tenants, hidden=hidden)
    else:
        launcher = _own_launcher(policy, args, hidden)
        tenancy = Tenancy.single(
            ClaudeBridge(policy.model_copy(update={"isolation": launcher.walls.isolation}), launcher=launcher)
        )
    from .web.app import McpSessions, check_binding  # (the web layer's modules: not imported for a stdio start)

    check_binding(args.host, tenancy)
    _check_port(args.host, args.port)
    sessions = McpSessions(policy.max_mcp_sessions, policy.mcp_session_idle_s)
    metrics_token = _metrics_token(policy)
    if policy.state_url is not None:
        from .state.open import check_reachable

        anyio.run(check_reachable, policy.state_url)
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
        sessions=sessions,
    )
    _run_server(run)


def _run_server(run: Callable[[], Awaitable[None]]) -> None:
    """Run the server until it stops; a refusal raised inside it is one line and exit status 2."""
    import gc

    import anyio

    from .telemetry import tracing

    # What start-up made (modules, models, the policy) lives as long as the server: keep it out of
    # the garbage collector's full passes, which otherwise stall the event loop for tens of ms.
    gc.freeze()
    gc.enable()
    stop_tracing = tracing.configure()
    try:
        with contextlib.suppress(KeyboardInterrupt):
            anyio.run(run)
    except BaseExceptionGroup as group:  # a refusal raised inside the server's task groups
        refusal = _config_error_in(group)
        if refusal is not None:
            _refuse(str(refusal), announce=True)
        _, rest = group.split(SystemExit)
        if rest is None:  # uvicorn exits from inside when it cannot listen, having logged why in one line
            sys.exit(1)
        raise
    finally:
        if stop_tracing is not None:
            stop_tracing()


def _own_server(policy: Policy, args: argparse.Namespace, hidden: tuple[Path, ...]) -> Server[Any]:
    """The full MCP server of a stdio start: imported and built in a worker thread while the
    handshake is answered (`mcp_surface.early`). Like the rest of start-up, what it makes lives as
    long as the server: no collection passes over it while it is made, and none after."""
    import gc

    gc.disable()
    try:
        from .bridge.claude import ClaudeBridge
        from .bridge.tenancy import Tenancy
        from .mcp_surface.server import build_server

        launcher = _own_launcher(policy, args, hidden)
        bridge = ClaudeBridge(policy.model_copy(update={"isolation": launcher.walls.isolation}), launcher=launcher)
        return build_server(Tenancy.single(bridge))
    finally:
        gc.freeze()
        gc.enable()


def _config_error_in(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    from .errors import ConfigError

    found: BaseException | None = group.subgroup(lambda exc: isinstance(exc, ConfigError))
    while isinstance(found, BaseExceptionGroup):
        found = found.exceptions[0]
    return found


def _check_roots(policy: Policy, *, explicit: bool) -> None:
    """Every root an existing directory (a typo would only show at the first call)."""
    from .errors import ConfigError

    for root in policy.roots:
        if not root.is_dir():
            where = "--root" if explicit else "roots in the config"
            raise ConfigError(f"root {root} does not exist or is not a directory: create it, or fix {where}.")


def _refuse_root_as_workspace(policy: Policy, *, explicit: bool) -> None:
    """A server started in `/` with no root named would let Claude work anywhere on the disk (MCP
    clients often start servers there): refused unless `/` was asked for by name."""
    from .errors import ConfigError

    if explicit or "roots" in policy.model_fields_set or any(root != Path(root.anchor) for root in policy.roots):
        return
    raise ConfigError(
        f"started in {policy.roots[0]} with no root named, so Claude could work anywhere on the disk: pass --root "
        "DIR (`claude-mcp config CLIENT --write`, run in your project, registers one), or set roots in the config."
    )


def _check_port(host: str, port: int) -> None:
    """Refuse at once, in one line, to serve on an address that is taken (uvicorn would only exit
    from inside the server's task group, after it said it was serving)."""
    import socket

    from .errors import ConfigError

    if port == 0:
        return
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, address = infos[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    except OSError as exc:
        raise ConfigError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc} (another server there? pass --port N, "
            "or --port 0 for any free port)."
        ) from None


def _own_launcher(policy: Policy, args: argparse.Namespace, hidden: tuple[Path, ...]) -> WalledLauncher:
    """The launcher of a server for one person (stdio, or HTTP without tenants): no sandbox by
    default on loopback (their Claude works on their projects, with their environment's usual
    variables); a sandbox where it listens beyond loopback, or where they ask for one."""
    from .bridge.walls import choose_isolation, walls_for
    from .state.sticky import default_state_dir

    beyond = args.transport != "stdio" and args.host not in LOOPBACK
    isolation = choose_isolation(policy, several_users=beyond)
    state = policy.state_dir or default_state_dir(policy.cli_env)
    walls = walls_for(policy, state, isolation=isolation, person=not beyond, hidden=hidden)
    config = Path(policy.cli_env.get("CLAUDE_CONFIG_DIR") or Path.home() / ".claude")
    return walls.launcher((*policy.roots, config) if isolation == "sandbox" else ())


def _usage(args: argparse.Namespace) -> None:
    """`claude-mcp usage`: print the store's usage records, summed (and, on stderr, which store)."""
    import anyio

    from .config.policy import Policy
    from .setup import usage

    now = time.time()
    policy = Policy.load(args.config, state_url=args.state_url)
    since = usage.since_of(args.since, now)
    rows = anyio.run(functools.partial(usage.usage_rows, policy, since=since, until=now + 1, by=args.by))
    print(usage.render(rows, args.by, args.output_format))
    print(f"(read from {usage.store_name(policy)})", file=sys.stderr)


def _metrics_token(policy: Policy) -> str | None:
    """The operator's token for /metrics, from the variable `metrics_token_env` names (never logged)."""
    from .errors import ConfigError

    if policy.metrics_token_env is None:
        return None
    token = os.environ.get(policy.metrics_token_env, "")
    if not token:
        raise ConfigError(
            f"metrics_token_env names {policy.metrics_token_env}, which is not set: export it (a long random "
            "secret), or remove metrics_token_env."
        )
    return token
