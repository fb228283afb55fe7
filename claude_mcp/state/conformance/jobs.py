"""`JobQueue`: jobs saved and read per namespace, queued and claimed by one replica at a time,
leased while they run, cancelled or answered from any replica, failed when their lease runs out."""

from __future__ import annotations

from typing import Any

import anyio

from ..store import JobQueue
from ._common import Contract, Names, asking, job, queued, run_all


async def jobs_are_saved_read_listed_newest_first_and_counted(store: JobQueue) -> None:
    n = Names()
    ns, other = n("ns"), n("other")
    j1, j2, j3 = n("j1"), n("j2"), n("j3")
    full = job(
        ns,
        j1,
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
    await store.save_job(job(ns, j2, created_at=3.0))
    await store.save_job(job(ns, j3, created_at=2.0))
    await store.save_job(job(other, n("j4"), created_at=4.0))
    assert await store.get_job(ns, j1) == full
    assert [j.job_id for j in await store.list_jobs(ns)] == [j2, j3, j1]
    assert [j.job_id for j in await store.list_jobs(ns, limit=2)] == [j2, j3]
    assert await store.count_jobs(ns) == 3
    updated = full.model_copy(update={"text": "more", "progress": ["x"], "updated_at": 10.0})
    await store.save_job(updated)
    assert await store.get_job(ns, j1) == updated
    refused = updated.model_copy(
        update={"status": "failed", "error": "no", "error_kind": "api_error", "error_status": 429}
    )
    await store.save_job(refused)
    assert await store.get_job(ns, j1) == refused


async def saving_a_job_keeps_a_requested_cancellation(store: JobQueue) -> None:
    n = Names()
    ns, j1, j2 = n("ns"), n("j1"), n("j2")
    await store.save_job(job(ns, j1))
    assert await store.cancel_requested([j1]) == []
    assert await store.request_cancel(ns, j1) is True
    await store.save_job(job(ns, j1, text="still going"))
    saved = await store.get_job(ns, j1)
    assert saved is not None and saved.cancel_requested and saved.text == "still going"
    await store.save_job(job(ns, j2))
    assert await store.cancel_requested([j1, j2, n("nope")]) == [j1]
    assert await store.cancel_requested([]) == []
    assert await store.request_cancel(ns, n("nope")) is False


async def a_permission_answer_is_accepted_only_for_the_pending_question_of_a_running_job(store: JobQueue) -> None:
    n = Names()
    ns, quiet, j1, ended = n("ns"), n("quiet"), n("j1"), n("ended")
    await store.save_job(job(ns, quiet))
    assert await store.answer_permission(ns, quiet, "p1", {"decision": "deny"}) is False
    await store.save_job(asking(ns, ended, "p1", status="completed", finished_at=5.0))
    assert await store.answer_permission(ns, ended, "p1", {"decision": "deny"}) is False
    await store.save_job(asking(ns, j1, "p1"))
    assert await store.answer_permission(ns, j1, "p0", {"decision": "deny"}) is False
    assert await store.answer_permission(ns, j1, "p1", {"decision": "allow_once"}) is True
    assert await store.take_permission_answer(j1, "p0") is None
    assert await store.take_permission_answer(j1, "p1") == {"decision": "allow_once"}
    assert await store.take_permission_answer(j1, "p1") is None


async def a_permission_answer_is_taken_once_when_two_takers_race(store: JobQueue) -> None:
    n = Names()
    ns, j1 = n("ns"), n("j1")
    await store.save_job(asking(ns, j1, "p1"))
    await store.answer_permission(ns, j1, "p1", {"decision": "deny"})
    taken: list[dict[str, Any] | None] = []

    async def take() -> None:
        taken.append(await store.take_permission_answer(j1, "p1"))

    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(take)
    assert sorted(taken, key=lambda answer: answer is None) == [{"decision": "deny"}, None, None, None, None]


async def saving_a_job_keeps_an_answer_not_yet_taken(store: JobQueue) -> None:
    n = Names()
    ns, j1 = n("ns"), n("j1")
    await store.save_job(asking(ns, j1, "p1"))
    await store.answer_permission(ns, j1, "p1", {"decision": "allow_session", "reason": None})
    await store.save_job(asking(ns, j1, "p1").model_copy(update={"text": "waiting"}))
    assert await store.take_permission_answer(j1, "p1") == {"decision": "allow_session", "reason": None}


async def a_namespace_cannot_see_cancel_answer_or_overwrite_another_namespaces_jobs(store: JobQueue) -> None:
    n = Names()
    a, b, j1 = n("a"), n("b"), n("j1")
    await store.save_job(asking(a, j1, "p1"))
    assert await store.get_job(b, j1) is None
    assert await store.list_jobs(b) == []
    assert await store.count_jobs(b) == 0
    assert await store.request_cancel(b, j1) is False
    assert await store.answer_permission(b, j1, "p1", {"decision": "allow_once"}) is False
    assert await store.cancel_queued(b, j1, 5.0, "no") is False
    try:
        await store.save_job(job(b, j1, text="hijacked"))
    except ValueError as refused:
        assert "another namespace" in str(refused)
    else:
        raise AssertionError("saving another namespace's job id was not refused")
    mine = await store.get_job(a, j1)
    assert mine is not None and not mine.cancel_requested and mine.text == ""
    assert await store.take_permission_answer(j1, "p1") is None


async def renewing_leases_extends_only_this_replicas_running_or_pinned_jobs(store: JobQueue) -> None:
    n = Names()
    ns, r1, r2 = n("ns"), n("r1"), n("r2")
    mine, theirs, done, pinned = n("mine"), n("theirs"), n("done"), n("pinned")
    await store.save_job(job(ns, mine, replica=r1, lease_expires_at=10.0))
    await store.save_job(job(ns, theirs, replica=r2, lease_expires_at=10.0))
    await store.save_job(job(ns, done, replica=r1, lease_expires_at=10.0, status="completed"))
    await store.save_job(job(ns, pinned, status="queued", replica=r1, lease_expires_at=10.0))
    assert sorted(await store.renew_leases(r1, [mine, theirs, done, pinned], 50.0)) == sorted([mine, pinned])
    assert await store.renew_leases(r1, [], 99.0) == []
    leases = {j.job_id: j.lease_expires_at for j in await store.list_jobs(ns)}
    assert leases == {mine: 50.0, theirs: 10.0, done: 10.0, pinned: 50.0}


async def queued_jobs_are_claimed_oldest_first_up_to_the_limit_and_only_once(store: JobQueue) -> None:
    n = Names()
    ns, other, r1, r2 = n("ns"), n("other"), n("r1"), n("r2")
    ids = [n(f"j{i}") for i in range(5)]
    for i, job_id in enumerate(ids):
        await store.save_job(queued(ns, job_id, 100.0 + i))
    await store.save_job(queued(other, n("theirs"), 50.0))
    await store.save_job(job(ns, n("running"), 10.0, replica=r2))
    await store.save_job(job(ns, n("ended"), 10.0, status="completed", finished_at=11.0))
    first = await store.claim_jobs(ns, r1, 2, now=200.0, lease_until=230.0)
    assert [(j.job_id, j.status, j.replica, j.lease_expires_at, j.updated_at) for j in first] == [
        (ids[0], "running", r1, 230.0, 200.0),
        (ids[1], "running", r1, 230.0, 200.0),
    ]
    assert first[0].request == {"prompt": ids[0]}
    assert first == [await store.get_job(ns, ids[0]), await store.get_job(ns, ids[1])]
    second = await store.claim_jobs(ns, r2, 10, now=201.0, lease_until=231.0)
    assert [j.job_id for j in second] == ids[2:]
    assert await store.claim_jobs(ns, r1, 10, now=202.0, lease_until=232.0) == []
    assert await store.claim_jobs(ns, r1, 0, now=202.0, lease_until=232.0) == []
    assert [j.job_id for j in await store.claim_jobs(other, r2, 1, now=203.0, lease_until=233.0)] == [n("theirs")]


async def a_claim_can_name_its_job_and_a_pinned_job_goes_only_to_its_replica(store: JobQueue) -> None:
    n = Names()
    ns, r1, r2 = n("ns"), n("r1"), n("r2")
    old, named, pinned = n("old"), n("named"), n("pinned")
    await store.save_job(queued(ns, old, 100.0))
    await store.save_job(queued(ns, named, 101.0))
    await store.save_job(queued(ns, pinned, 99.0, replica=r1, lease_expires_at=500.0))
    assert [j.job_id for j in await store.claim_jobs(ns, r2, 5, now=1.0, lease_until=2.0, job_id=named)] == [named]
    assert [j.job_id for j in await store.claim_jobs(ns, r2, 5, now=1.0, lease_until=2.0)] == [old]
    assert [j.job_id for j in await store.claim_jobs(ns, r1, 5, now=1.0, lease_until=2.0)] == [pinned]


async def replicas_claiming_at_once_never_claim_the_same_job(store: JobQueue) -> None:
    n = Names()
    ns = n("ns")
    ids = [n(f"j{i:02}") for i in range(40)]
    for i, job_id in enumerate(ids):
        await store.save_job(queued(ns, job_id, 100.0 + i))
    claimed: list[str] = []

    async def claimer(replica: str) -> None:
        while batch := await store.claim_jobs(ns, replica, 3, now=1.0, lease_until=2.0):
            claimed.extend(j.job_id for j in batch)

    async with anyio.create_task_group() as group:
        for replica in ("r1", "r2", "r3", "r4"):
            group.start_soon(claimer, n(replica))
    assert sorted(claimed) == ids


async def a_queued_job_is_cancelled_in_place_and_then_never_claimed(store: JobQueue) -> None:
    n = Names()
    ns, other, r1 = n("ns"), n("other"), n("r1")
    q, r = n("q"), n("r")
    await store.save_job(queued(ns, q, 100.0))
    await store.save_job(job(ns, r, status="running", replica=r1))
    assert await store.cancel_queued(other, q, 5.0, "no") is False
    assert await store.cancel_queued(ns, r, 5.0, "no") is False
    assert await store.cancel_queued(ns, q, 5.0, "cancelled by you") is True
    cancelled = await store.get_job(ns, q)
    assert cancelled is not None and (cancelled.status, cancelled.error, cancelled.finished_at) == (
        "cancelled",
        "cancelled by you",
        5.0,
    )
    assert await store.cancel_queued(ns, q, 6.0, "again") is False
    assert await store.claim_jobs(ns, r1, 5, now=6.0, lease_until=7.0) == []


async def a_queued_job_whose_cancellation_was_requested_is_not_claimed(store: JobQueue) -> None:
    n = Names()
    ns, stopped, fine = n("ns"), n("stopped"), n("fine")
    await store.save_job(queued(ns, stopped, 100.0))
    await store.save_job(queued(ns, fine, 101.0))
    assert await store.request_cancel(ns, stopped) is True
    assert [j.job_id for j in await store.claim_jobs(ns, n("r1"), 5, now=1.0, lease_until=2.0)] == [fine]


async def a_pinned_queued_job_whose_replica_died_is_failed_but_an_open_one_waits(store: JobQueue) -> None:
    n = Names()
    ns, pinned, open_ = n("ns"), n("pinned"), n("open")
    await store.fail_expired_jobs(20.0, "settled")  # what the store held already
    await store.save_job(queued(ns, pinned, 100.0, replica=n("r1"), lease_expires_at=10.0))
    await store.save_job(queued(ns, open_, 100.0))
    assert [j.job_id for j in await store.fail_expired_jobs(20.0, "its replica stopped")] == [pinned]
    statuses = {j.job_id: j.status for j in await store.list_jobs(ns)}
    assert statuses == {pinned: "failed", open_: "queued"}


async def running_jobs_whose_lease_ran_out_are_failed_with_the_message(store: JobQueue) -> None:
    n = Names()
    ns, other, r1 = n("ns"), n("other"), n("r1")
    stale, stale2, alive, ended = n("stale"), n("stale2"), n("alive"), n("ended")
    await store.fail_expired_jobs(20.0, "settled")  # what the store held already
    await store.save_job(asking(ns, stale, "p1").model_copy(update={"replica": r1, "lease_expires_at": 10.0}))
    await store.save_job(job(other, stale2, created_at=200.0, replica=r1, lease_expires_at=5.0))
    await store.save_job(job(ns, alive, replica=n("r2"), lease_expires_at=30.0))
    await store.save_job(job(ns, ended, status="completed", lease_expires_at=5.0, finished_at=6.0))
    failed = await store.fail_expired_jobs(20.0, "its replica stopped")
    assert [(j.job_id, j.status, j.error, j.finished_at) for j in failed] == [
        (stale, "failed", "its replica stopped", 20.0),
        (stale2, "failed", "its replica stopped", 20.0),
    ]
    assert failed[0].pending_permission is None and failed[0] == await store.get_job(ns, stale)
    statuses = {j.job_id: j.status for j in await store.list_jobs(ns)}
    assert statuses == {stale: "failed", alive: "running", ended: "completed"}
    assert await store.fail_expired_jobs(20.0, "again") == []


async def jobs_that_finished_before_the_cutoff_are_deleted(store: JobQueue) -> None:
    n = Names()
    ns, other = n("ns"), n("other")
    await store.expire_jobs(20.0)  # what the store held already
    await store.save_job(job(ns, n("old"), status="completed", finished_at=10.0))
    await store.save_job(job(other, n("old2"), status="cancelled", finished_at=11.0))
    await store.save_job(job(ns, n("recent"), status="failed", finished_at=30.0))
    await store.save_job(job(ns, n("running")))
    await store.save_job(job(ns, n("queued"), status="queued"))
    assert await store.expire_jobs(20.0) == 2
    assert sorted(j.job_id for j in await store.list_jobs(ns)) == sorted([n("queued"), n("recent"), n("running")])
    assert await store.expire_jobs(20.0) == 0


JOB_QUEUE: list[Contract[JobQueue]] = [
    jobs_are_saved_read_listed_newest_first_and_counted,
    saving_a_job_keeps_a_requested_cancellation,
    a_permission_answer_is_accepted_only_for_the_pending_question_of_a_running_job,
    a_permission_answer_is_taken_once_when_two_takers_race,
    saving_a_job_keeps_an_answer_not_yet_taken,
    a_namespace_cannot_see_cancel_answer_or_overwrite_another_namespaces_jobs,
    renewing_leases_extends_only_this_replicas_running_or_pinned_jobs,
    queued_jobs_are_claimed_oldest_first_up_to_the_limit_and_only_once,
    a_claim_can_name_its_job_and_a_pinned_job_goes_only_to_its_replica,
    replicas_claiming_at_once_never_claim_the_same_job,
    a_queued_job_is_cancelled_in_place_and_then_never_claimed,
    a_queued_job_whose_cancellation_was_requested_is_not_claimed,
    a_pinned_queued_job_whose_replica_died_is_failed_but_an_open_one_waits,
    running_jobs_whose_lease_ran_out_are_failed_with_the_message,
    jobs_that_finished_before_the_cutoff_are_deleted,
]


async def run_job_queue_conformance(store: JobQueue) -> None:
    await run_all(store, JOB_QUEUE)
