"""The MCP surface: tools whose schemas come from the pydantic models, thin over `ClaudeBridge`.

Built on the SDK's low-level `Server` so that the input schema of each tool is exactly its
pydantic model (flat arguments, `additionalProperties: false`), the output schema is the
result model, and every failure becomes an `isError` result with a message, never a
traceback.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import mcp_types as types
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.context import ServerRequestContext
from mcp.server.extension import compose_tool_call_handler
from mcp.server.lowlevel.server import Server
from pydantic import ValidationError

from .._version import __version__
from ..bridge.claude import ClaudeBridge
from ..bridge.instrument import error_kind, note_caller
from ..bridge.tenancy import LOCAL, Tenancy
from ..config.credentials import CREDENTIAL_HEADER, parse_credential
from ..config.policy import Policy
from ..errors import ClaudeMCPError
from ..oauth.identity import identity_of
from ..telemetry import context
from . import resources
from .arguments import validated
from .call import Call, error_result, tool_result
from .instrument import observed
from .tasks import TasksExtension
from .tools import INSTRUCTIONS, TOOLS

logger = logging.getLogger(__name__)


MOST_PROBLEMS_NAMED = 10
"""A refusal names the first few problems of many (4,000 wrong keys of `agents` made a 360 KB refusal)."""
MOST_SHOWN = 100
"""The most characters of a name the caller chose (a tool's, an argument's, a key's) a refusal repeats."""


def _shown(name: str) -> str:
    return name if len(name) <= MOST_SHOWN else f"{name[:MOST_SHOWN]}…"


def describe_validation_error(tool: str, exc: ValidationError) -> str:
    """A message naming each bad argument and what it needs, the first few of many (never echoing the values)."""
    problems = []
    for error in exc.errors(include_url=False, include_input=False)[:MOST_PROBLEMS_NAMED]:
        where = _shown(".".join(str(part) for part in error["loc"]) or "arguments")
        if error["type"] == "extra_forbidden":
            problems.append(f"unknown argument {where!r}")
        elif error["type"] == "missing":
            problems.append(f"missing required argument {where!r}")
        else:
            problems.append(f"{where}: {error['msg']}")
    if (more := exc.error_count() - len(problems)) > 0:
        problems.append(f"and {more} more problems")
    return f"Invalid arguments for {tool}: " + "; ".join(problems) + ". See the tool's input schema."


def build_server(served: ClaudeBridge | Tenancy) -> Server[Any]:
    """An MCP server publishing the tools over one bridge, or over each tenant's own."""
    tenancy = served if isinstance(served, Tenancy) else Tenancy.single(served)
    tools = {spec.name: spec for spec in TOOLS}
    # The server's input limits, checked before a tool's arguments are validated (a tenant's policy may lower
    # them: its own are checked again when the run is planned).
    limits = (tenancy.policy or Policy()).input_limits

    @asynccontextmanager
    async def calling(ctx: ServerRequestContext[Any, Any], *answers: Any) -> AsyncIterator[Call]:
        """The call's tenant and, in caller-credential mode, its credential; the bridge that serves them."""
        tenant, identity = LOCAL, None
        if tenancy.requires_auth:
            user = getattr(ctx.request, "user", None)
            token = getattr(user, "access_token", None) or get_access_token()
            if token is None or not tenancy.knows(token.client_id):
                raise ClaudeMCPError("Not authenticated: send `Authorization: Bearer <token>`.")
            tenant, identity = token.client_id, identity_of(token)
        credential = identity.credential if identity is not None else None  # a token may carry the caller's key
        if tenancy.takes_caller_credentials and credential is None:
            headers = getattr(ctx.request, "headers", None)
            header = headers.get(CREDENTIAL_HEADER) if headers is not None else None
            credential = parse_credential(header, allow_oauth=tenancy.accepts_oauth_tokens)
        async with tenancy.bridge_for(tenant, credential) as bridge:
            note_caller(bridge.label, bridge.namespace)
            yield Call(ctx, bridge.namespace, bridge, *answers)

    listed = types.ListToolsResult(tools=[spec.describe() for spec in tools.values()])  # schemas cost ~50 ms to build

    async def list_tools(
        ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return listed

    async def call_tool(
        ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult | types.InputRequiredResult:
        spec = tools.get(params.name)
        if spec is None:
            return error_result(f"Unknown tool {_shown(params.name)!r}; available: {', '.join(tools)}.")
        try:
            args = await validated(spec.args, params.arguments or {}, limits)
        except ValidationError as exc:
            context.note(error="invalid_arguments")
            return error_result(describe_validation_error(spec.name, exc))
        except ClaudeMCPError as exc:  # over a size limit
            context.note(error=error_kind(exc))
            return error_result(str(exc))
        try:
            async with calling(ctx, params.input_responses, params.request_state) as call:
                result = await spec.handler(args, call)
        except ClaudeMCPError as exc:
            context.note(error=error_kind(exc))
            logger.info("%s refused or failed: %s", spec.name, exc.kind)
            return error_result(str(exc), exc.structured)
        except Exception:
            context.note(error="internal")
            logger.exception("%s failed unexpectedly", spec.name)
            return error_result(f"{spec.name} failed because of an internal error; the server log has details.")
        if isinstance(result, types.InputRequiredResult):
            return result  # a question for the client; it calls again with the answer
        return tool_result(result)

    @asynccontextmanager
    async def lifespan(server: Server[Any]) -> AsyncIterator[dict[str, Any]]:
        async with tenancy:  # the store and warm processes close when the last connection ends
            yield {}

    tasks = TasksExtension(tools, calling, limits)
    server: Server[Any] = Server(
        "claude-mcp",
        lifespan=lifespan,
        version=__version__,
        instructions=INSTRUCTIONS,
        on_list_tools=list_tools,
        on_call_tool=observed(call_tool, tools),
        on_list_resources=resources.list_resources,
        on_list_resource_templates=resources.list_resource_templates,
        on_read_resource=resources.reader(calling),
    )
    # The extension applied as `MCPServer(extensions=[...])` applies it, on the low-level server.
    for method in tasks.methods():
        server.add_request_handler(method.method, method.params_type, method.handler)
    server.extensions[tasks.identifier] = tasks.settings()
    intercepted = compose_tool_call_handler([tasks], observed(call_tool, tools))
    server.add_request_handler("tools/call", types.CallToolRequestParams, intercepted)
    return server
