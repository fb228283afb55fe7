"""The program every CLI process is started through: it keeps only the environment the server
allows, then becomes the CLI, inside a bubblewrap sandbox when the wall asks for one.

claude-agent-sdk starts `cli_path` with the server's whole environment merged under the
options' own; this program runs first (as `cli_path`), reads its wall from `CLAUDE_MCP_WALL`
(no secret, only names and paths), drops every variable the wall does not name, and
execs — `bwrap <the wall's arguments> -- <the CLI> <its arguments>`, or the CLI itself. Values
travel only in the environment, never in argv (a sandbox sees its `bwrap` command line as its
process 1). Where it can (Linux), the CLI is also told to die with the server
(`PR_SET_PDEATHSIG` with SIGTERM, on which the CLI stops its own tools too), so no CLI outlives
a killed server. Standard library only, and few imports of that (each costs start-up time, `json`
alone ~10 ms): it runs as `python -I -S`, before anything of the server is imported.
"""

# os.path, not pathlib: this runs before every CLI, and each import is start-up time.
# ruff: noqa: PTH103, PTH109, PTH117
from __future__ import annotations

import os
import sys

WALL_ENV = "CLAUDE_MCP_WALL"
"""The variable that carries the wall (`encode`d: `cli`, `keep`, `keep_prefixes`, `bwrap`, `bind_env`, `config`)."""

Wall = dict[str, str | list[str] | None]
"""A decoded wall: `cli` a string, the other fields lists of strings (or None)."""
FIELDS = ("cli", "keep", "keep_prefixes", "bwrap", "bind_env", "config")
_RECORD, _UNIT, _NONE = "\x1e", "\x1f", "\x1d"
"""ASCII's own separators: no name or path the server uses holds them."""


def encode(wall: Wall) -> str:
    """The wall as one environment value: its fields in `FIELDS` order, lists joined, None marked."""
    parts = []
    for name in FIELDS:
        value = wall.get(name)
        if value is None:
            parts.append(_NONE)
        elif isinstance(value, list | tuple):
            parts.append(_UNIT.join(str(v) for v in value))
        else:
            parts.append(str(value))
    return _RECORD.join(parts)


def decode(text: str) -> Wall:
    """`encode`'s inverse (`cli` a string; the other fields lists, or None)."""
    parts = text.split(_RECORD)
    if len(parts) != len(FIELDS):
        raise ValueError("not a wall")
    wall: Wall = {"cli": parts[0]}
    for name, part in zip(FIELDS[1:], parts[1:], strict=True):
        wall[name] = None if part == _NONE else (part.split(_UNIT) if part else [])
    return wall


PR_SET_PDEATHSIG = 1
SIGTERM = 15


def kept_environment(environ: dict[str, str], keep: list[str], prefixes: list[str]) -> dict[str, str]:
    """The variables the wall names, by name or by prefix; nothing else."""
    names = set(keep)
    return {k: v for k, v in environ.items() if k in names or any(k.startswith(p) for p in prefixes)}


def own_config(wall: Wall, env: dict[str, str]) -> None:
    """Give the CLI its own config dir back where claude-agent-sdk was shown a private stand-in
    (a conversation it resumes has a temporary config dir of the SDK's instead: that one stays)."""
    config = wall.get("config")
    if isinstance(config, list) and len(config) == 2 and env.get("CLAUDE_CONFIG_DIR") == config[0]:
        env["CLAUDE_CONFIG_DIR"] = str(config[1])


def command(wall: Wall, env: dict[str, str], argv: list[str], cwd: str) -> list[str]:
    """What to exec: the CLI (with `argv`), inside bubblewrap if the wall has its arguments.
    The directories named by `bind_env` variables (the CLI's config dir, which claude-agent-sdk
    may point at a temporary copy, and HOME) are bound writable; the sandbox starts in `cwd`."""
    cli = str(wall["cli"])
    bwrap = wall.get("bwrap")
    if not isinstance(bwrap, list):
        return [cli, *argv]
    args = [str(a) for a in bwrap]
    bound = {args[i + 2] for i, a in enumerate(args[:-2]) if a in ("--bind", "--ro-bind")}
    bind_env = wall.get("bind_env")
    for name in bind_env if isinstance(bind_env, list) else []:
        path = env.get(str(name))
        if path and os.path.isabs(path) and path not in bound:
            os.makedirs(path, exist_ok=True)
            args += ["--bind", path, path]
            bound.add(path)
    # Last, once every mount point exists: nothing outside the bound directories is writable.
    return [*args, "--remount-ro", "/", "--chdir", cwd, "--", cli, *argv]


def _die_with_parent() -> None:
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def main() -> None:
    try:
        wall = decode(os.environ[WALL_ENV])
    except (KeyError, ValueError):
        sys.stderr.write(f"claude-mcp: {WALL_ENV} is missing or unreadable; this program is started by claude-mcp\n")
        sys.exit(127)
    env = kept_environment(dict(os.environ), list(wall.get("keep") or []), list(wall.get("keep_prefixes") or []))
    own_config(wall, env)
    argv = command(wall, env, sys.argv[1:], os.getcwd())
    _die_with_parent()
    try:
        os.execve(argv[0], argv, env)
    except OSError as exc:
        sys.stderr.write(f"claude-mcp: could not start {argv[0]}: {exc.strerror}\n")
        sys.exit(127)


if __name__ == "__main__":
    main()
