"""Conversations as the server keeps them: one row each in the store's session index (owner,
title, first prompt, cwd, times, fork origin, the replica holding it warm, sticky settings),
and transcripts that claude-agent-sdk mirrors into the store on every turn and reads back with
its own store helpers. Every replica sees the same conversations; a namespace sees only its own.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any, Protocol, cast

import anyio
import claude_agent_sdk as sdk
from claude_agent_sdk import SessionKey, SessionStore, SessionStoreEntry
from pydantic import BaseModel, Field

from ..config.call_settings import CallSettings
from ..config.types import JsonObject
from ..errors import SessionNotFound
from .store import SessionIndex, SessionRecord, Transcripts


class SessionInfo(BaseModel):
    """One conversation, as `list_sessions` shows it."""

    session_id: str
    title: str = Field(description="Custom title, or the first prompt.")
    first_prompt: str | None = None
    cwd: str | None = Field(None, description="The working directory the conversation ran in.")
    updated_at: str = Field(description="Last change (ISO 8601, UTC).")
    created_at: str | None = None
    forked_from: str | None = Field(None, description="The conversation it was branched from, if any.")
    live: bool = Field(False, description="A warm CLI process is open for it (a follow-up is fast).")

    @classmethod
    def of(cls, record: SessionRecord) -> SessionInfo:
        return cls(
            session_id=record.session_id,
            title=record.title or record.first_prompt or "",
            first_prompt=record.first_prompt,
            cwd=record.cwd,
            updated_at=_iso(record.updated_at),
            created_at=_iso(record.created_at),
            forked_from=record.forked_from,
            live=record.warm_replica is not None,
        )


class TranscriptMessage(BaseModel):
    role: str
    uuid: str
    text: str = Field(description="The message's text blocks, joined.")
    content: str | list[JsonObject] | None = Field(
        description="The raw content: a string, or the content blocks (text, tool_use, tool_result, …)."
    )


class SessionTranscript(BaseModel):
    """A page of one conversation's messages, oldest first."""

    session_id: str
    messages: list[TranscriptMessage]
    offset: int
    total: int = Field(description="How many messages the conversation has in all.")


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, tz=UTC).isoformat()


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(b.get("text", "") for b in content if isinstance(b, dict) and b.get("type") == "text")
    return ""


FIRST_PROMPT_CHARS = 500


async def _project_key(cwd: str | None) -> str:
    """The SDK's key for a working directory (it resolves the path, so off the loop)."""
    return await anyio.to_thread.run_sync(sdk.project_key_for_directory, cwd)


class _Loaded:
    """A `SessionStore` that holds one transcript already loaded (for the SDK's chain builder)."""

    def __init__(self, entries: list[SessionStoreEntry]) -> None:
        self._entries = entries

    async def append(self, key: SessionKey, entries: list[SessionStoreEntry]) -> None:
        raise NotImplementedError("read-only")

    async def load(self, key: SessionKey) -> list[SessionStoreEntry] | None:
        return self._entries


def _messages(entries: list[SessionStoreEntry], session_id: str, cwd: str | None) -> list[sdk.SessionMessage]:
    """The conversation's messages, as the SDK reads them from a store (run in a worker thread)."""

    async def build() -> list[sdk.SessionMessage]:
        return await sdk.get_session_messages_from_store(
            cast(SessionStore, _Loaded(entries)), session_id, directory=cwd
        )

    return anyio.run(build)


class ConversationStore(SessionIndex, Transcripts, Protocol):
    """The roles `Conversations` asks of the store: the session index, and the transcripts."""


class Conversations:
    """One namespace's conversations in the store."""

    def __init__(self, store: ConversationStore, namespace: str) -> None:
        self.store = store
        self.namespace = namespace
        self.transcripts = store.transcripts(namespace)
        """The SDK `SessionStore` the CLI's transcripts are mirrored to."""

    async def find(self, session_id: str) -> SessionRecord:
        """The conversation's record; `SessionNotFound` if this namespace has none by that id."""
        record = await self.store.get_session(self.namespace, session_id)
        if record is None:
            raise SessionNotFound()
        return record

    async def record_turn(
        self,
        session_id: str,
        *,
        cwd: str,
        prompt: str,
        settings: CallSettings,
        previous: SessionRecord | None,
        forked_from: str | None = None,
        warm_replica: str | None = None,
    ) -> None:
        """Index a conversation after a turn: a new one, a continued one (`previous`), or a fork
        (`forked_from`, `previous` its origin)."""
        now = time.time()
        continued = previous if previous is not None and previous.session_id == session_id else None
        await self.store.put_session(
            SessionRecord(
                namespace=self.namespace,
                session_id=session_id,
                cwd=cwd,
                title=previous.title if previous is not None else None,
                first_prompt=previous.first_prompt if previous is not None else prompt[:FIRST_PROMPT_CHARS],
                created_at=continued.created_at if continued is not None else now,
                updated_at=now,
                forked_from=continued.forked_from if continued is not None else forked_from,
                warm_replica=warm_replica,
                settings=settings.model_dump(mode="json", exclude_unset=True),
            )
        )

    async def page(self, *, limit: int, offset: int) -> list[SessionInfo]:
        """A page of conversations, most recently updated first (from the index: its cost does
        not grow with the number of conversations)."""
        records = await self.store.list_sessions(self.namespace, limit=limit, offset=offset)
        return [SessionInfo.of(record) for record in records]

    async def read(self, record: SessionRecord, *, limit: int, offset: int) -> SessionTranscript:
        """A page of a conversation's messages (`record`: as `find` returned it)."""
        session_id = record.session_id
        key: SessionKey = {"project_key": await _project_key(record.cwd), "session_id": session_id}
        entries = await self.transcripts.load(key) or []
        # Building the message chain of a long transcript is CPU work: keep it off the event loop.
        messages = await anyio.to_thread.run_sync(_messages, entries, session_id, record.cwd)
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

    async def fork(self, origin: SessionRecord, settings: CallSettings) -> str:
        """Copy a conversation into a new session id (the original untouched); `settings` stick
        to the branch."""
        session_id = origin.session_id
        forked = await sdk.fork_session_via_store(self.transcripts, session_id, directory=origin.cwd)
        now = time.time()
        await self.store.put_session(
            origin.model_copy(
                update={
                    "session_id": forked.session_id,
                    "created_at": now,
                    "updated_at": now,
                    "forked_from": session_id,
                    "warm_replica": None,
                    "settings": settings.model_dump(mode="json", exclude_unset=True),
                }
            )
        )
        return forked.session_id

    async def delete(self, record: SessionRecord) -> None:
        await sdk.delete_session_via_store(self.transcripts, record.session_id, directory=record.cwd)
        await self.store.delete_session(self.namespace, record.session_id)

    async def discard(self, session_id: str, cwd: str) -> None:
        """Forget a conversation whose first turn is not to be kept: its transcript and its index entry."""
        await sdk.delete_session_via_store(self.transcripts, session_id, directory=cwd)
        await self.store.delete_session(self.namespace, session_id)

    async def set_warm(self, session_id: str, replica: str | None) -> None:
        await self.store.set_warm(self.namespace, session_id, replica)


def sticky_settings(record: SessionRecord) -> CallSettings:
    """The settings a conversation's earlier calls set explicitly."""
    return CallSettings.model_validate(record.settings)
