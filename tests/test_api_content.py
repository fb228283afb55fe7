"""What the HTTP APIs take besides text prompts (#29), with the official `anthropic` and `openai`
SDKs as clients of one `claude-mcp serve --transport http` subprocess running the real CLI
against the fake model: Claude Code's own settings per request (`claude_code`)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest

from tests.conftest import FakeModel
from tests.test_http import RunningServer, serving
from tests.test_stdio import write_config

pytestmark = [pytest.mark.anyio, pytest.mark.xdist_group("api-content")]

POLICY = """
permission_modes = ["default", "plan"]
max_turns = 20
disallowed_tools = ["Write"]
"""


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, fake_model: FakeModel) -> Iterator[RunningServer]:
    """One server for the module; its policy permits two permission modes, at most 20 turns, and
    never Write."""
    directory = tmp_path_factory.mktemp("api-content")
    (workdir := directory / "work").mkdir()
    (workdir / "sub").mkdir()
    (home := directory / "home").mkdir()
    cli_env = {
        "ANTHROPIC_BASE_URL": fake_model.url,
        "ANTHROPIC_API_KEY": "sk-ant-test-key",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_AUTOUPDATER": "1",
        "HOME": str(home),
        "CLAUDE_CONFIG_DIR": str(home / ".claude"),
    }
    config = write_config(directory / "api.toml", workdir, cli_env, POLICY)
    with serving(directory, config, "http", name="api-content") as running:
        yield running


@pytest.fixture
async def claude(server: RunningServer) -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with anthropic.AsyncAnthropic(base_url=server.base, api_key="sk-ant-x", max_retries=0, timeout=60) as c:
        yield c


@pytest.fixture
async def chat(server: RunningServer) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=f"{server.base}/v1", api_key="sk-x", max_retries=0, timeout=60) as c:
        yield c


async def report(claude: anthropic.AsyncAnthropic, claude_code: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """What the model was sent for a request with these Claude Code settings."""
    created = await claude.messages.create(
        model="sonnet",
        max_tokens=100,
        messages=[{"role": "user", "content": "[[report]]"}],
        extra_body={"claude_code": claude_code},
        **extra,
    )
    reported: dict[str, Any] = json.loads(created.content[0].text)  # type: ignore[union-attr]
    return reported


def offered(reported: dict[str, Any]) -> set[str]:
    """The tools a run was offered (the CLI's stand-in entry for its deferred tools left out)."""
    return set(reported["tools"]) - {"DeferredToolPlaceholder"}


async def test_claude_code_settings_narrow_the_tools_the_run_is_offered(claude: anthropic.AsyncAnthropic) -> None:
    unrestricted = await report(claude, {})
    assert {"Bash", "Read", "Edit"} <= offered(unrestricted) and "Write" not in unrestricted["tools"]
    narrowed = await report(claude, {"tools": ["Read", "Edit", "Write"], "disallowed_tools": ["Edit"]})
    assert offered(narrowed) == {"Read"}  # Edit taken by the request, Write by the policy


async def test_an_agent_defined_in_the_request_runs_the_conversation(claude: anthropic.AsyncAnthropic) -> None:
    agent = {"description": "Reviews.", "prompt": "You are REVIEWER-29.", "tools": ["Read"]}
    reported = await report(claude, {"agents": {"reviewer": agent}, "agent": "reviewer"})
    assert "REVIEWER-29" in reported["system"] and offered(reported) == {"Read"}


@pytest.mark.parametrize(
    ("claude_code", "refusal"),
    [
        ({"permission_mode": "bypassPermissions"}, "permission_mode 'bypassPermissions' is not permitted"),
        ({"max_turns": 50}, "max_turns=50 exceeds the server limit of 20"),
        ({"cwd": "/etc"}, "outside the allowed roots"),
        ({"agent": "nobody"}, "Unknown agent 'nobody'"),
        ({"tools": ["Read"], "model": "opus"}, "claude_code.model: unknown field"),
        ({"frobnicate": True}, "claude_code.frobnicate: unknown field"),
        ({"json_schema": {"type": "string"}}, "must describe an object"),
    ],
)
async def test_claude_code_settings_are_held_to_the_policy_and_unknown_keys_refused(
    claude: anthropic.AsyncAnthropic, claude_code: dict[str, Any], refusal: str
) -> None:
    with pytest.raises(anthropic.BadRequestError, match=refusal) as refused:
        await report(claude, claude_code)
    assert refused.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]


async def test_chat_completions_take_the_same_claude_code_settings(chat: openai.AsyncOpenAI) -> None:
    completion = await chat.chat.completions.create(
        model="sonnet",
        messages=[{"role": "user", "content": "[[report]]"}],
        extra_body={"claude_code": {"tools": ["Read", "Bash"], "cwd": "sub"}},
    )
    reported = json.loads(completion.choices[0].message.content or "")
    assert offered(reported) == {"Read", "Bash"}
    assert "/work/sub" in reported["environment"]  # the working directory the run was given
    with pytest.raises(openai.BadRequestError, match="permission_mode 'bypassPermissions' is not permitted"):
        await chat.chat.completions.create(
            model="sonnet",
            messages=[{"role": "user", "content": "hi"}],
            extra_body={"claude_code": {"permission_mode": "bypassPermissions"}},
        )
    with pytest.raises(openai.BadRequestError, match="claude_code.tool: unknown field"):
        await chat.chat.completions.create(
            model="sonnet", messages=[{"role": "user", "content": "hi"}], extra_body={"claude_code": {"tool": []}}
        )
