"""The scripted process keeps `CLIProcess`'s contract, so what the pool and job tests show of the
bridge holds for the real CLI: session ids, start-up counting, and a failed turn leaving it closed."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from claude_agent_sdk import Message, SystemMessage

from claude_mcp.bridge.options import RunTarget, build_options
from claude_mcp.config.call_settings import CallSettings
from claude_mcp.errors import CLIFailed, StreamStalled
from tests.scripted import Reply, ScriptedLauncher, ScriptedProcess, scripted_policy

pytestmark = pytest.mark.anyio


def launch(launcher: ScriptedLauncher, tmp_path: Path, target: RunTarget | None = None) -> ScriptedProcess:
    policy = scripted_policy(tmp_path)
    return launcher.launch(build_options(policy.resolve(CallSettings()), policy, target=target or RunTarget()))


async def turn(process: ScriptedProcess, prompt: str, **kwargs: object) -> str:
    outcome = await process.turn(prompt, timeout_s=5, stall_timeout_s=5, **kwargs)  # type: ignore[arg-type]
    assert outcome.result.session_id == process.session_id
    return outcome.result.session_id


async def test_sessions_are_new_continued_or_forked_as_the_options_say(tmp_path: Path) -> None:
    launcher = ScriptedLauncher()
    new = launch(launcher, tmp_path)
    assert new.session_id is None
    first = await turn(new, "one")
    assert await turn(new, "two") == first
    resumed = launch(launcher, tmp_path, RunTarget(resume=first))
    assert resumed.session_id == first and await turn(resumed, "three") == first
    forked = launch(launcher, tmp_path, RunTarget(resume=first, fork=True))
    branch = await turn(forked, "four")
    assert branch != first
    assert launcher.transcripts == {first: ["one", "two", "three"], branch: ["one", "two", "three", "four"]}


async def test_a_first_turn_is_a_start_up_until_the_model_answers(tmp_path: Path) -> None:
    launcher = ScriptedLauncher()
    process = launch(launcher, tmp_path)
    seen: list[tuple[str, int]] = []

    async def on_message(message: Message) -> None:
        seen.append((type(message).__name__, launcher.startups.count))

    await turn(process, "one", on_message=on_message)
    assert seen == [("SystemMessage", 1), ("AssistantMessage", 0), ("ResultMessage", 0)]
    assert launcher.startups.count == 0
    seen.clear()
    await turn(process, "two", on_message=on_message)
    assert [count for _, count in seen] == [0, 0, 0]  # a warm process's turn is no start-up


async def test_a_failed_turn_leaves_the_process_closed_and_close_is_idempotent(tmp_path: Path) -> None:
    launcher = ScriptedLauncher()
    launcher.script("boom", Reply(crash=True))
    launcher.script("stall", Reply(wait=anyio.Event()))
    crashed, stalled = launch(launcher, tmp_path), launch(launcher, tmp_path)
    with pytest.raises(CLIFailed):
        await turn(crashed, "boom")
    with pytest.raises(StreamStalled):
        await stalled.turn("stall", timeout_s=5, stall_timeout_s=0.01)
    for process in (crashed, stalled):
        assert process.closed and process.graceful is False and not process.alive
        await process.close()
        assert process.graceful is False and process.exited.is_set()
    with pytest.raises(CLIFailed):
        await turn(crashed, "again")
    assert launcher.startups.count == 0


async def test_an_api_error_is_an_error_result_with_its_status(tmp_path: Path) -> None:
    launcher = ScriptedLauncher()
    launcher.script("limited", Reply(api_error_status=429))
    process = launch(launcher, tmp_path)
    messages: list[Message] = []

    async def keep(message: Message) -> None:
        messages.append(message)

    outcome = await process.turn("limited", timeout_s=5, stall_timeout_s=5, on_message=keep)
    assert outcome.api_error_status == 429 and outcome.result.is_error and process.alive
    assert isinstance(messages[0], SystemMessage) and messages[0].data["session_id"] == process.session_id
