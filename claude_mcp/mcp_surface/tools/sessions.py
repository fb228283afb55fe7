"""The session tools: list, read, close and delete conversations."""

from __future__ import annotations

import mcp_types as types

from ...state.conversations import SessionTranscript
from ..arguments import GetSessionArgs, ListSessionsArgs, SessionArgs
from ..call import Call
from ..results import SessionChange, SessionList
from .spec import READS, ToolSpec


async def list_sessions(args: ListSessionsArgs, call: Call) -> SessionList:
    return SessionList(sessions=await call.bridge.list_sessions(limit=args.limit, offset=args.offset))


async def get_session(args: GetSessionArgs, call: Call) -> SessionTranscript:
    return await call.bridge.get_session(args.session_id, limit=args.limit, offset=args.offset)


async def delete_session(args: SessionArgs, call: Call) -> SessionChange:
    await call.bridge.delete_session(args.session_id)
    return SessionChange(session_id=args.session_id, changed=True)


async def close_session(args: SessionArgs, call: Call) -> SessionChange:
    return SessionChange(session_id=args.session_id, changed=await call.bridge.close_session(args.session_id))


TOOLS = [
    ToolSpec(
        name="list_sessions",
        description="Conversations on this server, most recent first: title or first prompt, working "
        "directory, last update, and whether a warm process keeps it fast to continue.",
        args=ListSessionsArgs,
        result=SessionList,
        handler=list_sessions,
        annotations=READS,
    ),
    ToolSpec(
        name="get_session",
        description="A page of one conversation's messages (oldest first), with the total count.",
        args=GetSessionArgs,
        result=SessionTranscript,
        handler=get_session,
        annotations=READS,
    ),
    ToolSpec(
        name="close_session",
        description="End a conversation's warm CLI process; the transcript stays and can be continued.",
        args=SessionArgs,
        result=SessionChange,
        handler=close_session,
        annotations=types.ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=False),
    ),
    ToolSpec(
        name="delete_session",
        description="Delete a conversation: its warm process is closed and its transcript removed.",
        args=SessionArgs,
        result=SessionChange,
        handler=delete_session,
        annotations=types.ToolAnnotations(read_only_hint=False, destructive_hint=True, open_world_hint=False),
    ),
]
