"""The state store, against both backends: SQLite on a temporary file, PostgreSQL on a fresh
database of a throwaway server (see tests/pg_server.py)."""

from __future__ import annotations

import stat
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import psycopg
import pytest
from claude_agent_sdk import SessionKey, SessionStore
from claude_agent_sdk.testing import run_session_store_conformance

from claude_mcp.state._sql import SCHEMA_VERSION
from claude_mcp.state.postgres import PostgresStore
from claude_mcp.state.sqlite import SqliteStore
from claude_mcp.state.store import ChainAccount, JobRecord, SessionRecord, Store, UsageRecord, UsageTotals

pytestmark = pytest.mark.anyio

KEY: SessionKey = {"project_key": "proj", "session_id": "sess"}


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "sqlite":
        opened: Store = SqliteStore(tmp_path / "state" / "state.db")
    else:
        opened = PostgresStore(request.getfixturevalue("postgres_database"))
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


def fresh_namespace(store: Store) -> SessionStore:
    return store.transcripts(uuid.uuid4().hex)


def entry(n: int, uuid: str | None = None, **fields: Any) -> Any:
    return {"type": "user", "n": n, **({"uuid": uuid} if uuid else {}), **fields}


def session(namespace: str, session_id: str, updated_at: float = 100.0, **fields: Any) -> SessionRecord:
    return SessionRecord(namespace=namespace, session_id=session_id, created_at=1.0, updated_at=updated_at, **fields)


def job(namespace: str, job_id: str, created_at: float = 100.0, **fields: Any) -> JobRecord:
    return JobRecord(namespace=namespace, job_id=job_id, created_at=created_at, updated_at=created_at, **fields)


def asking(namespace: str, job_id: str, permission_id: str) -> JobRecord:
    question = {"permission_id": permission_id, "tool": "Bash", "description": "run ls", "input": {"command": "ls"}}
    return job(namespace, job_id, pending_permission=question)


# Transcripts.


async def test_the_sdk_conformance_suite_passes_with_every_optional_method(store: Store) -> None:
    optional = ("list_sessions", "list_session_summaries", "delete", "list_subkeys")
    assert all(name in vars(type(fresh_namespace(store))) for name in optional)  # else the suite skips them
    await run_session_store_conformance(lambda: fresh_namespace(store))


async def test_an_entry_whose_uuid_is_stored_is_ignored_and_entries_without_one_always_append(store: Store) -> None:
    transcripts = fresh_namespace(store)
    await transcripts.append(KEY, [entry(1, "a"), entry(2), entry(3, "a")])
    await transcripts.append(KEY, [entry(1, "a"), entry(2), entry(4, "b")])
    assert await transcripts.load(KEY) == [entry(1, "a"), entry(2), entry(2), entry(4, "b")]
    other: SessionKey = {"project_key": "proj", "session_id": "other"}
    await transcripts.append(other, [entry(1, "a")])
    assert await transcripts.load(other) == [entry(1, "a")]


async def test_entries_come_back_deep_equal_whatever_they_hold(store: Store) -> None:
    transcripts = fresh_namespace(store)
    odd = entry(1, "x", text='nul \u0000, emoji 🙂, quote " and ? and %s', nested={"a": [1, 2.5, None, True]})
    await transcripts.append(KEY, [odd, entry(2, "y", big=2**53, empty={})])
    assert await transcripts.load(KEY) == [odd, entry(2, "y", big=2**53, empty={})]


async def test_concurrent_appends_to_one_session_all_land_and_fold_into_one_summary(store: Store) -> None:
    transcripts = fresh_namespace(store)

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


async def test_a_namespace_sees_and_deletes_only_its_own_transcripts(store: Store) -> None:
    mine, theirs = fresh_namespace(store), fresh_namespace(store)
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


# The session index.


async def test_a_session_is_put_read_replaced_and_deleted(store: Store) -> None:
    record = session("ns", "s1", cwd="/w", title="T", first_prompt="hi", forked_from="s0", settings={"model": "x"})
    await store.put_session(record)
    assert await store.get_session("ns", "s1") == record
    replaced = record.model_copy(update={"title": "T2", "updated_at": 200.0, "settings": {"model": "y", "n": [1]}})
    await store.put_session(replaced)
    assert await store.get_session("ns", "s1") == replaced
    assert await store.delete_session("ns", "s1") is True
    assert await store.delete_session("ns", "s1") is False
    assert await store.get_session("ns", "s1") is None


async def test_sessions_are_listed_most_recently_updated_first_a_page_at_a_time(store: Store) -> None:
    for i in range(7):
        await store.put_session(session("ns", f"s{i}", updated_at=float((i * 3) % 7)))
    await store.put_session(session("other", "s9", updated_at=99.0))
    pages = [await store.list_sessions("ns", limit=3, offset=offset) for offset in (0, 3, 6, 9)]
    updated = [[r.updated_at for r in page] for page in pages]
    assert updated == [[6.0, 5.0, 4.0], [3.0, 2.0, 1.0], [0.0], []]
    assert await store.count_sessions("ns") == 7
    assert await store.count_sessions("nobody") == 0


async def test_set_warm_records_which_replica_holds_a_session(store: Store) -> None:
    await store.put_session(session("ns", "s1", updated_at=5.0))
    await store.set_warm("ns", "s1", "replica-a")
    warm = await store.get_session("ns", "s1")
    assert warm is not None and warm.warm_replica == "replica-a" and warm.updated_at == 5.0
    await store.set_warm("other", "s1", "replica-b")
    await store.set_warm("ns", "s1", None)
    cold = await store.get_session("ns", "s1")
    assert cold is not None and cold.warm_replica is None


async def test_a_namespace_sees_and_deletes_only_its_own_sessions(store: Store) -> None:
    await store.put_session(session("a", "s1"))
    await store.put_session(session("b", "s1", title="b's"))
    assert await store.delete_session("c", "s1") is False
    assert await store.get_session("c", "s1") is None
    assert await store.list_sessions("c", limit=10, offset=0) == []
    b = await store.get_session("b", "s1")
    assert b is not None and b.title == "b's"
    assert await store.delete_session("a", "s1") is True
    assert await store.get_session("b", "s1") == b


# Jobs.


async def test_jobs_are_saved_read_listed_newest_first_and_counted(store: Store) -> None:
    full = job(
        "ns",
        "j1",
        created_at=1.5,
        status="completed",
        agent="reviewer",
        session_id="s1",
        finished_at=9.25,
        result={"text": "done", "cost": 0.01},
        error=None,
        progress=["read a", "wrote b"],
        text="all done",
        replica="r1",
        lease_expires_at=30.0,
    )
    await store.save_job(full)
    await store.save_job(job("ns", "j2", created_at=3.0))
    await store.save_job(job("ns", "j3", created_at=2.0))
    await store.save_job(job("other", "j4", created_at=4.0))
    assert await store.get_job("ns", "j1") == full
    assert [j.job_id for j in await store.list_jobs("ns")] == ["j2", "j3", "j1"]
    assert [j.job_id for j in await store.list_jobs("ns", limit=2)] == ["j2", "j3"]
    assert await store.count_jobs("ns") == 3
    updated = full.model_copy(update={"text": "more", "progress": ["x"], "updated_at": 10.0})
    await store.save_job(updated)
    assert await store.get_job("ns", "j1") == updated
    refused = updated.model_copy(
        update={"status": "failed", "error": "no", "error_kind": "api_error", "error_status": 429}
    )
    await store.save_job(refused)
    assert await store.get_job("ns", "j1") == refused


async def test_saving_a_job_keeps_a_requested_cancellation(store: Store) -> None:
    await store.save_job(job("ns", "j1"))
    assert await store.cancel_requested(["j1"]) == []
    assert await store.request_cancel("ns", "j1") is True
    await store.save_job(job("ns", "j1", text="still going"))
    saved = await store.get_job("ns", "j1")
    assert saved is not None and saved.cancel_requested and saved.text == "still going"
    await store.save_job(job("ns", "j2"))
    assert await store.cancel_requested(["j1", "j2", "nope"]) == ["j1"]
    assert await store.cancel_requested([]) == []
    assert await store.request_cancel("ns", "nope") is False


async def test_a_permission_answer_is_accepted_only_for_the_pending_question(store: Store) -> None:
    await store.save_job(job("ns", "quiet"))
    assert await store.answer_permission("ns", "quiet", "p1", {"decision": "deny"}) is False
    await store.save_job(asking("ns", "j1", "p1"))
    assert await store.answer_permission("ns", "j1", "p0", {"decision": "deny"}) is False
    assert await store.answer_permission("ns", "j1", "p1", {"decision": "allow_once"}) is True
    assert await store.take_permission_answer("j1", "p0") is None
    assert await store.take_permission_answer("j1", "p1") == {"decision": "allow_once"}
    assert await store.take_permission_answer("j1", "p1") is None


async def test_a_permission_answer_is_taken_once_when_two_takers_race(store: Store) -> None:
    await store.save_job(asking("ns", "j1", "p1"))
    await store.answer_permission("ns", "j1", "p1", {"decision": "deny"})
    taken: list[dict[str, Any] | None] = []

    async def take() -> None:
        taken.append(await store.take_permission_answer("j1", "p1"))

    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(take)
    assert sorted(taken, key=lambda answer: answer is None) == [{"decision": "deny"}, None, None, None, None]


async def test_saving_a_job_keeps_an_answer_not_yet_taken(store: Store) -> None:
    await store.save_job(asking("ns", "j1", "p1"))
    await store.answer_permission("ns", "j1", "p1", {"decision": "allow_session", "reason": None})
    await store.save_job(asking("ns", "j1", "p1").model_copy(update={"text": "waiting"}))
    assert await store.take_permission_answer("j1", "p1") == {"decision": "allow_session", "reason": None}


async def test_a_namespace_cannot_see_cancel_answer_or_overwrite_another_namespaces_jobs(store: Store) -> None:
    await store.save_job(asking("a", "j1", "p1"))
    assert await store.get_job("b", "j1") is None
    assert await store.list_jobs("b") == []
    assert await store.count_jobs("b") == 0
    assert await store.request_cancel("b", "j1") is False
    assert await store.answer_permission("b", "j1", "p1", {"decision": "allow_once"}) is False
    with pytest.raises(ValueError, match="another namespace"):
        await store.save_job(job("b", "j1", text="hijacked"))
    mine = await store.get_job("a", "j1")
    assert mine is not None and not mine.cancel_requested and mine.text == ""
    assert await store.take_permission_answer("j1", "p1") is None


async def test_renewing_leases_extends_only_this_replicas_running_jobs(store: Store) -> None:
    await store.save_job(job("ns", "mine", replica="r1", lease_expires_at=10.0))
    await store.save_job(job("ns", "theirs", replica="r2", lease_expires_at=10.0))
    await store.save_job(job("ns", "done", replica="r1", lease_expires_at=10.0, status="completed"))
    await store.save_job(job("ns", "pinned", status="queued", replica="r1", lease_expires_at=10.0))
    assert sorted(await store.renew_leases("r1", ["mine", "theirs", "done", "pinned"], 50.0)) == ["mine", "pinned"]
    assert await store.renew_leases("r1", [], 99.0) == []
    leases = {j.job_id: j.lease_expires_at for j in await store.list_jobs("ns")}
    assert leases == {"mine": 50.0, "theirs": 10.0, "done": 10.0, "pinned": 50.0}


# The queue.


def queued(namespace: str, job_id: str, created_at: float, **fields: Any) -> JobRecord:
    return job(namespace, job_id, created_at, status="queued", request={"prompt": job_id}, **fields)


async def test_queued_jobs_are_claimed_oldest_first_up_to_the_limit_and_only_once(store: Store) -> None:
    for n in range(5):
        await store.save_job(queued("ns", f"j{n}", 100.0 + n))
    await store.save_job(queued("other", "theirs", 50.0))
    first = await store.claim_jobs("ns", "r1", 2, now=200.0, lease_until=230.0)
    assert [(j.job_id, j.status, j.replica, j.lease_expires_at) for j in first] == [
        ("j0", "running", "r1", 230.0),
        ("j1", "running", "r1", 230.0),
    ]
    assert first[0].request == {"prompt": "j0"}
    second = await store.claim_jobs("ns", "r2", 10, now=201.0, lease_until=231.0)
    assert [j.job_id for j in second] == ["j2", "j3", "j4"]
    assert await store.claim_jobs("ns", "r1", 10, now=202.0, lease_until=232.0) == []
    assert await store.claim_jobs("ns", "r1", 0, now=202.0, lease_until=232.0) == []
    assert [j.job_id for j in await store.claim_jobs("other", "r2", 1, now=203.0, lease_until=233.0)] == ["theirs"]


async def test_a_claim_can_name_its_job_and_a_pinned_job_goes_only_to_its_replica(store: Store) -> None:
    await store.save_job(queued("ns", "old", 100.0))
    await store.save_job(queued("ns", "named", 101.0))
    await store.save_job(queued("ns", "pinned", 99.0, replica="r1", lease_expires_at=500.0))
    assert [j.job_id for j in await store.claim_jobs("ns", "r2", 5, now=1.0, lease_until=2.0, job_id="named")] == [
        "named"
    ]
    assert [j.job_id for j in await store.claim_jobs("ns", "r2", 5, now=1.0, lease_until=2.0)] == ["old"]
    assert [j.job_id for j in await store.claim_jobs("ns", "r1", 5, now=1.0, lease_until=2.0)] == ["pinned"]


async def test_replicas_claiming_at_once_never_claim_the_same_job(store: Store) -> None:
    for n in range(40):
        await store.save_job(queued("ns", f"j{n:02}", 100.0 + n))
    claimed: list[str] = []

    async def claimer(replica: str) -> None:
        while batch := await store.claim_jobs("ns", replica, 3, now=1.0, lease_until=2.0):
            claimed.extend(j.job_id for j in batch)

    async with anyio.create_task_group() as group:
        for replica in ("r1", "r2", "r3", "r4"):
            group.start_soon(claimer, replica)
    assert sorted(claimed) == [f"j{n:02}" for n in range(40)]


async def test_a_queued_job_is_cancelled_in_place_and_then_never_claimed(store: Store) -> None:
    await store.save_job(queued("ns", "q", 100.0))
    await store.save_job(job("ns", "r", status="running", replica="r1"))
    assert await store.cancel_queued("other", "q", 5.0, "no") is False
    assert await store.cancel_queued("ns", "r", 5.0, "no") is False
    assert await store.cancel_queued("ns", "q", 5.0, "cancelled by you") is True
    cancelled = await store.get_job("ns", "q")
    assert cancelled is not None and (cancelled.status, cancelled.error, cancelled.finished_at) == (
        "cancelled",
        "cancelled by you",
        5.0,
    )
    assert await store.claim_jobs("ns", "r1", 5, now=6.0, lease_until=7.0) == []


async def test_a_pinned_queued_job_whose_replica_died_is_failed_but_an_open_one_waits(store: Store) -> None:
    await store.save_job(queued("ns", "pinned", 100.0, replica="r1", lease_expires_at=10.0))
    await store.save_job(queued("ns", "open", 100.0))
    assert [j.job_id for j in await store.fail_expired_jobs(20.0, "its replica stopped")] == ["pinned"]
    statuses = {j.job_id: j.status for j in await store.list_jobs("ns")}
    assert statuses == {"pinned": "failed", "open": "queued"}


async def test_running_jobs_whose_lease_ran_out_are_failed_with_the_message(store: Store) -> None:
    await store.save_job(asking("ns", "stale", "p1").model_copy(update={"replica": "r1", "lease_expires_at": 10.0}))
    await store.save_job(job("other", "stale2", created_at=200.0, replica="r1", lease_expires_at=5.0))
    await store.save_job(job("ns", "alive", replica="r2", lease_expires_at=30.0))
    await store.save_job(job("ns", "ended", status="completed", lease_expires_at=5.0, finished_at=6.0))
    failed = await store.fail_expired_jobs(20.0, "its replica stopped")
    assert [(j.job_id, j.status, j.error, j.finished_at) for j in failed] == [
        ("stale", "failed", "its replica stopped", 20.0),
        ("stale2", "failed", "its replica stopped", 20.0),
    ]
    assert failed[0].pending_permission is None and failed[0] == await store.get_job("ns", "stale")
    statuses = {j.job_id: j.status for j in await store.list_jobs("ns")}
    assert statuses == {"stale": "failed", "alive": "running", "ended": "completed"}
    assert await store.fail_expired_jobs(20.0, "again") == []


async def test_jobs_that_finished_before_the_cutoff_are_deleted(store: Store) -> None:
    await store.save_job(job("ns", "old", status="completed", finished_at=10.0))
    await store.save_job(job("other", "old2", status="cancelled", finished_at=11.0))
    await store.save_job(job("ns", "recent", status="failed", finished_at=30.0))
    await store.save_job(job("ns", "running"))
    await store.save_job(job("ns", "queued", status="queued"))
    assert await store.expire_jobs(20.0) == 2
    assert sorted(j.job_id for j in await store.list_jobs("ns")) == ["queued", "recent", "running"]
    assert await store.expire_jobs(20.0) == 0


# Locks.


async def test_a_held_lock_is_refused_to_another_holder_until_it_expires(store: Store) -> None:
    assert await store.try_lock("conv", "a", until=10.0, now=0.0) is True
    assert await store.try_lock("conv", "b", until=20.0, now=5.0) is False
    assert await store.try_lock("other", "b", until=20.0, now=5.0) is True
    assert await store.try_lock("conv", "b", until=30.0, now=11.0) is True
    assert await store.try_lock("conv", "a", until=40.0, now=12.0) is False


async def test_the_holder_can_take_its_lock_again_to_extend_it(store: Store) -> None:
    assert await store.try_lock("conv", "a", until=10.0, now=0.0) is True
    assert await store.try_lock("conv", "a", until=20.0, now=5.0) is True
    assert await store.try_lock("conv", "b", until=30.0, now=15.0) is False
    assert await store.try_lock("conv", "b", until=30.0, now=21.0) is True


async def test_only_the_holder_can_unlock(store: Store) -> None:
    assert await store.try_lock("conv", "a", until=10.0, now=0.0) is True
    await store.unlock("conv", "b")
    assert await store.try_lock("conv", "b", until=20.0, now=1.0) is False
    await store.unlock("conv", "a")
    assert await store.try_lock("conv", "b", until=20.0, now=1.0) is True


# Opening.


async def test_a_reopened_sqlite_store_keeps_everything_in_a_private_file(tmp_path: Path) -> None:
    path = tmp_path / "state" / "state.db"
    first = SqliteStore(path)
    await first.open()
    await first.transcripts("ns").append(KEY, [entry(1, "a")])
    await first.put_session(session("ns", "s1"))
    await first.save_job(job("ns", "j1"))
    await first.request_cancel("ns", "j1")
    await first.try_lock("conv", "a", until=10.0, now=0.0)
    await first.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700

    again = SqliteStore(path)
    await again.open()
    try:
        assert await again.transcripts("ns").load(KEY) == [entry(1, "a")]
        assert await again.get_session("ns", "s1") == session("ns", "s1")
        assert await again.cancel_requested(["j1"]) == ["j1"]
        assert await again.try_lock("conv", "b", until=20.0, now=5.0) is False
    finally:
        await again.close()


async def test_two_postgres_stores_opening_at_once_migrate_once_and_both_work(request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue("postgres_database")
    first, second = PostgresStore(url), PostgresStore(url)
    async with anyio.create_task_group() as tg:
        tg.start_soon(first.open)
        tg.start_soon(second.open)
    try:
        await first.put_session(session("ns", "s1"))
        assert await second.get_session("ns", "s1") == session("ns", "s1")
        await second.transcripts("ns").append(KEY, [entry(1, "a")])
        assert await first.transcripts("ns").load(KEY) == [entry(1, "a")]
    finally:
        await first.close()
        await second.close()
    with psycopg.connect(url) as conn:
        applied = conn.execute("SELECT version FROM schema_version ORDER BY version").fetchall()
        assert applied == [(version,) for version in range(1, SCHEMA_VERSION + 1)]  # each once


async def test_a_store_that_is_not_open_says_so(tmp_path: Path) -> None:
    for closed in (SqliteStore(tmp_path / "state.db"), PostgresStore("postgresql://unused")):
        with pytest.raises(RuntimeError, match="not open"):
            await closed.count_jobs("ns")


async def test_a_history_digest_names_its_session_in_its_namespace_until_the_session_is_deleted(store: Store) -> None:
    await store.put_session(session("ns", "s1"))
    await store.put_history("ns", "digest-1", "s1", 1.0)
    assert await store.session_for_history("ns", "digest-1") == "s1"
    assert await store.session_for_history("other", "digest-1") is None
    await store.put_history("ns", "digest-1", "s2", 2.0)  # the same history, continued elsewhere later
    assert await store.session_for_history("ns", "digest-1") == "s2"
    await store.put_history("ns", "digest-2", "s1", 3.0)
    await store.delete_session("ns", "s1")
    assert await store.session_for_history("ns", "digest-2") is None


# Message Batches (appended with their own imports).

from claude_mcp.state.store import BATCH_EXPIRED, BatchRecord  # noqa: E402


def batch(namespace: str, batch_id: str, created_at: float = 100.0, **fields: Any) -> BatchRecord:
    fields.setdefault("expires_at", created_at + 1000.0)
    return BatchRecord(namespace=namespace, batch_id=batch_id, created_at=created_at, request_count=3, **fields)


def of_batch(namespace: str, batch_id: str, custom_id: str, status: Any = "queued", **fields: Any) -> JobRecord:
    job_id = f"{namespace}-{batch_id}-{custom_id}"
    return job(namespace, job_id, status=status, batch_id=batch_id, custom_id=custom_id, **fields)


async def test_batches_are_put_read_and_listed_newest_first_a_page_at_a_time_before_or_after_a_cursor(
    store: Store,
) -> None:
    for n in range(5):
        await store.put_batch(batch("ns", f"b{n}", 100.0 + n))
    await store.put_batch(batch("other", "theirs", 200.0))
    assert await store.get_batch("ns", "b2") == batch("ns", "b2", 102.0)
    assert await store.get_batch("other", "b2") is None

    async def page(limit: int, **cursor: str) -> list[str]:
        return [b.batch_id for b in await store.list_batches("ns", limit=limit, **cursor)]

    assert await page(2) == ["b4", "b3"]
    assert await page(2, after_id="b3") == ["b2", "b1"]
    assert await page(2, after_id="b1") == ["b0"]
    assert await page(2, before_id="b1") == ["b3", "b2"]
    assert await page(5, before_id="b3") == ["b4"]
    assert await page(5, after_id="theirs") == []  # another namespace's batch is no cursor here
    assert await page(5, after_id="nope") == []
    assert [b.batch_id for b in await store.list_batches("other", limit=5)] == ["theirs"]
    ended = batch("ns", "b2", 102.0, ended_at=150.0, cancel_initiated_at=140.0)
    await store.put_batch(ended)
    assert await store.get_batch("ns", "b2") == ended


async def test_a_batchs_jobs_are_counted_by_outcome_and_read_in_custom_id_order(store: Store) -> None:
    await store.put_batch(batch("ns", "b"))
    await store.put_batch(batch("ns", "quiet"))
    outcomes = {"e": "queued", "a": "running", "d": "completed", "b": "failed", "c": "cancelled"}
    for custom_id, status in outcomes.items():
        await store.save_job(of_batch("ns", "b", custom_id, status))
    await store.save_job(of_batch("ns", "b", "f", "cancelled", error=BATCH_EXPIRED))
    await store.save_job(of_batch("other", "b", "a", "queued"))
    await store.save_job(job("ns", "plain"))
    assert await store.batch_counts("ns", ["b", "quiet"]) == {
        "b": {"queued": 1, "running": 1, "completed": 1, "failed": 1, "cancelled": 1, "expired": 1},
        "quiet": {},
    }
    assert await store.batch_counts("ns", []) == {}
    first = await store.batch_jobs("ns", "b", limit=4)
    assert [j.custom_id for j in first] == ["a", "b", "c", "d"]
    rest = await store.batch_jobs("ns", "b", limit=4, after_custom_id="d")
    assert [(j.custom_id, j.status) for j in rest] == [("e", "queued"), ("f", "cancelled")]
    assert await store.count_batch_jobs("ns") == 2  # queued or running, over every batch
    assert await store.count_jobs("ns") == 1  # a batch's jobs have a limit of their own
    assert [j.job_id for j in await store.list_jobs("ns")] == ["plain"]  # and are listed with their batch


async def test_cancelling_a_batch_cancels_its_queued_jobs_and_asks_its_running_ones_to_stop(store: Store) -> None:
    await store.put_batch(batch("ns", "b"))
    await store.put_batch(batch("ns", "left"))
    await store.save_job(of_batch("ns", "b", "q"))
    await store.save_job(of_batch("ns", "b", "r", "running", replica="r1"))
    await store.save_job(of_batch("ns", "b", "done", "completed", finished_at=3.0))
    await store.save_job(of_batch("ns", "left", "q"))
    assert await store.cancel_batch("other", "b", 5.0, "stopped") is None
    cancelled = await store.cancel_batch("ns", "b", 5.0, "stopped")
    assert cancelled is not None and cancelled.cancel_initiated_at == 5.0
    again = await store.cancel_batch("ns", "b", 6.0, "stopped")
    assert again is not None and again.cancel_initiated_at == 5.0  # the first time stays
    jobs = {j.custom_id: j for j in await store.batch_jobs("ns", "b", limit=10)}
    assert (jobs["q"].status, jobs["q"].error, jobs["q"].finished_at) == ("cancelled", "stopped", 5.0)
    assert (jobs["r"].status, jobs["r"].cancel_requested) == ("running", True)
    assert (jobs["done"].status, jobs["done"].cancel_requested) == ("completed", False)
    assert await store.cancel_requested([jobs["r"].job_id]) == [jobs["r"].job_id]
    assert [j.status for j in await store.batch_jobs("ns", "left", limit=10)] == ["queued"]


async def test_the_queued_jobs_of_an_expired_batch_are_never_claimed_and_expire(store: Store) -> None:
    await store.put_batch(batch("ns", "b", 10.0, expires_at=50.0))
    await store.save_job(of_batch("ns", "b", "x"))
    await store.save_job(of_batch("ns", "b", "y", "running"))
    await store.save_job(queued("ns", "plain", 20.0))
    assert [j.job_id for j in await store.claim_jobs("ns", "r1", 5, now=60.0, lease_until=70.0)] == ["plain"]
    assert await store.expire_batch("ns", "b", 60.0) == 1
    assert await store.batch_counts("ns", ["b"]) == {"b": {"expired": 1, "running": 1}}
    await store.put_batch(batch("ns", "young", 10.0, expires_at=50.0))
    await store.save_job(of_batch("ns", "young", "z"))
    claimed = await store.claim_jobs("ns", "r1", 5, now=40.0, lease_until=70.0)
    assert [j.custom_id for j in claimed] == ["z"]  # before its batch expires, a job is claimed as any other


async def test_a_batch_ends_once_and_keeps_the_time_it_was_first_seen_ended(store: Store) -> None:
    await store.put_batch(batch("ns", "b"))
    assert await store.end_batch("other", "b", 5.0) is None
    first = await store.end_batch("ns", "b", 5.0)
    assert first is not None and first.ended_at == 5.0
    again = await store.end_batch("ns", "b", 9.0)
    assert again is not None and again.ended_at == 5.0


async def test_a_batchs_jobs_stay_as_long_as_it_does_and_go_with_it(store: Store) -> None:
    await store.put_batch(batch("ns", "kept", 100.0))
    await store.put_batch(batch("ns", "old", 10.0))
    await store.put_batch(batch("other", "kept", 100.0))
    for batch_id in ("kept", "old", "gone"):  # "gone": a batch deleted meanwhile, its job left behind
        await store.save_job(of_batch("ns", batch_id, "x", "completed", finished_at=1.0))
    await store.save_job(of_batch("other", "kept", "x", "completed", finished_at=1.0))
    assert await store.expire_jobs(50.0) == 1  # only the job whose batch is gone

    async def jobs_of(namespace: str, batch_id: str) -> list[str]:
        return [j.job_id for j in await store.batch_jobs(namespace, batch_id, limit=10)]

    assert (await jobs_of("ns", "kept"), await jobs_of("ns", "old"), await jobs_of("ns", "gone")) == (
        ["ns-kept-x"],
        ["ns-old-x"],
        [],
    )
    assert await store.expire_batches(50.0) == 1
    assert await store.get_batch("ns", "old") is None
    assert (await jobs_of("ns", "old"), await jobs_of("ns", "kept")) == ([], ["ns-kept-x"])
    assert await store.delete_batch("other", "nope") is False
    assert await store.delete_batch("ns", "kept") is True
    assert await store.get_batch("ns", "kept") is None and await jobs_of("ns", "kept") == []
    assert await jobs_of("other", "kept") == ["other-kept-x"]  # the same batch id elsewhere
    assert await store.get_batch("other", "kept") is not None


def spent(namespace: str, run_id: str, model: str, at: float, tokens: int, usd: float) -> UsageRecord:
    return UsageRecord(
        run_id=run_id,
        model=model,
        namespace=namespace,
        surface="ask",
        started_at=at,
        input_tokens=tokens,
        output_tokens=1,
        cache_write_tokens=2,
        cache_read_tokens=100,
        cost_usd=usd,
        chain_id=run_id,
    )


async def test_usage_sums_a_namespaces_windows_and_reports_by_bucket_and_model(store: Store) -> None:
    day = 86_400.0
    await store.add_usage(
        [
            spent("ns", "r1", "opus", 10.0, 10, 0.5),
            spent("ns", "r1", "haiku", 10.0, 1, 0.25),  # one run, two models
            spent("ns", "r2", "opus", day + 30.0, 20, 1.0),
            spent("other", "r3", "opus", day + 40.0, 1000, 9.0),
        ]
    )
    await store.add_usage([spent("ns", "r1", "opus", 10.0, 999, 99.0)])  # a record stored twice counts once
    since_start, since_day = await store.usage_totals("ns", [0.0, day])
    assert (since_start.runs, since_start.input_tokens, since_start.cost_usd) == (2, 31, 1.75)
    assert since_start.tokens == 31 + 3 + 6  # input, output and cache writes; never cache reads
    assert (since_day.runs, since_day.input_tokens, since_day.cost_usd) == (1, 20, 1.0)
    assert await store.usage_totals("nobody", [0.0]) == [UsageTotals()]
    by_day = await store.usage_report(since=0, until=2 * day, namespace="ns", bucket_minutes=1440, by=("model",))
    assert [(r.bucket_start, r.model, r.runs, r.input_tokens) for r in by_day] == [
        (0.0, "opus", 1, 10),
        (0.0, "haiku", 1, 1),
        (day, "opus", 1, 20),
    ]
    everyone = await store.usage_report(since=0, until=2 * day, by=("namespace",))
    assert [(r.namespace, r.runs, r.cost_usd) for r in everyone] == [("other", 1, 9.0), ("ns", 2, 1.75)]
    assert await store.usage_report(since=day + 35.0, until=2 * day, namespace="ns") == []


async def test_a_chains_account_keeps_its_first_budget_and_sums_the_chains_records(store: Store) -> None:
    assert await store.chain_account("c1") is None
    await store.open_chain("c1", 1.0, now=5.0)
    await store.open_chain("c1", 9.0, now=6.0)  # already open: its budget stays
    assert await store.chain_account("c1") == ChainAccount(chain_id="c1", budget_usd=1.0)
    top, hop = spent("ns", "top", "opus", 10.0, 1, 0.25), spent("other", "hop", "opus", 11.0, 1, 0.5)
    await store.add_usage([top, hop.model_copy(update={"chain_id": "top"}), spent("ns", "x", "opus", 12.0, 1, 7.0)])
    await store.open_chain("top", 2.0, now=13.0)
    account = await store.chain_account("top")
    assert account is not None and (account.budget_usd, account.runs, account.spent_usd) == (2.0, 2, 0.75)
