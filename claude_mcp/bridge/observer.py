"""What a run tells whoever watches it: its queue position, each CLI message, permission
questions; and the pure readings of a message (the answer text it adds, the tool activity it
shows) that progress reports and job records are made of."""

from __future__ import annotations

from pathlib import PurePath
from typing import Any, Protocol

from claude_agent_sdk import AssistantMessage, Message, StreamEvent, ToolUseBlock

from .permissions import PermissionAnswer, PermissionRequest


class RunObserver(Protocol):
    """Told what a call is doing: its queue position while it waits, then each CLI message."""

    async def queued(self, position: int) -> None: ...

    async def message(self, message: Message) -> None: ...

    async def waiting_for_session(self) -> None: ...

    async def ask_permission(self, request: PermissionRequest) -> PermissionAnswer | None:
        """Ask whoever waits on the run; None when nobody can be asked."""
        ...


def text_delta(message: Message) -> str | None:
    """The answer text a streamed event adds (top-level only; sub-agents' text is not the answer)."""
    if not isinstance(message, StreamEvent) or message.parent_tool_use_id is not None:
        return None
    event = message.event
    if event.get("type") != "content_block_delta":
        return None
    delta = event.get("delta") or {}
    return delta.get("text") if delta.get("type") == "text_delta" else None


def _short(text: Any, limit: int = 80) -> str:
    line = str(text).strip().splitlines()[0] if str(text).strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def describe_tool_use(block: ToolUseBlock) -> str:
    """What a tool use does, in words a person can follow."""
    args = block.input
    path = args.get("file_path") or args.get("path") or args.get("notebook_path")
    name = PurePath(str(path)).name if path else None
    match block.name:
        case "Bash":
            return f"Running Bash: `{_short(args.get('command', ''))}`"
        case "Read":
            return f"Reading {path}"
        case "Write":
            return f"Writing {path}"
        case "Edit" | "MultiEdit" | "NotebookEdit":
            return f"Editing {path}"
        case "Grep" | "Glob":
            return f"Searching for `{_short(args.get('pattern', ''))}`"
        case "WebFetch" | "WebSearch":
            return f"{block.name}: {_short(args.get('url') or args.get('query', ''))}"
        case "Agent" | "Task":
            return f"Starting a sub-agent: {_short(args.get('description', ''))}"
        case _:
            return f"Using {block.name}" + (f" on {name}" if name else "")


def activity_of(message: Message) -> list[str]:
    """Status lines for what a message shows Claude doing (top-level tool uses)."""
    if not isinstance(message, AssistantMessage) or message.parent_tool_use_id is not None:
        return []
    return [describe_tool_use(block) for block in message.content if isinstance(block, ToolUseBlock)]
