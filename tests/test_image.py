"""The container image, built on this machine by deploy/build-image.sh (debootstrap base, buildah)
and entered as a container runtime would run it: its root mounted read-only (`podman image
mount`), a private mount namespace with fresh volumes bound in, `pivot_root` into the image's root,
the image's own user without capabilities, environment, working directory, entrypoint and command.
It serves /healthz (also through the image's HEALTHCHECK command) and answers an MCP `ask` over
Streamable HTTP, through the bundled `claude` CLI in its bubblewrap sandbox (deploy/config.toml
has a tenant, so isolation is "sandbox"), against the fake model on loopback.

Skipped unless CLAUDE_MCP_IMAGE_TEST=1: building takes minutes, and it needs root (apt-get,
debootstrap, buildah, mounts, pivot_root). `podman run` cannot run on this machine, hence the
hand-made container; not `chroot`, in which the kernel refuses to make the user namespace the
sandbox needs.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest

from tests.conftest import FakeModel, call, tool_prompt
from tests.test_http import RunningServer, connect

pytestmark = [
    pytest.mark.anyio,
    # One worker builds the image (a module-scoped fixture, under one fixed name) and runs both tests.
    pytest.mark.xdist_group("image"),
    pytest.mark.skipif(
        os.environ.get("CLAUDE_MCP_IMAGE_TEST") != "1",
        reason="builds the container image (minutes): set CLAUDE_MCP_IMAGE_TEST=1 to run",
    ),
    pytest.mark.skipif(os.name != "posix" or os.geteuid() != 0, reason="needs root (buildah, mounts, pivot_root)"),
]

REPO = Path(__file__).resolve().parent.parent
IMAGE = os.environ.get("CLAUDE_MCP_IMAGE", "localhost/claude-mcp:dev")
UID = 10001
TOKEN = "image-test-token-0123456789"
API_KEY = "sk-ant-image-test"
VENV = Path("/opt/claude-mcp")
BUNDLED_CLI = "lib/python3.11/site-packages/claude_agent_sdk/_bundled/claude"


@dataclass
class Image:
    name: str
    root: Path  # the image's root, mounted read-only
    inspect: dict[str, Any]

    @property
    def config(self) -> dict[str, Any]:
        config: dict[str, Any] = self.inspect["Config"]
        return config

    @property
    def env(self) -> dict[str, str]:
        return dict(item.split("=", 1) for item in self.config.get("Env") or [])


@pytest.fixture(scope="module")
def image() -> Iterator[Image]:
    build = subprocess.run(
        [str(REPO / "deploy" / "build-image.sh")],
        cwd=REPO,
        env={**os.environ, "IMAGE": IMAGE},
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    inspect = json.loads(subprocess.check_output(["podman", "image", "inspect", IMAGE]))[0]
    root = Path(subprocess.check_output(["podman", "image", "mount", IMAGE], text=True).strip())
    try:
        yield Image(IMAGE, root, inspect)
    finally:
        subprocess.run(["podman", "image", "unmount", IMAGE], capture_output=True, check=False)


@dataclass
class Volumes:
    """Fresh host directories bound over the image's volumes (the image's root stays read-only)."""

    state: Path  # /var/lib/claude-mcp
    workspace: Path  # /workspace
    config: Path  # /etc/claude-mcp (read-only, like a ConfigMap or a secret volume)
    tmp: Path  # /tmp (an emptyDir, as with readOnlyRootFilesystem)

    def binds(self) -> list[tuple[Path, str, str]]:
        return [
            (self.state, "/var/lib/claude-mcp", "rw"),
            (self.workspace, "/workspace", "rw"),
            (self.config, "/etc/claude-mcp", "ro"),
            (self.tmp, "/tmp", "rw"),
        ]


@pytest.fixture
def volumes(tmp_path: Path) -> Volumes:
    made = Volumes(tmp_path / "state", tmp_path / "workspace", tmp_path / "etc", tmp_path / "tmp")
    for path in (made.state, made.workspace, made.config, made.tmp):
        path.mkdir()
    for path in (made.state, made.workspace):
        os.chown(path, UID, UID)
    made.state.chmod(0o700)
    made.tmp.chmod(0o1777)
    shutil.copy(REPO / "deploy" / "config.toml", made.config / "config.toml")
    return made


def inside(
    image: Image, volumes: Volumes, argv: list[str], env: dict[str, str], **popen: Any
) -> subprocess.Popen[bytes]:
    """Run `argv` in the image as its USER (no capabilities), in its WORKDIR, with only `env`,
    the way a container runtime does: a private mount namespace gets the image's root (bound onto
    itself, so it is a mount point), /proc, /dev and the volumes, then `pivot_root` makes that the
    root and the host's is detached. Not `chroot`: the kernel refuses to create a user namespace
    in a chrooted process, so the server's bubblewrap sandbox could not start. The returned process
    is argv itself (each step execs the next), so terminating it signals the entrypoint directly."""
    root = shlex.quote(str(image.root))
    mounts = [f"mount --bind {root} {root}", f"mount -t proc proc {root}/proc", f"mount --rbind /dev {root}/dev"]
    for source, target, mode in volumes.binds():
        mounts.append(f"mount --bind {shlex.quote(str(source))} {root}{target}")
        if mode == "ro":
            mounts.append(f"mount -o remount,bind,ro {root}{target}")
    mounts += [f"cd {root}", "pivot_root . .", "umount -l ."]  # the host's root, stacked under the image's
    uid, _, gid = (image.config.get("User") or "0").partition(":")
    command = [
        "/usr/bin/env", "-i", f"--chdir={image.config.get('WorkingDir') or '/'}",
        *(f"{k}={v}" for k, v in env.items()),
        "/usr/bin/setpriv", f"--reuid={uid}", f"--regid={gid or uid}", "--clear-groups",
        "--inh-caps=-all", "--bounding-set=-all", "--",
        *argv,
    ]  # fmt: skip
    script = " && ".join([*mounts, "exec " + shlex.join(command)])
    return subprocess.Popen(["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script], **popen)


def run_inside(image: Image, volumes: Volumes, argv: list[str], env: dict[str, str]) -> str:
    process = inside(image, volumes, argv, env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output.decode()
    return output.decode()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_the_image_runs_as_uid_10001_with_its_state_on_a_volume_and_the_bundled_cli_executable(
    image: Image, volumes: Volumes
) -> None:
    config = image.config
    assert config["User"] == f"{UID}:{UID}"
    assert config["Entrypoint"][-1] == "claude-mcp"
    assert config["Cmd"][:2] == ["serve", "--transport"] and "--config" in config["Cmd"]
    assert "8765/tcp" in config["ExposedPorts"]
    assert "/var/lib/claude-mcp" in config["Volumes"]
    assert "/healthz" in " ".join(image.inspect["Healthcheck"]["Test"])
    env = image.env
    assert env["CLAUDE_MCP_STATE"] == env["HOME"] == "/var/lib/claude-mcp"
    assert env["CLAUDE_CONFIG_DIR"].startswith("/var/lib/claude-mcp/")
    cli = image.root / VENV.relative_to("/") / BUNDLED_CLI
    assert cli.stat().st_mode & 0o001, "the bundled claude CLI must be executable by uid 10001"
    version = run_inside(image, volumes, [str(VENV / BUNDLED_CLI), "--version"], env)
    assert "Claude Code" in version
    assert "10001" in run_inside(image, volumes, ["id", "-u"], env)
    venv = (image.root / VENV.relative_to("/")).rglob("*")
    venv_bytes = sum(p.lstat().st_size for p in venv if p.is_file() and not p.is_symlink())
    print(f"\nimage {image.name}: {image.inspect['Size'] / 1e6:.0f} MB; venv {venv_bytes / 1e6:.0f} MB; CLI {version}")


@dataclass
class ImageServer:
    url: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path


@pytest.fixture
def image_server(image: Image, volumes: Volumes, fake_model: FakeModel, tmp_path: Path) -> Iterator[ImageServer]:
    """The image's entrypoint and command (on a free port), with deploy/config.toml mounted, the
    tenant's token and credential in the environment and the fake model as the API. The CLI gets
    only an allowlisted environment, so the config passes the fake model's address through, as
    an operator pointing Claude at a gateway would."""
    config = volumes.config / "config.toml"
    passthrough = 'cli_env_passthrough = ["ANTHROPIC_BASE_URL", "DISABLE_TELEMETRY"]\n'
    config.write_text(passthrough + config.read_text())  # a top-level key, so before the first table
    port = free_port()
    cmd = [str(port) if arg == "8765" else arg for arg in image.config["Cmd"]]
    env = {
        **image.env,
        "CLAUDE_MCP_TOKEN": TOKEN,  # the tenant in deploy/config.toml
        "ANTHROPIC_API_KEY": API_KEY,
        "ANTHROPIC_BASE_URL": fake_model.url,
        "DISABLE_TELEMETRY": "1",
    }
    log = tmp_path / "server.log"
    with log.open("wb") as sink:
        process = inside(image, volumes, [*image.config["Entrypoint"], *cmd], env, stdout=sink, stderr=sink)
    try:
        deadline = time.monotonic() + 60
        while "listening on " not in log.read_text():
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        yield ImageServer(f"http://127.0.0.1:{port}/mcp", port, process, log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
    assert process.returncode == 0, log.read_text()
    assert "Traceback" not in log.read_text(), log.read_text()


async def test_the_image_serves_healthz_and_an_ask_through_the_bundled_cli(
    image: Image, volumes: Volumes, image_server: ImageServer
) -> None:
    base = image_server.url.removesuffix("/mcp")
    async with httpx2.AsyncClient(timeout=10) as http:
        assert (await http.get(f"{base}/healthz")).json() == {"status": "ok"}
        assert (await http.post(image_server.url, json={})).status_code == 401  # no token, no entry
    healthcheck = image.inspect["Healthcheck"]["Test"][1:]  # ["CMD", argv...]
    port = f":{image_server.port}/"
    await anyio.to_thread.run_sync(
        run_inside, image, volumes, [arg.replace(":8765/", port) for arg in healthcheck], image.env
    )

    async with connect(RunningServer(image_server.url, image_server.process), TOKEN) as client:
        answer = await call(client, "ask", prompt="[[report]] from inside the image")
    report = json.loads(answer["result"])
    assert report["api_key"] == API_KEY  # the tenant's credential reached the CLI in the image
    assert answer["session_id"]

    # The CLI ran in its sandbox: its Bash sees a PID namespace of its own, bwrap its PID 1.
    look = "echo uid=$(id -u); echo pid1=$(tr '\\0' ' ' < /proc/1/cmdline); echo pids=$(ls /proc | grep -c '^[0-9]')"
    async with connect(RunningServer(image_server.url, image_server.process), TOKEN) as client:
        answer = await call(client, "ask", prompt=tool_prompt("Bash", command=look), allowed_tools=["Bash"])
    seen = dict(re.findall(r"(\w+)=(.*)", answer["result"]))  # the answer is "TOOL_RESULT: " and the output
    assert Path((seen.get("pid1") or "?").split()[0]).name == "bwrap", answer["result"]
    assert int(seen["pids"]) <= 15, answer["result"]  # bwrap, the CLI, the shell, this pipeline (7 seen)
    assert seen["uid"] == str(UID), answer["result"]
    written = list(volumes.state.rglob("*"))
    assert written, "the server wrote no state to its volume"
    assert all(p.stat().st_uid == UID for p in written), "state is written as uid 10001"
