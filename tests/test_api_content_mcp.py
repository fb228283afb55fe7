"""The Messages API's MCP connector (#29): a request's own MCP server — `tests/echo_mcp_server.py`
run by the test over Streamable HTTP, behind a bearer token — given in `mcp_servers` is offered to
the run, its tool called by the real CLI, and the call and its result reported as `mcp_tool_use` /
`mcp_tool_result` blocks, streamed and not, with the official `anthropic` SDK's beta client. The
server's policy lets MCP servers be reached on loopback (`mcp_private_addresses`); a server with
the default policy refuses that (tests/test_api_content.py)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anthropic
import pytest

from tests.conftest import TESTS, FakeModel, cli_env_for
from tests.test_http import RunningServer, serving
from tests.test_stdio import write_config

pytestmark = [pytest.mark.anyio, pytest.mark.xdist_group("api-content-mcp")]

TOKEN = "mcp-secret-token-5f2c9a"
BETA = ["mcp-client-2025-04-04"]
SHOUT = "[[tool:mcp__echo__shout:" + json.dumps({"text": "hi"}) + "]]"


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def echo_url() -> Iterator[str]:
    """The echo MCP server over Streamable HTTP, answering only `Bearer TOKEN`."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, str(TESTS / "echo_mcp_server.py"), "--http", str(port), TOKEN], stdin=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}/mcp"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(url, timeout=1)
            except urllib.error.HTTPError:
                break  # it answers (401 without the token)
            except OSError:
                assert process.poll() is None and time.monotonic() < deadline
                time.sleep(0.05)
        yield url
    finally:
        process.kill()  # uvicorn waits for the CLIs' open MCP sessions on a SIGTERM
        process.wait(timeout=10)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, fake_model: FakeModel) -> Iterator[tuple[RunningServer, Path]]:
    directory = tmp_path_factory.mktemp("api-mcp")
    (workdir := directory / "work").mkdir()
    (home := directory / "home").mkdir()
    cli_env = cli_env_for(fake_model.url, home)
    config = write_config(directory / "api.toml", workdir, cli_env, "mcp_private_addresses = true")
    with serving(directory, config, "http", "--log-level", "DEBUG", name="api-mcp") as running:
        yield running, directory / "server-api-mcp.log"


@pytest.fixture
async def claude(server: tuple[RunningServer, Path]) -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with anthropic.AsyncAnthropic(base_url=server[0].base, api_key="sk-ant-x", max_retries=0, timeout=60) as c:
        yield c


def echo(url: str, token: str = TOKEN, **extra: Any) -> dict[str, Any]:
    return {"type": "url", "url": url, "name": "echo", "authorization_token": token, **extra}


def shown(content: list[Any]) -> list[dict[str, Any]]:
    return [block.model_dump(exclude_none=True) for block in content]


async def test_the_requests_mcp_server_is_called_and_reported_as_the_api_reports_it(
    claude: anthropic.AsyncAnthropic, echo_url: str, server: tuple[RunningServer, Path]
) -> None:
    created = await claude.beta.messages.create(
        model="sonnet",
        max_tokens=100,
        messages=[{"role": "user", "content": SHOUT}],
        mcp_servers=[echo(echo_url)],  # type: ignore[list-item]
        betas=BETA,  # type: ignore[list-item]
    )
    use, result, text = shown(created.content)
    assert {k: use[k] for k in ("type", "name", "server_name", "input")} == {
        "type": "mcp_tool_use",
        "name": "shout",
        "server_name": "echo",
        "input": {"text": "hi"},
    }
    assert {k: result[k] for k in ("type", "tool_use_id", "is_error")} == {
        "type": "mcp_tool_result",
        "tool_use_id": use["id"],
        "is_error": False,
    }
    assert [part["type"] for part in result["content"]] == ["text"] and "HI!" in result["content"][0]["text"]
    assert text["type"] == "text" and "HI!" in text["text"]  # the model saw the result
    async with claude.beta.messages.stream(
        model="sonnet",
        max_tokens=100,
        messages=[{"role": "user", "content": SHOUT}],
        mcp_servers=[echo(echo_url)],  # type: ignore[list-item]
        betas=BETA,  # type: ignore[list-item]
    ) as stream:  # the SDK's stream helper checks the events' order and builds the blocks from them
        final = await stream.get_final_message()
    assert [block["type"] for block in shown(final.content)] == ["mcp_tool_use", "mcp_tool_result", "text"]
    assert shown(final.content)[0]["input"] == {"text": "hi"} and "HI!" in final.content[2].text  # type: ignore[union-attr]
    assert TOKEN not in server[1].read_text()  # a secret: never logged, even at debug


async def test_the_authorization_token_and_the_tool_allowlist_decide_what_the_run_may_call(
    claude: anthropic.AsyncAnthropic, echo_url: str
) -> None:
    async def shout_with(server: dict[str, Any]) -> list[dict[str, Any]]:
        created = await claude.beta.messages.create(
            model="sonnet",
            max_tokens=100,
            messages=[{"role": "user", "content": SHOUT}],
            mcp_servers=[server],  # type: ignore[list-item]
            betas=BETA,  # type: ignore[list-item]
        )
        return shown(created.content)

    wrong_token = await shout_with(echo(echo_url, token="not-the-token"))
    assert "HI!" not in json.dumps(wrong_token)  # the server refused the CLI: no tool of it ran
    allowlisted = await shout_with(echo(echo_url, tool_configuration={"allowed_tools": ["whisper"]}))
    assert allowlisted[1]["type"] == "mcp_tool_result" and allowlisted[1]["is_error"]
    assert "HI!" not in json.dumps(allowlisted)


async def test_a_tool_outside_the_allowlist_is_not_offered_to_the_model(
    claude: anthropic.AsyncAnthropic, echo_url: str
) -> None:
    async def offered(server: dict[str, Any]) -> bool:
        """Whether the model is offered the echo server's tool: Claude Code lists MCP tools among its
        deferred tools (loaded with ToolSearch) in the request's environment, or sends them as tools."""
        created = await claude.beta.messages.create(
            model="sonnet",
            max_tokens=100,
            messages=[{"role": "user", "content": "[[report]]"}],
            mcp_servers=[server],  # type: ignore[list-item]
            betas=BETA,  # type: ignore[list-item]
        )
        report = json.loads(created.content[-1].text)  # type: ignore[union-attr]
        return "mcp__echo__shout" in report["tools"] or "\nmcp__echo__shout\n" in report["environment"]

    assert await offered(echo(echo_url))
    assert await offered(echo(echo_url, tool_configuration={"allowed_tools": ["shout"]}))
    assert not await offered(echo(echo_url, tool_configuration={"allowed_tools": ["whisper"]}))
    assert not await offered(echo(echo_url, tool_configuration={"enabled": False}))
