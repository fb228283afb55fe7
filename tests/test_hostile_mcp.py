"""Hostile input on the MCP tools (an MCP client in process, the real CLI, the fake model): inputs
over their size limits are refused at once, before any CLI starts and without holding the event
loop (a 3 MB `json_schema` took ~14 s of it to check); inputs within their limits but too large
for a command line (system prompts, agents) reach the CLI through files, which are gone once it
has started; the same limits hold for a job and for the Python API."""

from __future__ import annotations

import json
import os
import re
import stat
import time
import uuid
from pathlib import Path
from typing import Any

import anyio
import pytest
from claude_agent_sdk import ClaudeAgentOptions
from mcp import Client

from claude_mcp import ClaudeBridge, Policy, TooLarge
from claude_mcp.bridge.cli_files import DIR_NAME, INLINE_BYTES, spill
from claude_mcp.config.limits import InputLimits, json_size
from claude_mcp.mcp_surface.server import build_server
from tests.conftest import STORM, FakeModel, call, text_of
from tests.scripted import scripted_bridge, scripted_policy

pytestmark = pytest.mark.anyio


def big_schema(properties: int) -> dict[str, Any]:
    """A valid JSON Schema of about `properties` × 107 bytes."""
    fields = {f"p{i}": {"type": "string", "description": "d" * 40, "enum": ["a", "b"]} for i in range(properties)}
    return {"type": "object", "properties": fields}


def leftovers(policy: Policy) -> list[Path]:
    """What is left of the files CLIs were given (none once every process has started)."""
    inputs = Path(policy.cli_env["CLAUDE_CONFIG_DIR"]) / DIR_NAME
    return sorted(inputs.rglob("*")) if inputs.exists() else []


@STORM  # timed: never beside the walk or another test that loads both cores
async def test_a_3_mb_json_schema_is_refused_at_once_while_other_calls_are_answered(client: Client) -> None:
    schema = big_schema(40_000)
    assert len(json.dumps(schema)) > 3_000_000
    answered: dict[str, float] = {}
    start = time.monotonic()

    async def big() -> None:
        result = await client.call_tool("ask", {"prompt": "[[say:never]]", "json_schema": schema})
        answered["big"] = time.monotonic() - start
        assert result.is_error and "max_json_schema_kb" in text_of(result), text_of(result)[:300]

    async def tiny() -> None:
        await anyio.sleep(0.05)  # once the big call is being checked
        await call(client, "list_sessions")
        answered["tiny"] = time.monotonic() - start

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(big)
            tasks.start_soon(tiny)
    # Checked on the event loop, the schema held it ~9-14 s, and the tiny call with it.
    assert answered["big"] < 3 and answered["tiny"] < 2, answered


@STORM  # timed: never beside the walk or another test that loads both cores
async def test_a_json_schema_within_its_limit_is_checked_off_the_event_loop(policy: Policy) -> None:
    """A schema at the ceiling takes a few hundred ms to check (pure Python): on a worker thread,
    a call made meanwhile is answered in the meantime."""
    roomy = policy.model_copy(update={"max_json_schema_kb": 96})
    schema = big_schema(850)
    assert 80_000 < len(json.dumps(schema)) < 96 * 1024
    async with Client(build_server(ClaudeBridge(roomy, depth=0))) as client:
        checked = anyio.Event()
        lags: list[float] = []

        async def tick() -> None:  # how late the loop runs a 10 ms sleep while the schema is checked
            while not checked.is_set():
                before = time.monotonic()
                await anyio.sleep(0.01)
                lags.append(time.monotonic() - before - 0.01)

        async def invalid() -> None:  # a valid schema in an invalid call: checked, then refused, no run
            try:
                result = await client.call_tool("ask", {"prompt": "", "json_schema": schema})
                assert result.is_error and "prompt" in text_of(result), text_of(result)
            finally:
                checked.set()

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(tick)
            tasks.start_soon(invalid)
    # A bound that holds on a loaded 2-core machine; the figures (~0.17 s held before, < 0.1 s now on a
    # quiet one) are the README's, measured, not a timed assertion.
    assert lags and max(lags) < 0.5, f"the loop was held {max(lags):.3f} s"


async def test_inputs_over_their_limits_are_refused_before_any_cli_starts(
    policy: Policy, fake_model: FakeModel
) -> None:
    strict = policy.model_copy(
        update={"max_prompt_kb": 4, "max_system_prompt_kb": 2, "max_json_schema_kb": 1, "max_agents_kb": 2}
    )
    token = uuid.uuid4().hex
    prompt = f"[[say:{token}]] "
    agent = {"description": "Writes verse", "prompt": "v" * 3000}
    refused = [
        ("max_prompt_kb", {"prompt": prompt + "p" * 5000}),
        ("max_system_prompt_kb", {"prompt": prompt, "system_prompt": "s" * 3000}),
        ("max_system_prompt_kb", {"prompt": prompt, "append_system_prompt": "é" * 1500}),  # 3,000 bytes
        ("max_json_schema_kb", {"prompt": prompt, "json_schema": big_schema(20)}),
        ("max_agents_kb", {"prompt": prompt, "agents": {"poet": agent}}),
        ("mcp_servers", {"prompt": prompt, "mcp_servers": {"x": {"command": "true", "env": {"A": "a" * 70_000}}}}),
    ]
    async with Client(build_server(ClaudeBridge(strict, depth=0))) as client:
        for setting, arguments in refused:
            for tool in ("ask", "stream_ask"):
                with anyio.fail_after(5):
                    result = await client.call_tool(tool, arguments)
                assert result.is_error and setting in text_of(result), (tool, text_of(result))
        result = await client.call_tool("run_agent", {"agent": "poet", "prompt": prompt + "p" * 5000})
        assert result.is_error and "max_prompt_kb" in text_of(result), text_of(result)
        within = await call(client, "ask", prompt=prompt + "p" * 3000, system_prompt="s" * 2000)
        assert within["result"] == token
    assert len(fake_model.requests_for(token)) == 1  # only the call within its limits reached the model


async def test_an_object_of_very_many_fields_is_one_short_refusal(client: Client) -> None:
    """200,000 keys, in `thinking` or as a call's arguments, are refused before any field is validated:
    pydantic-core would otherwise build an error for each while holding the GIL (every other request of the
    server waited ~0.4 s for one such call)."""
    many = {f"k{i:06}": 0 for i in range(200_000)}
    cases = [("ask", {"prompt": "x", "thinking": many}), ("ask", {"prompt": "x", **many}), ("usage", many)]
    for tool, arguments in cases:
        refused = await client.call_tool(tool, arguments)
        assert refused.is_error, tool
        assert re.search(r"an object of 200,00[01] fields, where at most 100 are taken", text_of(refused)), tool
        assert len(text_of(refused)) < 300


async def test_an_offset_past_the_stores_integers_is_refused_not_an_internal_error(client: Client) -> None:
    """A page's `offset` reaches the store's query: one past its 64-bit integers was an internal error (the
    hostile walk's log held its traceback) where it is now a refusal naming the argument."""
    first = await call(client, "ask", prompt="one to list")
    for tool, arguments in [
        ("list_sessions", {"offset": 10**20}),
        ("get_session", {"session_id": first["session_id"], "offset": 10**20}),
    ]:
        refused = await client.call_tool(tool, arguments)
        assert refused.is_error and "offset" in text_of(refused), (tool, text_of(refused))
        assert "unexpected" not in text_of(refused).lower(), text_of(refused)
    listed = await call(client, "list_sessions", offset=10**9)
    assert listed["sessions"] == []


async def test_system_prompts_and_agents_too_long_for_a_command_line_reach_the_cli(
    client: Client, policy: Policy
) -> None:
    """One argument of a command line may hold 128 KiB: a 150,000-character system prompt (within
    `max_system_prompt_kb`) failed with "[Errno 7] Argument list too long" and the install's path."""
    system = "You answer briefly. " * 7_500 + "SYSTEM-END-MARK"
    assert len(system) > 150_000
    appended = "Also be kind. " * 11_000 + "APPEND-END-MARK"
    both = await call(client, "ask", prompt="[[report]]", system_prompt=system, append_system_prompt=appended)
    seen = json.loads(both["result"])  # each too long for an argument, both in one run
    assert "SYSTEM-END-MARK" in seen["system"] and "APPEND-END-MARK" in seen["system"]
    agents = {
        name: {"description": f"Agent {name}", "prompt": f"You are {name.upper()}-9. " + "Think. " * 9_000}
        for name in ("poet", "critic", "editor")
    }
    done = await call(client, "run_agent", agent="critic", prompt="[[report]]", agents=agents)
    assert "CRITIC-9" in json.loads(done["result"]["result"])["system"]
    resumed = await call(
        client, "ask", prompt="[[report]]", session_id=both["session_id"], system_prompt="NEW-" + system
    )  # a new system prompt on a resumed conversation replaces the recorded one, from a file too
    assert json.loads(resumed["result"])["system"].count("NEW-You answer briefly") == 1
    assert leftovers(policy) == [], "the files were not removed once the CLIs had started"


async def test_the_same_limits_hold_for_a_job_and_for_the_python_api(tmp_path: Path) -> None:
    policy = scripted_policy(tmp_path, max_prompt_kb=1, max_system_prompt_kb=1)
    async with scripted_bridge(policy) as (bridge, launcher):
        with pytest.raises(TooLarge, match="max_prompt_kb"):
            await bridge.ask("p" * 2000)
        with pytest.raises(TooLarge, match="max_system_prompt_kb"):
            await bridge.ask("hi", system_prompt="s" * 2000)
        with pytest.raises(TooLarge, match="max_prompt_kb"):
            await bridge.start_job(bridge.namespace, "p" * 2000)
        with pytest.raises(TooLarge, match="max_prompt_kb"):
            await bridge.submit_job(bridge.namespace, "p" * 2000)
        assert launcher.processes == []


def test_spill_moves_only_what_is_too_long_into_private_files(tmp_path: Path) -> None:
    config = tmp_path / "config"
    env = {"CLAUDE_CONFIG_DIR": str(config)}
    small = ClaudeAgentOptions(env=env, system_prompt={"type": "custom", "prompt": "short"})
    assert spill(small).directory is None and small.system_prompt == {"type": "custom", "prompt": "short"}
    long = "x" * (INLINE_BYTES + 1)
    options = ClaudeAgentOptions(
        env=env,
        system_prompt={"type": "custom", "prompt": long, "snapshot": False},
        extra_args={"append-system-prompt": long, "agents": json.dumps({"a": {"prompt": long}}), "agent": "a"},
    )
    files = spill(options)
    assert files.directory is not None and files.directory.parent == config / DIR_NAME
    assert stat.S_IMODE(files.directory.stat().st_mode) == 0o700
    assert options.system_prompt == {"type": "file", "path": str(files.directory / "system-prompt.txt")}
    assert options.extra_args["system-prompt-snapshot"] == "off"  # what `snapshot: False` told the SDK
    assert "append-system-prompt" not in options.extra_args and options.extra_args["agent"] == "a"
    for path in (options.extra_args["append-system-prompt-file"], options.extra_args["agents"]):
        assert path is not None and stat.S_IMODE(Path(path).stat().st_mode) == 0o600
    assert Path(str(options.extra_args["agents"])).read_text() == json.dumps({"a": {"prompt": long}})
    preset = ClaudeAgentOptions(env=env, system_prompt={"type": "preset", "preset": "claude_code", "append": long})
    preset_files = spill(preset)
    assert preset.system_prompt == {"type": "preset", "preset": "claude_code"}
    assert Path(str(preset.extra_args["append-system-prompt-file"])).read_text() == long
    files.remove()
    preset_files.remove()
    files.remove()  # again: nothing left, no error
    assert list((config / DIR_NAME).iterdir()) == []


def test_sizes_are_counted_at_a_cost_bounded_by_the_limit() -> None:
    huge = {"a": ["x" * 1000] * 1_000_000}
    start = time.monotonic()
    assert json_size(huge, 64 * 1024) > 64 * 1024
    assert time.monotonic() - start < 0.05
    assert json_size({"k": "é", "n": [1, None, True]}, 1000) < 1000
    limits = InputLimits(1024, 1024, 100, 1024, 2, 1024)
    with pytest.raises(TooLarge, match="tools holds 3 tools"):
        limits.client_tools([{}, {}, {}])
    limits.json_schema({"type": "object"})
    with pytest.raises(TooLarge, match="max_json_schema_kb"):  # measured as the CLI is given it: escaped
        limits.json_schema({"type": "object", "description": "é" * 20})


def test_spill_neither_writes_nor_deletes_through_a_link_planted_in_the_config_dir(tmp_path: Path) -> None:
    """A sandboxed CLI may write in its config dir: a symlink it puts where the inputs go must not
    send the server's files, or its sweep of day-old leftovers, anywhere else."""
    config, victim = tmp_path / "config", tmp_path / "victim"
    config.mkdir()
    (victim / "old-dir").mkdir(parents=True)
    (victim / "old-file").write_text("keep")
    for old in (victim / "old-dir", victim / "old-file"):
        os.utime(old, (0, 0))  # far older than a day
    (config / DIR_NAME).symlink_to(victim)
    options = ClaudeAgentOptions(
        env={"CLAUDE_CONFIG_DIR": str(config)}, system_prompt={"type": "custom", "prompt": "x" * (INLINE_BYTES + 1)}
    )
    files = spill(options)
    assert not (config / DIR_NAME).is_symlink() and (config / DIR_NAME).is_dir()
    assert sorted(p.name for p in victim.iterdir()) == ["old-dir", "old-file"]
    assert files.directory is not None and files.directory.parent == config / DIR_NAME
    files.remove()
    stale = config / DIR_NAME / "stale"
    stale.mkdir()
    os.utime(stale, (0, 0))
    spill(ClaudeAgentOptions(env={"CLAUDE_CONFIG_DIR": str(config)}, extra_args={"agents": "{}" + " " * INLINE_BYTES}))
    assert not stale.exists()  # what a killed server left a day ago is swept
