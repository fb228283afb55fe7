"""`Transcripts`: claude-agent-sdk's own `SessionStore` contracts, and the server's on top of them."""

from __future__ import annotations

import anyio
from claude_agent_sdk import SessionKey, SessionStore
from claude_agent_sdk.testing import run_session_store_conformance

from ..store import Transcripts
from ._common import KEY, Contract, Names, entry, run_all


async def sdk_session_store_contracts_hold_with_every_optional_method(store: Transcripts) -> None:
    """claude-agent-sdk's own suite passes, none of its optional methods skipped (the server lists,
    deletes and forks transcripts through them)."""
    optional = ("list_sessions", "list_session_summaries", "delete", "list_subkeys")
    probe = type(store.transcripts(Names().tag))
    assert [name for name in optional if getattr(probe, name, None) is getattr(SessionStore, name, None)] == []
    await run_session_store_conformance(lambda: store.transcripts(Names().tag))


async def an_entry_whose_uuid_is_stored_is_ignored_and_entries_without_one_always_append(store: Transcripts) -> None:
    transcripts = store.transcripts(Names()("ns"))
    await transcripts.append(KEY, [entry(1, "a"), entry(2), entry(3, "a")])
    await transcripts.append(KEY, [entry(1, "a"), entry(2), entry(4, "b")])
    assert await transcripts.load(KEY) == [entry(1, "a"), entry(2), entry(2), entry(4, "b")]
    other: SessionKey = {"project_key": "proj", "session_id": "other"}
    await transcripts.append(other, [entry(1, "a")])
    assert await transcripts.load(other) == [entry(1, "a")]


async def entries_come_back_deep_equal_whatever_they_hold(store: Transcripts) -> None:
    transcripts = store.transcripts(Names()("ns"))
    odd = entry(1, "x", text='nul \u0000, emoji 🙂, quote " and ? and %s', nested={"a": [1, 2.5, None, True]})
    await transcripts.append(KEY, [odd, entry(2, "y", big=2**53, empty={})])
    assert await transcripts.load(KEY) == [odd, entry(2, "y", big=2**53, empty={})]


async def concurrent_appends_to_one_session_all_land_and_fold_into_one_summary(store: Transcripts) -> None:
    transcripts = store.transcripts(Names()("ns"))

    async def append(n: int) -> None:
        await transcripts.append(KEY, [entry(n, f"u{n}", timestamp=f"2024-01-01T00:00:{n:02d}.000Z")])

    async with anyio.create_task_group() as tg:
        for n in range(20):
            tg.start_soon(append, n)
    loaded = await transcripts.load(KEY)
    assert loaded is not None and sorted(e["n"] for e in loaded) == list(range(20))  # type: ignore[typeddict-item]
    [summary] = await transcripts.list_session_summaries("proj")
    [listed] = await transcripts.list_sessions("proj")
    assert summary["session_id"] == "sess" and summary["mtime"] == listed["mtime"]


async def a_namespace_sees_and_deletes_only_its_own_transcripts(store: Transcripts) -> None:
    n = Names()
    mine, theirs = store.transcripts(n("mine")), store.transcripts(n("theirs"))
    sub: SessionKey = {**KEY, "subpath": "subagents/agent-1"}
    await mine.append(KEY, [entry(1, "a")])
    await mine.append(sub, [entry(2, "b")])
    assert await theirs.load(KEY) is None
    assert await theirs.load(sub) is None
    assert await theirs.list_sessions("proj") == []
    assert await theirs.list_session_summaries("proj") == []
    assert await theirs.list_subkeys({"project_key": "proj", "session_id": "sess"}) == []
    await theirs.append(KEY, [entry(9, "a")])  # the same uuid in another namespace is another entry
    await theirs.delete(KEY)
    assert await mine.load(KEY) == [entry(1, "a")]
    assert await mine.load(sub) == [entry(2, "b")]
    assert [s["session_id"] for s in await mine.list_session_summaries("proj")] == ["sess"]


TRANSCRIPTS: list[Contract[Transcripts]] = [
    sdk_session_store_contracts_hold_with_every_optional_method,
    an_entry_whose_uuid_is_stored_is_ignored_and_entries_without_one_always_append,
    entries_come_back_deep_equal_whatever_they_hold,
    concurrent_appends_to_one_session_all_land_and_fold_into_one_summary,
    a_namespace_sees_and_deletes_only_its_own_transcripts,
]


async def run_transcripts_conformance(store: Transcripts) -> None:
    await run_all(store, TRANSCRIPTS)
