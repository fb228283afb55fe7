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
async def test_a_real_cli_is_measured_and_closed_once_it_holds_more_than_the_budget(policy: Policy) -> None:
    """End to end: the pool measures a real CLI's process tree and closes it when it holds more than
    `max_warm_mb`; its conversation goes on, on a new process. Which processes a budget keeps (the most
    recently used) is the pool's logic, on the scripted CLI in `test_pool`."""
    budgeted = ClaudeBridge(policy.model_copy(update={"max_warm_mb": 10}), depth=0)
    async with Client(build_server(budgeted)) as client:
        session = await remember(client, "size")
        (pid,) = claude_pids()
        assert budgeted.pool.warm.live_ids() == {session}  # kept: unmeasured, it is counted at the budget
        await budgeted.pool.warm.fit_memory()  # what the housekeeping does: measure, then trim
        assert budgeted.pool.warm.live_ids() == set()
        assert budgeted.pool.warm.typical_bytes > 10 * MB  # what the real process tree held, as measured
        with anyio.fail_after(10):  # the closed process exits
            while pid in claude_pids():
                await anyio.sleep(0.02)
        listed = {s["session_id"]: s["live"] for s in (await call(client, "list_sessions"))["sessions"]}
        assert listed == {session: False}
        assert await recall(client, session) == "You asked me to remember size"
