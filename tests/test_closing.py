"""A process that is not kept warm exits after its caller has the answer, not before it; until it
has, the conversation's next turn (on any replica) and the run slot wait. End to end through the real CLI, made slow
to exit (a CLI shutting down a slow MCP server, say) by delaying its close."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import psutil
import pytest
from mcp import Client

from claude_mcp import ClaudeBridge, Policy
from claude_mcp.bridge.process import CLIProcess
from claude_mcp.bridge.turns import SessionLocks
from claude_mcp.errors import RunTimeout
from claude_mcp.mcp_surface.server import build_server
from claude_mcp.state.sqlite import SqliteStore
from tests.conftest import MORE_WAITS, call
from tests.test_sessions import RECALL, claude_pids

pytestmark = [pytest.mark.anyio, MORE_WAITS]

SLOW_EXIT_S = 1.5


class Timeline:
    """When each CLI connected and when each finished exiting (`time.monotonic()`)."""

    def __init__(self) -> None:
        self.connected: list[float] = []
        self.exited: dict[int, float] = {}


@pytest.fixture
def timeline(monkeypatch: pytest.MonkeyPatch) -> Iterator[Timeline]:
    seen = Timeline()
    connect, close = CLIProcess._connect, CLIProcess.close

    async def connected(self: CLIProcess) -> None:
        await connect(self)
        seen.connected.append(time.monotonic())

    async def slow_close(self: CLIProcess, *, graceful: bool = True) -> None:
        pid = self.pid
        with anyio.CancelScope(shield=True):
            if not self.closed and graceful:
                await anyio.sleep(SLOW_EXIT_S)
            await close(self, graceful=graceful)
        if pid is not None:
            seen.exited.setdefault(pid, time.monotonic())

    monkeypatch.setattr(CLIProcess, "_connect", connected)
    monkeypatch.setattr(CLIProcess, "close", slow_close)
    yield seen


async def test_the_answer_comes_before_its_process_exits_and_the_follow_up_after(
    policy: Policy, timeline: Timeline
) -> None:
    cold = policy.model_copy(update={"max_warm": 0})
    async with Client(build_server(ClaudeBridge(cold, depth=0))) as client:
        first = await call(client, "ask", prompt="remember fig")
        answered = time.monotonic()
        (pid,) = claude_pids()  # still exiting
        assert psutil.pid_exists(pid)
        again = await call(client, "ask", prompt=RECALL, session_id=first["session_id"])
        assert again["result"] == "You asked me to remember fig"
    assert len(timeline.connected) == 2
    assert timeline.exited[pid] > answered, "the answer waited for its process to exit"
    assert timeline.connected[1] >= timeline.exited[pid], "the follow-up's CLI started before the last one exited"


async def test_a_run_slot_stays_taken_until_its_process_has_exited(policy: Policy, timeline: Timeline) -> None:
    one_at_a_time = policy.model_copy(update={"max_warm": 0, "max_concurrent": 1})
    async with Client(build_server(ClaudeBridge(one_at_a_time, depth=0))) as client:
        await call(client, "ask", prompt="first")
        (pid,) = claude_pids()
        await call(client, "ask", prompt="second")
        with anyio.fail_after(SLOW_EXIT_S + 10):
            while claude_pids():
                await anyio.sleep(0.05)
    assert timeline.connected[1] >= timeline.exited[pid], "a second CLI ran while the first still held the slot"


async def test_a_fence_holds_a_conversation_here_and_on_other_replicas_until_lifted(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "state.db")
    await store.open()
    here = SessionLocks(store, namespace="n", holder="replica-a", lease_s=30)
    there = SessionLocks(store, namespace="n", holder="replica-b", lease_s=30)
    entered: list[str] = []

    async def next_turn_here() -> None:
        async with here.hold("s", timeout_s=10, on_wait=None):
            entered.append("here")

    try:
        async with here.hold("s", timeout_s=1, on_wait=None):
            lift = await here.fence("s")  # the turn ends, its process still exiting
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(next_turn_here)
            with pytest.raises(RunTimeout):
                async with there.hold("s", timeout_s=0.5, on_wait=None):
                    pass
            assert entered == []
            await lift()
        assert entered == ["here"]
        async with there.hold("s", timeout_s=1, on_wait=None):
            entered.append("there")
        fresh = await there.fence("new")  # a new conversation: no turn holds it yet
        with pytest.raises(RunTimeout):
            async with here.hold("new", timeout_s=0.5, on_wait=None):
                pass
        await fresh()
        async with here.hold("new", timeout_s=1, on_wait=None):
            entered.append("new")
        assert entered == ["here", "there", "new"]
    finally:
        await store.close()
