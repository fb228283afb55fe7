"""Spare processes through the real CLI: a CLI's first turn counts as a start-up (which holds spares
back) until the model first answers. That a spare serves a new conversation, end to end, is in
`test_sessions`; the spare pool's own logic (a conversation arriving while the spare starts waits for
it, no spare starts while another CLI is starting up, spares follow demand and take the settings new
conversations use) runs on the scripted CLI in `test_spare_pool`."""

from __future__ import annotations

import pytest
from claude_agent_sdk import Message, SystemMessage

from claude_mcp import Policy
from claude_mcp.bridge.options import build_options
from claude_mcp.bridge.process import SdkLauncher
from claude_mcp.config.call_settings import CallSettings

pytestmark = pytest.mark.anyio


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
