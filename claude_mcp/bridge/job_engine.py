"""The job engine: runs that outlive the call that started them, on whichever replica has room.

A job is *started* here at once (a call's own run that may go on without it, or a kept job), or
*submitted* to the store's queue, from which every replica's claim loop *claims* as many jobs
as it has free run slots (this replica first, when the job was submitted here). A job whose
run needs a secret only this replica holds in memory (a caller's credential, per-call MCP
servers' settings) is *pinned* here. The engine knows nothing of how a run is done: it is
given a `run` function, the free slots and whether the server is draining.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol, Self

import anyio
from pydantic import ValidationError

from ..config.call_settings import CallSettings
from ..config.policy import Policy
from ..config.specs import unknown_agent
from ..errors import ClaudeMCPError, InvalidArguments, LimitReached, unexpected
from ..state.store import JobRecord
from .job_book import CANCELLED, SYNC_S, JobBook
from .jobs import Job, JobView
from .options import RunTarget
from .results import AskResult, RunFailed

logger = logging.getLogger(__name__)

IDLE_CLAIM_S = 2.0
"""How often a bridge with nothing to claim looks for queued jobs (at most)."""


class JobRun(Protocol):
    """Runs a job's prompt; `queueing` is called once it queues for its run slot."""

    def __call__(
        self,
        job: Job,
        prompt: str,
        settings: CallSettings,
        target: RunTarget,
        *,
        keep_warm: bool,
        queueing: Callable[[], None] | None,
    ) -> Awaitable[AskResult]: ...


@dataclass(frozen=True, slots=True)
class Request:
    """What a job asks: a prompt, continuing a conversation (or a fork of it), with settings."""

    prompt: str
    settings: CallSettings
    target: RunTarget

    def stored(self) -> dict[str, object]:
        """The request as the store keeps it (per-call MCP servers' settings, which may hold
        secrets, stay in memory)."""
        return {
            "prompt": self.prompt,
            "settings": self.settings.model_dump(mode="json", exclude_unset=True, exclude={"mcp_servers"}),
            "session_id": self.target.resume,
            "fork": self.target.fork,
        }


class JobEngine:
    """Starts, queues, claims and runs jobs. Use it as an async context manager: jobs run in its
    own tasks (cancelled on exit), with the claim loop."""

    def __init__(
        self,
        book: JobBook,
        policy: Policy,
        namespace: str,
        *,
        run: JobRun,
        free_slots: Callable[[int], int],
        draining: Callable[[], bool],
    ) -> None:
        """`free_slots(spoken_for)`: the run slots free now, less those spoken for (0 where this
        bridge may not run at all). `draining()`: no claims while the server drains."""
        self.book = book
        self._policy = policy
        self._namespace = namespace
        self._run = run
        self._free_slots = free_slots
        self._draining = draining
        self._held: dict[str, CallSettings] = {}
        """The settings of queued jobs only this replica may run (they hold secrets)."""
        self._wanted = anyio.Event()
        self._unqueued = 0
        """Jobs claimed here not yet queued for a run slot: their slots are spoken for."""
        self._claiming = anyio.Lock()
        self._reserved: Counter[str] = Counter()
        """Per owner: jobs admitted but not yet in the store (kept, queued, or a call's own run that may
        become a job), so that calls admitted at once cannot pass `max_jobs` together."""
        self._reservations: dict[str, Callable[[], None]] = {}
        """A call's own runs' reservations, by job, until the run ends or is kept."""
        self._tasks: anyio.abc.TaskGroup | None = None

    async def __aenter__(self) -> Self:
        self._tasks = await anyio.create_task_group().__aenter__()
        self._tasks.start_soon(self._claim_loop)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        tasks, self._tasks = self._tasks, None
        if tasks is not None:
            tasks.cancel_scope.cancel()
            await tasks.__aexit__(None, None, None)

    @property
    def idle(self) -> bool:
        """No job runs here and none is queued that only this replica can run."""
        return not self.book.pinned and all(job.done.is_set() for job in self.book.live.values())

    def wake(self) -> None:
        """A run slot may be free: look for queued jobs now."""
        self._wanted.set()

    async def admit(self, owner: str, request: Request, agent: str | None, *, counted: bool) -> Callable[[], None]:
        """Refuse a job this bridge cannot take: not running, over `max_jobs` (if `counted`), or with
        bad settings, inputs over their size limits or an unknown agent (so that they fail now, not
        in the job). A counted job is reserved until the returned function says it is in the store
        (or gone)."""
        if self._tasks is None:
            raise ClaudeMCPError("Background jobs need a running bridge: use `async with ClaudeBridge(...)`.")
        resolved = self._policy.resolve(request.settings, request.prompt)
        if agent is not None and agent not in resolved.agents:
            raise InvalidArguments(unknown_agent(agent, resolved.agents))
        if not counted:
            return lambda: None
        stored = await self.book.count(owner)
        if stored + self._reserved[owner] >= self._policy.max_jobs:  # no checkpoint from here to the reservation
            raise LimitReached(
                f"You have {self._policy.max_jobs} jobs (running or kept), the limit; cancel some or wait for "
                "finished ones to expire."
            )
        self._reserved[owner] += 1
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self._reserved[owner] -= 1
                if self._reserved[owner] <= 0:
                    del self._reserved[owner]

        return release

    async def start(self, owner: str, request: Request, *, agent: str | None, tool: str | None, kept: bool) -> Job:
        """Start a run here, in the background, and return its job at once (continuing a conversation,
        or a fork of it). Bad settings fail here, not in the job. The run is bounded by its timeout;
        its job is kept `job_retention_s` after. Not `kept`: a call's own run, which joins the job
        book only if the call lets it go on without it (`keep`)."""
        release = await self.admit(owner, request, agent, counted=True)  # a call's own run may be kept
        target = request.target
        job = Job(owner=owner, agent=agent, session_id=None if target.fork else target.resume, tool=tool, kept=kept)
        if kept:
            try:
                await self.book.add(job)
            finally:
                release()
        else:
            self._reservations[job.job_id] = release
        assert self._tasks is not None
        self._tasks.start_soon(self._run_job, job, request, None)
        return job

    async def keep(self, job: Job) -> None:
        """A call's own run goes on without the call: it becomes a job like any other."""
        if not job.kept:
            job.kept = True
            try:
                await self.book.add(job)
            finally:
                self._reservations.pop(job.job_id, lambda: None)()

    async def submit(
        self,
        owner: str,
        request: Request,
        *,
        agent: str | None,
        tool: str | None,
        batch_id: str | None = None,
        custom_id: str | None = None,
        counted: bool = True,
    ) -> JobRecord:
        """Queue a run in the store for whichever replica has a free run slot (this one first, if it
        has), and return its record at once. Bad settings fail here, not in the job. A job whose
        run needs a secret held only in this replica's memory (the caller's credential, MCP
        servers' settings) is run here, and fails if this replica stops before it starts. Not
        `counted`: a request of a Message Batch, which has a limit of its own (not `max_jobs`)."""
        release = await self.admit(owner, request, agent, counted=counted)
        pinned = self._policy.credentials == "caller" or request.settings.mcp_servers is not None
        now = time.time()
        record = JobRecord(
            namespace=owner,
            job_id=str(uuid.uuid4()),
            status="queued",
            agent=agent,
            session_id=None if request.target.fork else request.target.resume,
            created_at=now,
            updated_at=now,
            request=request.stored(),
            tool=tool,
            batch_id=batch_id,
            custom_id=custom_id,
        )
        if pinned:
            self._held[record.job_id] = request.settings
        try:
            await self.book.submit(record, pinned=pinned)
        finally:
            release()
        await self._claim(record.job_id)
        self.wake()
        return record

    async def cancel(self, owner: str, job_id: str) -> JobView:
        """Stop a job's run and every process it started, on whichever replica runs it."""
        return await self.book.cancel(owner, job_id)

    async def _claim_loop(self) -> None:
        """Claim queued jobs while there are free run slots. Woken by a job queued or ended here;
        otherwise it looks every `SYNC_S`, backing off to `IDLE_CLAIM_S` while there is nothing to
        claim. In caller-credential mode only this replica can run its callers' jobs, so it looks
        only when woken (and every `IDLE_CLAIM_S`, in case)."""
        idle_s = SYNC_S
        while True:
            with anyio.move_on_after(idle_s):
                await self._wanted.wait()
            self._wanted = anyio.Event()
            try:
                claimed = await self._claim()
            except Exception as exc:  # the store is unreachable for now: try again next time
                logger.warning("could not claim queued jobs: %s", exc, exc_info=unexpected(exc))
                claimed = 0
            pinned_only = self._policy.credentials == "caller"
            idle_s = IDLE_CLAIM_S if pinned_only else SYNC_S if claimed else min(idle_s * 2, IDLE_CLAIM_S)

    async def _claim(self, job_id: str | None = None) -> int:
        """Claim (the oldest, or just `job_id`) queued jobs for the free slots, and start them; how many."""
        for gone in self._held.keys() - self.book.pinned:  # cancelled or failed while queued: forget its secrets
            del self._held[gone]
        async with self._claiming:  # one claim at a time, each counting the jobs the last one started
            free = 0 if self._draining() else self._free_slots(self._unqueued)
            if self._tasks is None or free <= 0:
                return 0
            claimed = await self.book.claim(self._namespace, free, job_id)
            for record in claimed:
                job = Job.claimed(record)
                self.book.live[job.job_id] = job
                request = self._request_of(record)
                if request is None:
                    job.finish("failed", error="The job's request could not be read on this replica.")
                    await self.book.save(job)
                    continue
                self._unqueued += 1
                self._tasks.start_soon(self._run_job, job, request, self._queued_once())
            return len(claimed)

    def _request_of(self, record: JobRecord) -> Request | None:
        stored = record.request or {}
        settings = self._held.pop(record.job_id, None)
        try:
            if settings is None:
                settings = CallSettings.model_validate(stored.get("settings") or {})
            prompt = str(stored["prompt"])
        except (ValidationError, KeyError):
            return None
        return Request(prompt, settings, RunTarget(resume=stored.get("session_id"), fork=bool(stored.get("fork"))))

    def _queued_once(self) -> Callable[[], None]:
        """What a claimed job's run calls once it queues for its run slot (or ends without one)."""
        done = False

        def queued() -> None:
            nonlocal done
            if not done:
                done = True
                self._unqueued -= 1

        return queued

    async def _run_job(self, job: Job, request: Request, queued: Callable[[], None] | None) -> None:
        """Run a job to its end; `queued` (a claimed job's) is called once it queues for its run slot."""
        with job.scope:
            try:
                result = await self._run(
                    job,
                    request.prompt,
                    request.settings,
                    request.target,
                    keep_warm=job.tool != "batch",
                    queueing=queued,
                )
                job.finish("completed", result=result)
            except RunFailed as exc:
                job.finish("failed", result=exc.result, error=str(exc), failure=exc)
            except ClaudeMCPError as exc:
                job.finish("failed", error=str(exc), failure=exc)
            except Exception:
                logger.exception("job %s failed unexpectedly", job.job_id)
                job.finish("failed", error="The job failed because of an internal error; the server log has details.")
            finally:
                if queued is not None:
                    queued()
        if not job.done.is_set():
            job.finish("cancelled", error=CANCELLED)
        self._reservations.pop(job.job_id, lambda: None)()
        if job.kept:
            with anyio.CancelScope(shield=True):
                await self.book.save(job)
        self.wake()  # a run slot is free: a queued job may take it
