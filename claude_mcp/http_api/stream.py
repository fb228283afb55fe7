"""A run's stream as one API message.

An agentic run is several model calls (text, Claude Code's own tool uses, more text); a client
of the Messages API expects one assistant message. `deltas_of` reads the CLI's raw stream
events (top level only: a sub-agent's text is not the answer) as neutral deltas, and
`MessageStream` folds them into the API's event sequence — `message_start`, then text and
thinking blocks (consecutive text across model calls is one block, separated by a blank line),
`content_block_stop`, `message_delta`, `message_stop` — and into the final message, so that a
streamed answer and a non-streamed one are the same. A call of one of the client's own tools
ends the message with a `tool_use` block and `stop_reason: "tool_use"` (`pause`). Pure.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from claude_agent_sdk import Message, StreamEvent

DeltaKind = Literal["text", "thinking", "signature", "turn"]
Delta = tuple[DeltaKind, str]
Event = tuple[str, dict[str, Any]]


def deltas_of(message: Message) -> list[Delta]:
    """The answer a CLI message adds: text, thinking (with its signature), or a new model call."""
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

    def __init__(self, message_id: str, model: str) -> None:
        self.message_id = message_id
        self.model = model
        self.blocks: list[dict[str, Any]] = []
        self._open: int | None = None
        self._new_turn = False
        self.stop_reason = "end_turn"

    def start(self) -> list[Event]:
        return [("message_start", {"type": "message_start", "message": self.message([], None)})]

    def feed(self, delta: Delta) -> list[Event]:
        kind, value = delta
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
