"""The concurrency cap on the scripted CLI (no `claude` binary): calls beyond `max_concurrent` wait
their turn in the order they came, each told its place in the queue, and all succeed; bridges that
share one cap (a server's namespaces) never run more than it together. The MCP surface's report of
a queue position to a client stays end to end (`test_streaming_and_cancellation`)."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from claude_mcp.bridge.slots import RunSlots
from tests.scripted import Reply, ScriptedLauncher, ScriptedProcess, Watcher, scripted_bridge, scripted_policy

pytestmark = pytest.mark.anyio


def folder(tmp_path: Path, name: str) -> Path:
    (tmp_path / name).mkdir()
    return tmp_path / name


def held(replies: list[Reply]) -> set[str | None]:
    """The replies whose turns have reached the model and are held there (not yet let go)."""
    return {reply.text for reply in replies if reply.reached.is_set() and not (reply.wait and reply.wait.is_set())}


def in_turn(launcher: ScriptedLauncher, replies: list[Reply]) -> list[ScriptedProcess]:
    """The processes whose turn has reached the model and is held there."""
    waiting = held(replies)
    return [p for p in launcher.processes if p.alive and p.prompts and p.prompts[-1] in waiting]


async def test_calls_beyond_the_cap_wait_in_order_and_all_succeed(tmp_path: Path) -> None:
    launcher = ScriptedLauncher()
    prompts = [f"call {i}" for i in range(5)]
    replies = [launcher.script(p, Reply(text=p, wait=anyio.Event())) for p in prompts]
    watchers = [Watcher() for _ in prompts]
    answers: dict[int, str] = {}
    policy = scripted_policy(tmp_path, max_concurrent=2, max_warm=0)
    async with scripted_bridge(policy, launcher) as (bridge, _), anyio.create_task_group() as tasks:

        async def ask(i: int) -> None:
            answers[i] = (await bridge.ask(prompts[i], observer=watchers[i])).result

        for i in range(5):
            tasks.start_soon(ask, i)
            await anyio.wait_all_tasks_blocked()
        assert [r.reached.is_set() for r in replies] == [True, True, False, False, False]
        assert [w.positions[:1] for w in watchers] == [[], [], [1], [2], [3]]  # each told its place
        assert len(launcher.processes) == 2  # no process is started for a call that waits
        for i in range(5):  # as each run ends, the next in the queue starts
            with anyio.fail_after(5):
                for reply in replies[i : i + 2]:
                    await reply.reached.wait()
            await anyio.wait_all_tasks_blocked()
            assert len(in_turn(launcher, replies)) == min(2, 5 - i)  # never more than the cap at once
            assert replies[i].wait is not None
            replies[i].wait.set()
    assert answers == {i: prompts[i] for i in range(5)}
    assert [p.prompts for p in launcher.processes] == [[p] for p in prompts]  # served in the order they came


async def test_bridges_sharing_a_cap_never_run_more_than_it_together(tmp_path: Path) -> None:
    launcher, shared = ScriptedLauncher(), RunSlots(1, 10)
    prompts = [f"call {i}" for i in range(4)]
    replies = [launcher.script(p, Reply(text=p, wait=anyio.Event())) for p in prompts]
    cold = {"max_warm": 0}
    async with (
        scripted_bridge(scripted_policy(folder(tmp_path, "alice"), **cold), launcher, shared_slots=shared) as (
            alice,
            _,
        ),
        scripted_bridge(scripted_policy(folder(tmp_path, "bob"), **cold), launcher, shared_slots=shared) as (bob, _),
        anyio.create_task_group() as tasks,
    ):
        for bridge, prompt in zip((alice, bob, alice, bob), prompts, strict=True):
            tasks.start_soon(bridge.ask, prompt)
            await anyio.wait_all_tasks_blocked()
        for _ in prompts:
            with anyio.fail_after(5):  # a turn reaching the model does not wake `launcher.until`: poll
                while not in_turn(launcher, replies):
                    await anyio.sleep(0.005)
            await anyio.wait_all_tasks_blocked()
            [running] = in_turn(launcher, replies)  # one run between both bridges, the others queued
            assert len(held(replies)) == 1
            reply = launcher.reply_for(running.prompts[-1])
            assert reply.wait is not None
            reply.wait.set()
    assert sorted(p for process in launcher.processes for p in process.prompts) == prompts
    assert shared.running == 0
