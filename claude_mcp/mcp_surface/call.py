"""One tool call as the handlers see it, and how to ask its client a question.

A question (a permission prompt) reaches the person at the client in one of two ways: as an
elicitation request sent during the call (handshake-era connections), or, where the server
cannot send requests (the 2026-07-28 era), as an `InputRequiredResult` that the client answers
by calling again (see `tools.running.in_rounds`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import mcp_types as types
from mcp.server.context import ServerRequestContext
from pydantic import BaseModel, ValidationError

from ..bridge.claude import ClaudeBridge
from ..bridge.permissions import ELICITATION_SCHEMA, Asker, PermissionAnswer, PermissionRequest

IDS = ("session_id", "job_id")
"""What a client needs to go on (continue the conversation, collect the job): in the text of every
result, for clients that show the model only text."""


def ids_line(result: BaseModel) -> str | None:
    """`(session_id: …; job_id: …)` for the ids a result carries, as an error's message ends."""
    found = [f"{name}: {value}" for name in IDS if isinstance(value := getattr(result, name, None), str)]
    return f"({'; '.join(found)})" if found else None


def tool_result(result: BaseModel) -> types.CallToolResult:
    """A tool's result model as its result: the answer text and, in a block of its own, its ids (or
    the JSON, which holds them), and the structure."""
    text = getattr(result, "result", None)
    if not isinstance(text, str):
        content = [types.TextContent(type="text", text=result.model_dump_json())]
    else:
        ids = ids_line(result)
        content = [types.TextContent(type="text", text=text)]
        content += [types.TextContent(type="text", text=ids)] if ids else []
    return types.CallToolResult(content=content, structured_content=result.model_dump(mode="json"))


def error_result(message: str, structured: BaseModel | None = None) -> types.CallToolResult:
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=message)],
        structured_content=structured.model_dump(mode="json") if structured is not None else None,
        is_error=True,
    )


def elicitor(call: Call) -> Asker | None:
    """Ask the person at this call's client, by elicitation, if the client can take one now."""
    session = call.ctx.session
    capabilities = session.client_capabilities
    if capabilities is None or capabilities.elicitation is None or not session.can_send_request:
        return None

    async def ask(request: PermissionRequest) -> PermissionAnswer:
        result = await session.elicit_form(
            f"Claude wants to: {request.description}", ELICITATION_SCHEMA, related_request_id=call.ctx.request_id
        )
        return answer_of(result)

    return ask


@dataclass(frozen=True, slots=True)
class Call:
    """One tool call: the MCP request context, the tenant making it, and that tenant's bridge.
    A retried call (2026-07-28 input rounds) also carries the client's answers and our state."""

    ctx: ServerRequestContext[Any, Any]
    owner: str
    bridge: ClaudeBridge
    input_responses: dict[str, Any] | None = None
    request_state: str | None = None


def asks_by_rounds(call: Call) -> bool:
    """A client that takes elicitations, on a connection where the server can't send requests
    (the 2026-07-28 era): questions go back as `InputRequiredResult`, answered by a retry."""
    session = call.ctx.session
    capabilities = session.client_capabilities
    return capabilities is not None and capabilities.elicitation is not None and not session.can_send_request


def answer_of(response: Any) -> PermissionAnswer:
    """The person's decision from an elicitation result (a decline or a cancel denies)."""
    if not isinstance(response, types.ElicitResult) or response.action != "accept" or not response.content:
        action = getattr(response, "action", "no answer")
        return PermissionAnswer(decision="deny", reason=f"The user chose {action}.")
    try:
        return PermissionAnswer.model_validate(response.content)
    except ValidationError:
        return PermissionAnswer(decision="deny", reason="The answer was not one of the offered choices.")
