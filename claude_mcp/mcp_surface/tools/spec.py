"""A tool as data: its name, description, argument and result models, and its handler."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import mcp_types as types
from pydantic import BaseModel

from ..call import Call

Handler = Callable[[Any, Call], Awaitable[BaseModel | types.InputRequiredResult]]
"""Takes the validated arguments and the call; returns the result model, or a question for the client."""

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

    def describe(self) -> types.Tool:
        return types.Tool(
            name=self.name,
            description=self.description,
            input_schema=self.args.model_json_schema(),
            output_schema=self.result.model_json_schema(),
            annotations=self.annotations,
        )
