"""Graceful drain of `claude-mcp serve --transport http` (a subprocess): at SIGTERM new calls get
503 and `/readyz` fails while running calls finish; what outlives the grace period is stopped,
process trees included, and a background job is left resumable."""

from __future__ import annotations

import json
import re
import signal
import time
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import httpx2
import psutil
import pytest

from tests.conftest import WAITS, call, text_of
from tests.test_http import ALICE, HELPER, RunningServer, connect, serving, tenants_config
from tests.test_streaming_and_cancellation import SLEEP, Progress, cmdline, wait_until_gone

pytestmark = [pytest.mark.anyio, WAITS]

INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "late", "version": "1"}},
}
NEW_CALL = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "ask", "arguments": {"prompt": "x"}}}


def config(tmp_path: Path, workdir: Path, cli_env: dict[str, str], grace_s: float) -> Path:
    path = tenants_config(tmp_path / "tenants.toml", workdir, cli_env)
    path.write_text(re.sub(r"(?m)^drain_grace_s = .*$", f"drain_grace_s = {grace_s}", path.read_text()))
    assert f"drain_grace_s = {grace_s}\n" in path.read_text()
    return path


async def first_text(progress: Progress) -> None:
    while not progress.text:
        await anyio.sleep(0.02)


async def exited_within(server: RunningServer, seconds: float) -> float:
    """Wait for the server process to exit; how long it took."""
    started = time.monotonic()
    await anyio.to_thread.run_sync(lambda: server.process.wait(timeout=seconds))
    return time.monotonic() - started


async def test_a_running_call_finishes_while_new_calls_are_refused(
    tmp_path: Path, workdir: Path, cli_env: dict[str, str]
) -> None:
    grace_s = 10
    words = " ".join(f"w{i}" for i in range(50))
    with serving(tmp_path, config(tmp_path, workdir, cli_env, grace_s), "http") as server:
        progress = Progress()
        outcome: dict[str, Any] = {}
        with anyio.fail_after(grace_s + 20):
            try:
                async with connect(server, ALICE) as alice, httpx2.AsyncClient() as http:

                    async def stream() -> None:
                        arguments = {"prompt": f"[[slow:100]] {words}"}
                        outcome["result"] = await alice.call_tool("stream_ask", arguments, progress_callback=progress)

                    async with anyio.create_task_group() as tasks:
                        tasks.start_soon(stream)
                        await first_text(progress)
                        tree = psutil.Process(server.process.pid).children(recursive=True)
                        server.process.send_signal(signal.SIGTERM)
                        signalled = time.monotonic()
                        ready = await http.get(server.base + "/readyz")
                        while ready.status_code == 200:  # the signal is handled within a tick
                            ready = await http.get(server.base + "/readyz")
                        assert ready.status_code == 503 and ready.json() == {"status": "draining"}
                        assert (await http.get(server.base + "/healthz")).status_code == 200
                        headers = {"Authorization": f"Bearer {ALICE}", "Accept": "application/json, text/event-stream"}
                        for body in (INITIALIZE, NEW_CALL):
                            late = await http.post(server.url, json=body, headers=headers)
                            assert late.status_code == 503
                            assert late.headers["retry-after"] == "1"
                            assert "shutting down" in late.json()["error"]["message"]
                        metrics = await http.get(server.base + "/metrics", headers={"Authorization": f"Bearer {ALICE}"})
                        assert "claude_mcp_draining 1.0" in metrics.text
            except* httpx2.ConnectError:  # the server exits once its last call has drained; a client that leaves
                assert "result" in outcome  # after that (a loaded machine) finds it gone
            took = time.monotonic() - signalled + await exited_within(server, grace_s + 2)
        result = outcome["result"]
        assert not result.is_error, text_of(result)
        assert text_of(result) == f"Echo: {words}"
        assert took <= grace_s + 2
        await wait_until_gone(tree, within_s=2)


async def test_what_outlives_the_grace_period_is_stopped_and_a_job_left_resumable(
    tmp_path: Path, workdir: Path, cli_env: dict[str, str]
) -> None:
    grace_s = 2
    allow = ["Bash(echo *)", "Bash(sleep *)"]
    with serving(tmp_path, config(tmp_path, workdir, cli_env, grace_s), "http", name="replica") as server:
        progress = Progress()
        outcome: dict[str, Any] = {}
        with anyio.fail_after(60):
            async with connect(server, ALICE) as alice:
                job = await call(
                    alice, "run_agent", agent="helper", prompt=SLEEP, wait_s=0, agents=HELPER, allowed_tools=allow
                )

                async def stream() -> None:
                    arguments = {"prompt": "[[slow:200]] " + " ".join(["word"] * 100)}
                    outcome["result"] = await alice.call_tool("stream_ask", arguments, progress_callback=progress)

                async with anyio.create_task_group() as tasks:
                    tasks.start_soon(stream)
                    await first_text(progress)
                    while not any("sleep 37" in cmdline(p) for p in psutil.Process(server.process.pid).children(True)):
                        await anyio.sleep(0.05)
                    tree = psutil.Process(server.process.pid).children(recursive=True)
                    server.process.send_signal(signal.SIGTERM)
                    took = await exited_within(server, grace_s + 2)
            await wait_until_gone(tree, within_s=2)
        cut = outcome["result"]
        assert cut.is_error
        assert "shutting down" in text_of(cut) and "session_id" in text_of(cut)
        assert took <= grace_s + 2

    with serving(tmp_path, config(tmp_path, workdir, cli_env, grace_s), "http", name="replica") as again:
        async with connect(again, ALICE) as alice:
            stopped = await alice.call_tool("get_job", {"job_id": job["job_id"]})
    view = stopped.structured_content
    assert stopped.is_error and view is not None, text_of(stopped)
    assert view["status"] == "failed"
    assert view["session_id"] == job["session_id"] or job["session_id"] is None
    assert view["session_id"] and "shutting down" in view["error"]
    assert json.dumps(view).count(view["session_id"]) >= 2  # in the error text too: continue it by that id
