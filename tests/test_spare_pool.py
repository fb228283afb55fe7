"""Spare processes on the scripted CLI (no `claude` binary): a spare serves a new conversation
and is replaced, never while another CLI is starting up; the pool follows demand on its clock;
and a spare never serves a conversation that brings its own tools, continues or forks one."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest

from claude_mcp import Policy
from claude_mcp.bridge import spare
from claude_mcp.bridge.client_tools import SERVER, ClientTool, ClientTools, ToolAnswer
from claude_mcp.bridge.permissions import PermissionGate
from claude_mcp.bridge.spare import DEMAND_WINDOW_S, SparePool
from claude_mcp.config.call_settings import CallSettings
from tests.scripted import Reply, ScriptedLauncher, scripted_bridge, scripted_policy

pytestmark = pytest.mark.anyio


@pytest.fixture(autouse=True)
def quick_ticks(monkeypatch: pytest.MonkeyPatch) -> None:
    """The pool re-reads its clock every tick: tick often, so a moved clock is acted on at once."""
    monkeypatch.setattr(spare, "TICK_S", 0.01)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@asynccontextmanager
async def running(policy: Policy, launcher: ScriptedLauncher, clock: Clock) -> AsyncIterator[SparePool]:
    spares = SparePool(policy, launcher, PermissionGate(mode="deny"), child_depth=1, clock=clock)
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(spares.run)
        yield spares
        tasks.cancel_scope.cancel()
    assert all(process.closed for process in launcher.processes)


async def test_a_spare_serves_a_new_conversation_and_another_is_started(tmp_path: Path) -> None:
    async with scripted_bridge(scripted_policy(tmp_path, spare_process=True)) as (bridge, launcher):
        await launcher.until(lambda: bridge.pool.spares.ready == 1)
        [first_spare] = launcher.processes
        assert first_spare.primed and first_spare.turns == 0
        result = await bridge.ask("hello")
        assert first_spare.prompts == ["hello"] and first_spare.session_id == result.session_id
        await launcher.until(lambda: len(launcher.processes) == 2 and bridge.pool.spares.ready == 1)
        replacement = launcher.processes[1]
        assert replacement.primed and replacement.turns == 0 and replacement.options.resume is None


async def test_no_spare_starts_while_another_cli_is_starting_up(tmp_path: Path) -> None:
    launcher = ScriptedLauncher()
    policy = scripted_policy(tmp_path, spare_process=True)
    with launcher.startups.starting() as started_up:  # as if a CLI were starting for a run
        async with running(policy, launcher, Clock()) as spares:
            await anyio.wait_all_tasks_blocked()
            assert launcher.processes == [] and spares.starting == 0
            started_up()
            await launcher.until(lambda: spares.ready == 1)


async def test_the_replacement_waits_until_the_run_on_the_spare_hears_from_the_model(tmp_path: Path) -> None:
    launcher = ScriptedLauncher()
    reply = launcher.script("slow", Reply(wait=anyio.Event()))
    async with scripted_bridge(scripted_policy(tmp_path, spare_process=True), launcher) as (bridge, _):
        await launcher.until(lambda: bridge.pool.spares.ready == 1)
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(lambda: bridge.ask("slow"))
            with anyio.fail_after(5):
                await reply.reached.wait()
            assert launcher.startups.count == 1  # the spare's first turn is a start-up until the model answers
            await anyio.wait_all_tasks_blocked()
            assert len(launcher.processes) == 1
            assert reply.wait is not None
            reply.wait.set()
        await launcher.until(lambda: bridge.pool.spares.ready == 1)
        assert len(launcher.processes) == 2 and launcher.startups.count == 0


async def test_a_conversation_arriving_while_the_spare_starts_waits_for_it(tmp_path: Path) -> None:
    launcher = ScriptedLauncher()
    launcher.start_wait = anyio.Event()
    async with scripted_bridge(scripted_policy(tmp_path, spare_process=True), launcher) as (bridge, _):
        await launcher.until(lambda: bridge.pool.spares.starting == 1)
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(lambda: bridge.ask("hello"))
            await anyio.wait_all_tasks_blocked()
            assert len(launcher.processes) == 1  # it did not start a process of its own
            launcher.start_wait.set()
        assert launcher.processes[0].prompts == ["hello"]


async def test_demand_adds_a_spare_and_its_absence_takes_them_away(tmp_path: Path) -> None:
    launcher, clock = ScriptedLauncher(), Clock()
    policy = scripted_policy(tmp_path, spare_process=True, max_spares=2, spare_idle_s=300)
    async with running(policy, launcher, clock) as spares:
        await launcher.until(lambda: spares.ready == 1)
        assert spares.target(clock()) == 1
        opus = policy.resolve(CallSettings(model="opus"))
        assert await spares.take(opus) is None  # no spare with these settings: demand unmet
        assert spares.target(clock()) == 2
        await launcher.until(lambda: spares.ready == 2)
        assert [p.options.model for p in launcher.live] == [None, "opus"]  # started as recent calls asked

        clock.now += DEMAND_WINDOW_S + 1  # the miss is history; the spare nobody asks for goes first
        await launcher.until(lambda: spares.ready == 1)
        assert [p.options.model for p in launcher.live] == ["opus"]
        taken = await spares.take(opus)
        assert taken is not None and taken.process is launcher.processes[1]
        await taken.process.close()
        await launcher.until(lambda: spares.ready == 1)  # replaced

        clock.now += policy.spare_idle_s  # no new conversation for spare_idle_s: no spare at all
        await launcher.until(lambda: spares.ready == 0 and not launcher.live)
        assert spares.target(clock()) == 0
        assert await spares.take(opus) is None  # the next new conversation brings them back
        assert spares.target(clock()) == 2
        await launcher.until(lambda: spares.ready == 2)


async def test_a_spare_that_fails_to_start_is_dropped(tmp_path: Path) -> None:
    launcher = ScriptedLauncher()
    launcher.start_fails = True
    policy = scripted_policy(tmp_path, spare_process=True)
    async with running(policy, launcher, Clock()) as spares:
        await launcher.until(lambda: len(launcher.processes) >= 2)  # tried, dropped, tried again
        assert spares.ready == 0 and await spares.take(policy.resolve(CallSettings())) is None
        launcher.start_fails = False
        await launcher.until(lambda: spares.ready == 1)


async def echo(name: str, arguments: dict[str, object]) -> ToolAnswer:
    return ToolAnswer(str(arguments))


async def test_a_spare_never_serves_a_continued_forked_or_tooled_conversation(tmp_path: Path) -> None:
    async with scripted_bridge(scripted_policy(tmp_path, spare_process=True)) as (bridge, launcher):
        await launcher.until(lambda: bridge.pool.spares.ready == 1)
        first = await bridge.ask("one")  # on the first spare
        await launcher.until(lambda: len(launcher.processes) == 2 and bridge.pool.spares.ready == 1)
        spare_process = launcher.processes[1]
        await bridge.close_session(first.session_id)  # so the follow-up needs a process

        await bridge.ask("two", session_id=first.session_id)
        await bridge.fork(first.session_id, "branch")
        tool = ClientTool("lookup", "Looks things up", {"type": "object"})
        await bridge.ask("tools", client_tools=ClientTools((tool,), echo))

        assert spare_process.turns == 0 and spare_process.alive and bridge.pool.spares.ready == 1
        resumed, forked, tooled = launcher.processes[2:]
        assert (resumed.options.resume, resumed.options.fork_session) == (first.session_id, False)
        assert (forked.options.resume, forked.options.fork_session) == (first.session_id, True)
        assert tooled.options.resume is None and isinstance(tooled.options.mcp_servers, dict)
        assert SERVER in tooled.options.mcp_servers
        assert [p.prompts for p in launcher.processes[2:]] == [["two"], ["branch"], ["tools"]]


async def test_spares_take_the_settings_new_conversations_use(tmp_path: Path) -> None:
    async with scripted_bridge(scripted_policy(tmp_path, spare_process=True)) as (bridge, launcher):
        await launcher.until(lambda: bridge.pool.spares.ready == 1)
        for _ in range(2):
            await bridge.ask("hi", model="haiku")
        assert bridge.pool.spares.preferred().model == "haiku"
        await launcher.until(
            lambda: any(p.options.model == "haiku" and p.primed and not p.turns for p in launcher.live)
        )
        [spare_process] = [p for p in launcher.live if p.options.model == "haiku" and not p.turns]
        await bridge.ask("on the spare", model="haiku")
        assert spare_process.prompts == ["on the spare"]  # the next such conversation ran on it
