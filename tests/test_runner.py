"""The run pipeline on the scripted CLI (no `claude` binary): what it refuses before a process is
started (depth, `max_conversations`, an unknown agent), and in caller-credential mode what a run
on a credential the model API rejects leaves behind (nothing) and what it holds back (spares)."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from claude_mcp.bridge.results import RunFailed
from claude_mcp.config.call_settings import CallSettings
from claude_mcp.config.credentials import CALLER_REJECTED
from claude_mcp.errors import APIError, Busy, DepthExceeded, InvalidArguments
from tests.scripted import Reply, ScriptedLauncher, Watcher, scripted_bridge, scripted_policy

pytestmark = pytest.mark.anyio


async def test_a_401_on_a_credential_never_accepted_refuses_it_and_keeps_nothing(tmp_path: Path) -> None:
    launcher = ScriptedLauncher()
    launcher.script("hello", Reply(api_error_status=401))
    policy = scripted_policy(tmp_path, credentials="caller", spare_process=True)
    async with scripted_bridge(policy, launcher) as (bridge, _):
        with pytest.raises(RunFailed) as failed:
            await bridge.ask("hello")
        assert isinstance(failed.value.cause, APIError) and failed.value.cause.status == 401
        assert failed.value.message == CALLER_REJECTED and failed.value.result.session_id == ""
        assert bridge.credential_refused
        assert await bridge.list_sessions() == []  # the new conversation's row is gone
        [process] = launcher.processes  # and no spare was started for a credential never accepted
        await launcher.until(lambda: process.closed)
        assert process.graceful  # retired, not discarded: the turn itself ended well


async def test_spares_start_once_the_credential_was_accepted(tmp_path: Path) -> None:
    launcher = ScriptedLauncher()
    policy = scripted_policy(tmp_path, credentials="caller", spare_process=True)
    async with scripted_bridge(policy, launcher) as (bridge, _):
        await bridge.list_sessions()  # the bridge has settled: an unheld spare would be starting by now
        assert launcher.processes == []
        first = await bridge.ask("hello")
        assert not bridge.credential_refused
        await launcher.until(lambda: bridge.pool.spares.ready == 1)
        run, spare = launcher.processes
        assert run.prompts == ["hello"] and run.session_id == first.session_id and spare.primed


async def test_a_401_after_the_credential_was_accepted_keeps_the_conversation(tmp_path: Path) -> None:
    launcher = ScriptedLauncher()
    launcher.script("again", Reply(api_error_status=401))
    async with scripted_bridge(scripted_policy(tmp_path, credentials="caller"), launcher) as (bridge, _):
        first = await bridge.ask("hello")
        with pytest.raises(RunFailed) as failed:
            await bridge.ask("again", session_id=first.session_id)
        assert isinstance(failed.value.cause, APIError) and failed.value.cause.status == 401
        assert not bridge.credential_refused  # it was accepted before: the key may have been revoked
        assert [info.session_id for info in await bridge.list_sessions()] == [first.session_id]
        [process] = launcher.processes
        await launcher.until(lambda: process.closed)  # no warm process is kept on a rejected credential
        await bridge.ask("third", session_id=first.session_id)
        assert launcher.processes[1].options.resume == first.session_id


async def test_with_server_credentials_a_401_is_an_error_like_any_other(tmp_path: Path) -> None:
    launcher = ScriptedLauncher()
    launcher.script("hello", Reply(api_error_status=401))
    async with scripted_bridge(scripted_policy(tmp_path), launcher) as (bridge, _):
        with pytest.raises(RunFailed) as failed:
            await bridge.ask("hello")
        assert failed.value.message != CALLER_REJECTED and failed.value.result.session_id != ""
        assert not bridge.credential_refused
        assert [info.session_id for info in await bridge.list_sessions()] == [failed.value.result.session_id]


async def test_past_max_conversations_a_new_one_is_refused_before_any_process(tmp_path: Path) -> None:
    async with scripted_bridge(scripted_policy(tmp_path, max_conversations=1)) as (bridge, launcher):
        first = await bridge.ask("one")
        with pytest.raises(Busy, match="1 conversations"):
            await bridge.ask("two")
        with pytest.raises(Busy):
            await bridge.fork(first.session_id, "branch")
        with pytest.raises(Busy):
            await bridge.fork(first.session_id)
        await bridge.ask("more", session_id=first.session_id)  # continuing one is fine
        assert len(launcher.processes) == 1 and launcher.processes[0].prompts == ["one", "more"]
        await bridge.delete_session(first.session_id)
        await bridge.ask("room again")
        assert len(launcher.processes) == 2


async def test_at_max_depth_a_bridge_refuses_runs_and_keeps_no_spares(tmp_path: Path) -> None:
    policy = scripted_policy(tmp_path, max_depth=2, spare_process=True)
    async with scripted_bridge(policy, depth=2) as (bridge, launcher):
        with pytest.raises(DepthExceeded, match="2 level"):
            await bridge.ask("one")
        job = await bridge.start_job(bridge.namespace, "two")
        with anyio.fail_after(5):
            await job.done.wait()
        assert job.status == "failed" and isinstance(job.failure, DepthExceeded)
        await bridge.list_sessions()
        assert launcher.processes == []


async def test_an_unknown_agent_is_refused_before_any_process(tmp_path: Path) -> None:
    async with scripted_bridge(scripted_policy(tmp_path)) as (bridge, launcher):
        with pytest.raises(InvalidArguments, match="Unknown agent"):
            await bridge.start_job(bridge.namespace, "one", agent="nope")
        with pytest.raises(InvalidArguments, match="Unknown agent"):
            await bridge.submit_job(bridge.namespace, "one", agent="nope")
        assert launcher.processes == [] and bridge.jobs.live == {}


async def test_a_run_streams_the_cli_messages_to_its_observer(tmp_path: Path) -> None:
    async with scripted_bridge(scripted_policy(tmp_path)) as (bridge, _):
        watcher = Watcher()
        result = await bridge.ask("hello", observer=watcher, settings=CallSettings(model="opus"))
    kinds = [type(message).__name__ for message in watcher.messages]
    assert kinds == ["SystemMessage", "AssistantMessage", "ResultMessage"]
    assert result.result == "hello" and result.total_cost_usd == pytest.approx(0.001)


async def test_new_conversations_started_at_once_never_pass_max_conversations_together(tmp_path: Path) -> None:
    launcher = ScriptedLauncher(Reply(wait=anyio.Event()))
    held = launcher.default
    async with scripted_bridge(scripted_policy(tmp_path, max_conversations=3, max_concurrent=20), launcher) as (
        bridge,
        _,
    ):
        outcomes: list[str] = []

        async def start(n: int) -> None:
            try:
                await bridge.ask(f"new {n}")
                outcomes.append("ok")
            except Busy:
                outcomes.append("busy")

        async with anyio.create_task_group() as tasks:
            for n in range(20):
                tasks.start_soon(start, n)
            with anyio.fail_after(5):
                while outcomes.count("busy") < 17:
                    await anyio.sleep(0.01)
            assert held.wait is not None
            held.wait.set()
        assert outcomes.count("ok") == 3
        assert len(await bridge.list_sessions()) == 3
        with pytest.raises(Busy):  # and the three kept now count from the store
            await bridge.ask("one more")
