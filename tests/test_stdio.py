"""The server as an IDE runs it: `claude-mcp serve --config …` as a subprocess over stdio."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mcp import Client, StdioServerParameters

from tests.conftest import text_of

pytestmark = pytest.mark.anyio


def write_config(path: Path, workdir: Path, cli_env: dict[str, str], extra: str = "") -> Path:
    env_lines = "\n".join(f"{key} = {json.dumps(value)}" for key, value in cli_env.items())
    path.write_text(f"roots = [{json.dumps(str(workdir))}]\napi_retries = 0\n{extra}\n[cli_env]\n{env_lines}\n")
    return path


def server_params(config: Path, *flags: str) -> StdioServerParameters:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "CLAUDE_"))}
    return StdioServerParameters(
        command=sys.executable, args=["-m", "claude_mcp", "serve", "--config", str(config), *flags], env=env
    )


async def test_a_stdio_client_lists_asks_and_continues(tmp_path: Path, workdir: Path, cli_env: dict[str, str]) -> None:
    config = write_config(tmp_path / "claude-mcp.toml", workdir, cli_env)
    async with Client(server_params(config)) as client:
        tools = (await client.list_tools()).tools
        assert {"ask", "stream_ask", "fork_session", "list_sessions", "get_session"} <= {tool.name for tool in tools}
        assert all(tool.output_schema is not None for tool in tools)
        first = await client.call_tool("ask", {"prompt": "remember mango", "model": "haiku"})
        assert not first.is_error, text_of(first)
        assert text_of(first) == "OK, I will remember mango"
        bad = await client.call_tool("ask", {"prompt": "x", "cwd": "/etc"})
        assert bad.is_error and "outside the allowed roots" in text_of(bad)
        second = await client.call_tool(
            "ask", {"prompt": "what did I ask you to remember", "session_id": first.structured_content["session_id"]}
        )
        assert text_of(second) == "You asked me to remember mango"


async def test_flags_override_the_config_file(tmp_path: Path, workdir: Path, cli_env: dict[str, str]) -> None:
    config = write_config(tmp_path / "claude-mcp.toml", workdir, cli_env, "max_turns = 50")
    async with Client(server_params(config, "--max-turns", "3", "--model", "haiku")) as client:
        refused = await client.call_tool("ask", {"prompt": "x", "max_turns": 4})
        assert refused.is_error and "exceeds the server limit of 3" in text_of(refused)
        seen = await client.call_tool("ask", {"prompt": "[[report]]"})
        assert "haiku" in json.loads(text_of(seen))["model"]


def test_a_bad_config_stops_the_server_at_start_with_a_message(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("permission_modes = ['sudo']\n")
    completed = subprocess.run(
        [sys.executable, "-m", "claude_mcp", "serve", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert completed.returncode == 2
    assert "permission_modes" in completed.stderr
    assert completed.stdout == ""
    assert "Traceback" not in completed.stderr
