"""`--log-format json`: every line a server writes to stderr is one JSON object with the call's
facts, and no credential appears in it, even at DEBUG."""

from __future__ import annotations

import json
import logging
import signal
import uuid
from pathlib import Path
from typing import Any

import anyio
import pytest

from claude_mcp.telemetry.logs import JSONFormatter, redact
from tests.conftest import FakeModel, call
from tests.test_http import ALICE, connect, serving, tenants_config

pytestmark = pytest.mark.anyio

HEADER_SECRET = "per-call-header-secret-0123456789"


async def test_json_logs_are_one_object_per_line_with_the_calls_facts_and_no_secret(
    tmp_path: Path, workdir: Path, cli_env: dict[str, str]
) -> None:
    config = tenants_config(tmp_path / "tenants.toml", workdir, cli_env)
    config.write_text("mcp_private_addresses = true\n" + config.read_text())  # the per-call server is on loopback
    servers = {"tools": {"type": "http", "url": "http://127.0.0.1:9/mcp", "headers": {"X-Workspace": HEADER_SECRET}}}
    # The legacy SSE transport is the one whose DEBUG lines would dump request bodies (and with them the
    # per-call MCP server's header).
    with serving(tmp_path, config, "sse", "--log-format", "json", "--log-level", "DEBUG") as server:
        with anyio.fail_after(60):
            async with connect(server, ALICE) as alice:
                first = await call(alice, "ask", prompt="log me")
                await call(alice, "ask", prompt="and me", session_id=first["session_id"], mcp_servers=servers)
                assert (await alice.call_tool("ask", {"prompt": "x", "max_turns": 0})).is_error
        server.process.send_signal(signal.SIGTERM)
        server.process.wait(timeout=20)
    text = (tmp_path / "server-sse.log").read_text()
    lines: list[dict[str, Any]] = [json.loads(line) for line in text.splitlines()]

    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    assert {line["level"] for line in lines} >= {"DEBUG", "INFO"}
    assert any(line["message"].startswith("claude-mcp listening on http://") for line in lines)
    assert any(line["logger"].startswith("mcp.") and line["level"] == "DEBUG" for line in lines)
    runs = [line for line in lines if line["logger"] == "claude_mcp.runs"]
    assert len(runs) == 2
    for run in runs:
        assert run["tool"] == "ask" and run["tenant"] == "alice" and run["namespace"] == "alice"
        assert run["session"] == first["session_id"] and run["run_id"] and run["outcome"] == "ok"
        assert run["duration_s"] > 0
    calls = [line for line in lines if line["logger"] == "claude_mcp.calls"]
    assert [c["outcome"] for c in calls] == ["ok", "ok", "invalid_arguments"]
    assert calls[0]["session"] == first["session_id"] and calls[0]["tenant"] == "alice"
    inside = [line for line in lines if line.get("run_id") == runs[0]["run_id"] and line["logger"] != "claude_mcp.runs"]
    assert inside, "lines logged during a run carry its run_id"

    for secret in (ALICE, "sk-alice", "sk-bob", cli_env["ANTHROPIC_API_KEY"], HEADER_SECRET):
        assert secret not in text, secret


def test_credentials_are_masked_wherever_they_would_appear() -> None:
    for leak in (
        "key sk-ant-api03-AbC_def-123 was sent",
        "Authorization: Bearer abcdefghijkl0123",
        "{'x-api-key': 'plain-secret-value'}",
        '{"X-Claude-Credential": "sk-caller"}',
    ):
        masked = redact(leak)
        assert "[redacted]" in masked
        assert not any(part in masked for part in ("AbC_def", "abcdefghijkl0123", "plain-secret-value", "sk-caller"))
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed with %s", ("sk-ant-api03-zzz",), None)
    line = json.loads(JSONFormatter().format(record))
    assert line["message"] == "failed with sk-ant-…[redacted]" and line["level"] == "ERROR"


async def test_a_call_its_client_cancels_is_logged_as_the_runs_end_not_as_an_error(
    tmp_path: Path, workdir: Path, cli_env: dict[str, str], fake_model: FakeModel
) -> None:
    """The server stops the CLI of a call its client cancels, and claude-agent-sdk reports that end of the
    CLI's output at ERROR ("Fatal error in message reader: … exit code 143"). At the default level the
    server's log says it once, as the run's end, and holds no ERROR."""
    config = tenants_config(tmp_path / "tenants.toml", workdir, cli_env)
    log = tmp_path / "server-http.log"
    with serving(tmp_path, config, "http") as server:
        with anyio.fail_after(60):
            async with connect(server, ALICE) as alice:
                token = uuid.uuid4().hex
                async with anyio.create_task_group() as tasks:  # cancelled once its CLI is answering
                    tasks.start_soon(alice.call_tool, "ask", {"prompt": f"[[slow:500]] {token} one two three four"})
                    while not await anyio.to_thread.run_sync(fake_model.requests_for, token):
                        await anyio.sleep(0.1)
                    tasks.cancel_scope.cancel()
                while "cancelled in" not in log.read_text():
                    await anyio.sleep(0.1)
                assert not (await alice.call_tool("ask", {"prompt": "still serving"})).is_error
    text = log.read_text()
    assert [line for line in text.splitlines() if "claude_mcp.runs" in line and "cancelled in" in line]
    assert " ERROR " not in text and "Fatal error" not in text, text
