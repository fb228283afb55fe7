"""Retiring and fencing on the scripted CLI (no `claude` binary): a process that is not kept warm
is closed after its caller has the answer, while its run slot stays taken and its conversation's
next turn (here or on another replica) waits until it is gone; a run that fails after it leased
a process, even in the slot queue, closes it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest

from claude_mcp import ClaudeBridge, Policy
from claude_mcp.bridge.options import build_options
from claude_mcp.bridge.permissions import PermissionGate
from claude_mcp.bridge.pool import ProcessPool
from claude_mcp.bridge.slots import RunSlots
from claude_mcp.bridge.turns import SessionLocks
from claude_mcp.bridge.warm import WarmSession
from claude_mcp.config.call_settings import CallSettings
from claude_mcp.errors import Busy, RunTimeout
from claude_mcp.state.sqlite import SqliteStore
from claude_mcp.telemetry.activity import Activity
from tests.scripted import Reply, ScriptedLauncher, ScriptedProcess, Watcher, scripted_bridge, scripted_policy
from tests.test_store_roles import MemoryLeases

pytestmark = pytest.mark.anyio


async def test_a_process_not_kept_holds_its_run_slot_until_it_is_gone(tmp_path: Path) -> None:
    launcher, shared = ScriptedLauncher(), RunSlots(1, 8)
    launcher.close_wait = closing = anyio.Event()
    async with scripted_bridge(scripted_policy(tmp_path, max_warm=0), launcher, shared_slots=shared) as (bridge, _):
        first = await bridge.ask("one")  # the answer arrives; its process is closed after
        [retiring] = launcher.processes
        await launcher.until(lambda: retiring.closed)
        assert first.result == "one" and not retiring.exited.is_set()
        assert shared.running == 1
        watcher = Watcher()
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(lambda: bridge.ask("two", observer=watcher))
            with anyio.fail_after(5):
                await watcher.queued_once.wait()
            assert watcher.positions == [1] and len(launcher.processes) == 1
            closing.set()
        assert retiring.exited.is_set() and launcher.processes[1].prompts == ["two"]
        assert shared.running == 0


async def test_a_retired_process_fences_its_conversation_on_other_replicas_too(tmp_path: Path) -> None:
    policy = scripted_policy(tmp_path, max_warm=0)
    here, there = ScriptedLauncher(), ScriptedLauncher()
    here.close_wait = closing = anyio.Event()
    async with SqliteStore(tmp_path / "shared.db") as store:
        a = ClaudeBridge(policy, depth=0, store=store, replica="a", launcher=here, activity=Activity())
        b = ClaudeBridge(policy, depth=0, store=store, replica="b", launcher=there, activity=Activity())
        async with a, b:
            first = await a.ask("one")
            watcher = Watcher()
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(lambda: b.ask("two", session_id=first.session_id, observer=watcher))
                with anyio.fail_after(5):
                    await watcher.waited.wait()  # replica a still holds the conversation
                assert there.processes == []
                closing.set()
            [resumed] = there.processes
            assert here.processes[0].exited.is_set() and resumed.options.resume == first.session_id


# The pool's parts on their own: leases in a dict, the scripted launcher.


@asynccontextmanager
async def pool_of(
    policy: Policy, launcher: ScriptedLauncher, locks: SessionLocks, cooled: list[str], freed: list[bool]
) -> AsyncIterator[ProcessPool]:
    async def on_cooled(session_id: str) -> None:
        cooled.append(session_id)

    pool = ProcessPool(
        policy,
        launcher,
        PermissionGate(mode="deny"),
        locks,
        child_depth=1,
        session_store=None,
        cooled=on_cooled,
        slot_freed=lambda: freed.append(True),
    )
    async with pool:
        try:
            yield pool
        except BaseException:
            launcher.release_all()
            raise


async def warm_session(policy: Policy, launcher: ScriptedLauncher) -> WarmSession:
    settings = policy.resolve(CallSettings())
    process = launcher.launch(build_options(settings, policy))
    await process.start()
    return WarmSession(process, settings, anyio.current_time())


async def test_the_next_turn_waits_for_the_retired_process_and_the_lease_is_kept(tmp_path: Path) -> None:
    policy, launcher, leases = scripted_policy(tmp_path), ScriptedLauncher(), MemoryLeases()
    launcher.close_wait = closing = anyio.Event()
    locks = SessionLocks(leases, namespace="n", holder="here", lease_s=30)
    elsewhere = SessionLocks(leases, namespace="n", holder="there", lease_s=30)
    async with pool_of(policy, launcher, locks, [], []) as pool:
        warm = await warm_session(policy, launcher)
        await pool.retire(warm.process, "conv")  # returns at once: the close goes on in the pool's tasks
        process = warm.process
        assert isinstance(process, ScriptedProcess)
        await launcher.until(lambda: process.closed)
        assert not process.exited.is_set()
        assert leases.held["session:n:conv"][0] == "here"
        with pytest.raises(RunTimeout):
            async with elsewhere.hold("conv", timeout_s=0.05, on_wait=None):
                pass
        async with locks.hold("other", timeout_s=1, on_wait=None):  # another conversation: no wait
            pass

        turn = anyio.Event()

        async def next_turn() -> None:
            async with locks.hold("conv", timeout_s=5, on_wait=None):
                turn.set()

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(next_turn)
            await anyio.wait_all_tasks_blocked()
            assert not turn.is_set()
            closing.set()
            with anyio.fail_after(2):
                await turn.wait()
        assert process.exited.is_set() and leases.held == {}


async def test_release_not_kept_frees_the_slot_once_the_process_is_gone(tmp_path: Path) -> None:
    policy, launcher = scripted_policy(tmp_path), ScriptedLauncher()
    launcher.close_wait = closing = anyio.Event()
    slots, freed, cooled = RunSlots(1, 4), list[bool](), list[str]()
    async with pool_of(policy, launcher, SessionLocks(), cooled, freed) as pool:
        warm = await warm_session(policy, launcher)
        async with slots.slot() as held:
            await pool.release("conv", warm, keep_warm=False, keep_slot=held.keep)
        process = warm.process
        assert isinstance(process, ScriptedProcess)
        await launcher.until(lambda: process.closed)
        assert slots.running == 1 and freed == []
        closing.set()
        with anyio.fail_after(2):
            await process.exited.wait()
        assert slots.running == 0 and freed == [True]
        assert cooled == [] and pool.warm.live_ids() == set()  # it was never warm


async def test_release_kept_puts_the_process_warm_and_frees_the_slot_at_once(tmp_path: Path) -> None:
    policy, launcher = scripted_policy(tmp_path), ScriptedLauncher()
    slots, freed = RunSlots(1, 4), list[bool]()
    async with pool_of(policy, launcher, SessionLocks(), [], freed) as pool:
        warm = await warm_session(policy, launcher)
        assert pool.keeps(warm)
        async with slots.slot() as held:
            await pool.release("conv", warm, keep_warm=True, keep_slot=held.keep)
        assert slots.running == 0 and freed == [] and not warm.process.closed
        assert pool.warm.live_ids() == {"conv"}
        leased = await pool.lease("conv", warm.settings, frozenset(), None, spare=False, learn=True)
        assert leased is warm and pool.warm.live_ids() == set()


async def test_an_evicted_process_is_retired_off_the_request_path(tmp_path: Path) -> None:
    policy, launcher, locks = scripted_policy(tmp_path, max_warm=1), ScriptedLauncher(), SessionLocks()
    launcher.close_wait = closing = anyio.Event()
    cooled: list[str] = []
    async with pool_of(policy, launcher, locks, cooled, []) as pool:
        old, new = await warm_session(policy, launcher), await warm_session(policy, launcher)
        await pool.release("old", old, keep_warm=True, keep_slot=lambda: lambda: None)
        await pool.release("new", new, keep_warm=True, keep_slot=lambda: lambda: None)  # evicts old
        process = old.process
        assert isinstance(process, ScriptedProcess) and pool.warm.live_ids() == {"new"}
        await launcher.until(lambda: process.closed)
        assert cooled == ["old"] and not new.process.closed  # told before the close, which is still going on
        closing.set()
        with anyio.fail_after(2):
            async with locks.hold("old", timeout_s=2, on_wait=None):  # the fence is lifted once it is gone
                assert process.exited.is_set()


async def test_a_timeout_in_the_slot_queue_closes_the_leased_warm_process(tmp_path: Path) -> None:
    launcher = ScriptedLauncher()
    busy = launcher.script("busy", Reply(wait=anyio.Event()))
    async with scripted_bridge(scripted_policy(tmp_path, max_concurrent=1), launcher) as (bridge, _):
        first = await bridge.ask("one")
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(lambda: bridge.ask("busy"))  # a new conversation takes the only slot
            with anyio.fail_after(5):
                await busy.reached.wait()
            with pytest.raises(RunTimeout, match="in the queue"):
                await bridge.ask("two", session_id=first.session_id, timeout_s=0.05)
            warm = launcher.processes[0]
            assert warm.closed and warm.graceful is False and warm.prompts == ["one"]
            assert busy.wait is not None
            busy.wait.set()
        await bridge.ask("three", session_id=first.session_id)
        assert launcher.processes[2].options.resume == first.session_id


async def test_a_full_slot_queue_closes_the_leased_warm_process(tmp_path: Path) -> None:
    launcher = ScriptedLauncher()
    busy = launcher.script("busy", Reply(wait=anyio.Event()))
    policy = scripted_policy(tmp_path, max_concurrent=1, max_queued=0)
    async with scripted_bridge(policy, launcher) as (bridge, _):
        first = await bridge.ask("one")
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(lambda: bridge.ask("busy"))
            with anyio.fail_after(5):
                await busy.reached.wait()
            with pytest.raises(Busy):
                await bridge.ask("two", session_id=first.session_id)
            assert launcher.processes[0].closed and len(launcher.processes) == 2
            assert busy.wait is not None
            busy.wait.set()
