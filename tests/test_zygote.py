"""The zygote's child is `python -m claude_mcp ARGS` as a fresh interpreter runs it: the same output, exit
code and environment, and signals reach it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.zygote import spawn


def both(tmp_path: Path, args: list[str], env: dict[str, str]) -> list[tuple[int, str]]:
    """(exit code, stdout + stderr) of `args` run by a fresh interpreter, then by the zygote."""
    fresh = subprocess.run(
        [sys.executable, "-m", "claude_mcp", *args], capture_output=True, text=True, env=env, cwd=tmp_path,
        stdin=subprocess.DEVNULL, timeout=60,
    )  # fmt: skip
    log = tmp_path / "forked.log"
    with log.open("wb") as sink:
        forked = spawn(args, env=env, stdout=sink, stderr=sink, cwd=tmp_path)
    code = forked.wait(timeout=60)
    return [(fresh.returncode, fresh.stdout + fresh.stderr), (code, log.read_text())]


def test_a_forked_command_prints_and_exits_as_a_fresh_one(tmp_path: Path) -> None:
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}
    fresh, forked = both(tmp_path, ["--version"], env)
    assert fresh == forked and fresh[0] == 0 and fresh[1].startswith("claude-mcp ")
    fresh, forked = both(tmp_path, ["serve", "--root", str(tmp_path / "missing")], env)
    assert fresh == forked and fresh[0] == 2 and "missing" in fresh[1], fresh  # a one-line start-up error


def test_a_forked_server_has_its_own_environment_and_dies_of_sigkill(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(f'roots = ["{tmp_path}"]\n')
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}
    log = tmp_path / "server.log"
    with log.open("wb") as sink:
        server = spawn(["serve", "--transport", "http", "--port", "0", "--config", str(config)], env=env,
                       stdout=sink, stderr=sink, cwd=tmp_path)  # fmt: skip
    deadline = time.monotonic() + 30
    while "listening on " not in log.read_text():
        assert server.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)
    # its store is where its own HOME (not the zygote's) puts it
    assert (tmp_path / ".claude" / "claude-mcp" / "state.sqlite3").is_file()
    assert Path(f"/proc/{server.pid}/cwd").resolve() == tmp_path.resolve()
    assert server.poll() is None
    server.send_signal(signal.SIGKILL)
    assert server.wait(timeout=10) == -signal.SIGKILL
