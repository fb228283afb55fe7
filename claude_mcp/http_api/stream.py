"""A run's stream as one API message.

An agentic run is several model calls (text, Claude Code's own tool uses, more text); a client
of the Messages API expects one assistant message. `deltas_of` reads the CLI's raw stream
events (top level only: a sub-agent's text is not the answer) as neutral deltas, and
`MessageStream` folds them into the API's event sequence — `message_start`, then text and
thinking blocks (consecutive text across model calls is one block, separated by a blank line),
`content_block_stop`, `message_delta`, `message_stop` — and into the final message, so that a
streamed answer and a non-streamed one are the same. A call of one of the client's own tools
ends the message with a `tool_use` block and `stop_reason: "tool_use"` (`pause`). Calls of the
request's own MCP servers (the MCP connector's) and their results are `mcp_tool_use` and
`mcp_tool_result` blocks, as the Messages API reports them. Pure.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from claude_agent_sdk import AssistantMessage, Message, StreamEvent, ToolResultBlock, ToolUseBlock, UserMessage

DeltaKind = Literal["text", "thinking", "signature", "turn", "tool_use", "tool_result"]
Delta = tuple[DeltaKind, str]
Event = tuple[str, dict[str, Any]]


def _tool_deltas(message: AssistantMessage | UserMessage) -> list[Delta]:
    """A top-level tool call (`tool_use`) or its result (`tool_result`), as JSON."""
    if message.parent_tool_use_id is not None or isinstance(message.content, str):
        return []
    deltas: list[Delta] = []
    for block in message.content:
        if isinstance(block, ToolUseBlock):
            deltas.append(("tool_use", json.dumps({"id": block.id, "name": block.name, "input": block.input})))
        elif isinstance(block, ToolResultBlock):
            content = (
                block.content if isinstance(block.content, list) else [{"type": "text", "text": block.content or ""}]
            )
            result = {"tool_use_id": block.tool_use_id, "is_error": bool(block.is_error), "content": content}
            deltas.append(("tool_result", json.dumps(result)))
    return deltas


def deltas_of(message: Message) -> list[Delta]:
    """The answer a CLI message adds: text, thinking (with its signature), a new model call, or a
    tool call or its result."""
    if isinstance(message, AssistantMessage | UserMessage):
        return _tool_deltas(message)
    if not isinstance(message, StreamEvent) or message.parent_tool_use_id is not None:
        return []
    event = message.event
    kind = event.get("type")
    if kind == "message_start":
        return [("turn", "")]
    if kind != "content_block_delta":
        return []
    delta = event.get("delta") or {}
    match delta.get("type"):
        case "text_delta":
            return [("text", str(delta.get("text", "")))]
        case "thinking_delta":
            return [("thinking", str(delta.get("thinking", "")))]
        case "signature_delta":
            return [("signature", str(delta.get("signature", "")))]
    return []


class MessageStream:
    """One assistant message, built from a run's deltas."""

    def __init__(self, message_id: str, model: str, mcp_servers: frozenset[str] = frozenset()) -> None:
        """`mcp_servers`: the request's own MCP servers, whose calls the message reports."""
        self.message_id = message_id
        self.model = model
        self.mcp_servers = mcp_servers
        self._mcp_calls: set[str] = set()
        self.blocks: list[dict[str, Any]] = []
        self._open: int | None = None
        self._new_turn = False
        self.stop_reason = "end_turn"

    def start(self) -> list[Event]:
        return [("message_start", {"type": "message_start", "message": self.message([], None)})]

    def feed(self, delta: Delta) -> list[Event]:
        kind, value = delta
        if kind in ("tool_use", "tool_result"):
            return self._mcp_block(kind, json.loads(value))
        if kind == "turn":
            self._new_turn = self._open is not None
            return []
        if kind == "signature":
            if self._open is None or self.blocks[self._open]["type"] != "thinking":
                return []
            self.blocks[self._open]["signature"] += value
            return [self._delta({"type": "signature_delta", "signature": value})]
        events: list[Event] = []
        if self._open is None or self.blocks[self._open]["type"] != kind:
            events += self._close()
            block: dict[str, Any] = (
                {"type": "text", "text": ""}
                if kind == "text"
                else {
                    "type": "thinking",
                    "thinking": "",
                    "signature": "",
                }
            )
            self.blocks.append(block)
            self._open = len(self.blocks) - 1
            events.append(
                (
                    "content_block_start",
                    {"type": "content_block_start", "index": self._open, "content_block": block.copy()},
                )
            )
        elif kind == "text" and self._new_turn and value:
            value = "\n\n" + value
        if value:
            self._new_turn = False
        self.blocks[self._open][kind] += value
        events.append(self._delta({"type": f"{kind}_delta", kind: value}))
        return events

    def _mcp_block(self, kind: str, fields: dict[str, Any]) -> list[Event]:
        """An `mcp_tool_use` or `mcp_tool_result` block, where the call is of one of the request's
        own MCP servers (nothing otherwise)."""
        if kind == "tool_use":
            server, _, tool = str(fields["name"]).removeprefix("mcp__").partition("__")
            if not str(fields["name"]).startswith("mcp__") or server not in self.mcp_servers:
                return []
            self._mcp_calls.add(fields["id"])
            block = {"type": "mcp_tool_use", "id": fields["id"], "name": tool, "server_name": server}
            events = [*self._close(), *self._started({**block, "input": {}})]
            events.append(self._delta({"type": "input_json_delta", "partial_json": json.dumps(fields["input"])}))
            self.blocks[-1]["input"] = fields["input"]
            return events + self._close()
        if fields["tool_use_id"] not in self._mcp_calls:
            return []
        block = {"type": "mcp_tool_result", **fields}
        return [*self._close(), *self._started(block), *self._close()]

    def _started(self, block: dict[str, Any]) -> list[Event]:
        self.blocks.append(dict(block))
        self._open = len(self.blocks) - 1
        return [("content_block_start", {"type": "content_block_start", "index": self._open, "content_block": block})]

    def pause(self, call_id: str, name: str, tool_input: dict[str, Any], usage: dict[str, int]) -> list[Event]:
        """The closing events of a message that ends on a call of one of the client's tools."""
        events = self._close()
        block = {"type": "tool_use", "id": call_id, "name": name, "input": tool_input}
        self.blocks.append(block)
        self._open = len(self.blocks) - 1
        events.append(
            (
                "content_block_start",
                {"type": "content_block_start", "index": self._open, "content_block": {**block, "input": {}}},
            )
        )
        events.append(self._delta({"type": "input_json_delta", "partial_json": json.dumps(tool_input)}))
        self.stop_reason = "tool_use"
        return events + self._ending(usage)

    def finish(self, usage: dict[str, int], fallback_text: str) -> list[Event]:
        """The closing events; `fallback_text` becomes the answer if nothing was streamed."""
        events = self.feed(("text", fallback_text)) if not self.blocks and fallback_text else []
        return events + self._ending(usage)

    def _ending(self, usage: dict[str, int]) -> list[Event]:
        events = self._close()
        events.append(
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": self.stop_reason, "stop_sequence": None},
                    "usage": usage,
                },
            )
        )
        events.append(("message_stop", {"type": "message_stop"}))
        return events

    def message(self, content: list[dict[str, Any]], usage: dict[str, int] | None) -> dict[str, Any]:
        return {
            "id": self.message_id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": content,
            "stop_reason": self.stop_reason if usage is not None else None,
            "stop_sequence": None,
            "usage": usage or {"input_tokens": 0, "output_tokens": 0},
        }

    def text(self) -> str:
        """The answer's text as a client that resends it will (its text blocks, joined)."""
        return "\n\n".join(block["text"] for block in self.blocks if block["type"] == "text")

    def _delta(self, delta: dict[str, Any]) -> Event:
        return ("content_block_delta", {"type": "content_block_delta", "index": self._open, "delta": delta})

    def _close(self) -> list[Event]:
        if self._open is None:
            return []
        index, self._open = self._open, None
        return [("content_block_stop", {"type": "content_block_stop", "index": index})]
