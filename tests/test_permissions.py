"""Permission prompts answered by the person at the MCP client (elicitation), with safe
fallbacks. The fake model asks to write a file and to run a shell command; the real CLI asks
for approval; the MCP client's elicitation callback answers (or doesn't)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp import Client

from claude_mcp import ClaudeBridge, Policy
from claude_mcp.bridge.permissions import describe, rule_matches
from claude_mcp.mcp_surface.server import build_server
from tests.conftest import text_of, tool_prompt

pytestmark = pytest.mark.anyio


class Person:
    """An elicitation callback that answers as told, and remembers what it was asked."""

    def __init__(self, decision: str | None, reason: str | None = None, delay_s: float = 0) -> None:
        self.decision, self.reason, self.delay_s = decision, reason, delay_s
        self.asked: list[str] = []

    async def __call__(self, context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        self.asked.append(params.message)
        await anyio.sleep(self.delay_s)
        if self.decision is None:
            return types.ElicitResult(action="decline")
        content: dict[str, Any] = {"decision": self.decision}
        if self.reason:
            content["reason"] = self.reason
        return types.ElicitResult(action="accept", content=content)


def write(path: Path) -> str:
    return tool_prompt("Write", file_path=str(path), content="line one\nline two\n")


async def ask(policy: Policy, person: Person | None, prompt: str, mode: str = "legacy", **more: Any) -> Any:
    async with Client(build_server(ClaudeBridge(policy, depth=0)), mode=mode, elicitation_callback=person) as client:
        return await client.call_tool("ask", {"prompt": prompt, **more})


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_an_accepted_write_happens(policy: Policy, workdir: Path, mode: str) -> None:
    person = Person("allow_once")
    result = await ask(policy, person, write(workdir / "a.txt"), mode)
    assert (workdir / "a.txt").read_text() == "line one\nline two\n"
    assert "File created successfully" in text_of(result)
    assert person.asked == [f"Claude wants to: Write {workdir / 'a.txt'} (+3 lines)"]


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_a_declined_command_does_not_run_and_claude_is_told_why(policy: Policy, workdir: Path, mode: str) -> None:
    person = Person("deny", reason="not on a Friday")
    prompt = tool_prompt("Bash", command=f"touch {workdir / 'b.txt'}")
    result = await ask(policy, person, prompt, mode)
    assert not (workdir / "b.txt").exists()
    assert person.asked == [f"Claude wants to: Run `touch {workdir / 'b.txt'}` in {workdir}"]
    assert "not on a Friday" in text_of(result), "the reason reaches Claude as the tool result"
    denials = result.structured_content["permission_denials"]
    assert [d["tool_name"] for d in denials] == ["Bash"]


async def test_a_client_that_declines_the_form_denies(policy: Policy, workdir: Path) -> None:
    result = await ask(policy, Person(None), write(workdir / "c.txt"))
    assert not (workdir / "c.txt").exists()
    assert "denied" in text_of(result)


async def test_no_answer_before_the_deadline_denies(policy: Policy, workdir: Path) -> None:
    quick = policy.model_copy(update={"permission_timeout_s": 1})
    with anyio.fail_after(30):
        result = await ask(quick, Person("allow_once", delay_s=10), write(workdir / "d.txt"))
    assert not (workdir / "d.txt").exists()
    assert "nobody answered within 1 s" in text_of(result)


async def test_a_client_without_elicitation_is_denied_without_hanging(policy: Policy, workdir: Path) -> None:
    with anyio.fail_after(20):
        result = await ask(policy, None, write(workdir / "e.txt"))
    assert not (workdir / "e.txt").exists()
    assert "nobody could be asked" in text_of(result)
    assert [d["tool_name"] for d in result.structured_content["permission_denials"]] == ["Write"]


async def test_allow_for_the_session_is_not_asked_again(policy: Policy, workdir: Path) -> None:
    person = Person("allow_session")
    async with Client(build_server(ClaudeBridge(policy, depth=0)), elicitation_callback=person) as client:
        first = await client.call_tool("ask", {"prompt": write(workdir / "f1.txt")})
        session_id = first.structured_content["session_id"]
        await client.call_tool("ask", {"prompt": write(workdir / "f2.txt"), "session_id": session_id})
        assert len(person.asked) == 1
        await client.call_tool("ask", {"prompt": write(workdir / "f3.txt")})
        assert len(person.asked) == 2, "another conversation is asked again"
    assert all((workdir / name).exists() for name in ("f1.txt", "f2.txt", "f3.txt"))


async def test_policy_rules_approve_without_asking_and_deny_the_rest(policy: Policy, workdir: Path) -> None:
    ruled = policy.model_copy(update={"permission_prompts": ("Write(*.md)",)})
    person = Person("allow_once")
    await ask(ruled, person, write(workdir / "notes.md"))
    await ask(ruled, person, write(workdir / "code.py"))
    assert (workdir / "notes.md").exists() and not (workdir / "code.py").exists()
    assert person.asked == []


async def test_deny_mode_never_asks(policy: Policy, workdir: Path) -> None:
    person = Person("allow_once")
    await ask(policy.model_copy(update={"permission_prompts": "deny"}), person, write(workdir / "g.txt"))
    assert not (workdir / "g.txt").exists() and person.asked == []


async def test_a_background_job_waits_for_a_decision_given_through_get_job(policy: Policy, workdir: Path) -> None:
    agents = {"writer": {"description": "Writes", "prompt": "You write files."}}
    async with Client(build_server(ClaudeBridge(policy, depth=0))) as client:
        started = await client.call_tool(
            "run_agent", {"agent": "writer", "agents": agents, "prompt": write(workdir / "h.txt"), "wait_s": 0}
        )
        job_id = started.structured_content["job_id"]
        with anyio.fail_after(30):
            while (view := (await client.call_tool("get_job", {"job_id": job_id})).structured_content)[
                "pending_permission"
            ] is None:
                await anyio.sleep(0.1)
        pending = view["pending_permission"]
        assert pending["tool"] == "Write" and pending["description"].startswith("Write ")
        answered = await client.call_tool(
            "get_job",
            {"job_id": job_id, "permission_id": pending["permission_id"], "decision": "allow_once", "wait_s": 30},
        )
    assert answered.structured_content["status"] == "completed"
    assert (workdir / "h.txt").exists()


async def test_a_job_asks_the_client_that_waits_on_it(policy: Policy, workdir: Path) -> None:
    agents = {"writer": {"description": "Writes", "prompt": "You write files."}}
    person = Person("allow_once")
    async with Client(build_server(ClaudeBridge(policy, depth=0)), elicitation_callback=person) as client:
        done = await client.call_tool(
            "run_agent", {"agent": "writer", "agents": agents, "prompt": write(workdir / "i.txt"), "wait_s": 30}
        )
    assert done.structured_content["status"] == "completed"
    assert (workdir / "i.txt").exists() and len(person.asked) == 1


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_a_fork_asks_too(policy: Policy, workdir: Path, mode: str) -> None:
    person = Person("allow_once")
    async with Client(build_server(ClaudeBridge(policy, depth=0)), mode=mode, elicitation_callback=person) as client:
        original = await client.call_tool("ask", {"prompt": "remember lime"})
        forked = await client.call_tool(
            "fork_session",
            {"session_id": original.structured_content["session_id"], "prompt": write(workdir / "j.txt")},
        )
    assert not forked.is_error, text_of(forked)
    assert forked.structured_content["answer"]["session_id"] == forked.structured_content["session_id"]
    assert (workdir / "j.txt").exists() and len(person.asked) == 1


def test_rules_match_tools_and_their_arguments() -> None:
    assert rule_matches("Edit", "Edit", {"file_path": "/x/y.py"})
    assert rule_matches("Bash(git *)", "Bash", {"command": "git status"})
    assert not rule_matches("Bash(git *)", "Bash", {"command": "rm -rf /; git status"})
    assert rule_matches("Write(*.md)", "Write", {"file_path": "/repo/README.md"})
    assert not rule_matches("Write(*.md)", "Edit", {"file_path": "/repo/README.md"})


def test_requests_are_described_for_a_person() -> None:
    assert describe("Bash", {"command": "rm -rf build/"}, "/repo") == "Run `rm -rf build/` in /repo"
    assert (
        describe("Write", {"file_path": "src/app.py", "content": "a\n" * 40}, "/repo") == "Write src/app.py (+41 lines)"
    )
    assert describe("mcp__x__y", {"q": 1}, "/repo") == f"Use mcp__x__y with {json.dumps({'q': 1})}"
