"""A tool as data: its name, description, argument and result models, and its handler."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import mcp_types as types
from pydantic import BaseModel

from ...state.store import JobRecord
from ..call import Call

Handler = Callable[[Any, Call], Awaitable[BaseModel | types.InputRequiredResult]]
"""Takes the validated arguments and the call; returns the result model, or a question for the client."""


@dataclass(frozen=True, slots=True)
class TaskSupport:
    """How a tool runs as a task (the MCP Tasks extension): `submit` queues its run as a job (None:
    this call has nothing to wait for, so it runs as usual), and `result` is the tool's result
    from the finished job's record."""

    submit: Callable[[Any, Call], Awaitable[JobRecord | None]]
    result: Callable[[JobRecord], BaseModel]


READS = types.ToolAnnotations(read_only_hint=True, open_world_hint=False)
DELEGATES = types.ToolAnnotations(read_only_hint=False, open_world_hint=True)


def fillable(schema: dict[str, Any]) -> dict[str, Any]:
    """An arguments schema whose optional arguments are their type alone: `anyOf [T, null]` with a
    null default becomes `T`, not required (form-filling clients such as the MCP Inspector cannot
    fill a union; omitting the argument means the same as null, which is still accepted)."""
    properties = {}
    for name, prop in schema.get("properties", {}).items():
        branches = prop.get("anyOf", [])
        others = [b for b in branches if b != {"type": "null"}]
        if len(branches) == 2 and len(others) == 1 and prop.get("default", ...) is None:
            prop = {**{k: v for k, v in prop.items() if k not in ("anyOf", "default")}, **others[0]}
        properties[name] = prop
    return {**schema, "properties": properties} if "properties" in schema else schema


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """One tool: its name and description, its argument and result models, and its handler."""

    name: str
    description: str
    args: type[BaseModel]
    result: type[BaseModel]
    handler: Handler
    annotations: types.ToolAnnotations | None = None
    task: TaskSupport | None = None
    """Set on the tools a client may run as tasks."""

    def describe(self) -> types.Tool:
        return types.Tool(
            name=self.name,
            description=self.description,
            input_schema=fillable(self.args.model_json_schema()),
            output_schema=self.result.model_json_schema(),
            annotations=self.annotations,
        )
