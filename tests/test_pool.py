"""The process pool on the scripted CLI (no `claude` binary): a follow-up runs on its
conversation's warm process, the pool keeps the most recently used within `max_warm` and
closes the rest, idle ones expire, a setting a live process can't take restarts it while the
model and permission mode change in place, and a turn that fails leaves no process behind."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from claude_mcp import ClaudeBridge
from claude_mcp.bridge.options import build_options
from claude_mcp.bridge.results import RunFailed
from claude_mcp.bridge.warm import MB, WarmPool, WarmSession
from claude_mcp.config.call_settings import CallSettings
from claude_mcp.errors import APIError, CLIFailed, RunTimeout
from tests.scripted import Reply, ScriptedLauncher, scripted_bridge, scripted_policy

pytestmark = pytest.mark.anyio


async def live(bridge: ClaudeBridge) -> dict[str, bool]:
    """Each conversation, and whether the store says a process holds it warm."""
    return {info.session_id: info.live for info in await bridge.list_sessions()}


async def test_a_follow_up_runs_on_the_conversations_warm_process(tmp_path: Path) -> None:
    async with scripted_bridge(scripted_policy(tmp_path)) as (bridge, launcher):
        first = await bridge.ask("one")
        again = await bridge.ask("two", session_id=first.session_id)
        assert await live(bridge) == {first.session_id: True}
    assert (first.result, again.result, again.session_id) == ("one", "two", first.session_id)
    [process] = launcher.processes
    assert process.prompts == ["one", "two"] and process.options.resume is None


async def test_a_new_conversation_gets_a_process_of_its_own(tmp_path: Path) -> None:
    async with scripted_bridge(scripted_policy(tmp_path)) as (bridge, launcher):
        first = await bridge.ask("one")
        other = await bridge.ask("two")
    assert other.session_id != first.session_id
    assert [p.prompts for p in launcher.processes] == [["one"], ["two"]]


async def test_past_max_warm_the_least_recently_used_process_is_closed(tmp_path: Path) -> None:
    async with scripted_bridge(scripted_policy(tmp_path, max_warm=2)) as (bridge, launcher):
        a = await bridge.ask("a")
        b = await bridge.ask("b")
        await bridge.ask("a again", session_id=a.session_id)  # a is now more recent than b
        c = await bridge.ask("c")
        pa, pb, pc = launcher.processes
        with anyio.fail_after(2):
            await pb.exited.wait()
        assert pb.graceful and not pa.closed and not pc.closed
        assert await live(bridge) == {a.session_id: True, b.session_id: False, c.session_id: True}

        await bridge.ask("b again", session_id=b.session_id)  # cold: a new process resumes b
        assert len(launcher.processes) == 4 and launcher.processes[3].options.resume == b.session_id
        with anyio.fail_after(2):
            await pa.exited.wait()  # and now a is the least recently used
        assert not pc.closed
    assert launcher.transcripts[b.session_id] == ["b", "b again"]


async def test_close_session_ends_the_warm_process_and_the_next_turn_resumes_cold(tmp_path: Path) -> None:
    async with scripted_bridge(scripted_policy(tmp_path)) as (bridge, launcher):
        first = await bridge.ask("one")
        assert await bridge.close_session(first.session_id) is True
        assert await bridge.close_session(first.session_id) is False  # nothing left to close
        assert await live(bridge) == {first.session_id: False}
        again = await bridge.ask("two", session_id=first.session_id)
    old, new = launcher.processes
    assert old.closed and old.graceful and old.turns == 1
    assert new.options.resume == first.session_id and not new.options.fork_session
    assert again.session_id == first.session_id and launcher.transcripts[first.session_id] == ["one", "two"]


async def test_a_conversations_sticky_settings_follow_it_to_a_new_process(tmp_path: Path) -> None:
    async with scripted_bridge(scripted_policy(tmp_path)) as (bridge, launcher):
        first = await bridge.ask("one", model="opus", max_turns=7)
        await bridge.close_session(first.session_id)
        await bridge.ask("two", session_id=first.session_id)
    new = launcher.processes[1]
    assert (new.options.model, new.options.max_turns) == ("opus", 7)


async def test_a_setting_a_live_process_cannot_take_restarts_it(tmp_path: Path) -> None:
    async with scripted_bridge(scripted_policy(tmp_path)) as (bridge, launcher):
        first = await bridge.ask("one")
        again = await bridge.ask("two", session_id=first.session_id, max_turns=5)
        assert await live(bridge) == {first.session_id: True}
    old, new = launcher.processes
    assert old.closed and old.prompts == ["one"]
    assert (new.options.resume, new.options.max_turns, new.prompts) == (first.session_id, 5, ["two"])
    assert again.session_id == first.session_id


async def test_the_model_and_permission_mode_change_in_place(tmp_path: Path) -> None:
    async with scripted_bridge(scripted_policy(tmp_path)) as (bridge, launcher):
        first = await bridge.ask("one")
        await bridge.ask("two", session_id=first.session_id, model="opus")
        await bridge.ask("three", session_id=first.session_id, permission_mode="acceptEdits")
        await bridge.ask("four", session_id=first.session_id, model="opus")  # already opus: nothing to change
    [process] = launcher.processes
    assert process.model_changes == ["opus"] and process.mode_changes == ["acceptEdits"]
    assert (process.options.model, process.options.permission_mode) == ("opus", "acceptEdits")
    assert process.turns == 4


async def test_a_fork_runs_on_a_new_process_and_leaves_the_original_warm(tmp_path: Path) -> None:
    async with scripted_bridge(scripted_policy(tmp_path)) as (bridge, launcher):
        first = await bridge.ask("one")
        branch = await bridge.fork(first.session_id, "branch")
        assert not isinstance(branch, str)
        sessions = {info.session_id: info for info in await bridge.list_sessions()}
        original, forked = launcher.processes
        assert original.turns == 1 and not original.closed
    assert branch.session_id not in (first.session_id, "")
    assert (forked.options.resume, forked.options.fork_session) == (first.session_id, True)
    assert sessions[branch.session_id].forked_from == first.session_id
    assert launcher.transcripts[branch.session_id] == ["one", "branch"]
    assert launcher.transcripts[first.session_id] == ["one"]


async def test_a_turn_that_crashes_discards_its_process(tmp_path: Path) -> None:
    launcher = ScriptedLauncher()
    launcher.script("boom", Reply(crash=True))
    async with scripted_bridge(scripted_policy(tmp_path), launcher) as (bridge, _):
        first = await bridge.ask("one")
        with pytest.raises(CLIFailed):
            await bridge.ask("boom", session_id=first.session_id)
        crashed = launcher.processes[0]
        assert crashed.closed and crashed.graceful is False
        assert await live(bridge) == {first.session_id: True}  # the store still thinks so: no turn recorded it
        again = await bridge.ask("after", session_id=first.session_id)
    assert launcher.processes[1].options.resume == first.session_id and again.session_id == first.session_id


async def test_a_new_conversation_whose_first_turn_crashes_is_kept_to_be_continued(tmp_path: Path) -> None:
    launcher = ScriptedLauncher()
    launcher.script("boom", Reply(crash=True))
    async with scripted_bridge(scripted_policy(tmp_path), launcher) as (bridge, _):
        with pytest.raises(CLIFailed) as crashed:
            await bridge.ask("boom")
        named = crashed.value.session_id
        assert named is not None and [s.session_id for s in await bridge.list_sessions()] == [named]
        await bridge.ask("again", session_id=named)  # the error named it: it can be continued
    first, second = launcher.processes
    assert first.closed and first.graceful is False
    assert second.options.resume == named


async def test_a_turn_that_times_out_discards_its_process(tmp_path: Path) -> None:
    launcher = ScriptedLauncher()
    reply = launcher.script("slow", Reply(wait=anyio.Event()))
    async with scripted_bridge(scripted_policy(tmp_path), launcher) as (bridge, _):
        first = await bridge.ask("one")
        with pytest.raises(RunTimeout):
            await bridge.ask("slow", session_id=first.session_id, timeout_s=0.05)
        assert reply.reached.is_set()
        [process] = launcher.processes
        assert process.closed and process.graceful is False


async def test_an_api_error_result_keeps_the_process(tmp_path: Path) -> None:
    launcher = ScriptedLauncher()
    launcher.script("overloaded", Reply(api_error_status=529))
    async with scripted_bridge(scripted_policy(tmp_path), launcher) as (bridge, _):
        first = await bridge.ask("one")
        with pytest.raises(RunFailed) as failed:
            await bridge.ask("overloaded", session_id=first.session_id)
        assert isinstance(failed.value.cause, APIError) and failed.value.cause.status == 529
        assert failed.value.result.session_id == first.session_id
        await bridge.ask("retry", session_id=first.session_id)
    [process] = launcher.processes  # a result, even an error one, is a turn that ended well
    assert process.prompts == ["one", "overloaded", "retry"]


async def test_a_warm_process_that_exited_meanwhile_is_replaced(tmp_path: Path) -> None:
    async with scripted_bridge(scripted_policy(tmp_path)) as (bridge, launcher):
        first = await bridge.ask("one")
        launcher.processes[0].die()
        await bridge.ask("two", session_id=first.session_id)
        dead = launcher.processes[0]
        assert dead.closed and dead.graceful is False  # what it started is stopped, not left behind
    assert len(launcher.processes) == 2 and launcher.processes[1].options.resume == first.session_id


async def test_models_are_asked_of_a_process_started_for_the_purpose_once(tmp_path: Path) -> None:
    async with scripted_bridge(scripted_policy(tmp_path)) as (bridge, launcher):
        models = await bridge.models()
        assert await bridge.models() == models
    assert [m["value"] for m in models] == ["default", "opus"]
    [process] = launcher.processes
    assert process.started and process.closed and process.turns == 0


# The warm pool on its own.


async def started(launcher: ScriptedLauncher, tmp_path: Path) -> WarmSession:
    """A started process with the default settings, as a warm session."""
    policy = scripted_policy(tmp_path)
    settings = policy.resolve(CallSettings())
    process = launcher.launch(build_options(settings, policy))
    await process.start()
    return WarmSession(process, settings, anyio.current_time())


async def test_the_sweep_closes_only_processes_idle_past_their_ttl(tmp_path: Path) -> None:
    launcher, cooled = ScriptedLauncher(), list[str]()

    async def on_closed(session_id: str) -> None:
        cooled.append(session_id)

    pool = WarmPool(4, 60, on_closed)
    old, fresh = await started(launcher, tmp_path), await started(launcher, tmp_path)
    await pool.put("old", old)
    await pool.put("fresh", fresh)
    old.last_used -= 61
    await pool.sweep()
    assert old.process.closed and not fresh.process.closed
    assert cooled == ["old"] and pool.live_ids() == {"fresh"}


async def test_the_memory_budget_closes_the_least_recently_used(tmp_path: Path) -> None:
    launcher = ScriptedLauncher()
    pool = WarmPool(4, 600, max_warm_mb=500)
    a, b, c = [await started(launcher, tmp_path) for _ in range(3)]
    a.held_bytes = b.held_bytes = 200 * MB
    c.held_bytes = 600 * MB  # more than the whole budget: never kept
    await pool.put("a", a)
    await pool.put("b", b)
    assert pool.memory_bytes() == 400 * MB and not a.process.closed
    assert await pool.take("a") is a
    await pool.put("a", a)  # a is now the most recently used
    b.held_bytes = 350 * MB  # as measured
    await pool.fit_memory()  # nothing to measure (no pids): it trims by the figures it has
    assert b.process.closed and not a.process.closed and pool.live_ids() == {"a"}
    assert not pool.keeps(c)
    await pool.put("c", c)
    assert c.process.closed and pool.live_ids() == {"a"}
