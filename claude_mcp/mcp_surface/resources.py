"""The resources: `claude://sessions` (the conversation list), `claude://sessions/{id}` (one
conversation's messages) and `claude://usage` (the caller's usage and quotas), all JSON."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.shared.exceptions import MCPError
from pydantic import BaseModel, ValidationError

from ..errors import ClaudeMCPError
from .arguments import SessionArgs
from .call import Call
from .results import SessionList
from .tools import usage

SESSIONS_URI = "claude://sessions"
USAGE_URI = "claude://usage"

Context = ServerRequestContext[Any, Any]


async def list_resources(ctx: Context, params: types.PaginatedRequestParams | None) -> types.ListResourcesResult:
    return types.ListResourcesResult(
        resources=[
            types.Resource(
                uri=SESSIONS_URI,
                name="sessions",
                description="Conversations on this server, most recent first (JSON).",
                mime_type="application/json",
            ),
            types.Resource(
                uri=USAGE_URI,
                name="usage",
                description="Your usage by day and model, your quotas and what is left (JSON, as the `usage` tool).",
                mime_type="application/json",
            ),
        ]
    )


async def list_resource_templates(
    ctx: Context, params: types.PaginatedRequestParams | None
) -> types.ListResourceTemplatesResult:
    return types.ListResourceTemplatesResult(
        resource_templates=[
            types.ResourceTemplate(
                uri_template=SESSIONS_URI + "/{session_id}",
                name="session",
                description="One conversation's messages (JSON, the first 500).",
                mime_type="application/json",
            )
        ]
    )


def reader(
    calling: Callable[[Context], AbstractAsyncContextManager[Call]],
) -> Callable[[Context, types.ReadResourceRequestParams], Awaitable[types.ReadResourceResult]]:
    """`resources/read`, answered from the bridge of the tenant (or caller) making the request."""

    async def read_resource(ctx: Context, params: types.ReadResourceRequestParams) -> types.ReadResourceResult:
        uri = str(params.uri)
        try:
            if uri != USAGE_URI and uri != SESSIONS_URI and not uri.startswith(SESSIONS_URI + "/"):
                raise MCPError(code=types.INVALID_PARAMS, message=f"Unknown resource {uri}; see resources/list.")
            async with calling(ctx) as call:
                if uri == USAGE_URI:
                    body: BaseModel = await usage.report(call.bridge)
                elif uri == SESSIONS_URI:
                    body = SessionList(sessions=await call.bridge.list_sessions(limit=200))
                else:
                    args = SessionArgs(session_id=uri.removeprefix(SESSIONS_URI + "/"))
                    body = await call.bridge.get_session(args.session_id, limit=500)
        except ValidationError:
            raise MCPError(code=types.INVALID_PARAMS, message=f"{uri}: a session id is a UUID") from None
        except ClaudeMCPError as exc:
            raise MCPError(code=types.INVALID_PARAMS, message=str(exc)) from None
        return types.ReadResourceResult(
            contents=[types.TextResourceContents(uri=uri, text=body.model_dump_json(), mime_type="application/json")]
        )

    return read_resource
