"""Reading, forking and deleting session transcripts, through claude-agent-sdk's own helpers.

The SDK's helpers find transcripts through the process environment (`CLAUDE_CONFIG_DIR`, or
`HOME/.claude`), while each server (and later each tenant) points its CLI at its own config
directory through `cli_env`. `config_scope` sets those variables around one synchronous SDK
call on the event loop thread, so the helpers read the same directory the CLI writes.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import claude_agent_sdk as sdk
from pydantic import BaseModel, Field

from ..errors import SessionNotFound

_SCOPED = ("CLAUDE_CONFIG_DIR", "HOME")


@contextmanager
def config_scope(cli_env: Mapping[str, str]) -> Iterator[None]:
    """Point the SDK's transcript helpers at the CLI's config directory for one sync call."""
    saved = {key: os.environ.get(key) for key in _SCOPED}
    try:
        for key in _SCOPED:
            if key in cli_env:
                os.environ[key] = cli_env[key]
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class SessionInfo(BaseModel):
    """One conversation, as `list_sessions` shows it."""

    session_id: str
    title: str = Field(description="Custom title, generated summary, or the first prompt.")
    first_prompt: str | None = None
    cwd: str | None = Field(None, description="The working directory the conversation ran in.")
    updated_at: str = Field(description="Last change (ISO 8601, UTC).")
    created_at: str | None = None
    live: bool = Field(False, description="A warm CLI process is open for it (a follow-up is fast).")


class TranscriptMessage(BaseModel):
    role: str
    uuid: str
    text: str = Field(description="The message's text blocks, joined.")
    content: Any = Field(description="The raw content blocks (text, tool_use, tool_result, …).")


class SessionTranscript(BaseModel):
    """A page of one conversation's messages, oldest first."""

    session_id: str
    messages: list[TranscriptMessage]
    offset: int
    total: int = Field(description="How many messages the conversation has in all.")


def _iso(ms: int | None) -> str | None:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat() if ms else None


def list_sessions(cli_env: Mapping[str, str], *, limit: int, offset: int, live: set[str]) -> list[SessionInfo]:
    with config_scope(cli_env):
        infos = sdk.list_sessions(limit=limit, offset=offset)
    return [
        SessionInfo(
            session_id=info.session_id,
            title=info.summary,
            first_prompt=info.first_prompt,
            cwd=info.cwd,
            updated_at=_iso(info.last_modified) or "",
            created_at=_iso(info.created_at),
            live=info.session_id in live,
        )
        for info in infos
    ]


def session_cwd(cli_env: Mapping[str, str], session_id: str) -> str | None:
    """The directory a conversation ran in; `SessionNotFound` if there is no such conversation."""
    with config_scope(cli_env):
        info = sdk.get_session_info(session_id)
    if info is None:
        raise SessionNotFound()
    return info.cwd


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(b.get("text", "") for b in content if isinstance(b, dict) and b.get("type") == "text")
    return ""


def read_session(cli_env: Mapping[str, str], session_id: str, *, limit: int, offset: int) -> SessionTranscript:
    session_cwd(cli_env, session_id)
    with config_scope(cli_env):
        messages = sdk.get_session_messages(session_id)
    page = messages[offset : offset + limit]
    return SessionTranscript(
        session_id=session_id,
        offset=offset,
        total=len(messages),
        messages=[
            TranscriptMessage(
                role=m.type,
                uuid=m.uuid,
                text=_text((m.message or {}).get("content")),
                content=(m.message or {}).get("content"),
            )
            for m in page
        ],
    )


def fork_session(cli_env: Mapping[str, str], session_id: str) -> str:
    """Copy a conversation into a new session id; the original is untouched."""
    session_cwd(cli_env, session_id)
    with config_scope(cli_env):
        return sdk.fork_session(session_id).session_id


def delete_session(cli_env: Mapping[str, str], session_id: str) -> None:
    session_cwd(cli_env, session_id)
    with config_scope(cli_env):
        sdk.delete_session(session_id)
