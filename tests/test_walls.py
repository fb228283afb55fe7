"""Walls between users (#27), tried as a hostile user would: `claude-mcp serve` as a subprocess,
the `mcp` client over Streamable HTTP, the real CLI (in bubblewrap) driven by the fake model's
tool directives.

- The hostile battery, for tenants and for callers, with the other user's conversation warm:
  bob's Bash prints his environment and every `/proc/*/environ`, lists the processes, signals the
  server and alice's CLI, lists and searches the state dir, reads alice's transcript and files by
  path (Bash and the Read tool), writes into the state dir and outside his workspace, and follows
  symlinks from his workspace to outside. Each finds nothing of alice or of the server: no key,
  token, namespace key, database password or file, no word of alice's conversation.
- The positive side: a namespace's own Bash, Write, Read and Edit work in its workspace (the files
  appear on the host), and so do warm follow-ups, forks, spares, jobs and per-call stdio MCP servers.
- A multi-user server refuses to start without walls: `isolation = "none"` unacknowledged, or no
  bubblewrap where the config points.
- The environment allowlist holds for one person's own server too.
- What the server process itself (outside any sandbox) reads of a namespace's writable Claude config
  dir cannot be turned on it with planted symlinks: not when it materializes a resume (the SDK is
  shown an empty private stand-in), nor by the import of local transcripts (never for a sandboxed
  namespace).

Each probe writes its whole output into a file in bob's workspace (the fake model returns only the
first 2000 characters of a tool result); the test reads it from the host and checks the answer too.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractAsyncContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx2
import psutil
import pytest
from mcp import Client

from claude_mcp.config.tenants import token_hash
from tests.conftest import QUIET_CLI, FakeModel, call, text_of, tool_prompt
from tests.test_callers import connect_as
from tests.test_http import RunningServer, connect, serving
from tests.test_stdio import write_config
from tests.zygote import spawn

pytestmark = pytest.mark.anyio

TESTS = Path(__file__).parent
ECHO_SERVER = {"command": sys.executable, "args": [str(TESTS / "echo_mcp_server.py")]}
TENANTS = pytest.mark.xdist_group("walls-tenants")
CALLERS = pytest.mark.xdist_group("walls-callers")
"""Tests sharing one module-scoped server run on one test worker."""
SQLITE_MAGIC = "SQLite format 3"
ALICE_KEY = "alice's key"
OWN_TOOLS = ["Bash", "Read", "Write", "Edit"]


def unique(label: str) -> str:
    return f"{label}-{uuid.uuid4().hex}"


def api_key(who: str) -> str:
    return f"sk-ant-api03-{who}-{uuid.uuid4().hex}"


def model_env(fake_model: FakeModel) -> dict[str, str]:
    return {
        "ANTHROPIC_BASE_URL": fake_model.url,
        **QUIET_CLI,
    }


def write_walls_config(path: Path, cli_env: dict[str, str], top: str = "", tables: str = "") -> Path:
    """A multi-user config with the default isolation (the sandbox); the tests' own directory is
    readable in every sandbox, for the per-call stdio MCP server (tests/echo_mcp_server.py)."""
    env_lines = "\n".join(f"{key} = {json.dumps(value)}" for key, value in cli_env.items())
    path.write_text(
        f"api_retries = 0\nmax_concurrent = 8\ndrain_grace_s = 2\nsandbox_readable = [{json.dumps(str(TESTS))}]\n"
        f"{top}\n[cli_env]\n{env_lines}\n{tables}"
    )
    return path


def tenants_tables(bob_token: str) -> str:
    return (
        '[tenants.alice]\ntoken_env = "ALICE_TOKEN"\napi_key_env = "ALICE_KEY"\n'
        f'[tenants.bob]\ntoken_sha256 = "{token_hash(bob_token)}"\napi_key_env = "BOB_KEY"\n'
    )


@contextmanager
def walled_server(directory: Path, config: Path, env: dict[str, str], name: str = "server") -> Iterator[RunningServer]:
    """`claude-mcp serve --transport http` with `env` over a clean copy of this environment."""
    log = directory / f"{name}.log"
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "CLAUDE_"))}
    with log.open("wb") as sink:
        process = spawn(
            ["serve", "--transport", "http", "--port", "0", "--config", str(config)],
            env={**environ, **env}, stdout=sink, stderr=sink,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while "listening on " not in (text := log.read_text()):
            assert process.poll() is None, text
            assert time.monotonic() < deadline, text
            time.sleep(0.05)
        yield RunningServer(text.rsplit("listening on ", 1)[1].split()[0].split('"')[0], process)
    finally:
        process.terminate()
        process.wait(timeout=20)


Connector = Callable[[], AbstractAsyncContextManager[Client]]


@dataclass
class Scene:
    """One walled server, its two users, and the secrets neither may learn of the other or of it."""

    server: RunningServer
    state: Path
    config: Path
    alice: Connector
    bob: Connector
    bob_key: str
    secrets: dict[str, str]
    """What must never reach bob: alice's key, the tenants' tokens, the server's secrets."""
    metrics_headers: dict[str, str] = field(default_factory=dict)
    carol: Connector | None = None

    def namespace(self, session_id: str) -> Namespace:
        """A conversation's namespace, found on the host by its transcript."""
        (transcript,) = self.state.glob(f"*/*/projects/*/{session_id}.jsonl")
        config_dir = transcript.parents[2]
        return Namespace(config_dir.name, config_dir, self.state / "workspaces" / config_dir.name, transcript)

    async def metric(self, name: str, **labels: str) -> float:
        async with httpx2.AsyncClient(timeout=10) as http:
            text = (await http.get(f"{self.server.base}/metrics", headers=self.metrics_headers)).text
        wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
        found = re.search(rf"^{name}(?:\{{{wanted}\}})? (\S+)$", text, re.MULTILINE)
        return float(found.group(1)) if found else 0.0


@dataclass
class Namespace:
    name: str
    config_dir: Path
    workspace: Path
    transcript: Path


def server_secrets() -> dict[str, str]:
    """The server's own secrets, in its environment (its database password: a libpq variable)."""
    return {"CLAUDE_MCP_NAMESPACE_KEY": unique("namespace-key"), "PGPASSWORD": unique("db-password")}


@pytest.fixture(scope="module")
def tenants(tmp_path_factory: pytest.TempPathFactory, fake_model: FakeModel) -> Iterator[Scene]:
    """Tenants (each its own API key from the server's environment), spares on. Carol only ever
    starts one conversation, on the spare her bridge started with the server."""
    directory = tmp_path_factory.mktemp("walls-tenants")
    alice_token, bob_token, alice_key, bob_key = unique("alice-token"), unique("bob-token"), api_key("a"), api_key("b")
    carol_token, carol_key = unique("carol-token"), api_key("c")
    carol = '[tenants.carol]\ntoken_env = "CAROL_TOKEN"\napi_key_env = "CAROL_KEY"\n'
    config = write_walls_config(
        directory / "walls.toml", model_env(fake_model), "spare_process = true", tenants_tables(bob_token) + carol
    )
    own = server_secrets()
    env = {"ALICE_TOKEN": alice_token, "ALICE_KEY": alice_key, "BOB_KEY": bob_key, **own}
    env |= {"CAROL_TOKEN": carol_token, "CAROL_KEY": carol_key, "CLAUDE_MCP_STATE": str(directory / "state")}
    with walled_server(directory, config, env) as server:
        yield Scene(
            server,
            directory / "state",
            config,
            alice=lambda: connect(server, alice_token),
            bob=lambda: connect(server, bob_token),
            bob_key=bob_key,
            secrets={ALICE_KEY: alice_key, "alice's token": alice_token, "bob's token": bob_token, **own}
            | {"carol's key": carol_key, "carol's token": carol_token},
            metrics_headers={"Authorization": f"Bearer {alice_token}"},
            carol=lambda: connect(server, carol_token),
        )


SERVER_OWN_KEY = api_key("server-own")


@pytest.fixture(scope="module")
def callers(tmp_path_factory: pytest.TempPathFactory, fake_model: FakeModel) -> Iterator[Scene]:
    """Callers who bring their own key; the server's CLI environment holds a key of its own."""
    directory = tmp_path_factory.mktemp("walls-callers")
    alice_key, bob_key = api_key("alice"), api_key("bob")
    cli_env = {**model_env(fake_model), "ANTHROPIC_API_KEY": SERVER_OWN_KEY}
    config = write_walls_config(directory / "walls.toml", cli_env, 'credentials = "caller"')
    own = server_secrets()
    with walled_server(directory, config, {**own, "CLAUDE_MCP_STATE": str(directory / "state")}) as server:
        yield Scene(
            server,
            directory / "state",
            config,
            alice=lambda: connect_as(server, alice_key),
            bob=lambda: connect_as(server, bob_key),
            bob_key=bob_key,
            secrets={ALICE_KEY: alice_key, "the server's own key": SERVER_OWN_KEY, **own},
        )


def clis_in(server: RunningServer, workspace: Path) -> list[psutil.Process]:
    """The CLI processes (on the host) working in `workspace`."""
    found = []
    for process in psutil.Process(server.process.pid).children(recursive=True):
        with contextlib.suppress(psutil.Error):
            command = process.cmdline()  # empty for a child that has just exited (a zombie)
            if command and Path(command[0]).name == "claude" and Path(process.cwd()) == workspace:
                found.append(process)
    return found


@dataclass
class Alice:
    """Alice's conversation, warm, with a secret word in it (and in a file of her workspace)."""

    word: str
    session: str
    ns: Namespace
    pids: list[int]


async def alice_confides(scene: Scene, alice: Client) -> Alice:
    word = f"zebra{uuid.uuid4().hex[:12]}"
    prompt = f"remember {word} " + tool_prompt("Bash", command=f"echo {word} > notes.txt && echo noted")
    done = await call(alice, "ask", prompt=prompt, allowed_tools=["Bash"])
    assert done["result"] == "TOOL_RESULT: noted"
    ns = scene.namespace(done["session_id"])
    assert word in ns.transcript.read_text()
    assert (ns.workspace / "notes.txt").read_text() == f"{word}\n"
    stored = b"".join(p.read_bytes() for p in scene.state.glob("state.sqlite3*"))
    assert word.encode() in stored, "the conversation is in the state DB"
    pids = [p.pid for p in clis_in(scene.server, ns.workspace)]
    assert pids, "alice's conversation is warm"
    return Alice(word, done["session_id"], ns, pids)


def hidden(text: str) -> str:
    """A grep pattern that finds `text` without holding it (the probe's own transcript would)."""
    return f"{text[:-1]}[{text[-1]}]"


@dataclass
class Findings:
    """What each of bob's probes printed: its answer, and its whole output (from bob's workspace)."""

    outputs: dict[str, str] = field(default_factory=dict)
    written: list[Path] = field(default_factory=list)
    """Where bob tried to write outside his workspace."""


async def hostile_battery(scene: Scene, bob: Client, alice: Alice) -> tuple[Findings, Namespace]:
    state, server_pid = scene.state, scene.server.process.pid
    findings = Findings()
    session: str | None = None
    ns: Namespace | None = None

    async def bash(name: str, command: str) -> None:
        nonlocal session, ns
        wrapped = f"( {command} ) > {name}.out 2>&1; echo {name} ran; head -c 1500 {name}.out"
        arguments: dict[str, Any] = {"prompt": tool_prompt("Bash", command=wrapped), "allowed_tools": ["Bash"]}
        if session is not None:
            arguments["session_id"] = session
        done = await call(bob, "ask", **arguments)
        assert done["result"].startswith(f"TOOL_RESULT: {name} ran"), (name, done["result"])
        session = done["session_id"]
        ns = ns or scene.namespace(session)
        findings.outputs[name] = done["result"] + "\n" + (ns.workspace / f"{name}.out").read_text(errors="replace")

    async def read(name: str, path: Path) -> None:
        assert session is not None
        done = await call(bob, "ask", prompt=tool_prompt("Read", file_path=str(path)), allowed_tools=["Read"],
                          session_id=session)  # fmt: skip
        assert done["result"].startswith("TOOL_RESULT: "), (name, done["result"])
        findings.outputs[name] = done["result"]

    them = alice.ns
    await bash("env", "env")
    await bash("environ", "for f in /proc/[0-9]*/environ; do echo \"== $f\"; tr '\\0' '\\n' < $f; echo; done")
    await bash("processes", "ps auxww; echo; ls /proc")
    kills = [f"kill -0 {pid}; echo kill {pid} $?" for pid in (server_pid, *alice.pids)]
    await bash("kill", "; ".join(kills) + f"; cat /proc/{alice.pids[0]}/environ")
    await bash("state", f"ls -la {state} {state}/*; find {state} -maxdepth 6")
    patterns = f"-e '{hidden(alice.word)}' -e '{hidden(scene.secrets[ALICE_KEY])}'"
    await bash("search", f"grep -rIl {patterns} /tmp /var /home /etc /opt 2>/dev/null; echo searched")
    await bash("transcript", f"cat {them.transcript}")
    await bash("their_files", f"ls -la {them.workspace} {them.config_dir}; cat {them.workspace}/notes.txt")
    await bash("server_files", f"cat {scene.config}; head -c 300 {state}/state.sqlite3; cat {state.parent}/server.log")
    findings.written = [
        state / "written-by-bob",
        them.config_dir / "written-by-bob",
        them.workspace / "written-by-bob",
        state.parent / "written-by-bob",
        TESTS / "written-by-bob",
        Path(sys.prefix) / "written-by-bob",
    ]
    await bash("write", "; ".join(f"touch {path} && echo wrote {path}" for path in findings.written))
    await bash(
        "symlinks",
        f"ln -sfn {state}/state.sqlite3 db; cat db; ln -sfn {them.workspace} theirs; ls -la theirs/; "
        f"cat theirs/notes.txt; ln -sfn {them.transcript} transcript; cat transcript; ln -sfn / root; ls root/tmp",
    )
    await read("read_transcript", them.transcript)
    await read("read_their_file", them.workspace / "notes.txt")
    await read("read_state_db", state / "state.sqlite3-wal")
    await read("read_config", scene.config)
    assert ns is not None
    return findings, ns


SERVER_VARIABLES = {"ALICE_TOKEN", "ALICE_KEY", "BOB_KEY", "CLAUDE_MCP_NAMESPACE_KEY", "PGPASSWORD", "CLAUDE_MCP_STATE"}


def leaks(scene: Scene, findings: Findings, alice: Alice, bob: Namespace) -> list[str]:
    """What bob's probes found of alice or of the server, one line each (nothing: an empty list).
    Checks first that each probe ran where it should: in bob's own sandbox, in his environment."""
    out = findings.outputs
    assert len(out) == 15
    assert f"ANTHROPIC_API_KEY={scene.bob_key}" in out["env"] and scene.bob_key in out["environ"]
    assert "claude" in out["processes"] and str(bob.workspace) in out["state"] and "searched" in out["search"]
    found = []
    never = {**scene.secrets, "alice's word": alice.word, "the state DB": SQLITE_MAGIC}
    for name, text in out.items():
        found += [f"{name}: {label}" for label, value in never.items() if value in text]
    names = {line.split("=", 1)[0] for line in out["env"].splitlines() if "=" in line}
    if names & SERVER_VARIABLES:
        found.append(f"env: the server's variables {sorted(names & SERVER_VARIABLES)}")
    listed = set(re.findall(r"^\d+$", out["processes"], re.MULTILINE))
    if listed & {str(scene.server.process.pid), *map(str, alice.pids)}:
        found.append("processes: the server's or alice's pid in /proc")
    if "claude_mcp serve" in out["processes"] or str(alice.ns.workspace) in out["processes"]:
        found.append("processes: the server's or alice's command line")
    found += [
        f"kill: reached {pid}" for pid in (scene.server.process.pid, *alice.pids) if f"kill {pid} 1" not in out["kill"]
    ]
    if scene.server.process.poll() is not None or not all(psutil.pid_exists(pid) for pid in alice.pids):
        found.append("kill: the server or alice's CLI is gone")
    own_paths = (str(alice.ns.workspace), str(alice.ns.transcript), str(alice.ns.config_dir))
    for name in ("state", "search", "symlinks"):
        text = out[name]
        for path in own_paths:  # (the paths bob named himself, echoed in error messages)
            text = text.replace(path, "")
        if alice.ns.name in text:
            found.append(f"{name}: alice's directory")
    if "state.sqlite3" in out["state"]:
        found.append("state: the state DB's file")
    if hits := [line for line in out["search"].splitlines() if line.startswith("/")]:
        found.append(f"search: {hits}")
    for name in ("transcript", "their_files", "server_files", "symlinks"):
        if out[name].count("No such file or directory") < 2:  # (each in the answer and in the whole output)
            found.append(f"{name}: a path outside his view")
    for name in ("read_transcript", "read_their_file", "read_state_db", "read_config"):
        if "File does not exist" not in out[name]:
            found.append(f"{name}: the Read tool reached it")
    found += [f"write: {path}" for path in findings.written if path.exists()]
    return found


async def battery_with_alice_warm(scene: Scene) -> None:
    async with scene.alice() as alice_client, scene.bob() as bob_client:
        alice = await alice_confides(scene, alice_client)
        findings, bob = await hostile_battery(scene, bob_client, alice)
        try:
            found = leaks(scene, findings, alice, bob)
            assert found == [], "bob found:\n" + "\n".join(found)
        finally:
            for path in findings.written:  # (written only where the wall failed)
                with contextlib.suppress(OSError):
                    path.unlink()
        recalled = await call(alice_client, "ask", prompt="what did I ask you to remember", session_id=alice.session)
        assert recalled["result"] == f"You asked me to remember {alice.word}"


@TENANTS
async def test_a_tenant_finds_nothing_of_another_tenant_or_of_the_server(tenants: Scene) -> None:
    await battery_with_alice_warm(tenants)


@CALLERS
async def test_a_caller_finds_nothing_of_another_caller_or_of_the_server(callers: Scene) -> None:
    await battery_with_alice_warm(callers)


# --- The positive side: inside its wall, a namespace's own work goes on as before. ---


@TENANTS
async def test_a_namespaces_own_tools_conversations_jobs_and_mcp_servers_work_inside_its_wall(
    tenants: Scene,
) -> None:
    scene, tag = tenants, uuid.uuid4().hex[:8]
    workspace, theirs = scene.state / "workspaces" / "alice", scene.state / "workspaces" / "bob"
    written = workspace / f"written-{tag}.txt"
    look = f"cat bash-{tag}.txt {written.name}; pwd; echo key=$ANTHROPIC_API_KEY; tr '\\0' ' ' < /proc/1/cmdline"
    steps = [
        tool_prompt("Bash", command=f"echo bash-{tag} > bash-{tag}.txt && echo done"),
        tool_prompt("Write", file_path=str(written), content=f"written {tag}\n"),
        tool_prompt("Read", file_path=str(written)),
        tool_prompt("Edit", file_path=str(written), old_string="written", new_string="edited"),
        tool_prompt("Bash", command=look),
    ]
    async with scene.alice() as alice:
        first = await call(alice, "ask", prompt="".join(steps), allowed_tools=OWN_TOOLS)
        answer = first["result"]
        assert f"bash-{tag}\nedited {tag}\n{workspace}\nkey={scene.secrets[ALICE_KEY]}\n" in answer, answer
        assert "bwrap" in answer and f"--bind {workspace} " in answer and str(theirs) not in answer, answer
        assert (workspace / f"bash-{tag}.txt").read_text() == f"bash-{tag}\n"  # on the host, in its workspace
        assert written.read_text() == f"edited {tag}\n"

        warm_before = await scene.metric("claude_mcp_run_processes_total", source="warm")
        again = await call(alice, "ask", prompt=tool_prompt("Bash", command=f"cat {written.name}"),
                           allowed_tools=OWN_TOOLS, session_id=first["session_id"])  # fmt: skip
        assert again["result"] == f"TOOL_RESULT: edited {tag}"
        assert await scene.metric("claude_mcp_run_processes_total", source="warm") == warm_before + 1

        fork_look = f"cat bash-{tag}.txt; tr '\\0' ' ' < /proc/1/cmdline"
        forked = await call(alice, "fork_session", session_id=first["session_id"],
                            prompt=tool_prompt("Bash", command=fork_look), allowed_tools=["Bash"])  # fmt: skip
        assert (
            forked["answer"]["result"].startswith(f"TOOL_RESULT: bash-{tag}\n")
            and "bwrap" in forked["answer"]["result"]
        )

        worker = {"worker": {"description": "Works", "prompt": "You work.", "tools": ["Bash"]}}
        job_step = tool_prompt("Bash", command=f"echo job-{tag} > job-{tag}.txt && cat job-{tag}.txt")
        job = await call(alice, "run_agent", agent="worker", agents=worker, prompt=job_step, allowed_tools=["Bash"],
                         wait_s=30)  # fmt: skip
        assert job["status"] == "completed" and f"job-{tag}" in job["result"]["result"], job
        assert (workspace / f"job-{tag}.txt").read_text() == f"job-{tag}\n"

        shout = tool_prompt("mcp__echo__shout", text=f"hello {tag}")
        shouted = await call(alice, "ask", prompt=shout, mcp_servers={"echo": ECHO_SERVER},
                             allowed_tools=["mcp__echo__shout"])  # fmt: skip
        # A stdio MCP server, started by the CLI inside its sandbox (its script in `sandbox_readable`).
        assert shouted["result"].startswith("TOOL_RESULT: ") and f"HELLO {tag.upper()}!" in shouted["result"]


@TENANTS
async def test_a_spare_is_walled_and_serves_only_the_namespace_it_was_started_for(
    tenants: Scene, fake_model: FakeModel
) -> None:
    scene, word = tenants, f"spare{uuid.uuid4().hex[:8]}"
    assert scene.carol is not None
    workspace = scene.state / "workspaces" / "carol"
    deadline = time.monotonic() + 20
    while not (spares := clis_in(scene.server, workspace)):  # started with the server, before any conversation
        assert time.monotonic() < deadline, "carol's spare never started"
        await anyio.sleep(0.05)
    (spare,) = spares
    assert spare.parent().name() == "bwrap"
    on_spares = await scene.metric("claude_mcp_run_processes_total", source="spare")
    async with scene.carol() as carol:
        done = await call(carol, "ask", prompt=f"[[report]] {word}")
    assert await scene.metric("claude_mcp_run_processes_total", source="spare") == on_spares + 1
    assert spare.is_running() and spare in clis_in(scene.server, workspace)  # now carol's conversation's process
    report = json.loads(done["result"])
    assert (
        report["api_key"] == scene.secrets["carol's key"] and str(workspace) in report["system"] + report["environment"]
    )
    assert {r["api_key"] for r in fake_model.requests_for(word)} == {scene.secrets["carol's key"]}


# --- Refusals at start: a server for several users never runs without walls by accident. ---


def refused_start(tmp_path: Path, config: Path) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "CLAUDE_"))}
    env = {**environ, "ALICE_TOKEN": unique("a"), "ALICE_KEY": api_key("a"), "BOB_KEY": api_key("b"),
           "CLAUDE_MCP_STATE": str(tmp_path / "state")}  # fmt: skip
    return subprocess.run(
        [sys.executable, "-m", "claude_mcp", "serve", "--transport", "http", "--port", "0", "--config", str(config)],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL, env=env,
    )  # fmt: skip


@pytest.mark.parametrize("users", ["tenants", "callers"])
def test_isolation_none_for_several_users_is_refused_without_the_acknowledgement(
    tmp_path: Path, fake_model: FakeModel, users: str
) -> None:
    top = 'isolation = "none"' + ('\ncredentials = "caller"' if users == "callers" else "")
    tables = tenants_tables(unique("bob")) if users == "tenants" else ""
    done = refused_start(tmp_path, write_walls_config(tmp_path / "bare.toml", model_env(fake_model), top, tables))
    assert done.returncode == 2, done.stderr
    assert 'isolation = "none" on a server for several users' in done.stderr, done.stderr
    assert "read the other users' files" in done.stderr and "isolation_none_acknowledged = true" in done.stderr
    assert "listening on" not in done.stderr + done.stdout


def test_a_server_for_several_users_refuses_to_start_without_bubblewrap(tmp_path: Path, fake_model: FakeModel) -> None:
    top = 'bwrap_path = "/nonexistent/bwrap"'
    config = write_walls_config(tmp_path / "nobwrap.toml", model_env(fake_model), top, tenants_tables(unique("bob")))
    done = refused_start(tmp_path, config)
    assert done.returncode == 2, done.stderr
    assert "Refusing to start: each user's Claude must run in a sandbox here" in done.stderr, done.stderr
    assert "bubblewrap (`/nonexistent/bwrap`) is not installed" in done.stderr
    assert "listening on" not in done.stderr + done.stdout


# --- One person's own server: no sandbox by default, but the environment allowlist all the same. ---


def names_in(env_text: str) -> set[str]:
    return {line.split("=", 1)[0] for line in env_text.splitlines() if "=" in line}


async def test_one_persons_server_gives_its_cli_only_the_allowlisted_environment(
    tmp_path: Path, workdir: Path, cli_env: dict[str, str]
) -> None:
    """`serving` runs the server with tenants' variables in its environment (ALICE_TOKEN, ALICE_KEY,
    BOB_KEY) though its config has no tenants: none of them reaches the CLI."""
    config = write_config(tmp_path / "local.toml", workdir, cli_env)
    with serving(tmp_path, config, "http") as server:
        async with connect(server, None) as client:
            listed = tool_prompt(
                "Bash", command="env > env.out; tr '\\0' '\\n' < /proc/$PPID/environ > cli.out; echo listed"
            )
            assert (await call(client, "ask", prompt=listed, allowed_tools=["Bash"]))["result"] == "TOOL_RESULT: listed"
    env_text, cli_text = (workdir / "env.out").read_text(), (workdir / "cli.out").read_text()  # its shell's, the CLI's
    for text in (env_text, cli_text):
        assert f"ANTHROPIC_API_KEY={cli_env['ANTHROPIC_API_KEY']}" in text  # its own, from cli_env
        assert f"HOME={cli_env['HOME']}" in text
        assert "ALICE_TOKEN" not in text and "ALICE_KEY" not in text and "BOB_KEY" not in text
        assert "alice-token-0123456789" not in text and "sk-alice" not in text and "sk-bob" not in text
        assert "CLAUDE_MCP_STATE=" not in text


async def test_a_plain_bridge_gives_its_cli_only_the_allowlisted_environment(
    client: Client, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A library user's `ClaudeBridge(policy)`: the process's secrets stay out of its CLI; the person's
    usual variables (their git identity, here) pass."""
    secrets = {"CLAUDE_MCP_NAMESPACE_KEY": unique("ns"), "PGPASSWORD": unique("pg"), "APP_TOKEN": unique("app")}
    for name, value in {**secrets, "GIT_AUTHOR_NAME": "Walls Tester"}.items():
        monkeypatch.setenv(name, value)
    done = await call(client, "ask", prompt=tool_prompt("Bash", command="env > env.out; echo listed"),
                      allowed_tools=["Bash"])  # fmt: skip
    assert done["result"] == "TOOL_RESULT: listed"
    env_text = (workdir / "env.out").read_text()
    assert "GIT_AUTHOR_NAME=Walls Tester" in env_text
    assert not names_in(env_text) & set(secrets)
    assert not [value for value in secrets.values() if value in env_text]


# --- The server's database: its URL (and password) never reach a sandbox. ---


async def test_the_state_database_url_never_reaches_a_sandbox(
    tmp_path: Path, fake_model: FakeModel, postgres_database: str
) -> None:
    password = unique("db-password")
    url = postgres_database.replace("postgres@", f"postgres:{password}@", 1)  # (trust auth: accepted as is)
    bob_token = unique("bob-token")
    config = write_walls_config(tmp_path / "pg.toml", model_env(fake_model), "", tenants_tables(bob_token))
    env = {"ALICE_TOKEN": unique("a"), "ALICE_KEY": api_key("a"), "BOB_KEY": api_key("b"), "CLAUDE_MCP_STATE_URL": url,
           "CLAUDE_MCP_STATE": str(tmp_path / "state")}  # fmt: skip
    with walled_server(tmp_path, config, env) as server:
        async with connect(server, bob_token) as bob:
            listed = tool_prompt("Bash", command="env > env.out; for f in /proc/[0-9]*/environ; do tr '\\0' '\\n' "
                                 "< $f; done > environ.out; echo listed")  # fmt: skip
            done = await call(bob, "ask", prompt=listed, allowed_tools=["Bash"])
            assert done["result"] == "TOOL_RESULT: listed"
    assert not (tmp_path / "state" / "state.sqlite3").exists()  # the server kept its state in PostgreSQL
    database = postgres_database.rsplit("/", 1)[1]
    for name in ("env.out", "environ.out"):
        text = (tmp_path / "state" / "workspaces" / "bob" / name).read_text()
        assert "ANTHROPIC_API_KEY=" in text
        assert password not in text and database not in text and "postgresql://" not in text
        assert not [name for name in names_in(text) if name.startswith("PG") or name == "CLAUDE_MCP_STATE_URL"]


# --- Holes found while writing this battery (#27): the server itself, unsandboxed, follows a symlink a
# namespace planted in its own (writable) Claude config dir. Strict: each turns into a failure once fixed.


def must(condition: bool, what: str) -> None:
    """A precondition (not the leak under test, which is the test's only `assert`)."""
    if not condition:
        pytest.fail(what)


@pytest.mark.parametrize("users", [pytest.param("tenants", marks=TENANTS), pytest.param("callers", marks=CALLERS)])
async def test_a_namespace_cannot_make_the_server_copy_host_files_into_its_sandbox(
    request: pytest.FixtureRequest, users: str
) -> None:
    scene: Scene = request.getfixturevalue(users)
    plant = (
        "ln -sfn /proc/self/environ $CLAUDE_CONFIG_DIR/settings.json; "
        f"ln -sfn {scene.state}/state.sqlite3-wal $CLAUDE_CONFIG_DIR/cowork_settings.json; echo planted"
    )
    steal = "cat $CLAUDE_CONFIG_DIR/settings.json $CLAUDE_CONFIG_DIR/cowork_settings.json | tr '\\0' '\\n' > stolen.out"
    async with scene.alice() as alice_client, scene.bob() as bob:
        alice = await alice_confides(scene, alice_client)
        try:
            planted = await bob.call_tool(
                "ask", {"prompt": tool_prompt("Bash", command=plant), "allowed_tools": ["Bash"]}
            )
            must(text_of(planted) == "TOOL_RESULT: planted", text_of(planted))
            session = (planted.structured_content or {})["session_id"]
            bob_ns = scene.namespace(session)
            stolen = bob_ns.workspace / "stolen.out"
            forked = await bob.call_tool(
                "fork_session",
                {"session_id": session, "prompt": tool_prompt("Bash", command=f"{steal}; echo done"),
                 "allowed_tools": ["Bash"]},
            )  # fmt: skip
            must(not forked.is_error and stolen.exists(), text_of(forked))
        finally:
            for planted_link in scene.state.glob("*/*/*settings.json"):  # (bob's links, wherever they are)
                if planted_link.is_symlink():
                    planted_link.unlink()
    text = stolen.read_text(errors="replace")
    found = [label for label, value in {**scene.secrets, "alice's word": alice.word}.items() if value in text]
    assert found == [], f"bob's sandbox received a copy of: {found}"


async def test_a_namespace_cannot_make_the_server_import_another_namespaces_conversations(
    tmp_path: Path, fake_model: FakeModel
) -> None:
    alice_token, bob_token = unique("alice-token"), unique("bob-token")
    state, word = tmp_path / "state", f"zebra{uuid.uuid4().hex[:12]}"
    config = write_walls_config(tmp_path / "walls.toml", model_env(fake_model), "", tenants_tables(bob_token))
    env = {"ALICE_TOKEN": alice_token, "ALICE_KEY": api_key("a"), "BOB_KEY": api_key("b"),
           "CLAUDE_MCP_STATE": str(state)}  # fmt: skip
    # Alice's project directory, as bob can name it: the CLI's key of her workspace's path.
    theirs = (
        state / "tenants" / "alice" / "projects" / re.sub(r"[^a-zA-Z0-9]", "-", str(state / "workspaces" / "alice"))
    )
    plant = (
        "rm -f $CLAUDE_CONFIG_DIR/claude-mcp/imported-transcripts; mkdir -p $CLAUDE_CONFIG_DIR/projects; "
        f"ln -sfn {theirs} $CLAUDE_CONFIG_DIR/projects/stolen; echo planted"
    )
    with walled_server(tmp_path, config, env, "first") as server:
        async with connect(server, alice_token) as alice:
            said = await alice.call_tool("ask", {"prompt": f"remember {word}"})
            session = (said.structured_content or {}).get("session_id")
        must(theirs.is_dir() and session is not None, text_of(said))
        async with connect(server, bob_token) as bob:
            planted = await bob.call_tool(
                "ask", {"prompt": tool_prompt("Bash", command=plant), "allowed_tools": ["Bash"]}
            )
            must(text_of(planted) == "TOOL_RESULT: planted", text_of(planted))
    marker = state / "tenants" / "bob" / "claude-mcp" / "imported-transcripts"
    with walled_server(tmp_path, config, env, "restarted") as server:  # a restart (say, a deploy)
        deadline = time.monotonic() + 5
        while not marker.exists() and time.monotonic() < deadline:  # the import runs at start, in the background
            await anyio.sleep(0.05)
        async with connect(server, bob_token) as bob:
            listed = await bob.call_tool("list_sessions", {})
            got = await bob.call_tool("get_session", {"session_id": session})
    found = ["list_sessions lists it"] if session in text_of(listed) or word in text_of(listed) else []
    found += [f"get_session returns it: {text_of(got)[:300]}"] if not got.is_error else []
    assert found == [], f"alice's conversation, in bob's namespace: {found}"
