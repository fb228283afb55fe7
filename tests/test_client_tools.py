"""Client-side tools on `/v1/messages`: the model calls one of the caller's tools, the response
ends with its `tool_use` block, and the next request's `tool_result` continues the same run.
With the official `anthropic` SDK against a `claude-mcp serve` subprocess running the real CLI
against the fake model (whose `[[tool:mcp__client__NAME:JSON]]` marker calls the tool)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import psutil
import pytest

from claude_mcp.http_api.shapes import ApiError, MessageParam, MessagesRequest, ToolResult
from tests.conftest import WAITS
from tests.test_http import RunningServer, serving
from tests.test_messages_api import claude_of, clis_under, close_clients  # noqa: F401  (an autouse fixture)
from tests.test_stdio import write_config
from tests.test_streaming_and_cancellation import wait_until_gone

pytestmark = [pytest.mark.anyio, WAITS]

WEATHER: Any = {
    "name": "get_weather",
    "description": "The weather in a city now.",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
ASK_WEATHER = '[[tool:mcp__client__get_weather:{"city": "Paris"}]] What is the weather in Paris?'


@pytest.fixture
def server(tmp_path: Path, workdir: Path, cli_env: dict[str, str]) -> Iterator[RunningServer]:
    config = write_config(tmp_path / "tools.toml", workdir, cli_env, "max_concurrent = 8\nclient_tool_timeout_s = 3")
    with serving(tmp_path, config, "http", name="client-tools") as running:
        yield running


def tool_use_of(message: anthropic.types.Message) -> anthropic.types.ToolUseBlock:
    assert message.stop_reason == "tool_use"
    block = message.content[-1]
    assert isinstance(block, anthropic.types.ToolUseBlock)
    return block


def answered(use: anthropic.types.ToolUseBlock, text: str) -> anthropic.types.MessageParam:
    return {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": text}]}


async def test_a_client_tool_call_ends_the_response_and_its_result_continues_the_run(server: RunningServer) -> None:
    client = claude_of(server)
    messages: list[anthropic.types.MessageParam] = [{"role": "user", "content": ASK_WEATHER}]
    raw = await client.messages.with_raw_response.create(
        model="sonnet", max_tokens=100, tools=[WEATHER], messages=messages
    )
    first = await raw.parse()
    use = tool_use_of(first)
    assert use.name == "get_weather" and use.input == {"city": "Paris"} and use.id.startswith("toolu_")
    assert first.usage.output_tokens > 0  # the model call that made the tool call
    session = raw.headers["x-claude-session-id"]
    clis = clis_under(server)
    assert clis  # the run waits for the result in its CLI process

    messages += [{"role": "assistant", "content": first.content}, answered(use, "18 degrees and sunny")]  # type: ignore[typeddict-item]
    raw = await client.messages.with_raw_response.create(
        model="sonnet", max_tokens=100, tools=[WEATHER], messages=messages
    )
    final = await raw.parse()
    assert final.stop_reason == "end_turn"
    assert final.content[0].text == "TOOL_RESULT: 18 degrees and sunny"  # type: ignore[union-attr]
    assert raw.headers["x-claude-session-id"] == session

    # A plain follow-up of the whole exchange continues the same conversation, in the same process.
    messages += [{"role": "assistant", "content": final.content}, {"role": "user", "content": "[[say:bye]]"}]  # type: ignore[typeddict-item]
    raw = await client.messages.with_raw_response.create(
        model="sonnet", max_tokens=100, tools=[WEATHER], messages=messages
    )
    bye = await raw.parse()
    assert bye.content[0].text == "bye"  # type: ignore[union-attr]
    assert raw.headers["x-claude-session-id"] == session
    assert clis_under(server) == clis


async def test_the_same_round_trip_streamed(server: RunningServer) -> None:
    client = claude_of(server)
    messages: list[anthropic.types.MessageParam] = [{"role": "user", "content": ASK_WEATHER}]
    async with client.messages.stream(
        model="sonnet", max_tokens=100, tools=[WEATHER], messages=messages
    ) as stream:  # the SDK's helper checks the event order strictly
        first = await stream.get_final_message()
    use = tool_use_of(first)
    assert use.name == "get_weather" and use.input == {"city": "Paris"}
    messages += [{"role": "assistant", "content": first.content}, answered(use, "rain")]  # type: ignore[typeddict-item]
    chunks = []
    async with client.messages.stream(model="sonnet", max_tokens=100, tools=[WEATHER], messages=messages) as stream:
        async for text in stream.text_stream:
            chunks.append(text)
        final = await stream.get_final_message()
    assert "".join(chunks) == final.content[0].text == "TOOL_RESULT: rain"  # type: ignore[union-attr]
    assert final.stop_reason == "end_turn"


async def test_a_result_nobody_waits_for_and_a_tool_choice_claude_code_cannot_honour_are_refused(
    server: RunningServer,
) -> None:
    client = claude_of(server)
    with pytest.raises(anthropic.BadRequestError, match="no run on this server is waiting"):
        await client.messages.create(
            model="sonnet",
            max_tokens=100,
            tools=[WEATHER],
            messages=[
                {"role": "user", "content": "weather?"},
                {
                    "role": "assistant",
                    "content": [{"type": "tool_use", "id": "toolu_x", "name": "get_weather", "input": {}}],
                },
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_x", "content": "sun"}]},
            ],
        )
    with pytest.raises(anthropic.BadRequestError, match="tool_choice 'any' cannot be honoured"):
        await client.messages.create(
            model="sonnet",
            max_tokens=100,
            tools=[WEATHER],
            tool_choice={"type": "any"},
            messages=[{"role": "user", "content": "weather?"}],
        )


async def test_a_run_whose_tool_result_never_comes_is_stopped(server: RunningServer) -> None:
    client = claude_of(server)
    first = await client.messages.create(
        model="sonnet", max_tokens=100, tools=[WEATHER], messages=[{"role": "user", "content": ASK_WEATHER}]
    )
    use = tool_use_of(first)
    tree = [psutil.Process(pid) for pid in clis_under(server)]
    assert tree
    await wait_until_gone(tree, within_s=15)  # client_tool_timeout_s = 3
    with pytest.raises(anthropic.BadRequestError, match="no run on this server is waiting"):
        await client.messages.create(
            model="sonnet",
            max_tokens=100,
            tools=[WEATHER],
            messages=[
                {"role": "user", "content": ASK_WEATHER},
                {"role": "assistant", "content": first.content},  # type: ignore[typeddict-item]
                answered(use, "too late"),
            ],
        )


async def test_tool_blocks_are_history_text_and_what_cannot_be_honoured_is_refused() -> None:
    use = {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris", "a": 1}}
    said = MessageParam.model_validate({"role": "assistant", "content": [{"type": "text", "text": "Let me see."}, use]})
    assert said.text() == 'Let me see.\n\n[tool call toolu_1: get_weather {"a": 1, "city": "Paris"}]'
    result = {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "sun"}]}
    answer = MessageParam.model_validate({"role": "user", "content": [result]})
    assert answer.text() == "[tool result toolu_1: sun]"
    assert answer.tool_result() == ToolResult("toolu_1", "sun", False)
    mixed = MessageParam.model_validate({"role": "user", "content": [result, {"type": "text", "text": "and?"}]})
    with pytest.raises(ApiError, match="exactly one tool_result"):
        mixed.tool_result()
    request = MessagesRequest.model_validate(
        {
            "model": "sonnet",
            "max_tokens": 10,
            "messages": [{"role": "user", "content": "hi"}],
            "tools": [WEATHER, WEATHER, {"type": "web_search_20250305", "name": "web_search"}, {"name": "bad name"}],
            "tool_choice": {"type": "tool", "name": "get_weather"},
        }
    )
    refusals = " ".join(request.refusals())
    for expected in ("tool_choice 'tool'", "defined twice", "web_search_20250305", "tools.3.name must match"):
        assert expected in refusals
    none = request.model_copy(update={"tool_choice": {"type": "none"}})
    assert none.client_tools() == ()
