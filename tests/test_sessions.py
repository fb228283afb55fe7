"""Conversations: continue, fork, list, read, delete, warm processes, and turn-taking.
End to end through the real CLI; the fake model remembers only what the history carries."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import psutil
import pytest
from mcp import Client

from claude_mcp import ClaudeBridge, Policy
from claude_mcp.mcp_surface.progress import STATUS_PREFIX
from claude_mcp.mcp_surface.server import build_server
from tests.conftest import call, text_of
from tests.test_stdio import server_params, write_config
from tests.test_streaming_and_cancellation import Progress, cmdline

pytestmark = pytest.mark.anyio

RECALL = "what did I ask you to remember"


def claude_pids() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True) if "claude" in cmdline(p).split(" ")[0]}


async def remember(client: Client, word: str) -> str:
    return (await call(client, "ask", prompt=f"remember {word}"))["session_id"]


async def recall(client: Client, session_id: str, **settings: Any) -> str:
    return (await call(client, "ask", prompt=RECALL, session_id=session_id, **settings))["result"]


async def test_a_fork_diverges_from_its_original_both_ways(client: Client) -> None:
    original = await remember(client, "apple")
    fork = (await call(client, "fork_session", session_id=original))["session_id"]
    assert fork != original
    await call(client, "ask", prompt="remember banana", session_id=original)
    await call(client, "ask", prompt="remember cherry", session_id=fork)
    assert await recall(client, original) == "You asked me to remember banana"
    assert await recall(client, fork) == "You asked me to remember cherry"


async def test_a_fork_with_a_prompt_answers_in_the_new_branch(client: Client) -> None:
    original = await remember(client, "plum")
    forked = await call(client, "fork_session", session_id=original, prompt=RECALL)
    assert forked["forked_from"] == original
    assert forked["session_id"] != original
    assert forked["answer"]["result"] == "You asked me to remember plum"
    assert forked["answer"]["session_id"] == forked["session_id"]
    await call(client, "ask", prompt="remember fig", session_id=forked["session_id"])
    assert await recall(client, original) == "You asked me to remember plum"


async def test_sessions_are_listed_read_and_deleted(client: Client) -> None:
    first = await remember(client, "lime")
    second = await remember(client, "kiwi")
    listed = (await call(client, "list_sessions"))["sessions"]
    assert [s["session_id"] for s in listed][:2] == [second, first]
    assert listed[0]["first_prompt"] == "remember kiwi"
    assert listed[0]["live"] is True
    assert listed[0]["cwd"]
    transcript = await call(client, "get_session", session_id=first)
    assert transcript["total"] == 2
    assert [m["role"] for m in transcript["messages"]] == ["user", "assistant"]
    assert transcript["messages"][1]["text"] == "OK, I will remember lime"
    page = await call(client, "get_session", session_id=first, offset=1, limit=1)
    assert [m["text"] for m in page["messages"]] == ["OK, I will remember lime"]
    assert (await call(client, "delete_session", session_id=first))["changed"] is True
    assert first not in [s["session_id"] for s in (await call(client, "list_sessions"))["sessions"]]
    gone = await client.call_tool("ask", {"prompt": RECALL, "session_id": first})
    assert gone.is_error and "No conversation with that session_id" in text_of(gone)
    unknown = await client.call_tool("get_session", {"session_id": first})
    assert unknown.is_error and "No conversation" in text_of(unknown)


async def test_sessions_are_resources(client: Client) -> None:
    session_id = await remember(client, "pear")
    listed = await client.read_resource("claude://sessions")
    assert session_id in listed.contents[0].text
    one = await client.read_resource(f"claude://sessions/{session_id}")
    assert json.loads(one.contents[0].text)["messages"][0]["text"] == "remember pear"
    templates = (await client.list_resource_templates()).resource_templates
    assert templates[0].uri_template == "claude://sessions/{session_id}"


async def test_a_warm_process_serves_the_follow_up(client: Client) -> None:
    session_id = await remember(client, "grape")
    live = claude_pids()
    assert len(live) == 1
    assert await recall(client, session_id) == "You asked me to remember grape"
    assert claude_pids() == live, "the same CLI process served both turns"
    assert (await call(client, "close_session", session_id=session_id))["changed"] is True
    assert claude_pids() == set()
    assert await recall(client, session_id) == "You asked me to remember grape", "a closed session resumes cold"


async def test_a_model_change_is_applied_in_place(client: Client) -> None:
    session_id = (await call(client, "ask", prompt="hi", model="haiku"))["session_id"]
    live = claude_pids()
    seen = await call(client, "ask", prompt="[[report]]", session_id=session_id, model="sonnet")
    assert "sonnet" in json.loads(seen["result"])["model"]
    assert claude_pids() == live


async def test_a_system_prompt_change_restarts_and_takes_effect(client: Client) -> None:
    session_id = (await call(client, "ask", prompt="remember date", system_prompt="SYSTEM-A"))["session_id"]
    live = claude_pids()
    kept = json.loads((await call(client, "ask", prompt="[[report]]", session_id=session_id))["result"])
    assert "SYSTEM-A" in kept["system"]
    assert claude_pids() == live
    changed = json.loads(
        (await call(client, "ask", prompt="[[report]]", session_id=session_id, system_prompt="SYSTEM-B"))["result"]
    )
    assert "SYSTEM-B" in changed["system"] and "SYSTEM-A" not in changed["system"]
    assert claude_pids() != live
    assert await recall(client, session_id) == "You asked me to remember date"
    await call(client, "close_session", session_id=session_id)
    cold = json.loads((await call(client, "ask", prompt="[[report]]", session_id=session_id))["result"])
    assert "SYSTEM-B" in cold["system"], "a cold resume keeps the system prompt the conversation last used"


async def test_a_session_resumes_in_its_own_directory(client: Client, workdir: Path) -> None:
    (workdir / "project").mkdir()
    session_id = (await call(client, "ask", prompt="remember melon", cwd="project"))["session_id"]
    await call(client, "close_session", session_id=session_id)
    assert await recall(client, session_id) == "You asked me to remember melon"


async def test_least_recently_used_warm_processes_are_closed_first(policy: Policy) -> None:
    async with Client(build_server(ClaudeBridge(policy.model_copy(update={"max_warm": 1}), depth=0))) as client:
        first = await remember(client, "one")
        first_pids = claude_pids()
        second = await remember(client, "two")
        with anyio.fail_after(10):  # the evicted process exits after the answer, off its path
            while len(claude_pids()) > 1:
                await anyio.sleep(0.02)
        assert claude_pids() != first_pids
        listed = {s["session_id"]: s["live"] for s in (await call(client, "list_sessions"))["sessions"]}
        assert listed == {first: False, second: True}


async def test_idle_warm_processes_are_closed_after_their_ttl(policy: Policy) -> None:
    async with Client(build_server(ClaudeBridge(policy.model_copy(update={"warm_ttl_s": 0.4}), depth=0))) as client:
        await remember(client, "three")
        with anyio.fail_after(10):
            while claude_pids():
                await anyio.sleep(0.1)


async def test_warm_processes_close_with_the_server(policy: Policy) -> None:
    async with Client(build_server(ClaudeBridge(policy, depth=0))) as client:
        await remember(client, "four")
        assert claude_pids()
    assert claude_pids() == set()


async def test_two_calls_on_one_session_take_turns(client: Client) -> None:
    session_id = await remember(client, "orange")
    waiting = Progress()
    results: list[Any] = []

    async def turn(prompt: str, progress: Progress | None = None) -> None:
        results.append(
            await client.call_tool("ask", {"prompt": prompt, "session_id": session_id}, progress_callback=progress)
        )

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(turn, "[[slow:200]] remember lemon a b c d")
        await anyio.sleep(0.3)
        tasks.start_soon(turn, RECALL, waiting)
    assert [text_of(r) for r in results] == ["OK, I will remember lemon", "You asked me to remember lemon"]
    assert f"{STATUS_PREFIX}waiting for the previous call on this conversation to finish" in waiting.status
    transcript = await call(client, "get_session", session_id=session_id)
    assert [m["text"] for m in transcript["messages"] if m["role"] == "user"] == [
        "remember orange",
        "[[slow:200]] remember lemon a b c d",
        RECALL,
    ]


async def test_conversations_survive_a_server_restart(tmp_path: Path, workdir: Path, cli_env: dict[str, str]) -> None:
    config = write_config(tmp_path / "c.toml", workdir, cli_env)
    async with Client(server_params(config)) as client:
        session_id = await remember(client, "papaya")
    async with Client(server_params(config)) as client:
        assert await recall(client, session_id) == "You asked me to remember papaya"
        forked = await call(client, "fork_session", session_id=session_id, prompt=RECALL)
        assert forked["answer"]["result"] == "You asked me to remember papaya"


async def test_settings_stick_to_a_conversation_across_a_restart(
    tmp_path: Path, workdir: Path, cli_env: dict[str, str]
) -> None:
    config = write_config(tmp_path / "c.toml", workdir, cli_env)
    async with Client(server_params(config)) as client:
        session_id = (await call(client, "ask", prompt="hi", model="haiku", disallowed_tools=["Bash"]))["session_id"]
    async with Client(server_params(config)) as client:
        seen = json.loads((await call(client, "ask", prompt="[[report]]", session_id=session_id))["result"])
        assert "haiku" in seen["model"] and "Bash" not in seen["tools"]
        fresh = json.loads((await call(client, "ask", prompt="[[report]]"))["result"])
        assert "Bash" in fresh["tools"]


async def test_a_json_schema_applies_to_its_call_only(client: Client) -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}}
    first = await call(client, "ask", prompt='[[structured:{"n": 1}]]', json_schema=schema)
    assert first["structured_output"] == {"n": 1}
    follow_up = await call(client, "ask", prompt="[[report]]", session_id=first["session_id"])
    assert "StructuredOutput" not in json.loads(follow_up["result"])["tools"]


async def wait_for_claude_pids(count: int) -> set[int]:
    with anyio.fail_after(20):
        while len(pids := claude_pids()) != count:
            await anyio.sleep(0.05)
    return pids


async def test_a_spare_process_serves_a_new_conversation(policy: Policy) -> None:
    spare_policy = policy.model_copy(update={"spare_process": True})
    async with Client(build_server(ClaudeBridge(spare_policy, depth=0))) as client:
        spare = await wait_for_claude_pids(1)
        session_id = await remember(client, "quince")
        assert spare <= claude_pids(), "the spare served the conversation and stays warm for it"
        refilled = await wait_for_claude_pids(2)
        assert await recall(client, session_id) == "You asked me to remember quince"
        custom = await call(client, "ask", prompt="hi", model="haiku")
        assert custom["result"] == "Echo: hi"
        assert claude_pids() >= refilled, "a call with other settings leaves the spare alone"
    assert claude_pids() == set()


async def test_a_namespace_keeps_at_most_max_conversations(policy: Policy) -> None:
    async with Client(
        build_server(ClaudeBridge(policy.model_copy(update={"max_conversations": 1}), depth=0))
    ) as client:
        kept = await remember(client, "one")
        refused = await client.call_tool("ask", {"prompt": "remember two"})
        assert refused.is_error and "You keep 1 conversations, the limit" in text_of(refused)
        forked = await client.call_tool("fork_session", {"session_id": kept})
        assert forked.is_error and "the limit" in text_of(forked)
        assert await recall(client, kept) == "You asked me to remember one"  # continuing is fine
        await call(client, "delete_session", session_id=kept)
        await remember(client, "three")
