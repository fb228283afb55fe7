"""Conversations an earlier version left on local disk, brought into the store once.

Before the store, transcripts lived only in the CLI's config directory
(`projects/<project>/<session>.jsonl`) and sticky settings in one JSON file per session. On
first start with a store, each local transcript (with its sub-agent transcripts) is appended
to the store under the same key the SDK's live mirror uses, and indexed; a marker file then
records that this config directory was imported. Re-importing is harmless: entries are keyed
by their uuid.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any, cast

import anyio
from claude_agent_sdk import SessionKey, SessionStoreEntry
from pydantic import ValidationError

from ..config.call_settings import CallSettings
from ..config.types import SESSION_ID_PATTERN
from .conversations import FIRST_PROMPT_CHARS, Conversations
from .store import SessionRecord

logger = logging.getLogger(__name__)

MARKER = "imported-transcripts"
BATCH = 500


def _entries(path: Path) -> list[SessionStoreEntry]:
    entries = []
    for line in path.read_text(errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(entry, dict) and isinstance(entry.get("type"), str):
            entries.append(cast(SessionStoreEntry, entry))
    return entries


def _first_prompt(entries: list[SessionStoreEntry]) -> str | None:
    for entry in entries:
        raw: dict[str, Any] = dict(entry)
        message = raw.get("message")
        if raw.get("type") != "user" or raw.get("isMeta") or not isinstance(message, dict):
            continue
        content = message.get("content")
        if isinstance(content, list):
            texts = [b.get("text", "") for b in content if isinstance(b, dict) and b.get("type") == "text"]
            content = next((t for t in reversed(texts) if not t.startswith("<")), None)
        if isinstance(content, str) and content.strip():
            return content[:FIRST_PROMPT_CHARS]
    return None


def _local_sessions(config_dir: Path) -> list[Path]:
    projects = config_dir / "projects"
    if not projects.is_dir():
        return []
    return sorted(p for p in projects.glob("*/*.jsonl") if SESSION_ID_PATTERN.match(p.stem))


def _settings(settings_dir: Path, session_id: str) -> dict[str, Any]:
    try:
        settings = CallSettings.model_validate_json((settings_dir / f"{session_id}.json").read_text())
    except (OSError, ValidationError):
        return {}
    return settings.model_dump(mode="json", exclude_unset=True)


async def _import_file(conversations: Conversations, path: Path, state_dir: Path) -> bool:
    """Append one local transcript (and its sub-agents') to the store and index it."""
    session_id = path.stem
    if await conversations.store.get_session(conversations.namespace, session_id) is not None:
        return False
    entries = await anyio.to_thread.run_sync(_entries, path)
    if not entries:
        return False
    key: SessionKey = {"project_key": path.parent.name, "session_id": session_id}
    for start in range(0, len(entries), BATCH):
        await conversations.transcripts.append(key, entries[start : start + BATCH])
    subagents = await anyio.to_thread.run_sync(lambda: sorted(path.with_suffix("").glob("subagents/**/*.jsonl")))
    for sub in subagents:
        subpath = "/".join(sub.relative_to(path.with_suffix("")).with_suffix("").parts)
        sub_entries = await anyio.to_thread.run_sync(_entries, sub)
        if sub_entries:
            await conversations.transcripts.append({**key, "subpath": subpath}, sub_entries)
    stat = await anyio.Path(path).stat()
    cwd = next((str(e.get("cwd")) for e in entries if isinstance(e.get("cwd"), str)), None)
    await conversations.store.put_session(
        SessionRecord(
            namespace=conversations.namespace,
            session_id=session_id,
            cwd=cwd,
            first_prompt=_first_prompt(entries),
            created_at=min(stat.st_ctime, stat.st_mtime),
            updated_at=stat.st_mtime,
            settings=await anyio.to_thread.run_sync(_settings, state_dir / "sessions", session_id),
        )
    )
    return True


async def import_local(conversations: Conversations, config_dir: Path, state_dir: Path) -> int:
    """Import this config directory's transcripts into the store, once. How many were imported."""
    marker = state_dir / MARKER
    if await anyio.Path(marker).exists():
        return 0
    paths = await anyio.to_thread.run_sync(_local_sessions, config_dir)
    imported = 0
    for path in paths:
        imported += await _import_file(conversations, path, state_dir)
    await anyio.Path(state_dir).mkdir(parents=True, exist_ok=True, mode=0o700)
    await anyio.Path(marker).write_text(f"{time.time()}\n")
    if imported:
        logger.info("imported %d conversation(s) from %s into the store", imported, config_dir)
    return imported


async def import_one(conversations: Conversations, config_dir: Path, state_dir: Path, session_id: str) -> bool:
    """Import one conversation from local disk, if it is there and not yet in the store (a
    follow-up that arrives before the start-up import has reached it). Once that import has
    finished, the store alone says which conversations exist."""
    if not SESSION_ID_PATTERN.match(session_id) or await anyio.Path(state_dir / MARKER).exists():
        return False
    paths = await anyio.to_thread.run_sync(lambda: sorted((config_dir / "projects").glob(f"*/{session_id}.jsonl")))
    if not paths:
        return False
    return await _import_file(conversations, paths[0], state_dir)


async def remove_local(config_dir: Path, session_id: str) -> None:
    """Delete the CLI's local copy of a conversation (its transcript and sub-agent transcripts)."""
    if not SESSION_ID_PATTERN.match(session_id):
        return

    def remove() -> None:
        for path in (config_dir / "projects").glob(f"*/{session_id}.jsonl"):
            path.unlink(missing_ok=True)
            shutil.rmtree(path.with_suffix(""), ignore_errors=True)

    await anyio.to_thread.run_sync(remove)
