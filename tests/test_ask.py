"""`ask` end to end: an MCP client, the server, the real bundled CLI, the scripted fake model."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from claude_mcp import ClaudeBridge, Policy
from claude_mcp.mcp_surface.server import build_server
from tests.conftest import FakeModel, call, text_of, tool_prompt

pytestmark = pytest.mark.anyio


async def ask(client: Client, **arguments: Any) -> Any:
    return await client.call_tool("ask", arguments)


async def report(client: Client, **settings: Any) -> dict[str, Any]:
    """What the fake model saw of a request made with these settings."""
    result = await ask(client, prompt="[[report]]", **settings)
    assert not result.is_error, text_of(result)
    return json.loads(result.structured_content["result"])


async def test_ask_is_listed_with_input_and_output_schemas(client: Client) -> None:
    tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    ask_tool = tools["ask"]
    assert ask_tool.input_schema["required"] == ["prompt"]
    inputs = set(ask_tool.input_schema["properties"])
    assert {"prompt", "session_id", "model", "cwd", "json_schema", "timeout_s"} <= inputs
    assert ask_tool.output_schema is not None
    outputs = set(ask_tool.output_schema["properties"])
    assert {"result", "session_id", "is_error", "usage", "structured_output"} <= outputs


async def test_ask_returns_the_answer_and_the_run_facts(client: Client) -> None:
    result = await ask(client, prompt="hello there")
    assert not result.is_error
    assert text_of(result) == "Echo: hello there"
    facts = result.structured_content
    assert facts["result"] == "Echo: hello there"
    assert uuid.UUID(facts["session_id"])
    assert facts["subtype"] == "success" and facts["is_error"] is False
    assert facts["num_turns"] == 1 and facts["duration_ms"] >= 0
    assert facts["usage"]["output_tokens"] == 7
    assert facts["total_cost_usd"] > 0
    assert facts["permission_denials"] == []


async def test_a_session_id_continues_the_conversation(client: Client) -> None:
    first = await ask(client, prompt="Please remember kiwi")
    assert text_of(first) == "OK, I will remember kiwi"
    session_id = first.structured_content["session_id"]
    second = await ask(client, prompt="What did I ask you to remember?", session_id=session_id)
    assert text_of(second) == "You asked me to remember kiwi"
    assert second.structured_content["session_id"] == session_id
    fresh = await ask(client, prompt="What did I ask you to remember?")
    assert text_of(fresh) == "You asked me nothing."


@pytest.mark.parametrize(
    ("model", "seen"), [("haiku", "haiku"), ("sonnet", "sonnet"), ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5")]
)
async def test_model_aliases_and_ids_reach_the_model(client: Client, model: str, seen: str) -> None:
    assert seen in (await report(client, model=model))["model"]


async def test_system_prompts_reach_the_model(client: Client) -> None:
    replaced = await report(client, system_prompt="You are SYS-MARKER-1.")
    assert "SYS-MARKER-1" in replaced["system"]
    assert "Claude Code" not in replaced["system"].split("SYS-MARKER-1")[0].split("\n", 1)[-1]
    both = await report(client, system_prompt="SYS-MARKER-2", append_system_prompt="APPEND-MARKER-2")
    assert "SYS-MARKER-2" in both["system"] and "APPEND-MARKER-2" in both["system"]
    appended = await report(client, append_system_prompt="APPEND-MARKER-3")
    assert "APPEND-MARKER-3" in appended["system"]
    assert len(appended["system"]) > len(both["system"]) + 1000, "Claude Code's own prompt is kept"


async def test_tool_settings_reach_the_model(client: Client) -> None:
    assert "Bash" in (await report(client))["tools"]
    seen = await report(client, disallowed_tools=["Bash", "Write"])
    assert "Bash" not in seen["tools"] and "Write" not in seen["tools"]
    assert "Read" in seen["tools"]


async def test_cwd_and_effort_reach_the_model(client: Client, workdir: Path) -> None:
    (workdir / "project").mkdir()
    seen = await report(client, cwd="project", effort="low")
    assert "Primary working directory: " + str((workdir / "project").resolve()) in seen["environment"]
    assert seen["keys"]["output_config"]["effort"] == "low"


def write_prompt(path: Path) -> str:
    return tool_prompt("Write", file_path=str(path), content="hi")


async def test_permission_mode_decides_whether_a_write_is_allowed(client: Client, workdir: Path) -> None:
    denied = await ask(client, prompt=write_prompt(workdir / "a.txt"))
    assert not (workdir / "a.txt").exists()
    assert [d["tool_name"] for d in denied.structured_content["permission_denials"]] == ["Write"]
    allowed = await ask(client, prompt=write_prompt(workdir / "b.txt"), permission_mode="acceptEdits")
    assert (workdir / "b.txt").read_text() == "hi"
    assert allowed.structured_content["permission_denials"] == []


async def test_allowed_tools_approve_matching_commands(client: Client, workdir: Path) -> None:
    prompt = tool_prompt("Bash", command=f"touch {workdir / 'touched'}")
    await ask(client, prompt=prompt)
    assert not (workdir / "touched").exists()
    await ask(client, prompt=prompt, allowed_tools=["Bash(touch *)"])
    assert (workdir / "touched").exists()


async def test_add_dirs_extend_where_claude_may_write(client: Client, workdir: Path) -> None:
    (workdir / "project").mkdir()
    (workdir / "extra").mkdir()
    target = workdir / "extra" / "out.txt"
    await ask(client, prompt=write_prompt(target), cwd="project", permission_mode="acceptEdits")
    assert not target.exists()
    await ask(client, prompt=write_prompt(target), cwd="project", permission_mode="acceptEdits", add_dirs=["extra"])
    assert target.exists()


async def test_json_schema_yields_structured_output(client: Client) -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "integer"}}, "required": ["answer"]}
    result = await ask(client, prompt='[[structured:{"answer": 42}]]', json_schema=schema)
    assert not result.is_error, text_of(result)
    assert result.structured_content["structured_output"] == {"answer": 42}


async def test_a_tool_call_runs_and_its_result_returns_to_the_model(client: Client) -> None:
    result = await ask(client, prompt='[[tool:Bash:{"command": "echo tool-output-17"}]]')
    assert not result.is_error, text_of(result)
    assert "tool-output-17" in text_of(result)
    assert result.structured_content["num_turns"] == 2


async def test_max_turns_stops_the_run_with_advice(client: Client) -> None:
    prompt = '[[tool:Bash:{"command": "echo a"}]] [[tool:Bash:{"command": "echo b"}]]'
    result = await ask(client, prompt=prompt, max_turns=1)
    assert result.is_error
    assert "max_turns" in text_of(result)
    assert result.structured_content["subtype"] == "error_max_turns"
    assert uuid.UUID(result.structured_content["session_id"])


async def test_max_budget_stops_the_run(client: Client) -> None:
    prompt = '[[tool:Bash:{"command": "echo a"}]] [[tool:Bash:{"command": "echo b"}]]'
    result = await ask(client, prompt=prompt, max_budget_usd=0.00000001)
    assert result.is_error
    assert result.structured_content["subtype"] == "error_max_budget_usd"
    assert "budget" in text_of(result)


@pytest.mark.parametrize(
    ("status", "advice"),
    [(401, "rejected the credentials"), (429, "Wait a minute and retry"), (529, "overloaded")],
)
async def test_api_errors_come_back_quickly_with_advice(client: Client, status: int, advice: str) -> None:
    result = await ask(client, prompt=f"[[error:{status}]]")
    assert result.is_error
    assert advice in text_of(result)
    assert f"HTTP {status}" in text_of(result)
    assert "Traceback" not in text_of(result)
    assert not (await ask(client, prompt="still there?")).is_error


async def test_api_retries_are_bounded_by_the_policy(policy: Policy, fake_model: FakeModel) -> None:
    token = uuid.uuid4().hex
    bounded = policy.model_copy(update={"api_retries": 1})
    async with Client(build_server(ClaudeBridge(bounded, depth=0))) as client:
        result = await ask(client, prompt=f"[[error:529]] {token}")
    assert result.is_error
    assert len(fake_model.requests_for(token)) == 2


async def test_an_unknown_session_id_is_a_clear_error(client: Client) -> None:
    result = await ask(client, prompt="hello", session_id=str(uuid.uuid4()))
    assert result.is_error
    assert "No conversation with that session_id" in text_of(result)


BAD_ARGUMENTS = [
    ({"prompt": "x", "cwd": "/"}, "outside the allowed roots"),
    ({"prompt": "x", "cwd": "missing-dir"}, "does not exist"),
    ({"prompt": "x", "add_dirs": ["../.."]}, "outside the allowed roots"),
    ({"prompt": "x", "permission_mode": "bypassPermissions"}, "not permitted"),
    ({"prompt": "x", "max_turns": 10_000}, "max_turns=10000 exceeds the server limit of 100"),
    ({"prompt": "x", "model": "haiku; rm -rf /"}, "model"),
    ({"prompt": "x", "temperature": 2}, "unknown argument 'temperature'"),
    ({"prompt": 42}, "prompt"),
    ({}, "missing required argument 'prompt'"),
    ({"prompt": "x", "json_schema": {"type": "object", "properties": 3}}, "json_schema"),
]


@pytest.mark.parametrize(("arguments", "complaint"), BAD_ARGUMENTS)
async def test_bad_arguments_are_clear_errors_and_the_server_keeps_serving(
    client: Client, arguments: dict[str, Any], complaint: str
) -> None:
    result = await client.call_tool("ask", arguments)
    assert result.is_error
    assert complaint in text_of(result)
    assert (await call(client, "list_sessions"))["sessions"] == []  # the server answers the next call


async def test_after_every_bad_argument_a_run_still_gets_the_only_run_slot(policy: Policy) -> None:
    """The refusals hold nothing: with one run slot and no queue, a run after all of them starts at once."""
    one_slot = policy.model_copy(update={"max_concurrent": 1, "max_queued": 0})
    async with Client(build_server(ClaudeBridge(one_slot, depth=0))) as client:
        for arguments, complaint in BAD_ARGUMENTS:
            result = await client.call_tool("ask", arguments)
            assert result.is_error and complaint in text_of(result)
        assert (await call(client, "ask", prompt="[[say:next]]"))["result"] == "next"


async def test_unknown_tools_are_clear_errors(client: Client) -> None:
    result = await client.call_tool("no_such_tool", {})
    assert result.is_error and "Unknown tool 'no_such_tool'" in text_of(result)


async def test_calls_beyond_the_depth_limit_are_refused(policy: Policy) -> None:
    async with Client(build_server(ClaudeBridge(policy, depth=2))) as client:
        result = await ask(client, prompt="delegate again")
    assert result.is_error
    assert "max_depth=2" in text_of(result)


async def test_the_cli_we_start_carries_the_next_depth(client: Client) -> None:
    prompt = '[[tool:Bash:{"command": "printenv CLAUDE_MCP_DEPTH"}]]'
    result = await ask(client, prompt=prompt, allowed_tools=["Bash(printenv *)"])
    assert text_of(result).strip() == "TOOL_RESULT: 1"


async def test_a_timeout_stops_the_run_and_names_the_session(client: Client) -> None:
    # Long enough for the CLI to start and name its session on a busy machine; the answer takes 16 s.
    result = await ask(client, prompt="[[slow:400]] " + "word " * 40, timeout_s=5)
    assert result.is_error
    assert "timeout (5 s)" in text_of(result)
    assert "session_id:" in text_of(result)
    assert not (await ask(client, prompt="after timeout")).is_error
    named = text_of(result).rsplit("session_id: ", 1)[1].rstrip(")")
    again = await ask(client, prompt="[[say:picked up]]", session_id=named)  # the stopped first turn is kept
    assert not again.is_error and text_of(again) == "picked up"


async def test_a_stalled_model_stream_is_stopped_by_the_watchdog(policy: Policy) -> None:
    quick = policy.model_copy(update={"stall_timeout_s": 1.5})
    async with Client(build_server(ClaudeBridge(quick, depth=0))) as client:
        result = await ask(client, prompt="[[stall]]")
        assert result.is_error
        assert "stalled" in text_of(result)
        assert not (await ask(client, prompt="after stall")).is_error
