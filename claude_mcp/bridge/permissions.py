"""Permission prompts: when Claude needs approval for a tool use, ask the person at the client.

The CLI calls the SDK's `can_use_tool` only for uses its own rules would prompt for (so
nothing here can approve what the policy's permission mode, `disallowed_tools` or the CLI
already refuse). `PermissionGate.decide` then approves by the policy's rules, by an earlier
"allow for this session", or by asking whoever waits on the call (an MCP elicitation, or a
job's pending question answered through `get_job`); with nobody to ask, or no answer by the
deadline, the use is denied and Claude is told why.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any, Literal

import anyio
from claude_agent_sdk import PermissionResultAllow, PermissionResultDeny
from pydantic import BaseModel, Field

from ..config.types import JsonObject

logger = logging.getLogger(__name__)

Decision = Literal["allow_once", "allow_session", "deny"]


class PermissionAnswer(BaseModel):
    """What the person decided."""

    decision: Decision = Field(description="`allow_once`, `allow_session` (this tool, for the conversation) or `deny`.")
    reason: str | None = Field(None, max_length=2000, description="Why (told to Claude on a denial).")


class PermissionRequest(BaseModel):
    """A tool use waiting for approval."""

    permission_id: str = Field(default_factory=lambda: str(uuid.uuid4()))
    tool: str
    description: str = Field(description="What Claude wants to do, in words a person can judge.")
    input: JsonObject


Asker = Callable[[PermissionRequest], Awaitable[PermissionAnswer | None]]
"""Asks someone; None when nobody can be asked."""

ELICITATION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "decision": {
            "type": "string",
            "title": "Decision",
            "enum": ["allow_once", "allow_session", "deny"],
            "enumNames": ["Allow once", "Allow this tool for the rest of the session", "Deny"],
        },
        "reason": {"type": "string", "title": "Reason (optional, told to Claude if you deny)"},
    },
    "required": ["decision"],
}


def describe(tool: str, tool_input: dict[str, Any], cwd: str) -> str:
    """A person-readable account of a tool use."""
    path = tool_input.get("file_path") or tool_input.get("notebook_path") or tool_input.get("path")
    if tool == "Bash":
        return f"Run `{tool_input.get('command', '')}` in {cwd}"
    if tool == "Write":
        lines = str(tool_input.get("content", "")).count("\n") + 1
        return f"Write {path} (+{lines} lines)"
    if tool in ("Edit", "MultiEdit", "NotebookEdit"):
        return f"Edit {path}"
    if path:
        return f"Use {tool} on {path}"
    shown = json.dumps(tool_input)
    return f"Use {tool} with {shown if len(shown) <= 200 else shown[:199] + '…'}"


def rule_matches(rule: str, tool: str, tool_input: dict[str, Any]) -> bool:
    """Whether a permission rule such as `Edit`, `Bash(git *)` or `Write(src/*)` covers a use."""
    name, _, pattern = rule.partition("(")
    if name != tool:
        return False
    if not pattern:
        return True
    pattern = pattern.removesuffix(")")
    subject = tool_input.get("command") if tool == "Bash" else tool_input.get("file_path") or tool_input.get("path")
    if subject is None:
        return False
    subject = str(subject)
    return fnmatch.fnmatchcase(subject, pattern) or fnmatch.fnmatchcase(PurePath(subject).name, pattern)


@dataclass
class PermissionGate:
    """Decides permission requests for one bridge; remembers "allow for this session"."""

    mode: Literal["client", "deny"]
    rules: tuple[str, ...] = ()
    timeout_s: float = 60
    _granted: dict[str, set[str]] = field(default_factory=dict)

    async def decide(
        self, session_id: str | None, tool: str, tool_input: dict[str, Any], cwd: str, asker: Asker | None
    ) -> PermissionResultAllow | PermissionResultDeny:
        if any(rule_matches(rule, tool, tool_input) for rule in self.rules):
            return PermissionResultAllow()
        if session_id is not None and tool in self._granted.get(session_id, set()):
            return PermissionResultAllow()
        if self.mode == "deny" or asker is None:
            return PermissionResultDeny(message=f"{tool} needs approval and nobody could be asked, so it was denied.")
        request = PermissionRequest(tool=tool, description=describe(tool, tool_input, cwd), input=tool_input)
        answer = None
        with anyio.move_on_after(self.timeout_s) as deadline:
            answer = await asker(request)
        if deadline.cancelled_caught:
            return PermissionResultDeny(
                message=f"{tool} needs approval; nobody answered within {self.timeout_s:g} s, so it was denied."
            )
        if answer is None:
            return PermissionResultDeny(message=f"{tool} needs approval and nobody could be asked, so it was denied.")
        if answer.decision == "deny":
            reason = f" Reason: {answer.reason}" if answer.reason else ""
            return PermissionResultDeny(message=f"The user denied this {tool} use.{reason}")
        if answer.decision == "allow_session" and session_id is not None:
            self._granted.setdefault(session_id, set()).add(tool)
        return PermissionResultAllow()
