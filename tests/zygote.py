"""Starting `python -m claude_mcp …` for a test without paying for its imports each time.

Most HTTP tests run the real server as a subprocess (`tests.test_http.serving`), and `test_setup_commands`
runs `doctor` and `config` as one. Each start spent ~0.85 s of CPU importing the `mcp` SDK, pydantic models
and the server before it listened (or answered), some 180 times a run. A zygote is a plain Python process
(one per test worker) that imports those modules once and then forks a child per request; the child becomes
`python -m claude_mcp ARGS`: its own argv, environment, working directory and stdin/stdout/stderr, signal
dispositions reset, the module run by `runpy` as `-m` runs it, and the interpreter's normal exit (atexit,
thread joins, flushed streams) with the code `python` would give.
What differs from a fresh interpreter is only which modules were imported before `main` began.

The start-up path itself (imports, the early stdio front, `--help` speed, one-line start-up errors) keeps
its tests on a fresh interpreter (`test_first_run`, `test_early_start`, `test_stdio`);
`CLAUDE_MCP_TEST_ZYGOTE=0` makes `spawn` a plain `subprocess.Popen`.

The zygote is not the test's parent of the server, so `spawn` returns a `Forked` with the `Popen` calls the
tests use (pid, poll, wait, terminate, kill, send_signal, returncode); the zygote reaps the child and sends
its exit code back over the request's own socket. The zygote exits when its test worker does.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import runpy
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

PRELOAD = (
    "claude_mcp.cli",
    "claude_mcp.web.serve",
    "claude_mcp.web.app",
    "claude_mcp.web.http_serve",
    "claude_mcp.bridge.claude",
    "claude_mcp.http_api.routes",
    "claude_mcp.mcp_surface.server",
    "claude_mcp.state.sqlite",
    "uvicorn",
)
"""What a server imports before it listens (whatever is missing here is imported by the child itself)."""


# --- the test's side ------------------------------------------------------------------------------------


class Forked:
    """A server forked by the zygote: the part of `subprocess.Popen` that the tests use."""

    def __init__(self, args: list[str], pid: int, channel: socket.socket) -> None:
        self.args = args
        self.pid = pid
        self.returncode: int | None = None
        self._channel = channel

    def _read_exit(self, timeout: float | None) -> int | None:
        if self.returncode is not None:
            return self.returncode
        self._channel.settimeout(timeout)
        try:
            message = self._channel.recv(64)
        except (TimeoutError, BlockingIOError):
            return None
        self.returncode = int(message.split()[1]) if message.startswith(b"EXIT ") else -signal.SIGKILL
        self._channel.close()
        return self.returncode

    def poll(self) -> int | None:
        return self._read_exit(0)

    def wait(self, timeout: float | None = None) -> int:
        code = self._read_exit(timeout)
        if code is None:
            raise subprocess.TimeoutExpired(self.args, timeout or 0)
        return code

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


_zygote: tuple[subprocess.Popen[bytes], str] | None = None


def _started() -> str:
    """The socket of this worker's zygote, started on first use."""
    global _zygote
    if _zygote is None or _zygote[0].poll() is not None:
        directory = tempfile.mkdtemp(prefix="zygote-")
        atexit.register(shutil.rmtree, directory, True)
        path = str(Path(directory) / "socket")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "CLAUDE_", "PYTEST_"))}
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.zygote", path],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=None, env=env,
        )  # fmt: skip
        assert process.stdout is not None and process.stdout.readline() == b"ready\n", "the zygote did not start"
        atexit.register(process.kill)
        _zygote = (process, path)
    return _zygote[1]


def spawn(
    args: Sequence[str],
    *,
    env: Mapping[str, str],
    stdout: IO[bytes] | int,
    stderr: IO[bytes] | int,
    cwd: str | Path | None = None,
) -> Forked | subprocess.Popen[bytes]:
    """`subprocess.Popen([sys.executable, "-m", "claude_mcp", *args], stdin=DEVNULL, …)`, forked by the zygote."""
    if os.environ.get("CLAUDE_MCP_TEST_ZYGOTE") == "0":
        return subprocess.Popen(
            [sys.executable, "-m", "claude_mcp", *args],
            stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr, env=dict(env), cwd=cwd,
        )  # fmt: skip
    channel = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    channel.connect(_started())
    with Path(os.devnull).open("rb") as devnull:
        fds = [devnull.fileno(), *(s if isinstance(s, int) else s.fileno() for s in (stdout, stderr))]
        request = {"args": list(args), "env": dict(env), "cwd": str(cwd or Path.cwd())}
        socket.send_fds(channel, [json.dumps(request).encode()], fds)
    reply = channel.recv(64)
    assert reply.startswith(b"PID "), reply
    return Forked([sys.executable, "-m", "claude_mcp", *args], int(reply.split()[1]), channel)


# --- the zygote's side ----------------------------------------------------------------------------------


def _become(request: dict[str, Any], fds: list[int]) -> None:
    """In the forked child: become `python -m claude_mcp ARGS`; never returns (raises SystemExit)."""
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD, signal.SIGHUP):
        signal.signal(sig, signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL)
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
    os.closerange(3, min(os.sysconf("SC_OPEN_MAX"), 65536))
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    sys.argv = ["-m", *request["args"]]
    sys.path[0] = request["cwd"]
    code: Any = 0
    try:
        runpy.run_module("claude_mcp", run_name="__main__", alter_sys=True)
    except SystemExit as exit_:
        code = exit_.code
    raise SystemExit(code)


def serve(path: str) -> None:
    """Fork a child per request on `path` until the test worker that started the zygote exits."""
    parent = os.getppid()
    listening = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    listening.bind(path)
    listening.listen(64)
    children: dict[int, socket.socket] = {}
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    while os.getppid() == parent:
        readable, _, _ = select.select([listening], [], [], 0.05)
        if readable:
            connection, _ = listening.accept()
            message, fds, _, _ = socket.recv_fds(connection, 1 << 20, 3)
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                listening.close()
                connection.close()
                _become(json.loads(message), fds)
            for fd in fds:
                os.close(fd)
            connection.send(f"PID {pid}".encode())
            children[pid] = connection
        while children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            if connection := children.pop(pid, None):
                with contextlib.suppress(OSError):
                    connection.send(f"EXIT {os.waitstatus_to_exitcode(status)}".encode())
                connection.close()
    for pid in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


if __name__ == "__main__":
    for module in PRELOAD:
        __import__(module)
    serve(sys.argv[1])
