"""How large a call's inputs may be: the one place that says so, for every surface.

The MCP tools, `/v1/messages`, `/v1/chat/completions`, each request of a Message Batch and the
Python API all check what they are given against the same `InputLimits` (the policy's
`max_prompt_kb`, `max_system_prompt_kb`, `max_json_schema_kb`, `max_agents_kb`,
`max_client_tools` and `max_client_tools_kb`), before any CLI starts: what is over a limit is
refused with `TooLarge`, naming the field, its size, the limit and the setting (an MCP `isError`
result; HTTP 413 `request_too_large`).

The checks are cheap whatever they are given: `json_size` stops counting as soon as a value is
over its limit, so an argument of megabytes costs no more than one at the limit. That is what
lets the MCP surface check the raw arguments before the (slow, for a large JSON Schema)
validation, and refuse a hostile call without spending the event loop on it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, model_validator

from ..errors import TooLarge, UnfitText

KiB = 1024
JSON_SCHEMA_CEILING_KB = 96
"""`json_schema` travels to the CLI on its command line (`--json-schema`; the CLI reads no file
for it), where Linux allows one argument at most 128 KiB: no `max_json_schema_kb` above this."""
MCP_SERVERS_BYTES = 64 * KiB
"""A call's own `mcp_servers` travel on the CLI's command line too (`--mcp-config`), JSON-encoded."""
SDK_BUFFER_BYTES = 1024 * KiB
"""claude-agent-sdk's default bound on one line of the CLI's output."""
LINE_PER_PROMPT_BYTE = 12
"""The CLI echoes a turn's prompt to the SDK twice in one line (its transcript mirror), JSON-escaped:
at most 6 characters a byte (`\\u0001`), twice."""
IMAGE_MOST_BYTES = 5 * KiB * KiB
"""Most bytes of one image's base64 data (the Messages API's own limit, 5 MB an image)."""
DOCUMENT_MOST_BYTES = 32 * KiB * KiB
"""Most bytes of one document's base64 data (the Messages API's 32 MB request limit)."""
MOST_IMAGES = 100
"""Most images one request may carry (the Messages API's own limit)."""
ATTACHMENTS_MOST_BYTES = 32 * KiB * KiB
"""Most bytes of base64 data all of one turn's images and documents may hold together (the Messages
API's request limit; the server's `max_request_mb` is usually lower)."""
LINE_PER_ATTACHMENT_BYTE = 2
"""The CLI echoes a turn's images and documents in the same line as its prompt: their base64, twice."""

MOST_MESSAGES = 100_000
"""Most messages one HTTP API request may hold (the Messages API's own limit)."""
MOST_BATCH_REQUESTS = 100_000
"""Most requests one Message Batch body may hold (the API's own limit; `max_batch_requests` lowers it)."""
MOST_BLOCKS = 10_000
"""Most content blocks one message may hold, and system blocks one request."""
MOST_TOOLS = 100_000
"""Most client tools one HTTP API request may offer (`max_client_tools`, 256 by default, lowers it)."""
MOST_ITEMS = 1_000
"""Most items of any other list or object an HTTP API request carries (`stop_sequences`, `metadata`,
`logit_bias`, …)."""
MOST_FIELDS = 100
"""Most fields one object of a request or a tool's arguments may have, known or not: checked before its
fields are validated, so an object of 200,000 unknown fields is one refusal, not 200,000 errors built."""


class FewFields(BaseModel):
    """A model whose input object is refused before any of its fields is validated when it has more than
    `MOST_FIELDS` fields: pydantic-core would build an error for each unknown one while holding the GIL
    (200,000 keys of `thinking` in an MCP call held every other request up ~0.4 s)."""

    @model_validator(mode="before")
    @classmethod
    def _few_fields(cls, data: Any) -> Any:
        if isinstance(data, dict) and len(data) > MOST_FIELDS:
            raise ValueError(f"an object of {len(data):,} fields, where at most {MOST_FIELDS} are taken")
        return data


def json_size(value: Any, limit: int) -> int:
    """About how many bytes `value` takes as JSON (strings as their UTF-8, escapes not counted);
    once past `limit`, a number over it, without looking further (so the cost is bounded by
    `limit`, not by `value`)."""
    size, stack = 0, [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            size += _text_size(item, limit - size + 1) + 2
        elif isinstance(item, Mapping):
            size += 2
            for key, inner in item.items():
                size += _text_size(str(key), limit - size + 1) + 4
                stack.append(inner)
                if size > limit:
                    return size
        elif isinstance(item, list | tuple):
            size += 2 + len(item)
            stack.extend(item[: limit - size + 1] if size <= limit else ())
        else:
            size += 8  # a number, true, false or null
        if size > limit:
            return size
    return size


LONE_SURROGATE = re.compile("[\ud800-\udfff]")
"""A surrogate left in a decoded text (a pair decodes to one character): no UTF-8 can carry it, so
the store refuses it and the CLI cannot be given it."""


def unfit_text(text: str, field: str, *, nul: bool) -> None:
    """`UnfitText` if `text` holds a lone surrogate, or (`nul`: it goes on the CLI's command line,
    or in a file read as one) a NUL."""
    if (found := LONE_SURROGATE.search(text)) is not None:
        raise UnfitText(
            field,
            f"{field} holds a lone surrogate (U+{ord(found[0]):04X} at character {found.start()}), which is not "
            "Unicode text. Send UTF-8 text.",
        )
    if nul and (at := text.find("\0")) >= 0:
        raise UnfitText(
            field, f"{field} holds a NUL character (at character {at}), which a system prompt cannot carry."
        )


def _text_size(text: str, limit: int) -> int:
    """The UTF-8 size of `text`, or a number over `limit` if it is known to be (without encoding a
    long text: a character takes one to four bytes)."""
    if len(text) > limit:
        return len(text)
    if 4 * len(text) <= limit:
        return len(text)
    return len(text.encode("utf-8", "surrogatepass"))


def _shown(size: int) -> str:
    return f"{size / KiB / KiB:.1f} MiB" if size >= KiB * KiB else f"{size / KiB:.0f} KiB"


@dataclass(frozen=True, slots=True)
class InputLimits:
    """The sizes one call's inputs may have (bytes, UTF-8; JSON as JSON)."""

    prompt_bytes: int
    system_prompt_bytes: int
    json_schema_bytes: int
    agents_bytes: int
    most_client_tools: int
    client_tools_bytes: int

    @property
    def cli_buffer_bytes(self) -> int:
        """How long a line of the CLI's output may be for a prompt at the limit, with images and
        documents at theirs (the SDK's bound, raised to fit it; the SDK otherwise stops the run on a
        prompt of ~500 KiB). A bound only: the SDK holds no more than the line it reads."""
        prompt = LINE_PER_PROMPT_BYTE * self.prompt_bytes + LINE_PER_ATTACHMENT_BYTE * ATTACHMENTS_MOST_BYTES
        return max(SDK_BUFFER_BYTES, prompt + SDK_BUFFER_BYTES)

    def _over(self, field: str, size: int | None, limit: int, setting: str, what: str | None = None) -> TooLarge:
        """The refusal; `size`: how large the input is, where it was measured whole."""
        measured = f"{_shown(size)}, more than" if size is not None else "larger than"
        return TooLarge(
            field,
            f"{what or field} is {measured} this server accepts: {_shown(limit)} (its `{setting}` setting). Send less.",
        )

    def _text(self, text: str | None, limit: int, field: str, setting: str, what: str | None, *, nul: bool) -> None:
        if text is None:
            return
        if _text_size(text, limit) > limit:
            raise self._over(field, len(text.encode("utf-8", "surrogatepass")), limit, setting, what)
        unfit_text(text, field, nul=nul)

    def prompt(self, text: str, *, field: str = "prompt", what: str | None = None) -> None:
        """A turn's prompt (MCP `prompt`; over HTTP the last user message, or the history carried with it):
        within `max_prompt_kb`, and text (`unfit_text`)."""
        self._text(text, self.prompt_bytes, field, "max_prompt_kb", what, nul=False)

    def system_prompt(self, text: str | None, *, field: str = "system_prompt", what: str | None = None) -> None:
        """`system_prompt` or `append_system_prompt` (over HTTP: `system`, or the system messages): within
        `max_system_prompt_kb`, and text without a NUL (it goes on the CLI's command line)."""
        self._text(text, self.system_prompt_bytes, field, "max_system_prompt_kb", what, nul=True)

    def json_schema(self, schema: Any) -> None:
        """`json_schema`, as the JSON text the CLI is given (non-ASCII escaped, as the SDK writes it)."""
        if schema is None:
            return
        if json_size(schema, self.json_schema_bytes) > self.json_schema_bytes:
            raise self._over("json_schema", None, self.json_schema_bytes, "max_json_schema_kb")
        if (size := len(json.dumps(schema))) > self.json_schema_bytes:  # exact, now that it is known to be small
            raise self._over("json_schema", size, self.json_schema_bytes, "max_json_schema_kb")

    def agents(self, agents: Any) -> None:
        """A call's own `agents`, their definitions together."""
        if agents is not None and json_size(agents, self.agents_bytes) > self.agents_bytes:
            raise self._over("agents", None, self.agents_bytes, "max_agents_kb", "agents (all their definitions)")

    def mcp_servers(self, servers: Any) -> None:
        """A call's own `mcp_servers` (a fixed bound: they go on the CLI's command line)."""
        if servers is not None and json_size(servers, MCP_SERVERS_BYTES) > MCP_SERVERS_BYTES:
            raise TooLarge(
                "mcp_servers",
                f"mcp_servers is larger than a call's own MCP servers may be: {_shown(MCP_SERVERS_BYTES)} (as JSON). "
                "Configure large ones in the server policy.",
            )

    def client_tools(self, tools: list[Any] | None) -> None:
        """The Messages API's `tools`: how many, and their definitions together."""
        if not tools:
            return
        if len(tools) > self.most_client_tools:
            raise TooLarge(
                "tools",
                f"tools holds {len(tools)} tools, more than this server accepts: {self.most_client_tools} (its "
                "`max_client_tools` setting). Offer fewer tools.",
            )
        if json_size(tools, self.client_tools_bytes) > self.client_tools_bytes:
            raise self._over("tools", None, self.client_tools_bytes, "max_client_tools_kb", "tools (their definitions)")

    def settings(self, values: Mapping[str, Any]) -> None:
        """The sized settings among `values` (a `CallSettings`' fields, or a tool's raw arguments,
        before they are validated: whatever is not of the expected type is left to validation)."""
        for name in ("system_prompt", "append_system_prompt"):
            if isinstance(text := values.get(name), str):
                self.system_prompt(text, field=name)
        self.json_schema(values.get("json_schema"))
        self.agents(values.get("agents"))
        self.mcp_servers(values.get("mcp_servers"))

    def arguments(self, values: Mapping[str, Any]) -> None:
        """A tool's raw arguments: its prompt and its sized settings."""
        if isinstance(prompt := values.get("prompt"), str):
            self.prompt(prompt)
        self.settings(values)
