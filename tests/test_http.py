"""The HTTP transports with tenants: `claude-mcp serve --transport http|sse` as a subprocess,
reached by the `mcp` client over loopback, running the real CLI against the fake model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx2
import psutil
import pytest
from mcp import Client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client

from claude_mcp.config.tenants import token_hash
from tests.conftest import STORM, call, text_of, tool_prompt
from tests.test_stdio import write_config
from tests.test_streaming_and_cancellation import cmdline, wait_for_sleep, wait_until_gone
from tests.zygote import Forked, spawn

pytestmark = pytest.mark.anyio

ALICE, BOB = "alice-token-0123456789", "bob-token-9876543210"


@dataclass
class RunningServer:
    url: str
    process: Forked | subprocess.Popen[bytes]

    @property
    def base(self) -> str:
        return self.url.rsplit("/", 1)[0]


def tenants_config(path: Path, workdir: Path, cli_env: dict[str, str]) -> Path:
    env_lines = "\n".join(f"{key} = {json.dumps(value)}" for key, value in cli_env.items())
    path.write_text(
        f"roots = [{json.dumps(str(workdir))}]\napi_retries = 0\nmax_concurrent = 8\ndrain_grace_s = 2\n"
        f"[cli_env]\n{env_lines}\n"
        '[tenants.alice]\ntoken_env = "ALICE_TOKEN"\napi_key_env = "ALICE_KEY"\n'
        f'[tenants.bob]\ntoken_sha256 = "{token_hash(BOB)}"\napi_key_env = "BOB_KEY"\n'
        "[tenants.bob.policy]\nmax_turns = 5\n"
    )
    return path


@contextmanager
def serving(
    tmp_path: Path, config: Path, transport: str, *flags: str, name: str | None = None
) -> Iterator[RunningServer]:
    """A server subprocess; `name` gives it a log and a local state directory of its own (a replica)."""
    log = tmp_path / f"server-{name or transport}.log"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "CLAUDE_"))},
        "ALICE_TOKEN": ALICE,
        "ALICE_KEY": "sk-alice",
        "BOB_KEY": "sk-bob",
        "CLAUDE_MCP_STATE": str(tmp_path / (name or "state")),
    }
    with log.open("wb") as sink:
        process = spawn(
            ["serve", "--transport", transport, "--port", "0", "--config", str(config), *flags],
            env=env, stdout=sink, stderr=sink,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while "listening on " not in log.read_text():
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        url = log.read_text().split("listening on ", 1)[1].split()[0].split('"')[0]  # plain, or a JSON line
        yield RunningServer(url, process)
    finally:
        process.terminate()
        process.wait(timeout=20)


@pytest.fixture
def config(tmp_path: Path, workdir: Path, cli_env: dict[str, str]) -> Path:
    return tenants_config(tmp_path / "tenants.toml", workdir, cli_env)


@pytest.fixture(params=["http", "sse"])
def server(request: pytest.FixtureRequest, tmp_path: Path, config: Path) -> Iterator[RunningServer]:
    with serving(tmp_path, config, request.param) as running:
        yield running


@asynccontextmanager
async def connect(server: RunningServer, token: str | None, mode: str = "auto") -> AsyncIterator[Client]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx2.AsyncClient(headers=headers, timeout=60) as http:
        if server.url.endswith("/sse"):
            transport: Any = sse_client(server.url, headers=headers, timeout=60)  # as the HTTP client has
        else:
            transport = streamable_http_client(server.url, http_client=http)
        async with Client(transport, mode=mode) as client:  # type: ignore[arg-type]
            yield client


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_each_tenant_reaches_claude_with_its_own_credential(server: RunningServer, mode: str) -> None:
    async with connect(server, ALICE, mode) as alice, connect(server, BOB, mode) as bob:
        assert "ask" in {tool.name for tool in (await alice.list_tools()).tools}
        seen_by_alice = json.loads((await call(alice, "ask", prompt="[[report]]"))["result"])
        seen_by_bob = json.loads((await call(bob, "ask", prompt="[[report]]"))["result"])
    assert seen_by_alice["api_key"] == "sk-alice"
    assert seen_by_bob["api_key"] == "sk-bob"


async def test_tenants_never_see_each_others_sessions_or_jobs(server: RunningServer) -> None:
    async with connect(server, ALICE) as alice, connect(server, BOB) as bob:
        session = (await call(alice, "ask", prompt="remember secretword"))["session_id"]
        job = (await call(alice, "run_agent", agent="helper", prompt="hi", wait_s=5, agents=HELPER))["job_id"]
        assert session in [s["session_id"] for s in (await call(alice, "list_sessions"))["sessions"]]
        assert (await call(bob, "list_sessions"))["sessions"] == []
        assert (await call(bob, "list_jobs"))["jobs"] == []
        unknown_session = "00000000-0000-4000-8000-000000000000"
        for tool, arguments in [
            ("ask", {"prompt": "what did I ask you to remember", "session_id": session}),
            ("fork_session", {"session_id": session}),
            ("get_session", {"session_id": session}),
            ("delete_session", {"session_id": session}),
        ]:
            refused = await bob.call_tool(tool, arguments)
            unknown = await bob.call_tool(tool, {**arguments, "session_id": unknown_session})
            assert refused.is_error and unknown.is_error
            assert text_of(refused) == text_of(unknown), tool
        for tool in ("get_job", "cancel_job"):
            refused = await bob.call_tool(tool, {"job_id": job})
            unknown = await bob.call_tool(tool, {"job_id": unknown_session})
            assert refused.is_error and text_of(refused) == text_of(unknown)
        recalled = await call(alice, "ask", prompt="what did I ask you to remember", session_id=session)
        assert recalled["result"] == "You asked me to remember secretword"
        assert (await call(alice, "get_job", job_id=job))["status"] == "completed"


HELPER = {"helper": {"description": "Helps", "prompt": "You help."}}


async def test_tenant_policy_overrides_apply(server: RunningServer) -> None:
    async with connect(server, BOB) as bob, connect(server, ALICE) as alice:
        refused = await bob.call_tool("ask", {"prompt": "x", "max_turns": 6})
        assert refused.is_error and "exceeds the server limit of 5" in text_of(refused)
        assert not (await alice.call_tool("ask", {"prompt": "x", "max_turns": 6})).is_error


async def test_requests_without_a_valid_token_get_401(server: RunningServer) -> None:
    async with httpx2.AsyncClient() as http:
        for headers in ({}, {"Authorization": "Bearer wrong-token"}, {"Authorization": "Basic abc"}):
            if server.url.endswith("/sse"):
                response = await http.get(server.url, headers=headers)
            else:
                response = await http.post(
                    server.url, headers=headers, json={"jsonrpc": "2.0", "id": 1, "method": "ping"}
                )
            assert response.status_code == 401, headers
            assert ALICE not in response.text
        health = await http.get(server.base + "/healthz")
        assert health.status_code == 200 and health.json() == {"status": "ok"}


async def test_dns_rebinding_is_rejected(server: RunningServer) -> None:
    headers = {"Authorization": f"Bearer {ALICE}", "Host": "evil.example", "Content-Type": "application/json"}
    async with httpx2.AsyncClient() as http:
        if server.url.endswith("/sse"):
            response = await http.get(server.url, headers=headers)
        else:
            body = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
            response = await http.post(server.url, headers=headers, json=body)
        assert response.status_code in (403, 421), response.text
        origin = {"Authorization": f"Bearer {ALICE}", "Origin": "http://evil.example"}
        if server.url.endswith("/sse"):
            response = await http.get(server.url, headers=origin)
        else:
            response = await http.post(server.url, headers=origin, json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
        assert response.status_code == 403, response.text
        for path in ("/healthz", "/readyz", "/metrics"):  # a rebound page reads none of them either
            rebound = await http.get(server.base + path, headers={"Host": "evil.example"})
            assert rebound.status_code == 421 and rebound.json()["error"] == "forbidden", (path, rebound.text)
            foreign = await http.get(server.base + path, headers={"Origin": "http://evil.example"})
            assert foreign.status_code == 403, (path, foreign.text)
        assert (await http.get(server.base + "/healthz")).status_code == 200


def test_listening_beyond_loopback_without_tokens_is_refused(tmp_path: Path) -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "claude_mcp", "serve", "--transport", "http", "--host", "0.0.0.0", "--port", "0"],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL, cwd=tmp_path,
    )  # fmt: skip
    assert completed.returncode == 2
    assert "Refusing to listen on 0.0.0.0 without authentication" in completed.stderr


HOSTILE: list[tuple[str, dict[str, Any], str]] = [
    ("ask", {"prompt": "x", "cwd": "../../../../etc"}, "outside the allowed roots"),
    ("ask", {"prompt": "x", "add_dirs": ["/", "../.."]}, "outside the allowed roots"),
    ("ask", {"prompt": "x", "cwd": "work\x00/etc"}, "cwd"),
    ("ask", {"prompt": "x", "model": "haiku; rm -rf / #"}, "model"),
    ("ask", {"prompt": "x", "model": "--dangerously-skip-permissions"}, "model"),
    ("ask", {"prompt": "x" * (1024 * 1024 + 1)}, "max_prompt_kb"),
    ("ask", {"prompt": "x", "json_schema": {"type": "object", "required": "yes"}}, "json_schema"),
    ("ask", {"prompt": "x", "session_id": "../../../etc/passwd"}, "session_id"),
    ("ask", {"prompt": "x", "mcp_servers": {"x; rm": {"command": "sh"}}}, "mcp_servers"),
    ("ask", {"prompt": ["not", "text"]}, "prompt"),
    ("ask", {"prompt": "x", "max_turns": "1; drop"}, "max_turns"),
    ("ask", {"prompt": "x", "unknown": True}, "unknown argument 'unknown'"),
    ("get_session", {"session_id": "*"}, "session_id"),
    ("list_sessions", {"limit": 10**9}, "limit"),
    ("get_job", {"job_id": "'; DROP TABLE jobs; --"}, "job_id"),
    ("fork_session", {"session_id": None}, "session_id"),
    ("run_agent", {"agent": "../x", "prompt": "x"}, "agent"),
]


async def test_hostile_arguments_get_clear_errors_and_the_server_keeps_serving(server: RunningServer) -> None:
    async with connect(server, ALICE) as alice:
        for tool, arguments, complaint in HOSTILE:
            result = await alice.call_tool(tool, arguments)
            assert result.is_error, (tool, arguments)
            assert complaint in text_of(result), (tool, text_of(result))
            assert "Traceback" not in text_of(result)
        assert (await call(alice, "ask", prompt="still fine"))["result"] == "Echo: still fine"


async def test_an_oversized_request_body_is_refused(tmp_path: Path, config: Path) -> None:
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": "ask", "arguments": {"prompt": "x" * 5_000_000}},
    }
    headers = {"Authorization": f"Bearer {ALICE}", "Accept": "application/json, text/event-stream"}
    with serving(tmp_path, config, "http") as server:
        async with httpx2.AsyncClient() as http:
            response = await http.post(server.url, headers=headers, json=body)
    assert response.status_code == 413


@STORM
async def test_many_concurrent_clients_lose_nothing_and_leave_no_process(server: RunningServer) -> None:
    answers: dict[int, str] = {}

    async def one(i: int) -> None:
        async with connect(server, ALICE if i % 2 else BOB) as client:
            answers[i] = (await call(client, "ask", prompt=f"load {i}"))["result"]

    with anyio.fail_after(120):
        async with anyio.create_task_group() as tasks:
            for i in range(8):
                tasks.start_soon(one, i)
    assert answers == {i: f"Echo: load {i}" for i in range(8)}
    tree = psutil.Process(server.process.pid).children(recursive=True)
    server.process.terminate()
    server.process.wait(timeout=20)
    with anyio.fail_after(10):
        while any(cmdline(p) for p in tree):
            await anyio.sleep(0.1)


def one_run_slot(config: Path) -> Path:
    config.write_text(config.read_text().replace("max_concurrent = 8", "max_concurrent = 1\nmax_warm = 0"))
    return config


async def test_tenants_share_the_servers_cap_on_runs(tmp_path: Path, config: Path) -> None:
    """`max_concurrent` is the whole server's: with one run slot, alice's and bob's runs take turns."""
    one_run_slot(config)
    answers: dict[str, str] = {}
    peak = 0
    with serving(tmp_path, config, "http") as server:
        root = psutil.Process(server.process.pid)

        async def watch() -> None:
            nonlocal peak
            while True:
                peak = max(peak, sum(1 for p in root.children(recursive=True) if "claude" in cmdline(p).split(" ")[0]))
                await anyio.sleep(0.02)

        async def one(who: str, token: str) -> None:
            async with connect(server, token) as client:
                answers[who] = (await call(client, "ask", prompt=f"[[slow:50]] {who} a b c d"))["result"]

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(watch)
            with anyio.fail_after(60):
                async with anyio.create_task_group() as calls:
                    calls.start_soon(one, "alice", ALICE)
                    calls.start_soon(one, "bob", BOB)
            tasks.cancel_scope.cancel()
    assert sorted(answers) == ["alice", "bob"] and all(answers.values())
    assert peak == 1  # a run's CLI, until it has exited, holds the one slot of both tenants


async def test_a_call_in_progress_stops_when_the_server_is_terminated(server: RunningServer) -> None:
    with pytest.raises(Exception):  # noqa: B017 - the connection ends under the client
        async with connect(server, ALICE) as alice, anyio.create_task_group() as tasks:
            prompt = tool_prompt("Bash", command="echo started && sleep 37")
            arguments = {"prompt": prompt, "allowed_tools": ["Bash(echo *)", "Bash(sleep *)"]}
            tasks.start_soon(alice.call_tool, "ask", arguments)
            with anyio.fail_after(30):
                while not any("sleep 37" in cmdline(p) for p in psutil.Process(server.process.pid).children(True)):
                    await anyio.sleep(0.05)
            tree = psutil.Process(server.process.pid).children(recursive=True)
            server.process.terminate()
            with anyio.fail_after(15):
                while any(cmdline(p) for p in tree):
                    await anyio.sleep(0.05)
            raise RuntimeError("server stopped")


@pytest.mark.parametrize("isolation", ["none", "sandbox"])
async def test_a_killed_servers_cli_and_its_tools_die_with_it(
    tmp_path: Path, workdir: Path, cli_env: dict[str, str], isolation: str
) -> None:
    """SIGKILL leaves the server no chance to stop anything: the kernel tells the CLI
    (`PR_SET_PDEATHSIG`; in the sandbox, bubblewrap's `--die-with-parent`), and nothing of the run
    goes on running, or writing, after — over HTTP, with the call's job running on."""
    config = write_config(tmp_path / "c.toml", workdir, cli_env, f'isolation = "{isolation}"')
    marker = workdir / "marker"
    late = tool_prompt("Bash", command=f"echo started && sleep 37; touch {marker}")
    allowed = ["Bash(echo *)", "Bash(sleep *)", "Bash(touch *)"]
    agents = {"e": {"description": "E", "prompt": "E"}}
    job = {"agent": "e", "agents": agents, "prompt": late, "allowed_tools": allowed, "wait_s": 0}
    with serving(tmp_path, config, "http") as server:
        root = psutil.Process(server.process.pid)
        with pytest.raises(Exception):  # noqa: B017 - the connection ends under the client
            async with (
                httpx2.AsyncClient(timeout=60) as http,
                Client(streamable_http_client(server.url, http_client=http)) as client,
            ):
                started = await client.call_tool("run_agent", job)
                assert not started.is_error, text_of(started)
                tree = await wait_for_sleep(root)
                server.process.kill()
                await wait_until_gone(tree)
                raise RuntimeError("server gone")
    await anyio.sleep(0.5)  # what a surviving shell would do next, it would have done by now
    assert tree and not marker.exists()


async def test_mcp_sessions_are_bounded_and_a_refusal_is_clear(tmp_path: Path, workdir: Path) -> None:
    config = write_config(tmp_path / "c.toml", workdir, {}, "max_mcp_sessions = 2")
    opening = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}  # fmt: skip
    headers = {"Accept": "application/json, text/event-stream"}
    with serving(tmp_path, config, "http") as server:
        async with httpx2.AsyncClient(timeout=30) as http:
            opened = [await http.post(server.url, json=opening, headers=headers) for _ in range(2)]
            assert all(r.status_code == 200 and r.headers.get("mcp-session-id") for r in opened)
            refused = await http.post(server.url, json=opening, headers=headers)
            assert refused.status_code == 503 and "Too many open sessions" in refused.text
            ended = await http.delete(server.url, headers={"mcp-session-id": opened[0].headers["mcp-session-id"]})
            assert ended.status_code == 200
            assert (await http.post(server.url, json=opening, headers=headers)).status_code == 200


async def test_a_streamable_http_client_that_goes_away_mid_call_stops_its_run(
    tmp_path: Path, workdir: Path, cli_env: dict[str, str]
) -> None:
    config = write_config(tmp_path / "c.toml", workdir, cli_env)
    headers = {"Accept": "application/json, text/event-stream"}
    opening = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}  # fmt: skip
    sleep = tool_prompt("Bash", command="echo started && sleep 37")
    call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
        "name": "ask", "arguments": {"prompt": sleep, "allowed_tools": ["Bash(echo *)", "Bash(sleep *)"]}}}  # fmt: skip
    with serving(tmp_path, config, "http") as server:
        root = psutil.Process(server.process.pid)
        async with httpx2.AsyncClient(timeout=60) as http:
            opened = await http.post(server.url, json=opening, headers=headers)
            session = {**headers, "mcp-session-id": opened.headers["mcp-session-id"]}
            await http.post(server.url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=session)
            async with http.stream("POST", server.url, json=call, headers=session) as streaming:
                assert streaming.status_code == 200
                tree = await wait_for_sleep(root)
            # the client has dropped the connection, with no notifications/cancelled of its own
        await wait_until_gone(tree, within_s=10)
        assert server.process.poll() is None  # the server goes on serving
