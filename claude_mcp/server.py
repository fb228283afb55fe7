"""The MCP surface: tools whose schemas come from the pydantic models, thin over `ClaudeBridge`.

Built on the SDK's low-level `Server` so that the input schema of each tool is exactly its
pydantic model (flat arguments, `additionalProperties: false`), the output schema is the
result model, and every failure becomes an `isError` result with a message, never a
traceback.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel.server import Server
from pydantic import BaseModel, ValidationError

from . import __version__
from .bridge import ClaudeBridge, RunFailed
from .errors import ClaudeMCPError
from .progress import STATUS_PREFIX, ProgressReporter
from .results import AskResult
from .settings import AskArgs

logger = logging.getLogger(__name__)

INSTRUCTIONS = (
    "Delegate work to Claude (Claude Code). `ask` sends a prompt and returns Claude's answer with a "
    "session_id; pass that session_id to a later `ask` to continue the same conversation. "
    "`stream_ask` does the same while streaming the answer as progress notifications."
)

_SETTINGS_NOTE = (
    "Without session_id a new conversation starts; with the session_id of an earlier result "
    "the conversation continues. Optional settings (model, cwd, system_prompt, allowed_tools, "
    "permission_mode, max_turns, json_schema, …) apply to this call, within the server's policy."
)

Handler = Callable[[Any, ServerRequestContext[Any, Any]], Awaitable[BaseModel]]


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


def build_tools(bridge: ClaudeBridge) -> list[ToolSpec]:
    """The tools this server publishes, bound to one bridge."""

    async def run(args: AskArgs, ctx: ServerRequestContext[Any, Any], *, stream_text: bool) -> AskResult:
        async def send(progress: float, message: str) -> None:
            await ctx.session.report_progress(progress, None, message)

        reporter = ProgressReporter(send, stream_text=stream_text, heartbeat_s=bridge.policy.heartbeat_s)
        outcome: AskResult | ClaudeMCPError
        async with anyio.create_task_group() as heartbeat:
            heartbeat.start_soon(reporter.heartbeat)
            try:  # caught inside the group, which would otherwise wrap it in an ExceptionGroup
                outcome = await bridge.ask(
                    args.prompt, session_id=args.session_id, settings=args.settings(), observer=reporter
                )
            except ClaudeMCPError as exc:
                outcome = exc
            finally:
                heartbeat.cancel_scope.cancel()
        if isinstance(outcome, ClaudeMCPError):
            raise outcome
        return outcome

    async def ask(args: AskArgs, ctx: ServerRequestContext[Any, Any]) -> AskResult:
        return await run(args, ctx, stream_text=False)

    async def stream_ask(args: AskArgs, ctx: ServerRequestContext[Any, Any]) -> AskResult:
        return await run(args, ctx, stream_text=True)

    return [
        ToolSpec(
            name="ask",
            description=(
                "Ask Claude (Claude Code) to answer or do something, and wait for the final answer. "
                + _SETTINGS_NOTE
                + f" While it works, progress reports tool activity and heartbeats (lines starting {STATUS_PREFIX!r})."
            ),
            args=AskArgs,
            result=AskResult,
            handler=ask,
            annotations=types.ToolAnnotations(read_only_hint=False, open_world_hint=True),
        ),
        ToolSpec(
            name="stream_ask",
            description=(
                "Like `ask`, but the answer streams as it is written: each progress notification's message is "
                f"the next chunk of text, or a status line starting {STATUS_PREFIX!r} (tool activity, queue "
                "position, heartbeat). The final result still carries the whole answer. " + _SETTINGS_NOTE
            ),
            args=AskArgs,
            result=AskResult,
            handler=stream_ask,
            annotations=types.ToolAnnotations(read_only_hint=False, open_world_hint=True),
        ),
    ]


def error_result(message: str, structured: BaseModel | None = None) -> types.CallToolResult:
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=message)],
        structured_content=structured.model_dump(mode="json") if structured is not None else None,
        is_error=True,
    )


def describe_validation_error(tool: str, exc: ValidationError) -> str:
    """A message naming each bad argument and what it needs (never echoing the values)."""
    problems = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or "arguments"
        if error["type"] == "extra_forbidden":
            problems.append(f"unknown argument {where!r}")
        elif error["type"] == "missing":
            problems.append(f"missing required argument {where!r}")
        else:
            problems.append(f"{where}: {error['msg']}")
    return f"Invalid arguments for {tool}: " + "; ".join(problems) + ". See the tool's input schema."


def build_server(bridge: ClaudeBridge) -> Server[Any]:
    """An MCP server publishing the tools over `bridge`."""
    tools = {spec.name: spec for spec in build_tools(bridge)}

    async def list_tools(
        ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(tools=[spec.describe() for spec in tools.values()])

    async def call_tool(
        ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        spec = tools.get(params.name)
        if spec is None:
            return error_result(f"Unknown tool {params.name!r}; available: {', '.join(tools)}.")
        try:
            args = spec.args.model_validate(params.arguments or {})
        except ValidationError as exc:
            return error_result(describe_validation_error(spec.name, exc))
        try:
            result = await spec.handler(args, ctx)
        except RunFailed as exc:
            return error_result(str(exc), exc.result)
        except ClaudeMCPError as exc:
            logger.info("%s refused or failed: %s", spec.name, exc.kind)
            return error_result(str(exc))
        except Exception:
            logger.exception("%s failed unexpectedly", spec.name)
            return error_result(f"{spec.name} failed because of an internal error; the server log has details.")
        text = getattr(result, "result", None)
        return types.CallToolResult(
            content=[types.TextContent(type="text", text=text if isinstance(text, str) else result.model_dump_json())],
            structured_content=result.model_dump(mode="json"),
        )

    @asynccontextmanager
    async def lifespan(server: Server[Any]) -> AsyncIterator[dict[str, Any]]:
        async with bridge:  # warm processes close when the last connection ends
            yield {}

    return Server(
        "claude-mcp",
        lifespan=lifespan,
        version=__version__,
        instructions=INSTRUCTIONS,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
    )
