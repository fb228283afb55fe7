"""The Anthropic Messages API and OpenAI Chat Completions over the bridge, with the official
`anthropic` and `openai` SDKs as clients of a `claude-mcp serve --transport http` subprocess
that runs the real CLI against the fake model."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anthropic
import anyio
import anyio.lowlevel
import openai
import psutil
import pytest

from tests.conftest import FakeModel
from tests.test_callers import api_key, callers_config
from tests.test_http import ALICE, RunningServer, serving, tenants_config
from tests.test_sessions import RECALL
from tests.test_stdio import write_config
from tests.test_streaming_and_cancellation import cmdline, wait_until_gone

pytestmark = pytest.mark.anyio


@pytest.fixture
def server(tmp_path: Path, workdir: Path, cli_env: dict[str, str]) -> Iterator[RunningServer]:
    config = write_config(tmp_path / "api.toml", workdir, cli_env, "max_concurrent = 8")
    with serving(tmp_path, config, "http", name="api") as running:
        yield running


OPENED: list[anthropic.AsyncAnthropic | openai.AsyncOpenAI] = []


@pytest.fixture(autouse=True)
async def close_clients() -> AsyncIterator[None]:
    """Close the SDK clients a test opened, while its event loop still runs."""
    yield
    while OPENED:
        await OPENED.pop().close()


def claude_of(server: RunningServer, key: str = "sk-ant-anything") -> anthropic.AsyncAnthropic:
    client = anthropic.AsyncAnthropic(base_url=server.base, api_key=key, max_retries=0, timeout=60)
    OPENED.append(client)
    return client


def clis_under(server: RunningServer) -> set[int]:
    children = psutil.Process(server.process.pid).children(recursive=True)
    return {p.pid for p in children if "claude" in cmdline(p).split(" ")[0]}


async def test_a_message_is_created_and_streamed_as_the_real_api_does(server: RunningServer) -> None:
    client = claude_of(server)
    created = await client.messages.create(
        model="sonnet", max_tokens=100, messages=[{"role": "user", "content": "[[say:Hello there]]"}]
    )
    assert created.role == "assistant" and created.stop_reason == "end_turn"
    assert [block.type for block in created.content] == ["text"]
    assert created.content[0].text == "Hello there"  # type: ignore[union-attr]
    assert created.usage.output_tokens > 0
    chunks = []
    async with client.messages.stream(
        model="sonnet", max_tokens=100, messages=[{"role": "user", "content": "[[slow:20]] one two three four"}]
    ) as stream:  # the SDK's helper checks the event order strictly
        async for text in stream.text_stream:
            chunks.append(text)
        final = await stream.get_final_message()
    assert len(chunks) > 1
    assert "".join(chunks) == final.content[0].text == "Echo: one two three four"  # type: ignore[union-attr]
    assert final.stop_reason == "end_turn"


async def test_the_system_prompt_and_model_reach_claude_code(server: RunningServer, fake_model: FakeModel) -> None:
    created = await claude_of(server).messages.create(
        model="haiku",
        max_tokens=100,
        system=[{"type": "text", "text": "You are SYSTEM-API-7."}],
        messages=[{"role": "user", "content": "[[report]]"}],
    )
    report = created.content[0].text  # type: ignore[union-attr]
    assert "SYSTEM-API-7" in report and "haiku" in report


async def test_a_resent_history_continues_one_warm_conversation(server: RunningServer) -> None:
    client = claude_of(server)
    word = f"w{uuid.uuid4().hex[:8]}"
    messages: list[anthropic.types.MessageParam] = []
    clis: set[int] = set()
    sessions = set()
    for prompt in [f"remember {word}", RECALL, "[[say:three]]", "[[say:four]]", RECALL]:
        messages.append({"role": "user", "content": prompt})
        raw = await client.messages.with_raw_response.create(model="sonnet", max_tokens=100, messages=messages)
        reply = await raw.parse()
        sessions.add(raw.headers["x-claude-session-id"])
        messages.append({"role": "assistant", "content": reply.content})  # type: ignore[typeddict-item]
        clis |= clis_under(server)
    answers = [m["content"][0].text for m in messages if m["role"] == "assistant"]  # type: ignore[index,union-attr]
    assert answers == [
        f"OK, I will remember {word}",
        f"You asked me to remember {word}",
        "three",
        "four",
        f"You asked me to remember {word}",
    ]
    assert len(sessions) == 1  # one Claude Code conversation
    assert len(clis) == 1  # served by one warm CLI process: one cold start for five turns


async def test_an_unknown_history_starts_a_conversation_that_carries_it(
    server: RunningServer, fake_model: FakeModel
) -> None:
    word = f"h{uuid.uuid4().hex[:8]}"
    created = await claude_of(server).messages.create(
        model="sonnet",
        max_tokens=100,
        messages=[
            {"role": "user", "content": f"my word is {word}"},
            {"role": "assistant", "content": "Noted."},
            {"role": "user", "content": "[[report]]"},
        ],
    )
    assert word in created.content[0].text  # type: ignore[union-attr]  # the carried history reached the model


async def test_errors_come_back_as_the_sdks_own_exceptions(server: RunningServer) -> None:
    client = claude_of(server)
    with pytest.raises(anthropic.RateLimitError) as limited:
        await client.messages.create(
            model="sonnet", max_tokens=10, messages=[{"role": "user", "content": "[[error:429]]"}]
        )
    assert "rate limit" in str(limited.value).lower()
    with pytest.raises(anthropic.BadRequestError, match="temperature is not supported"):
        await client.messages.create(
            model="sonnet", max_tokens=10, messages=[{"role": "user", "content": "hi"}], extra_body={"temperature": 0.2}
        )
    with pytest.raises(anthropic.BadRequestError, match="last message must have role 'user'"):
        await client.messages.create(model="sonnet", max_tokens=10, messages=[{"role": "assistant", "content": "x"}])
    with pytest.raises(anthropic.BadRequestError, match="count_tokens is not supported"):
        await client.messages.count_tokens(model="sonnet", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(anthropic.NotFoundError):
        await client.messages.create(
            model="sonnet",
            max_tokens=10,
            messages=[{"role": "user", "content": "hi"}],
            extra_headers={"x-claude-session-id": str(uuid.uuid4())},
        )
    # The server keeps serving.
    ok = await client.messages.create(
        model="sonnet", max_tokens=10, messages=[{"role": "user", "content": "[[say:ok]]"}]
    )
    assert ok.content[0].text == "ok"  # type: ignore[union-attr]


async def test_models_are_the_ones_claude_code_offers(server: RunningServer) -> None:
    client = claude_of(server)
    listed = [model.id async for model in client.models.list()]
    assert {"sonnet", "opus", "haiku"} <= set(listed)
    assert any(model_id.startswith("claude-") for model_id in listed)
    assert (await client.models.retrieve("sonnet")).display_name
    with pytest.raises(anthropic.NotFoundError):
        await client.models.retrieve("no-such-model")


async def test_a_client_that_goes_away_mid_stream_stops_the_run(server: RunningServer) -> None:
    client = claude_of(server)
    async with client.messages.stream(
        model="sonnet", max_tokens=100, messages=[{"role": "user", "content": "[[slow:300]] " + "word " * 60}]
    ) as stream:
        async for _ in stream.text_stream:
            break
        tree = [psutil.Process(pid) for pid in clis_under(server)]
        assert tree
    await wait_until_gone(tree)


async def test_tenants_authenticate_with_the_sdks_api_key(
    tmp_path: Path, workdir: Path, cli_env: dict[str, str]
) -> None:
    config = tenants_config(tmp_path / "tenants.toml", workdir, cli_env)
    with serving(tmp_path, config, "http", name="tenants-api") as running:
        with pytest.raises(anthropic.AuthenticationError, match="tenant token"):
            await claude_of(running, "wrong-token").messages.create(
                model="sonnet", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
            )
        ok = await claude_of(running, ALICE).messages.create(
            model="sonnet", max_tokens=10, messages=[{"role": "user", "content": "[[say:hi alice]]"}]
        )
        assert ok.content[0].text == "hi alice"  # type: ignore[union-attr]


async def test_in_caller_mode_the_sdks_api_key_is_the_callers_own_credential(
    tmp_path: Path, workdir: Path, cli_env: dict[str, str], fake_model: FakeModel
) -> None:
    config = callers_config(tmp_path / "callers.toml", workdir, cli_env)
    key, word = api_key("sdk"), f"k{uuid.uuid4().hex[:8]}"
    with serving(tmp_path, config, "http", name="callers-api") as running:
        created = await claude_of(running, key).messages.create(
            model="sonnet", max_tokens=10, messages=[{"role": "user", "content": f"remember {word}"}]
        )
        assert created.content[0].text == f"OK, I will remember {word}"  # type: ignore[union-attr]
        with pytest.raises(anthropic.PermissionDeniedError, match="terms"):
            await claude_of(running, "sk-ant-oat01-subscription").messages.create(
                model="sonnet", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
            )
    assert {r["api_key"] for r in fake_model.requests() if word in r["prompt"]} == {key}


async def test_openai_chat_completions_work_with_and_without_streaming(server: RunningServer) -> None:
    client = openai.AsyncOpenAI(base_url=server.base + "/v1", api_key="sk-anything", max_retries=0, timeout=60)
    OPENED.append(client)
    word = f"o{uuid.uuid4().hex[:8]}"
    first = await client.chat.completions.create(
        model="sonnet",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": f"remember {word}"}],
    )
    assert first.choices[0].message.content == f"OK, I will remember {word}"
    assert first.choices[0].finish_reason == "stop" and first.usage is not None
    history = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": f"remember {word}"},
        {"role": "assistant", "content": first.choices[0].message.content},
        {"role": "user", "content": RECALL},
    ]
    chunks = []
    stream = await client.chat.completions.create(
        model="sonnet",
        messages=history,
        stream=True,
        stream_options={"include_usage": True},  # type: ignore[arg-type]
    )
    usage = None
    async for part in stream:
        if part.choices and part.choices[0].delta.content:
            chunks.append(part.choices[0].delta.content)
        usage = part.usage or usage
    assert "".join(chunks) == f"You asked me to remember {word}"  # the same conversation, continued
    assert usage is not None and usage.completion_tokens > 0
    with pytest.raises(openai.BadRequestError, match="n must be 1"):
        await client.chat.completions.create(model="sonnet", n=2, messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.RateLimitError):
        await client.chat.completions.create(model="sonnet", messages=[{"role": "user", "content": "[[error:429]]"}])


async def test_the_api_can_be_turned_off(tmp_path: Path, workdir: Path, cli_env: dict[str, str]) -> None:
    config = write_config(tmp_path / "off.toml", workdir, cli_env, "api = false")
    with serving(tmp_path, config, "http", name="api-off") as running, pytest.raises(anthropic.NotFoundError):
        await claude_of(running).messages.create(
            model="sonnet", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
        )
    await anyio.lowlevel.checkpoint()
