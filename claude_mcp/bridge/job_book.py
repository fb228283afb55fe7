"""Jobs shared by every replica: the live runs this replica holds, and the store's records.

A job either starts on the replica a caller is waiting on (`add`), or is queued in the store
(`submit`) and claimed by whichever replica has a free run slot (`claim`; a job that needs a
secret only one replica holds in memory, its owner's credential or its MCP servers' settings,
is claimed by that replica only). The replica running a job saves its record whenever it
changes (at most every `SYNC_S`), renews its lease, and picks up what other replicas ask of it
through the store: a cancellation, an answer to its permission question. Any replica reads,
lists and long-polls jobs from the store; a job whose lease runs out (its replica died) is
marked failed, with its session_id so the conversation can be continued.
"""

from __future__ import annotations

import logging
import time

import anyio

from ..errors import InvalidArguments
from ..state.store import JobQueue, JobRecord
from .jobs import Job, JobNotFound, JobView
from .observer import RunObserver
from .permissions import PermissionAnswer

logger = logging.getLogger(__name__)

SYNC_S = 0.5
"""How often a replica saves changed jobs and looks for cancellations and answers."""
POLL_S = 0.25
"""How often a job running elsewhere is re-read while waiting on it."""
DEAD_REPLICA = (
    "The server replica running this job stopped before it finished (it crashed, was killed or lost the "
    "database). Continue the conversation with its session_id to pick up where it left off."
)
CANCELLED = "The job was cancelled; its processes were stopped."
NOT_PENDING = (
    "That permission request is not pending (it was answered, timed out, or never existed); see the job's "
    "pending_permission."
)


class JobBook:
    """This replica's view of the jobs: its own live runs first, the store for the rest."""

    def __init__(self, store: JobQueue, replica: str, lease_s: float) -> None:
        self.store = store
        self.replica = replica
        self.lease_s = lease_s
        self.live: dict[str, Job] = {}
        self.pinned: set[str] = set()
        """Queued jobs only this replica may claim: their leases are renewed until it does."""

    async def add(self, job: Job) -> None:
        self.live[job.job_id] = job
        await self.save(job)

    def _lease(self) -> float:
        return time.time() + self.lease_s

    async def save(self, job: Job) -> None:
        async with job.saving:  # the snapshot is taken inside: the last write is the newest state
            job.dirty = False
            await self.store.save_job(job.record(self.replica, self._lease()))

    async def submit(self, record: JobRecord, *, pinned: bool) -> None:
        """Queue a job (a `queued` record) for any replica, or, `pinned`, for this one only."""
        if pinned:
            self.pinned.add(record.job_id)
            record = record.model_copy(update={"replica": self.replica, "lease_expires_at": self._lease()})
        await self.store.save_job(record)

    async def claim(self, namespace: str, limit: int, job_id: str | None = None) -> list[JobRecord]:
        """Claim up to `limit` queued jobs (or just `job_id`) for this replica to run."""
        now = time.time()
        claimed = await self.store.claim_jobs(
            namespace, self.replica, limit, now=now, lease_until=now + self.lease_s, job_id=job_id
        )
        self.pinned.difference_update(record.job_id for record in claimed)
        return claimed

    def local(self, owner: str, job_id: str) -> Job | None:
        job = self.live.get(job_id)
        return job if job is not None and job.owner == owner else None

    def get(self, owner: str, job_id: str) -> Job:
        """A job this replica runs (or ran); `JobNotFound` otherwise."""
        if (job := self.local(owner, job_id)) is None:
            raise JobNotFound()
        return job

    async def record(self, owner: str, job_id: str) -> JobRecord:
        """The job as the store keeps it, this replica's live state first; `JobNotFound` otherwise."""
        if (job := self.local(owner, job_id)) is not None:
            return job.record(self.replica, None)
        record = await self.store.get_job(owner, job_id)
        if record is None:
            raise JobNotFound()
        return record

    async def view(self, owner: str, job_id: str) -> JobView:
        if (job := self.local(owner, job_id)) is not None:
            return job.view()
        record = await self.store.get_job(owner, job_id)
        if record is None:
            raise JobNotFound()
        return JobView.of_record(record)

    async def wait(self, owner: str, job_id: str, wait_s: float, listener: RunObserver | None = None) -> JobView:
        """The job's view once it has finished, or after `wait_s`, whichever comes first."""
        if (job := self.local(owner, job_id)) is not None:
            await job.wait(wait_s, listener)
            return job.view()
        view = await self.view(owner, job_id)
        deadline = anyio.current_time() + wait_s
        with anyio.move_on_after(wait_s):
            while view.status == "running":
                if (job := self.local(owner, job_id)) is not None:  # claimed here meanwhile
                    await job.wait(deadline - anyio.current_time(), listener)
                    return job.view()
                await anyio.sleep(POLL_S)
                view = await self.view(owner, job_id)
        return view

    async def answer(self, owner: str, job_id: str, permission_id: str, answer: PermissionAnswer) -> None:
        """Decide the job's pending permission question, wherever it runs."""
        if (job := self.local(owner, job_id)) is not None:
            job.answer(permission_id, answer)
            return
        await self.view(owner, job_id)  # JobNotFound first
        if not await self.store.answer_permission(owner, job_id, permission_id, answer.model_dump(mode="json")):
            raise InvalidArguments(NOT_PENDING)

    async def cancel(self, owner: str, job_id: str, wait_s: float = 30) -> JobView:
        """Stop a job's run, wherever it runs, and wait (up to `wait_s`) until it has stopped."""
        if (job := self.local(owner, job_id)) is not None:
            if not job.done.is_set():
                job.scope.cancel()
                with anyio.CancelScope(shield=True), anyio.move_on_after(wait_s):
                    await job.done.wait()
            return job.view()
        if await self.store.cancel_queued(owner, job_id, time.time(), CANCELLED):
            self.pinned.discard(job_id)
            return await self.view(owner, job_id)
        if not await self.store.request_cancel(owner, job_id):
            raise JobNotFound()
        return await self.wait(owner, job_id, wait_s)

    async def views(self, owner: str) -> list[JobView]:
        """The owner's jobs on every replica, newest first."""
        records = await self.store.list_jobs(owner)
        return [job.view() if (job := self.local(owner, r.job_id)) else JobView.of_record(r) for r in records]

    async def count(self, owner: str) -> int:
        return await self.store.count_jobs(owner)

    async def sync(self) -> None:
        """Save what changed, renew leases, and act on cancellations and answers from elsewhere."""
        running = [job for job in self.live.values() if not job.done.is_set()]
        for job in running:
            if job.dirty:
                await self.save(job)
        if not running and not self.pinned:
            return
        pinned = sorted(self.pinned)
        still = set(await self.store.renew_leases(self.replica, [j.job_id for j in running] + pinned, self._lease()))
        self.pinned -= set(pinned) - still  # cancelled or failed meanwhile: no longer ours to claim
        for job_id in await self.store.cancel_requested([job.job_id for job in running]):
            logger.info("job %s: cancellation requested from another replica", job_id)
            self.live[job_id].scope.cancel()
        for job in running:
            pending = job.pending
            if pending is None:
                continue
            answer = await self.store.take_permission_answer(job.job_id, pending.permission_id)
            if answer is not None and job.pending is pending:
                job.answer(pending.permission_id, PermissionAnswer.model_validate(answer))

    async def fail_orphans(self) -> None:
        """Mark as failed the running jobs of replicas that stopped renewing their leases."""
        for record in await self.store.fail_expired_jobs(time.time(), DEAD_REPLICA):
            logger.warning("job %s failed: its replica %s stopped renewing its lease", record.job_id, record.replica)

    async def expire(self, finished_before: float) -> None:
        await self.store.expire_jobs(finished_before)
        for job_id in [
            i for i, j in self.live.items() if j.finished_at is not None and j.finished_at < finished_before
        ]:
            del self.live[job_id]
