"""`Batches` (with the `JobQueue` holding their requests): paged by keyset, counted by outcome,
cancelled, expired, ended and deleted with their jobs."""

from __future__ import annotations

from ..store import BATCH_EXPIRED, BatchesOfJobs, BatchOutcome, JobStatus
from ._common import Contract, Names, batch, job, of_batch, queued, run_all


async def batches_are_put_read_and_listed_newest_first_a_page_at_a_time_before_or_after_a_cursor(
    store: BatchesOfJobs,
) -> None:
    n = Names()
    ns, other = n("ns"), n("other")
    for i in range(5):
        await store.put_batch(batch(ns, f"b{i}", 100.0 + i))
    await store.put_batch(batch(other, "theirs", 200.0))
    assert await store.get_batch(ns, "b2") == batch(ns, "b2", 102.0)
    assert await store.get_batch(other, "b2") is None

    async def page(limit: int, **cursor: str) -> list[str]:
        return [b.batch_id for b in await store.list_batches(ns, limit=limit, **cursor)]

    assert await page(2) == ["b4", "b3"]
    assert await page(2, after_id="b3") == ["b2", "b1"]
    assert await page(2, after_id="b1") == ["b0"]
    assert await page(2, before_id="b1") == ["b3", "b2"]
    assert await page(5, before_id="b3") == ["b4"]
    assert await page(5, after_id="theirs") == []  # another namespace's batch is no cursor here
    assert await page(5, after_id="nope") == []
    assert [b.batch_id for b in await store.list_batches(other, limit=5)] == ["theirs"]
    ended = batch(ns, "b2", 102.0, ended_at=150.0, cancel_initiated_at=140.0)
    await store.put_batch(ended)
    assert await store.get_batch(ns, "b2") == ended


async def batches_created_at_once_are_paged_by_id_none_twice(store: BatchesOfJobs) -> None:
    ns = Names()("ns")
    for batch_id in ("b2", "b0", "b3", "b1"):
        await store.put_batch(batch(ns, batch_id, 100.0))

    async def page(**cursor: str) -> list[str]:
        return [b.batch_id for b in await store.list_batches(ns, limit=2, **cursor)]

    assert (await page(), await page(after_id="b2"), await page(before_id="b1")) == (
        ["b3", "b2"],
        ["b1", "b0"],
        ["b3", "b2"],
    )


async def a_batchs_jobs_are_counted_by_outcome_and_read_in_custom_id_order(store: BatchesOfJobs) -> None:
    n = Names()
    ns, other = n("ns"), n("other")
    await store.put_batch(batch(ns, "b"))
    await store.put_batch(batch(ns, "quiet"))
    outcomes: dict[str, JobStatus] = {
        "e": "queued",
        "a": "running",
        "d": "completed",
        "b": "failed",
        "c": "cancelled",
    }
    for custom_id, status in outcomes.items():
        await store.save_job(of_batch(ns, "b", custom_id, status))
    await store.save_job(of_batch(ns, "b", "f", "cancelled", error=BATCH_EXPIRED))
    await store.save_job(of_batch(other, "b", "a", "queued"))
    await store.save_job(job(ns, n("plain")))
    expected: dict[str, dict[BatchOutcome, int]] = {
        "b": {"queued": 1, "running": 1, "completed": 1, "failed": 1, "cancelled": 1, "expired": 1},
        "quiet": {},
    }
    assert await store.batch_counts(ns, ["b", "quiet"]) == expected
    assert await store.batch_counts(ns, []) == {}
    first = await store.batch_jobs(ns, "b", limit=4)
    assert [j.custom_id for j in first] == ["a", "b", "c", "d"]
    rest = await store.batch_jobs(ns, "b", limit=4, after_custom_id="d")
    assert [(j.custom_id, j.status) for j in rest] == [("e", "queued"), ("f", "cancelled")]
    assert await store.count_batch_jobs(ns) == 2  # queued or running, over every batch
    assert await store.count_jobs(ns) == 1  # a batch's jobs have a limit of their own
    assert [j.job_id for j in await store.list_jobs(ns)] == [n("plain")]  # and are listed with their batch


async def cancelling_a_batch_cancels_its_queued_jobs_and_asks_its_running_ones_to_stop(store: BatchesOfJobs) -> None:
    n = Names()
    ns, other = n("ns"), n("other")
    await store.put_batch(batch(ns, "b"))
    await store.put_batch(batch(ns, "left"))
    await store.save_job(of_batch(ns, "b", "q"))
    await store.save_job(of_batch(ns, "b", "r", "running", replica="r1"))
    await store.save_job(of_batch(ns, "b", "done", "completed", finished_at=3.0))
    await store.save_job(of_batch(ns, "left", "q"))
    assert await store.cancel_batch(other, "b", 5.0, "stopped") is None
    cancelled = await store.cancel_batch(ns, "b", 5.0, "stopped")
    assert cancelled is not None and cancelled.cancel_initiated_at == 5.0
    again = await store.cancel_batch(ns, "b", 6.0, "stopped")
    assert again is not None and again.cancel_initiated_at == 5.0  # the first time stays
    jobs = {j.custom_id: j for j in await store.batch_jobs(ns, "b", limit=10)}
    assert (jobs["q"].status, jobs["q"].error, jobs["q"].finished_at) == ("cancelled", "stopped", 5.0)
    assert (jobs["r"].status, jobs["r"].cancel_requested) == ("running", True)
    assert (jobs["done"].status, jobs["done"].cancel_requested) == ("completed", False)
    assert await store.cancel_requested([jobs["r"].job_id]) == [jobs["r"].job_id]
    assert [j.status for j in await store.batch_jobs(ns, "left", limit=10)] == ["queued"]


async def a_batch_that_has_ended_is_not_marked_as_cancelling(store: BatchesOfJobs) -> None:
    ns = Names()("ns")
    await store.put_batch(batch(ns, "b", ended_at=4.0))
    cancelled = await store.cancel_batch(ns, "b", 5.0, "stopped")
    assert cancelled is not None and (cancelled.ended_at, cancelled.cancel_initiated_at) == (4.0, None)


async def the_queued_jobs_of_an_expired_batch_are_never_claimed_and_expire(store: BatchesOfJobs) -> None:
    n = Names()
    ns, r1 = n("ns"), n("r1")
    await store.put_batch(batch(ns, "b", 10.0, expires_at=50.0))
    await store.save_job(of_batch(ns, "b", "x"))
    await store.save_job(of_batch(ns, "b", "y", "running"))
    await store.save_job(queued(ns, n("plain"), 20.0))
    assert [j.job_id for j in await store.claim_jobs(ns, r1, 5, now=60.0, lease_until=70.0)] == [n("plain")]
    assert await store.expire_batch(ns, "b", 60.0) == 1
    assert await store.batch_counts(ns, ["b"]) == {"b": {"expired": 1, "running": 1}}
    await store.put_batch(batch(ns, "young", 10.0, expires_at=50.0))
    await store.save_job(of_batch(ns, "young", "z"))
    claimed = await store.claim_jobs(ns, r1, 5, now=40.0, lease_until=70.0)
    assert [j.custom_id for j in claimed] == ["z"]  # before its batch expires, a job is claimed as any other


async def a_batch_ends_once_and_keeps_the_time_it_was_first_seen_ended(store: BatchesOfJobs) -> None:
    n = Names()
    ns, other = n("ns"), n("other")
    await store.put_batch(batch(ns, "b"))
    assert await store.end_batch(other, "b", 5.0) is None
    first = await store.end_batch(ns, "b", 5.0)
    assert first is not None and first.ended_at == 5.0
    again = await store.end_batch(ns, "b", 9.0)
    assert again is not None and again.ended_at == 5.0


async def a_batchs_jobs_stay_as_long_as_it_does_and_go_with_it(store: BatchesOfJobs) -> None:
    n = Names()
    ns, other = n("ns"), n("other")
    await store.expire_jobs(50.0)  # what the store held already
    await store.expire_batches(50.0)
    await store.put_batch(batch(ns, "kept", 100.0))
    await store.put_batch(batch(ns, "old", 10.0))
    await store.put_batch(batch(other, "kept", 100.0))
    for batch_id in ("kept", "old", "gone"):  # "gone": a batch deleted meanwhile, its job left behind
        await store.save_job(of_batch(ns, batch_id, "x", "completed", finished_at=1.0))
    await store.save_job(of_batch(other, "kept", "x", "completed", finished_at=1.0))
    assert await store.expire_jobs(50.0) == 1  # only the job whose batch is gone

    async def jobs_of(namespace: str, batch_id: str) -> list[str]:
        return [j.job_id for j in await store.batch_jobs(namespace, batch_id, limit=10)]

    assert (await jobs_of(ns, "kept"), await jobs_of(ns, "old"), await jobs_of(ns, "gone")) == (
        [f"{ns}-kept-x"],
        [f"{ns}-old-x"],
        [],
    )
    assert await store.expire_batches(50.0) == 1
    assert await store.get_batch(ns, "old") is None
    assert (await jobs_of(ns, "old"), await jobs_of(ns, "kept")) == ([], [f"{ns}-kept-x"])
    assert await store.delete_batch(other, "nope") is False
    assert await store.delete_batch(ns, "kept") is True
    assert await store.get_batch(ns, "kept") is None and await jobs_of(ns, "kept") == []
    assert await jobs_of(other, "kept") == [f"{other}-kept-x"]  # the same batch id elsewhere
    assert await store.get_batch(other, "kept") is not None


BATCHES: list[Contract[BatchesOfJobs]] = [
    batches_are_put_read_and_listed_newest_first_a_page_at_a_time_before_or_after_a_cursor,
    batches_created_at_once_are_paged_by_id_none_twice,
    a_batchs_jobs_are_counted_by_outcome_and_read_in_custom_id_order,
    cancelling_a_batch_cancels_its_queued_jobs_and_asks_its_running_ones_to_stop,
    a_batch_that_has_ended_is_not_marked_as_cancelling,
    the_queued_jobs_of_an_expired_batch_are_never_claimed_and_expire,
    a_batch_ends_once_and_keeps_the_time_it_was_first_seen_ended,
    a_batchs_jobs_stay_as_long_as_it_does_and_go_with_it,
]


async def run_batches_conformance(store: BatchesOfJobs) -> None:
    await run_all(store, BATCHES)
