"""Failures the real CLI can't be made to show: a stand-in CLI crashes, hangs or writes garbage.
Each must come back as a clear `isError` result, leave no process behind, and the server
must go on serving."""

from __future__ import annotations

import os
from pathlib import Path

import psutil
import pytest
from mcp import Client

from claude_mcp import ClaudeBridge, Policy
from claude_mcp.mcp_surface.server import build_server
from tests.conftest import FAKE_CLI, text_of

pytestmark = pytest.mark.anyio


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
