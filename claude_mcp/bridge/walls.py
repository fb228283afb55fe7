"""Walls between users: what one namespace's CLI processes may see and carry.

Every CLI process is started through `wall_exec` (its `cli_path`), which keeps only the
environment a `Wall` names — in any mode, so no tenant's key, token, database URL or the
namespace key ever reaches a CLI unless it is that CLI's own — and, with `isolation =
"sandbox"`, starts the CLI inside bubblewrap:

- its own user, PID, IPC, UTS and cgroup namespaces: it sees only its own processes in `/proc`,
  holds no capability, and dies with the server (`--die-with-parent`, a new session);
- a read-only system (`/usr`, `/etc`, the Python that runs the server and its packages, the
  CLI), a private `/tmp`, and, writable, only its namespace's own directories: its Claude
  config dir, its home, its workspace(s). The state dir, the server's config, other
  namespaces' directories and the server's secrets are not in its view at all;
- the network namespace is the host's: the model API (and whatever else the host reaches) stays
  reachable. Services on the host are protected by their own credentials, none of which the
  CLI carries.

`Walls` is the server-wide part (the wrapper program, the start-up count, the system's view);
`Walls.launcher(...)` gives the launcher of one namespace.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import claude_agent_sdk
from claude_agent_sdk import ClaudeAgentOptions

from ..config.policy import Policy
from ..errors import ConfigError
from . import wall_exec
from .cli_files import spill
from .launcher import StartUps
from .permissions import PermissionGate
from .process import CLIProcess

if TYPE_CHECKING:
    from .chain_channel import ChainChannel

logger = logging.getLogger(__name__)

Isolation = Literal["sandbox", "none"]

BASE_KEEP = frozenset(
    {
        "PATH",
        "LANG",
        "LANGUAGE",
        "TZ",
        "TERM",
        "NO_COLOR",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "NO_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "no_proxy",
        "all_proxy",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "NODE_EXTRA_CA_CERTS",
        # What claude-agent-sdk itself adds to the CLI's environment.
        "CLAUDE_CODE_ENTRYPOINT",
        "CLAUDE_AGENT_SDK_VERSION",
        "CLAUDE_AGENT_SDK_CLIENT_APP",
        "CLAUDE_AGENT_SDK_DERIVED_CLIENT_APP",
        "CLAUDE_CODE_SDK_READS_SESSION_STATE",
        "CLAUDE_CODE_ENABLE_SDK_FILE_CHECKPOINTING",
        "PWD",
        "TRACEPARENT",
        "TRACESTATE",
    }
)
"""Passed through in every mode: how to find programs, the locale, proxies and CA certificates."""
BASE_PREFIXES = ("LC_",)

PERSON_KEEP = frozenset(
    {
        "HOME",
        "USER",
        "LOGNAME",
        "SHELL",
        "TMPDIR",
        "EDITOR",
        "VISUAL",
        "PAGER",
        "SSH_AUTH_SOCK",
        "CLAUDE_CONFIG_DIR",
        "CLOUD_ML_REGION",
        "GOOGLE_APPLICATION_CREDENTIALS",
        "GOOGLE_CLOUD_PROJECT",
        "DISABLE_TELEMETRY",
        "DISABLE_AUTOUPDATER",
    }
)
"""Also passed through for one person's own server (the local default): their Claude works on
their projects, as their shell would run it — with their login, git and ssh agent, and the
provider switches of Claude Code — but without claude-mcp's own settings and secrets."""
PERSON_PREFIXES = ("XDG_", "ANTHROPIC_", "CLAUDE_CODE_", "AWS_", "GIT_", "MCP_")

TMP_BYTES = 256 * 2**20
"""A sandbox's private `/tmp` holds at most this (memory); everything else outside its own
directories is read-only (`--remount-ro /`, added last by `wall_exec`)."""
WALL_DIR = "walls"
"""Under the state dir: the wrapper program (no secret in it)."""


@dataclass(frozen=True, slots=True)
class Wall:
    """What one namespace's CLI processes see (`readable`, `writable`) and carry (`keep`: the
    server's variables passed through, beyond the options' own environment)."""

    isolation: Isolation
    keep: frozenset[str]
    prefixes: tuple[str, ...]
    readable: tuple[Path, ...] = ()
    writable: tuple[Path, ...] = ()
    hidden: tuple[Path, ...] = ()
    """Private paths masked where they fall inside a readable directory (the state dir, the config)."""
    bwrap: str = "bwrap"
    uid: int = 1000
    config: tuple[str, str] | None = None
    """(what the SDK is shown as the CLI's config dir, the CLI's own): `wall_exec` swaps them."""
    channels: tuple[tuple[Path, Path], ...] = ()
    """Directories bound read-only at a fixed path inside, over everything else (host, inside): the
    namespace's chain channel (`chain_channel`)."""

    def bwrap_args(self) -> list[str]:
        """The sandbox, as bubblewrap's arguments (paths and names only: nothing secret)."""
        args = [self.bwrap, "--unshare-user", "--uid", str(self.uid), "--gid", str(self.uid)]
        args += ["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
        args += ["--die-with-parent", "--new-session", "--cap-drop", "ALL", "--hostname", "claude"]
        args += ["--proc", "/proc", "--dev", "/dev"]
        args += ["--size", str(TMP_BYTES), "--tmpfs", "/tmp", "--size", str(TMP_BYTES // 4), "--tmpfs", "/var/tmp"]
        for top in ("bin", "lib", "lib64", "sbin"):
            host = Path("/") / top
            if host.is_symlink():
                args += ["--symlink", str(host.readlink()), str(host)]
            elif host.is_dir():
                args += ["--ro-bind", str(host), str(host)]
        readable = _outermost(p for p in self.readable if p.exists())
        for path in readable:
            args += ["--ro-bind", str(path), str(path)]
        for path in self.hidden:
            inside = any(path.is_relative_to(r) for r in readable)
            holds_own = any(w.is_relative_to(path) for w in self.writable)
            if inside and not holds_own and path.exists():
                args += ["--tmpfs", str(path)] if path.is_dir() else ["--ro-bind", "/dev/null", str(path)]
        for path in self.writable:
            args += ["--bind", str(path), str(path)]
        for host_dir, inside_dir in self.channels:
            args += ["--ro-bind", str(host_dir), str(inside_dir)]
        return args

    def spec(self, cli: str, own_env: Iterable[str]) -> str:
        """The wall as `wall_exec` reads it: the CLI, the names kept, the sandbox."""
        wall = {
            "cli": cli,
            "keep": sorted(self.keep | set(own_env)),
            "keep_prefixes": list(self.prefixes),
            "bwrap": self.bwrap_args() if self.isolation == "sandbox" else None,
            "bind_env": ["CLAUDE_CONFIG_DIR", "HOME"],
            "config": list(self.config) if self.config is not None else None,
        }
        return wall_exec.encode(wall)


def _outermost(paths: Iterable[Path]) -> list[Path]:
    """The paths, without those inside another (binding the outer one shows them already)."""
    unique = sorted(set(paths))
    return [p for p in unique if not any(p != q and p.is_relative_to(q) for q in unique)]


def bundled_cli() -> str:
    """The `claude` executable claude-agent-sdk bundles (else the one on PATH)."""
    bundled = Path(claude_agent_sdk.__file__).parent / "_bundled" / "claude"
    if bundled.is_file():
        return str(bundled)
    return shutil.which("claude") or "claude"


def system_view(cli: str) -> tuple[Path, ...]:
    """What every sandbox reads: the system, the Python running the server and its packages
    (a claude-mcp that Claude starts below it runs on them), the CLI's own directory."""
    package = Path(__file__).resolve().parents[1]
    cli_dir = Path(cli).resolve().parent
    system = (Path("/usr"), Path("/etc"), Path("/opt"))
    return (*system, Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve(), package, cli_dir)


def write_wrapper(directory: Path) -> Path:
    """The wrapper program `cli_path` points at: `wall_exec`'s source under a shebang that runs
    this interpreter isolated (`-I -S`: no site packages, no user directory)."""
    directory.mkdir(parents=True, exist_ok=True)
    wrapper = directory / "claude-walled"
    source = Path(wall_exec.__file__).read_text()
    text = f"#!{sys.executable} -IS\n{source}"
    if not wrapper.exists() or wrapper.read_text() != text:
        staged = directory / f".claude-walled.{os.getpid()}"
        staged.write_text(text)
        staged.chmod(0o755)
        staged.replace(wrapper)
    return wrapper


@dataclass(eq=False)
class Walls:
    """The server's walls: one wrapper program and one start-up count for every namespace."""

    isolation: Isolation
    wrapper: Path
    person: bool = False
    """One person's own server: their environment's usual variables pass through (`PERSON_KEEP`)."""
    passthrough: tuple[str, ...] = ()
    bwrap: str = "bwrap"
    readable: tuple[Path, ...] = ()
    hidden: tuple[Path, ...] = ()
    startups: StartUps = field(default_factory=StartUps)

    def wall(self, writable: Iterable[Path], cli: str) -> Wall:
        keep = BASE_KEEP | set(self.passthrough) | (PERSON_KEEP if self.person else frozenset())
        prefixes = BASE_PREFIXES + (PERSON_PREFIXES if self.person else ())
        return Wall(
            self.isolation,
            frozenset(keep),
            prefixes,
            readable=(*system_view(cli), *self.readable),
            writable=tuple(Path(p).resolve() for p in writable),
            hidden=tuple(Path(p).resolve() for p in self.hidden),
            bwrap=shutil.which(self.bwrap) or self.bwrap,
            uid=os.getuid() or 1000,
        )

    def private_config(self, own: str) -> Path:
        """An empty directory of the server's own, outside every wall, that stands for `own`."""
        seen = self.wrapper.parent / "sdk" / hashlib.sha256(own.encode()).hexdigest()[:24]
        seen.mkdir(parents=True, exist_ok=True, mode=0o700)
        return seen

    def launcher(self, writable: Iterable[Path] = ()) -> WalledLauncher:
        """The launcher of one namespace, whose processes may write only in `writable`."""
        for path in writable:
            Path(path).mkdir(parents=True, exist_ok=True)
        return WalledLauncher(self, tuple(writable))


class WalledLauncher:
    """Starts each CLI process through the wrapper, behind its namespace's wall."""

    def __init__(self, walls: Walls, writable: tuple[Path, ...]) -> None:
        self.walls = walls
        self.writable = writable
        self.startups = walls.startups
        self.chains: ChainChannel | None = None
        """The namespace's chain channel, set by the bridge while it serves one (sandbox only)."""

    def launch(self, options: ClaudeAgentOptions, gate: PermissionGate | None = None) -> CLIProcess:
        named = str(options.cli_path) if options.cli_path is not None else bundled_cli()
        cli = shutil.which(named)
        if cli is None:  # no such CLI: the SDK says so, clearly, when the process is started
            return CLIProcess(options, gate, startups=self.startups)
        files = spill(options)  # in the namespace's own config dir, before the SDK is shown a stand-in
        wall = self.walls.wall(self.writable, cli)
        logger.debug("starting a CLI process (isolation %s)", wall.isolation)
        # The chain channel: a capability in the CLI's environment, its socket's directory bound in.
        offer = self.chains.offer(options.env) if self.chains is not None and wall.isolation == "sandbox" else None
        if offer is not None:
            options.env = {**options.env, **offer.env}
            wall = dataclasses.replace(wall, channels=(offer.bind,))
        if wall.isolation == "sandbox" and options.resume and (own := options.env.get("CLAUDE_CONFIG_DIR")):
            # What the server process itself reads of the CLI's config dir (claude-agent-sdk copies its
            # auth and settings files when it resumes a conversation from the store) must be nothing the
            # sandbox can write, or a symlink planted there would read the server's files: the SDK is
            # shown an empty private directory, and the resumed CLI runs in the SDK's temporary copy
            # (or, if the store has no transcript, `wall_exec` gives it its own config dir back). A new
            # conversation keeps its own dir in view of the SDK, which mirrors its transcript from there.
            seen = self.walls.private_config(own)
            options.env = {**options.env, "CLAUDE_CONFIG_DIR": str(seen)}
            wall = dataclasses.replace(wall, config=(str(seen), own))
        options.env = {**options.env, wall_exec.WALL_ENV: wall.spec(cli, options.env)}
        options.cli_path = str(self.walls.wrapper)
        process = CLIProcess(options, gate, startups=self.startups, files=files)
        if offer is not None:
            offer.hold(process)
        return process


def sandbox_problem(bwrap: str = "bwrap") -> str | None:
    """Why a sandbox cannot be made here (None: it can): bubblewrap missing, or user namespaces
    not allowed. Runs `bwrap` once, for a second at most."""
    found = shutil.which(bwrap)
    if found is None:
        return (
            f"bubblewrap (`{bwrap}`) is not installed: install Debian's `bubblewrap` package "
            "(`apt-get install bubblewrap`), or point `bwrap_path` at it."
        )
    # As the sandboxes are made: a container that masks /proc (Docker's default) fails here, not at each run.
    probe = [found, "--unshare-user", "--unshare-pid", "--die-with-parent", "--ro-bind", "/", "/"]
    probe += ["--proc", "/proc", "--dev", "/dev", "true"]
    try:
        done = subprocess.run(probe, capture_output=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bubblewrap could not be run ({exc})."
    if done.returncode != 0:
        said = done.stderr.decode(errors="replace").strip().splitlines()
        return (
            f"bubblewrap cannot make a sandbox here ({said[-1] if said else f'exit {done.returncode}'}): the "
            "kernel or the container must allow unprivileged user namespaces (see README, 'Walls between users')."
        )
    return None


def choose_isolation(policy: Policy, *, several_users: bool) -> Isolation:
    """The isolation a server runs with: the policy's, else the safe default for who it serves;
    a server for several users without walls only when the operator said so explicitly."""
    chosen: Isolation = policy.isolation or ("sandbox" if several_users else "none")
    if several_users and chosen == "none" and not policy.isolation_none_acknowledged:
        raise ConfigError(
            'isolation = "none" on a server for several users (tenants, callers, or listening beyond loopback) '
            "would run every user's Claude as this server's OS user, able to read the other users' files, "
            "transcripts and processes (and their keys, from /proc). Remove `isolation` to get the sandbox, or "
            "set `isolation_none_acknowledged = true` if every user of this server trusts every other."
        )
    return chosen


def walls_for(policy: Policy, state: Path, *, isolation: Isolation, person: bool, hidden: Iterable[Path] = ()) -> Walls:
    """The server's walls; for a sandbox, only once it is known that one can be made here."""
    if isolation == "sandbox" and (problem := sandbox_problem(policy.bwrap_path)) is not None:
        raise ConfigError(
            f"Refusing to start: each user's Claude must run in a sandbox here, but {problem} (`claude-mcp "
            "doctor` checks this.)"
        )
    return Walls(
        isolation,
        write_wrapper(state / WALL_DIR),
        person=person,
        passthrough=policy.cli_env_passthrough,
        bwrap=policy.bwrap_path,
        readable=policy.sandbox_readable,
        hidden=(state, *hidden, *(private_system_files() if os.getuid() == 0 and isolation == "sandbox" else ())),
    )


def private_system_files(root: Path = Path("/etc")) -> tuple[Path, ...]:
    """What of the system only its owner may read (`/etc/shadow`, private keys): masked in every
    sandbox of a server that runs as root, whose sandbox user is root's outside (in the image the
    server is an unprivileged user, and the kernel's permissions keep these out of reach)."""
    found: list[Path] = []
    for directory, dirs, files in os.walk(root, followlinks=False):
        for name in list(dirs):
            path = Path(directory) / name
            if not path.is_symlink() and not path.stat().st_mode & stat.S_IROTH:
                found.append(path)
                dirs.remove(name)
        for name in files:
            path = Path(directory) / name
            with contextlib.suppress(OSError):
                if not path.is_symlink() and path.is_file() and not path.stat().st_mode & stat.S_IROTH:
                    found.append(path)
    return tuple(found)


@dataclass(frozen=True, slots=True)
class NamespaceDirs:
    """One namespace's own directories: its Claude config dir (with its home inside) and the
    roots its runs may work in (its workspace, unless its policy names roots of its own)."""

    config: Path
    roots: tuple[Path, ...]

    @property
    def home(self) -> Path:
        return self.config / "home"

    @property
    def writable(self) -> tuple[Path, ...]:
        return (self.config, *self.roots)

    def policy(self, policy: Policy, cli_env: dict[str, str]) -> Policy:
        """The namespace's policy: its roots, and a CLI environment with its own config dir and home."""
        env = {**cli_env, "CLAUDE_CONFIG_DIR": str(self.config), "HOME": str(self.home)}
        return policy.model_copy(update={"roots": self.roots, "cli_env": env})


def namespace_dirs(config: Path, workspace_root: Path, name: str, own_roots: tuple[Path, ...] | None) -> NamespaceDirs:
    """A namespace's directories; its workspace (`workspace_root/name`) is made on first use."""
    if own_roots:
        return NamespaceDirs(config, own_roots)
    workspace = workspace_root / name
    workspace.mkdir(parents=True, exist_ok=True)
    return NamespaceDirs(config, (workspace.resolve(),))
