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
            input_schema=self.args.model_json_schema(),
            output_schema=self.result.model_json_schema(),
            annotations=self.annotations,
        )
