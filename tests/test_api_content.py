"""What the HTTP APIs take besides text prompts (#29), with the official `anthropic` and `openai`
SDKs as clients of one `claude-mcp serve --transport http` subprocess running the real CLI
against the fake model: Claude Code's own settings per request (`claude_code`); images and
documents, which reach the model as blocks."""

from __future__ import annotations

import base64
import json
import os
import struct
import zlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anthropic
import openai
import pytest

from tests.conftest import FakeModel, cli_env_for
from tests.test_http import RunningServer, serving
from tests.test_stdio import write_config

pytestmark = [pytest.mark.anyio, pytest.mark.xdist_group("api-content")]


def png(width: int, height: int, *, noise: bool = False) -> bytes:
    """A real PNG image (RGB; `noise`: random pixels, which do not compress)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = lambda: b"\0" + (os.urandom(3 * width) if noise else b"\x80" * 3 * width)  # noqa: E731
    pixels = zlib.compress(b"".join(row() for _ in range(height)), 1)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


PNG = base64.b64encode(png(2, 2)).decode()
PDF = base64.b64encode(b"%PDF-1.4\n1 0 obj<</Type/Catalog>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n").decode()


def image(data: str = PNG, media_type: str = "image/png") -> dict[str, Any]:
    return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}


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
    cli_env = cli_env_for(fake_model.url, home)
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
    with pytest.raises(openai.BadRequestError, match=r"claude_code\.tool: unknown field"):
        await chat.chat.completions.create(
            model="sonnet", messages=[{"role": "user", "content": "hi"}], extra_body={"claude_code": {"tool": []}}
        )


async def test_an_image_and_a_pdf_reach_the_model_as_blocks_and_the_conversation_goes_on(
    claude: anthropic.AsyncAnthropic,
) -> None:
    pdf = {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": PDF}}
    asked: list[anthropic.types.MessageParam] = [
        {"role": "user", "content": [image(), pdf, {"type": "text", "text": "[[report]]"}]}
    ]
    raw = await claude.messages.with_raw_response.create(model="sonnet", max_tokens=100, messages=asked)
    answer = await raw.parse()
    blocks = json.loads(answer.content[0].text)["blocks"]  # type: ignore[union-attr]
    assert blocks == [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": f"{len(PNG)}:{PNG[:16]}"}},
        {
            "type": "document",
            "source": {"type": "base64", "media_type": "application/pdf", "data": f"{len(PDF)}:{PDF[:16]}"},
        },
    ]
    asked += [{"role": "assistant", "content": answer.content}, {"role": "user", "content": "[[report]]"}]  # type: ignore[typeddict-item]
    raw_next = await claude.messages.with_raw_response.create(model="sonnet", max_tokens=100, messages=asked)
    assert raw_next.headers["x-claude-session-id"] == raw.headers["x-claude-session-id"]  # the same conversation
    assert json.loads((await raw_next.parse()).content[0].text)["blocks"] == []  # type: ignore[union-attr]


async def test_an_image_larger_than_a_line_of_the_sdk_reaches_the_model(claude: anthropic.AsyncAnthropic) -> None:
    large = base64.b64encode(png(700, 700, noise=True)).decode()  # ~2 MiB of base64; the SDK reads 1 MiB lines
    reported = await claude.messages.create(
        model="sonnet",
        max_tokens=100,
        messages=[{"role": "user", "content": [image(large), {"type": "text", "text": "[[report]]"}]}],
    )
    (block,) = json.loads(reported.content[0].text)["blocks"]  # type: ignore[union-attr]
    assert block["type"] == "image"  # Claude Code re-encodes a large image (as JPEG) before it sends it
    assert block["source"]["media_type"] in ("image/png", "image/jpeg")


@pytest.mark.parametrize(
    ("block", "refusal"),
    [
        (image(media_type="image/jpeg"), "the data is not image/jpeg"),
        (image("not base64!"), "not valid base64"),
        (image(media_type="image/tiff"), "'image/tiff' is not supported for a image"),
        ({"type": "image", "source": {"type": "url", "url": "http://127.0.0.1/x.png"}}, "not fetched by this server"),
        ({"type": "image", "source": {"type": "file", "file_id": "file_x"}}, "not a file id"),
    ],
)
async def test_images_that_are_not_what_they_say_are_refused(
    claude: anthropic.AsyncAnthropic, block: dict[str, Any], refusal: str
) -> None:
    with pytest.raises(anthropic.BadRequestError, match=refusal):
        await claude.messages.create(
            model="sonnet",
            max_tokens=10,
            messages=[{"role": "user", "content": [block, {"type": "text", "text": "x"}]}],  # type: ignore[list-item]
        )


async def test_an_image_over_the_apis_own_limit_is_refused_as_too_large(claude: anthropic.AsyncAnthropic) -> None:
    over = PNG + "A" * (5 * 1024 * 1024 - len(PNG) + 4)
    with pytest.raises(anthropic.RequestTooLargeError, match=r"more than the 5\.0 MiB"):
        await claude.messages.create(
            model="sonnet",
            max_tokens=10,
            messages=[{"role": "user", "content": [image(over), {"type": "text", "text": "x"}]}],
        )


async def test_chat_completions_take_images_and_files_as_data_urls(chat: openai.AsyncOpenAI) -> None:
    completion = await chat.chat.completions.create(
        model="sonnet",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                    {"type": "file", "file": {"filename": "a.pdf", "file_data": f"data:application/pdf;base64,{PDF}"}},
                    {"type": "text", "text": "[[report]]"},
                ],
            }
        ],
    )
    blocks = json.loads(completion.choices[0].message.content or "")["blocks"]
    assert [(b["type"], b["source"]["media_type"]) for b in blocks] == [
        ("image", "image/png"),
        ("document", "application/pdf"),
    ]
    with pytest.raises(openai.BadRequestError, match="not fetched by this server"):
        await chat.chat.completions.create(
            model="sonnet",
            messages=[
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]}
            ],
        )


@pytest.mark.parametrize(
    ("mcp_server", "refusal"),
    [
        ({"type": "url", "url": "http://127.0.0.1:9/mcp", "name": "local"}, "not a public address"),
        ({"type": "url", "url": "http://localhost:9/mcp", "name": "local"}, "not a public address"),
        ({"type": "url", "url": "http://[::1]:9/mcp", "name": "local"}, "not a public address"),
        ({"type": "url", "url": "http://10.1.2.3/mcp", "name": "private"}, "not a public address"),
        ({"type": "url", "url": "http://169.254.169.254/mcp", "name": "metadata"}, "not a public address"),
        ({"type": "url", "url": "file:///etc/passwd", "name": "file"}, "must be an http or https URL"),
        ({"type": "url", "url": f"http://{'a' * 100}.example/mcp", "name": "long"}, "could not be resolved"),
        ({"type": "url", "url": "http://[fe80::1%25eth0]/mcp", "name": "zoned"}, "not a public address"),
        ({"type": "stdio", "url": "http://example.com", "name": "x"}, "type 'stdio' is not supported"),
        ({"type": "url", "url": "http://example.com", "name": "x", "command": "sh"}, "command: unknown field"),
    ],
)
async def test_mcp_servers_at_private_addresses_are_refused_by_the_default_policy(
    claude: anthropic.AsyncAnthropic, mcp_server: dict[str, Any], refusal: str
) -> None:
    with pytest.raises(anthropic.BadRequestError, match=refusal):
        await claude.beta.messages.create(
            model="sonnet",
            max_tokens=10,
            messages=[{"role": "user", "content": "hi"}],
            mcp_servers=[mcp_server],  # type: ignore[list-item]
            betas=["mcp-client-2025-04-04"],
        )


async def test_thinking_reaches_the_model_and_its_thinking_comes_back_streamed_and_not(
    claude: anthropic.AsyncAnthropic,
) -> None:
    asked: dict[str, Any] = {
        "model": "claude-sonnet-4-5",  # the newest models think adaptively whatever Claude Code is told
        "max_tokens": 100,
        "thinking": {"type": "enabled", "budget_tokens": 2048},
        "messages": [{"role": "user", "content": "[[think:Let me see.]] [[report]]"}],
    }
    created = await claude.messages.create(**asked)
    thinking, text = created.content
    assert thinking.type == "thinking" and thinking.thinking == "Let me see."  # type: ignore[union-attr]
    sent = json.loads(text.text)["keys"]["thinking"]  # type: ignore[union-attr]
    assert (sent["type"], sent["budget_tokens"]) == ("enabled", 2048)  # Claude Code asked the model so
    async with claude.messages.stream(**asked) as stream:
        deltas = [event.delta.type async for event in stream if event.type == "content_block_delta"]
        final = await stream.get_final_message()
    assert "thinking_delta" in deltas and final.content[0].thinking == "Let me see."  # type: ignore[union-attr]
    off = await claude.messages.create(**{**asked, "thinking": {"type": "disabled"}})
    assert json.loads(off.content[-1].text)["keys"]["thinking"] == {"type": "disabled"}  # type: ignore[union-attr]
    with pytest.raises(anthropic.BadRequestError, match="budget_tokens goes with type 'enabled'"):
        await claude.messages.create(**{**asked, "thinking": {"type": "enabled"}})


async def test_a_batch_refuses_images_and_mcp_servers(claude: anthropic.AsyncAnthropic) -> None:
    def params(**extra: Any) -> Any:
        return {"model": "sonnet", "max_tokens": 10, "messages": [{"role": "user", "content": "x"}], **extra}

    with_image = params(messages=[{"role": "user", "content": [image(), {"type": "text", "text": "x"}]}])
    with pytest.raises(anthropic.BadRequestError, match="images and documents cannot be sent in a batch"):
        await claude.messages.batches.create(requests=[{"custom_id": "a", "params": with_image}])
    with_server = params(mcp_servers=[{"type": "url", "url": "https://example.com/mcp", "name": "x"}])
    with pytest.raises(anthropic.BadRequestError, match="mcp_servers cannot be used in a batch"):
        await claude.messages.batches.create(requests=[{"custom_id": "a", "params": with_server}])
