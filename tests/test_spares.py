"""Spare processes: pre-started CLIs for new conversations that are ready when a conversation
arrives, never start while another CLI is starting, and follow demand (real CLI, fake model)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest
from claude_agent_sdk import Message, SystemMessage
from mcp import Client

from claude_mcp import ClaudeBridge, Policy
from claude_mcp.bridge.launcher import Launcher
from claude_mcp.bridge.options import build_options
from claude_mcp.bridge.process import SdkLauncher
from claude_mcp.config.call_settings import CallSettings
from claude_mcp.mcp_surface.server import build_server
from claude_mcp.telemetry.metrics import REGISTRY
from tests.conftest import call
from tests.test_sessions import claude_pids

pytestmark = pytest.mark.anyio


def runs_on(source: str) -> float:
    return REGISTRY.get_sample_value("claude_mcp_run_processes_total", {"source": source}) or 0.0


@asynccontextmanager
async def spare_server(
    policy: Policy, launcher: Launcher | None = None, **settings: object
) -> AsyncIterator[tuple[Client, ClaudeBridge]]:
    bridge = ClaudeBridge(policy.model_copy(update={"spare_process": True, **settings}), depth=0, launcher=launcher)
    async with Client(build_server(bridge)) as client:
        yield client, bridge
    assert claude_pids() == set()


async def until(condition: object, timeout_s: float = 20) -> None:
    assert callable(condition)
    with anyio.fail_after(timeout_s):
        while not condition():
            await anyio.sleep(0.02)


async def test_a_conversation_arriving_while_the_spare_starts_waits_for_it(policy: Policy) -> None:
    async with spare_server(policy) as (client, bridge):
        await until(lambda: bridge.pool.spares.starting == 1)
        assert bridge.pool.spares.ready == 0
        before = runs_on("spare"), runs_on("cold")
        await call(client, "ask", prompt="hello")
        assert (runs_on("spare"), runs_on("cold")) == (before[0] + 1, before[1]), "it ran on the spare"
        await until(lambda: bridge.pool.spares.ready == 1)  # and the next one is started


async def test_no_spare_starts_while_another_cli_is_starting(policy: Policy) -> None:
    launcher = SdkLauncher()
    held = launcher.startups.starting()  # as if a CLI were starting for a run
    started_up = held.__enter__()
    try:
        async with spare_server(policy, launcher) as (_client, bridge):
            await anyio.sleep(1.5)
            assert bridge.pool.spares.starting == 0 and claude_pids() == set()
            started_up()
            await until(lambda: bridge.pool.spares.ready == 1)
    finally:
        held.__exit__(None, None, None)


async def test_a_first_turn_counts_as_a_start_up_until_the_model_answers(policy: Policy) -> None:
    seen: list[tuple[str, int]] = []

    async def on_message(message: Message) -> None:
        seen.append((type(message).__name__, launcher.startups.count))

    launcher = SdkLauncher()
    process = launcher.launch(build_options(policy.resolve(CallSettings()), policy, child_depth=1))
    try:
        assert launcher.startups.count == 0
        await process.turn("hello", timeout_s=60, stall_timeout_s=60, on_message=on_message)
        assert launcher.startups.count == 0
        await process.turn("again", timeout_s=60, stall_timeout_s=60, on_message=on_message)
    finally:
        await process.close()
    first_answer = next(i for i, (kind, _) in enumerate(seen) if kind != SystemMessage.__name__)
    assert all(count == 1 for _, count in seen[:first_answer]), seen
    assert all(count == 0 for _, count in seen[first_answer:]), seen


class Clock:
    """The spare pool's clock, moved by the test."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return anyio.current_time() + self.offset


async def test_spares_follow_demand(policy: Policy) -> None:
    clock = Clock()
    async with spare_server(policy, spare_idle_s=60.0, max_spares=2) as (client, bridge):
        bridge.pool.spares._clock = clock
        await until(lambda: bridge.pool.spares.ready == 1)
        clock.offset += 60  # a minute without a new conversation: the spare is closed
        await until(lambda: claude_pids() == set(), timeout_s=10)
        before = runs_on("cold")
        session = (await call(client, "ask", prompt="hello"))["session_id"]
        assert runs_on("cold") == before + 1, "no spare was ready: a miss"
        await until(lambda: bridge.pool.spares.ready == 2)  # demand came back: one, plus one for the miss
        await call(client, "close_session", session_id=session)
        clock.offset += 60
        await until(lambda: claude_pids() == set(), timeout_s=10)  # idle again


async def test_spares_take_the_settings_new_conversations_use(policy: Policy) -> None:
    async with spare_server(policy) as (client, bridge):
        await until(lambda: bridge.pool.spares.ready == 1)
        for _ in range(2):
            await call(client, "ask", prompt="hi", model="haiku")
        assert bridge.pool.spares.preferred().model == "haiku"
        await until(lambda: any(e.usable and e.settings.model == "haiku" for e in bridge.pool.spares._entries))
        before = runs_on("spare")
        assert (await call(client, "ask", prompt="hi", model="haiku"))["result"] == "Echo: hi"
        assert runs_on("spare") == before + 1
