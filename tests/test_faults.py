"""Faults, and what each must leave behind.

A stand-in CLI crashes, hangs or writes garbage (failures the real CLI can't be made to show): each
comes back as a clear `isError` result, leaves no process behind, and the server goes on serving.
A served server is SIGKILLed mid-run: no CLI of it outlives it, and every `session_id` it reported
is continued by the server started again on its state.

The other faults are held where their surface is tested: a SIGKILLed server's CLI and its tools die
with it, sandboxed or not (`test_http.test_a_killed_servers_cli_and_its_tools_die_with_it`); the
store gone is a refusal within seconds, `store_unavailable` (MCP `isError`, HTTP 503), with `/readyz`
503 (`test_replicas.test_with_the_store_gone_a_call_is_refused_in_seconds_and_readyz_says_so`); a
replica that dies leaves its jobs failed with their session (`test_replicas`); a client gone mid-call
stops its run (`test_http.test_a_streamable_http_client_that_goes_away_mid_call_stops_its_run`,
`test_streaming_and_cancellation.test_a_client_disconnect_stops_the_work`, and the HTTP API's in
`test_messages_api`); a drain ends runs with a session to continue (`test_drain`)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import psutil
import pytest
from mcp import Client

from claude_mcp import ClaudeBridge, Policy
from claude_mcp.mcp_surface.server import build_server
from tests.conftest import FAKE_CLI, WAITS, call, text_of
from tests.test_http import connect, serving
from tests.test_stdio import write_config
from tests.test_streaming_and_cancellation import ALLOW_SLEEP, SLEEP, wait_for_sleep, wait_until_gone

pytestmark = [pytest.mark.anyio, WAITS]


def fake_cli_policy(policy: Policy, tmp_path: Path, mode: str, **updates: object) -> Policy:
    env = {**policy.cli_env, "FAKE_CLI_MODE": mode, "FAKE_CLI_PIDS": str(tmp_path / "pids")}
    return policy.model_copy(update={"cli_path": str(FAKE_CLI), "cli_env": env, **updates})


def started_pids(tmp_path: Path) -> list[int]:
    return [int(line) for line in (tmp_path / "pids").read_text().split()]


def assert_gone(pids: list[int]) -> None:
    for pid in pids:
        if psutil.pid_exists(pid):
            assert psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, f"process {pid} is still running"


@pytest.mark.parametrize(
    ("mode", "complaint"),
    [
        ("crash", "exit code 3"),
        ("garbage", "not JSON"),
        ("silent_exit", "stopped before giving a result"),
    ],
)
async def test_a_broken_cli_is_a_clear_error(policy: Policy, tmp_path: Path, mode: str, complaint: str) -> None:
    broken = fake_cli_policy(policy, tmp_path, mode)
    async with Client(build_server(ClaudeBridge(broken, depth=0))) as client:
        result = await client.call_tool("ask", {"prompt": "hi"})
    assert result.is_error
    assert complaint in text_of(result)
    assert "Traceback" not in text_of(result)
    assert_gone(started_pids(tmp_path))


async def test_a_crash_mentions_what_the_cli_said(policy: Policy, tmp_path: Path) -> None:
    async with Client(build_server(ClaudeBridge(fake_cli_policy(policy, tmp_path, "crash"), depth=0))) as client:
        result = await client.call_tool("ask", {"prompt": "hi"})
    assert "simulated crash" in text_of(result)


async def test_a_hung_cli_is_stopped_by_the_watchdog(policy: Policy, tmp_path: Path) -> None:
    hung = fake_cli_policy(policy, tmp_path, "hang", stall_timeout_s=1.0)
    async with Client(build_server(ClaudeBridge(hung, depth=0))) as client:
        result = await client.call_tool("ask", {"prompt": "hi"})
    assert result.is_error and "stalled" in text_of(result)
    assert_gone(started_pids(tmp_path))


async def test_a_missing_cli_is_a_clear_error_and_the_server_keeps_serving(policy: Policy, tmp_path: Path) -> None:
    missing = policy.model_copy(update={"cli_path": str(tmp_path / "no-such-claude")})
    async with Client(build_server(ClaudeBridge(missing, depth=0))) as client:
        result = await client.call_tool("ask", {"prompt": "hi"})
        assert result.is_error
        assert "CLI was not found" in text_of(result) and "CLAUDE_MCP_CLI" in text_of(result)
        again = await client.call_tool("ask", {"prompt": "hi"})
        assert again.is_error and "CLI was not found" in text_of(again)


def test_the_fake_cli_is_executable() -> None:
    assert os.access(FAKE_CLI, os.X_OK)


SLEEPER = {"sleeper": {"description": "Waits", "prompt": "You wait.", "tools": ["Bash"]}}


async def test_a_killed_servers_clis_die_with_it_and_every_session_id_it_reported_continues(
    tmp_path: Path, workdir: Path, cli_env: dict[str, str]
) -> None:
    """SIGKILL in the middle of a conversation's first turn (a job's, running a tool): the CLIs die with the
    server, and the session_id it reported while the turn ran is continued by the server started again."""
    config = write_config(tmp_path / "c.toml", workdir, cli_env)
    with serving(tmp_path, config, "http", name="killed") as server:
        async with connect(server, None) as client:
            job = {"agent": "sleeper", "agents": SLEEPER, "prompt": SLEEP, "wait_s": 0, **ALLOW_SLEEP}
            started = await call(client, "run_agent", **job)
            tree = await wait_for_sleep(psutil.Process(server.process.pid))
            running = await call(client, "get_job", job_id=started["job_id"], wait_s=0.5)
        server.process.send_signal(signal.SIGKILL)  # no goodbye: nothing of it may go on
        server.process.wait(timeout=10)
        await wait_until_gone([p for p in tree if p.pid != server.process.pid])
    session_id = running["session_id"]
    assert session_id
    with serving(tmp_path, config, "http", name="killed") as again:  # the same state
        async with connect(again, None) as client:
            ended = await call(client, "get_job", job_id=started["job_id"], wait_s=0)
            continued = await call(client, "ask", session_id=session_id, prompt="[[say:continued]]")
    assert ended["session_id"] == session_id  # still "running" until its lease runs out, then failed (test_replicas)
    assert continued["result"] == "continued" and continued["session_id"] == session_id
