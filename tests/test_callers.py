"""Callers who bring their own Claude credential (`credentials = "caller"`): each HTTP request
carries `X-Claude-Credential`; every model request of a caller's runs uses that caller's key
(never the server's); callers never see each other's work; subscription tokens only where the
operator allows them; credentials never reach the disk or the logs. A `claude-mcp serve`
subprocess, the `mcp` client over Streamable HTTP and SSE, the real CLI, the fake model."""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, closing, contextmanager
from pathlib import Path
from typing import Any

import anthropic
import anyio
import httpx2
import psutil
import pytest
from anthropic.types import MessageParam
from mcp import Client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client

from claude_mcp import Busy, ConfigError, Policy
from claude_mcp.bridge.callers import CallerPool
from claude_mcp.bridge.slots import RunSlots
from claude_mcp.bridge.tenancy import Tenancy
from claude_mcp.bridge.walls import Walls, write_wrapper
from claude_mcp.config.credentials import CallerCredential
from claude_mcp.state.sqlite import SqliteStore
from claude_mcp.web.app import check_binding
from tests.conftest import STORM, FakeModel, call, text_of, tool_prompt
from tests.test_http import RunningServer, serving
from tests.test_sessions import RECALL
from tests.test_streaming_and_cancellation import wait_until_gone

pytestmark = pytest.mark.anyio

SERVER_OWN_KEY = "sk-ant-api03-server-own-key-never-for-callers"


def api_key(who: str) -> str:
    return f"sk-ant-api03-{who}-{uuid.uuid4().hex}"


def callers_config(path: Path, workdir: Path, cli_env: dict[str, str], extra: str = "") -> Path:
    """A caller-credential server whose own CLI environment holds a key of its own (never to be used)."""
    env = {**cli_env, "ANTHROPIC_API_KEY": SERVER_OWN_KEY}
    env_lines = "\n".join(f"{key} = {json.dumps(value)}" for key, value in env.items())
    path.write_text(
        f'credentials = "caller"\nroots = [{json.dumps(str(workdir))}]\napi_retries = 0\nmax_concurrent = 8\n'
        f"{extra}\n[cli_env]\n{env_lines}\n"
    )
    return path


@pytest.fixture
def config(tmp_path: Path, workdir: Path, cli_env: dict[str, str]) -> Path:
    return callers_config(tmp_path / "callers.toml", workdir, cli_env)


@contextmanager
def caller_server(tmp_path: Path, config: Path, transport: str = "http", *flags: str) -> Iterator[RunningServer]:
    with serving(tmp_path, config, transport, *flags, name=f"callers-{transport}") as running:
        yield running


@asynccontextmanager
async def connect_as(server: RunningServer, credential: str) -> AsyncIterator[Client]:
    headers = {"X-Claude-Credential": credential}
    async with httpx2.AsyncClient(headers=headers, timeout=60) as http:
        if server.url.endswith("/sse"):
            transport: Any = sse_client(server.url, headers=headers, timeout=60)  # as the HTTP client has
        else:
            transport = streamable_http_client(server.url, http_client=http)
        async with Client(transport) as client:  # type: ignore[arg-type]
            yield client


def keys_seen(fake: FakeModel, word: str) -> set[str | None]:
    """The credentials (API key or bearer token) of every model request whose prompt mentions `word`."""
    return {r["api_key"] or r["authorization"] for r in fake.requests() if word in r["prompt"]}


def files_holding(root: Path, secret: str) -> tuple[list[Path], list[Path]]:
    """Every file under `root` (the state, the Claude config dirs, the server log), and those holding `secret`."""
    written = [path for path in root.rglob("*") if path.is_file()]
    return written, [path for path in written if secret.encode() in path.read_bytes()]


@pytest.mark.parametrize("transport", ["http", "sse"])
async def test_each_caller_runs_on_its_own_key_and_sees_only_its_own_work(
    tmp_path: Path, config: Path, fake_model: FakeModel, transport: str
) -> None:
    keys = {"alice": api_key("alice"), "bob": api_key("bob")}
    words = {who: f"{who}{uuid.uuid4().hex[:8]}" for who in keys}
    made: dict[str, dict[str, str]] = {}
    with caller_server(tmp_path, config, transport) as server:
        for who, key in keys.items():
            async with connect_as(server, key) as client:
                session = (await call(client, "ask", prompt=f"remember {words[who]}"))["session_id"]
                follow_up = await call(client, "ask", prompt=f"{RECALL} {words[who]}", session_id=session)
                assert follow_up["result"] == f"You asked me to remember {words[who]}"
                fork = await call(client, "fork_session", session_id=session, prompt=f"{RECALL} {words[who]} again")
                assert fork["answer"]["result"] == f"You asked me to remember {words[who]}"
                echo = {"echo": {"description": "Echoes", "prompt": "You echo.", "tools": []}}
                job = await call(client, "run_agent", agent="echo", agents=echo, prompt=f"job {words[who]}", wait_s=30)
                assert job["status"] == "completed"
                made[who] = {"session": session, "job": job["job_id"]}
                delegate = tool_prompt(
                    "Agent", description="sub", prompt=f"sub {words[who]}", subagent_type="general-purpose"
                )
                await call(client, "ask", prompt=delegate, allowed_tools=["Agent"])
        with anyio.fail_after(20):  # the sub-agents run in the background
            while not all(any(r["prompt"] == f"sub {w}" for r in fake_model.requests()) for w in words.values()):
                await anyio.sleep(0.1)
        for who, other in (("alice", "bob"), ("bob", "alice")):
            assert keys_seen(fake_model, words[who]) == {keys[who]}
            async with connect_as(server, keys[who]) as client:
                listed = {s["session_id"] for s in (await call(client, "list_sessions"))["sessions"]}
                assert made[who]["session"] in listed and made[other]["session"] not in listed
                for tool, arguments in [
                    ("get_session", {"session_id": made[other]["session"]}),
                    ("ask", {"prompt": RECALL, "session_id": made[other]["session"]}),
                    ("get_job", {"job_id": made[other]["job"]}),
                    ("cancel_job", {"job_id": made[other]["job"]}),
                ]:
                    refused = await client.call_tool(tool, arguments)
                    assert refused.is_error and "No " in text_of(refused), (tool, text_of(refused))
    assert all(SERVER_OWN_KEY not in str(r) for r in fake_model.requests())


async def test_a_request_without_a_credential_is_told_which_header_to_send(tmp_path: Path, config: Path) -> None:
    with caller_server(tmp_path, config) as server:
        async with httpx2.AsyncClient() as http:
            missing = await http.post(server.url, json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
            assert missing.status_code == 401
            assert "X-Claude-Credential" in missing.json()["error_description"]
            garbage = await http.post(server.url, json={}, headers={"X-Claude-Credential": "hunter2"})
            assert garbage.status_code == 401 and "sk-ant-api" in garbage.json()["error_description"]
            assert "hunter2" not in garbage.text
            assert (await http.get(server.base + "/healthz")).status_code == 200


async def test_subscription_tokens_are_refused_unless_the_operator_allows_them(
    tmp_path: Path, workdir: Path, cli_env: dict[str, str], fake_model: FakeModel
) -> None:
    token = f"sk-ant-oat01-{uuid.uuid4().hex}"
    refusing = callers_config(tmp_path / "refusing.toml", workdir, cli_env)
    with caller_server(tmp_path, refusing) as server:
        async with httpx2.AsyncClient() as http:
            refused = await http.post(server.url, json={}, headers={"X-Claude-Credential": token})
        assert refused.status_code == 403
        explained = refused.json()["error_description"]
        assert "terms" in explained and "sk-ant-api" in explained and token not in refused.text
    allowing = callers_config(tmp_path / "allowing.toml", workdir, cli_env, "caller_oauth_tokens = true")
    word = f"oauth{uuid.uuid4().hex[:8]}"
    with serving(tmp_path, allowing, "http", name="oauth") as server:
        async with connect_as(server, token) as client:
            await call(client, "ask", prompt=f"remember {word}")
    requests = [r for r in fake_model.requests() if word in r["prompt"]]
    assert requests and all(r["authorization"] == f"Bearer {token}" and r["api_key"] is None for r in requests)


@pytest.mark.parametrize("transport", ["http", "sse"])
async def test_credentials_never_reach_the_disk_or_the_logs(
    tmp_path: Path, config: Path, fake_model: FakeModel, transport: str
) -> None:
    key = api_key("secret")
    word = f"disk{uuid.uuid4().hex[:8]}"
    with caller_server(tmp_path, config, transport, "--log-level", "DEBUG") as server:
        async with connect_as(server, key) as client:
            session = (await call(client, "ask", prompt=f"remember {word}"))["session_id"]
            await call(client, "ask", prompt=RECALL, session_id=session)
            await call(client, "fork_session", session_id=session, prompt=RECALL)
            await call(client, "run_agent", agent="e", agents={"e": {"description": "E", "prompt": "E"}}, prompt="x")
    assert keys_seen(fake_model, word) == {key}
    log = (tmp_path / f"server-callers-{transport}.log").read_text()
    assert "DEBUG" in log and word not in log  # no prompt or answer in the logs, even at DEBUG
    written, leaks = files_holding(tmp_path, key)
    assert any(path.name == "state.sqlite3" for path in written)
    assert any(path.suffix == ".jsonl" for path in written)  # transcripts were written, under the callers' dirs
    assert leaks == []


async def test_a_rejected_credential_fails_fast_and_clearly_and_a_valid_one_then_works(
    tmp_path: Path, config: Path
) -> None:
    revoked = api_key("revoked")
    with caller_server(tmp_path, config) as server:
        started = time.monotonic()
        async with connect_as(server, revoked) as client:
            result = await client.call_tool("ask", {"prompt": "hello"})
        assert result.is_error and "rejected the credential you sent in `X-Claude-Credential`" in text_of(result)
        assert revoked not in text_of(result)
        assert time.monotonic() - started < 15
        async with connect_as(server, api_key("renewed")) as client:
            assert (await call(client, "ask", prompt="[[say:welcome back]]"))["result"] == "welcome back"


def stored_rows(state: Path, table: str) -> int:
    with closing(sqlite3.connect(state / "state.sqlite3")) as db:
        return int(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


async def test_made_up_credentials_leave_no_process_directory_conversation_or_transcript(
    tmp_path: Path, config: Path
) -> None:
    """Caller mode may listen on 0.0.0.0 without tokens: a stranger's made-up keys must cost the server
    nothing that outlives each refusal, on the HTTP API and over MCP alike."""
    state = tmp_path / "callers-http"
    with caller_server(tmp_path, config) as server:
        base = server.url.removesuffix("/mcp")
        for n in range(3):  # what one refused run keeps, or doesn't, is on the scripted CLI (`test_runner`)
            key = api_key(f"revoked{n}")
            async with anthropic.AsyncAnthropic(api_key=key, base_url=base, max_retries=0) as client:
                with pytest.raises(anthropic.AuthenticationError, match="nothing of this attempt was kept"):
                    await client.messages.create(
                        model="claude-sonnet-4-5", max_tokens=64, messages=[{"role": "user", "content": f"hi {n}"}]
                    )
        for n in range(2):
            async with connect_as(server, api_key(f"revoked-mcp{n}")) as mcp_client:
                refused = await mcp_client.call_tool("ask", {"prompt": f"hello {n}"})
                assert refused.is_error and "rejected the credential" in text_of(refused)
                assert (refused.structured_content or {}).get("session_id") in (None, "")
        with anyio.fail_after(20):  # processes exit off the request path
            while [p for p in psutil.Process(server.process.pid).children(recursive=True) if "claude" in p.name()]:
                await anyio.sleep(0.1)
            while any((state / "callers").glob("*")):
                await anyio.sleep(0.1)
        assert stored_rows(state, "sessions") == 0
        assert stored_rows(state, "transcript_entries") == 0
        async with connect_as(server, api_key("valid")) as mcp_client:  # a good key still works afterwards
            assert (await call(mcp_client, "ask", prompt="[[say:still here]]"))["result"] == "still here"
        assert stored_rows(state, "sessions") == 1


def test_binding_beyond_loopback_needs_tokens_unless_callers_pay(tmp_path: Path, workdir: Path) -> None:
    environ = {"CLAUDE_MCP_STATE": str(tmp_path / "state")}
    server_pays = Tenancy.from_policy(Policy(roots=(workdir,)), {}, environ)
    with pytest.raises(ConfigError, match=r"Refusing to listen on 0\.0\.0\.0"):
        check_binding("0.0.0.0", server_pays)
    callers_pay = Tenancy.from_policy(Policy(roots=(workdir,), credentials="caller"), {}, environ)
    check_binding("0.0.0.0", callers_pay)


def test_without_walls_a_caller_may_not_start_stdio_mcp_servers_unless_the_operator_says_so(
    tmp_path: Path, workdir: Path
) -> None:
    environ = {"CLAUDE_MCP_STATE": str(tmp_path / "state")}
    bare = Policy(roots=(workdir,), credentials="caller", isolation="none", isolation_none_acknowledged=True)
    pool = Tenancy.from_policy(bare, {}, environ).callers
    assert pool is not None and pool.policies[""].mcp_server_types == ("http", "sse")
    stdio = ("stdio",)
    chosen = bare.model_copy(update={"mcp_server_types": stdio})
    pool = Tenancy.from_policy(chosen, {}, environ).callers
    assert pool is not None and pool.policies[""].mcp_server_types == stdio
    walled = Tenancy.from_policy(Policy(roots=(workdir,), credentials="caller"), {}, environ).callers
    assert walled is not None and "stdio" in walled.policies[""].mcp_server_types  # inside the sandbox


@STORM
async def test_many_callers_at_once_stay_apart_and_leave_no_process(
    tmp_path: Path, workdir: Path, cli_env: dict[str, str], fake_model: FakeModel
) -> None:
    # 12 calls, more than the server's 8 run slots: the last waits its turn behind the others, which on a busy machine
    # can outlast the default `detach_after_s` (45 s), so the server keeps each call open to its answer (the test
    # bounds it).
    config = callers_config(tmp_path / "callers.toml", workdir, cli_env, "detach_after_s = 0")
    callers = {f"c{i}": api_key(f"c{i}") for i in range(6)}
    outcomes: list[tuple[str, str, Any]] = []
    with caller_server(tmp_path, config) as server:

        async def converse(who: str, n: int) -> None:
            word = f"{who}x{n}x{uuid.uuid4().hex[:6]}"
            async with connect_as(server, callers[who]) as client:
                outcomes.append((who, word, await client.call_tool("ask", {"prompt": f"remember {word}"})))

        with anyio.fail_after(240):
            async with anyio.create_task_group() as tasks:
                for who in callers:
                    for n in range(2):
                        tasks.start_soon(converse, who, n)
        tree = psutil.Process(server.process.pid).children(recursive=True)
    await wait_until_gone(tree, within_s=20)
    answered = 0
    for who, word, result in outcomes:
        if result.is_error:
            assert "busy" in text_of(result).lower(), text_of(result)
            continue
        answered += 1
        assert text_of(result) == f"OK, I will remember {word}"
        assert keys_seen(fake_model, word) == {callers[who]}
    assert len(outcomes) == 12 and answered >= len(callers)


async def test_the_caller_pool_is_bounded_and_forgets_idle_callers(tmp_path: Path, policy: Policy) -> None:
    alice = CallerCredential("sk-ant-api03-alice", "api_key")
    bob = CallerCredential("sk-ant-api03-bob", "api_key")
    store = SqliteStore(tmp_path / "state.sqlite3")
    await store.open()
    pool = CallerPool(
        {"": policy.model_copy(update={"credentials": "caller"})},
        store=store,
        replica="r1",
        shared_slots=RunSlots(4, 4),
        walls=Walls("none", write_wrapper(tmp_path / "state" / "walls")),
        workspaces=tmp_path / "workspaces",
        namespace_key=b"key",
        state_root=tmp_path / "state",
        max_callers=1,
        idle_s=0.05,
    )
    try:
        async with pool:
            async with pool.serving("", alice) as bridge:
                assert bridge.namespace == alice.namespace(b"key") != bob.namespace(b"key")
                assert "sk-ant-api03-alice" not in bridge.namespace
                assert bridge.policy.cli_env["ANTHROPIC_API_KEY"] == "sk-ant-api03-alice"
                assert bridge.policy.cli_env["CLAUDE_CODE_OAUTH_TOKEN"] == ""  # nothing of the server's
                with pytest.raises(Busy):  # the one place is taken by a caller in the middle of a request
                    async with pool.serving("", bob):
                        pass
            async with pool.serving("", bob) as bridge:  # alice is idle now: bob takes her place
                assert bridge.namespace == bob.namespace(b"key") and len(pool) == 1
            await anyio.sleep(0.1)
            await pool.reap()
            assert len(pool) == 0
    finally:
        await store.close()


async def test_a_callers_queued_batch_runs_after_the_caller_has_gone_quiet(
    tmp_path: Path, workdir: Path, cli_env: dict[str, str], fake_model: FakeModel
) -> None:
    """Bob's batch request waits for the only run slot (alice holds it) while bob sends nothing: his
    bridge holds the job's secrets (his credential), so it is not dropped as idle, and the job runs."""
    config = callers_config(tmp_path / "quiet.toml", workdir, cli_env, "caller_idle_s = 0.4\njob_lease_s = 2")
    config.write_text(config.read_text().replace("max_concurrent = 8", "max_concurrent = 1"))
    alice, bob = api_key("alice"), api_key("bob")
    word = f"slow{uuid.uuid4().hex[:8]}"
    with caller_server(tmp_path, config) as server:
        async with (
            anthropic.AsyncAnthropic(base_url=server.base, api_key=alice, max_retries=0, timeout=60) as as_alice,
            anthropic.AsyncAnthropic(base_url=server.base, api_key=bob, max_retries=0, timeout=60) as as_bob,
            anyio.create_task_group() as tasks,
        ):
            slow: MessageParam = {"role": "user", "content": f"[[slow:150]] {word} " + " ".join(["w"] * 12)}
            tasks.start_soon(lambda: as_alice.messages.create(model="sonnet", max_tokens=100, messages=[slow]))
            with anyio.fail_after(30):
                while not keys_seen(fake_model, word):
                    await anyio.sleep(0.05)
            message = {"role": "user", "content": "[[say:late]]"}
            late: Any = {"model": "sonnet", "max_tokens": 100, "messages": [message]}
            batch = await as_bob.messages.batches.create(requests=[{"custom_id": "q", "params": late}])
            await anyio.sleep(5.5)  # alice's answer (~2 s) and more than a lease pass with bob silent
            with anyio.fail_after(60):  # then bob asks again, as often as he likes
                while (await as_bob.messages.batches.retrieve(batch.id)).processing_status != "ended":
                    await anyio.sleep(0.2)
            (line,) = [line async for line in await as_bob.messages.batches.results(batch.id)]
            assert line.result.type == "succeeded", line.result
            assert keys_seen(fake_model, "late") == {bob}
