"""The warm pool's memory budget (`max_warm_mb`): the trimming decision, and end to end through
the real CLI, measured as the pool measures it."""

from __future__ import annotations

import anyio
import pytest
from mcp import Client

from claude_mcp import ClaudeBridge, Policy
from claude_mcp.bridge.warm import MB, measure_tree, to_close
from claude_mcp.mcp_surface.server import build_server
from tests.conftest import call
from tests.test_sessions import claude_pids, recall, remember


def test_the_least_recently_used_are_closed_until_the_rest_fit() -> None:
    held = [("old", 300), ("middle", 200), ("new", 100)]
    assert to_close(held, 600) == []
    assert to_close(held, 599) == ["old"]
    assert to_close(held, 300) == ["old"]
    assert to_close(held, 299) == ["old", "middle"]
    assert to_close(held, 99) == ["old", "middle", "new"]
    assert to_close([], 0) == []


def test_a_gone_process_measures_as_none() -> None:
    assert measure_tree(2**22 + 1) is None  # above Linux's pid_max: never a live process


@pytest.mark.anyio
async def test_a_memory_budget_keeps_only_the_most_recent_warm_process(policy: Policy) -> None:
    async with Client(build_server(ClaudeBridge(policy, depth=0))) as client:
        await remember(client, "size")
        (pid,) = claude_pids()
        one = await anyio.to_thread.run_sync(measure_tree, pid)
    assert one is not None and one > 10 * MB
    # Room for one process, not two: a CLI's memory moves by tens of percent over its first seconds (seen
    # once under load: a lone process over 1.5 times the size measured above), so the margin is wide.
    budgeted = ClaudeBridge(policy.model_copy(update={"max_warm_mb": 1.8 * one / MB}), depth=0)
    async with Client(build_server(budgeted)) as client:
        first = await remember(client, "one")
        first_pids = claude_pids()
        await budgeted.pool.warm.fit_memory()  # what the housekeeping does: measure, then trim
        assert budgeted.pool.warm.live_ids() == {first}
        second = await remember(client, "two")
        assert budgeted.pool.warm.live_ids() == {second}
        with anyio.fail_after(10):  # the evicted process exits after the answer, off its path
            while len(claude_pids()) > 1:
                await anyio.sleep(0.02)
        assert claude_pids().isdisjoint(first_pids)
        listed = {s["session_id"]: s["live"] for s in (await call(client, "list_sessions"))["sessions"]}
        assert (listed[first], listed[second]) == (False, True)
        assert await recall(client, first) == "You asked me to remember one"
