"""Background jobs: runs that outlive the tool call that started them.

A `Job` is the live run on the replica that runs it: it records what the run does (status
lines, the answer streamed so far) and, once done, its result or error; callers that wait on
it (`run_agent`, `get_job`) attach their progress reporter for as long as they wait. Its
`record` is what the store keeps, so every replica can read it (`JobView.of_record`); see
`job_book` for how the two meet.
"""

from __future__ import annotations

import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import anyio
from claude_agent_sdk import Message, SystemMessage
from pydantic import BaseModel, Field

from ..errors import ClaudeMCPError, InvalidArguments
from ..state.store import JobRecord
from ..telemetry import metrics
from .observer import RunObserver, activity_of, text_delta
from .permissions import PermissionAnswer, PermissionRequest
from .results import AskResult, RunFailed

JobState = Literal["running", "completed", "failed", "cancelled"]
"""What clients see: a job still queued in the store reads `running` (with a progress line saying so)."""


class JobNotFound(ClaudeMCPError):
    kind = "job_not_found"

    def __init__(self) -> None:
        # The same words whether the job never existed, expired, or belongs to someone else.
        super().__init__("No job with that job_id exists for you (finished jobs are kept for a limited time).")


class JobView(BaseModel):
    """A job as a client sees it."""

    job_id: str
    status: JobState = Field(description="`running`, then `completed`, `failed` or `cancelled`.")
    agent: str | None = Field(None, description="The agent it runs as, if any.")
    session_id: str | None = Field(None, description="Its conversation (known once the run has started).")
    started_at: str
    finished_at: str | None = None
    progress: list[str] = Field(default_factory=list, description="The latest status lines, oldest first.")
    text: str = Field("", description="The answer streamed so far (its last 4000 characters).")
    result: AskResult | None = Field(None, description="The full result, once the run has ended with one.")
    error: str | None = Field(None, description="Why it failed or was cancelled.")
    pending_permission: PermissionRequest | None = Field(
        None,
        description="A tool use waiting for your approval: answer with `get_job(job_id, permission_id, decision)`.",
    )

    @classmethod
    def of_record(cls, record: JobRecord) -> JobView:
        queued = record.status == "queued"
        return cls(
            job_id=record.job_id,
            status="running" if queued else record.status,
            agent=record.agent,
            session_id=record.session_id,
            started_at=_iso(record.created_at) or "",
            finished_at=_iso(record.finished_at),
            progress=[*record.progress, QUEUED_LINE] if queued else record.progress,
            text=record.text,
            result=AskResult.model_validate(record.result) if record.result is not None else None,
            error=record.error,
            pending_permission=(
                PermissionRequest.model_validate(record.pending_permission) if record.pending_permission else None
            ),
        )


QUEUED_LINE = "queued: waiting for a free run slot on any replica"


def _iso(moment: float | None) -> str | None:
    return datetime.fromtimestamp(moment, tz=UTC).isoformat() if moment is not None else None


@dataclass(eq=False)
class Job:
    """One background run and what is known of it so far. Also the run's observer."""

    owner: str
    agent: str | None
    job_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    status: JobState = "running"
    session_id: str | None = None
    started_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    result: AskResult | None = None
    error: str | None = None
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    done: anyio.Event = field(default_factory=anyio.Event)
    listeners: set[RunObserver] = field(default_factory=set)
    pending: PermissionRequest | None = None
    changed: anyio.Event = field(default_factory=anyio.Event)
    """Set when the job finishes or starts waiting for a permission decision."""
    _answered: anyio.Event = field(default_factory=anyio.Event)
    _answer: PermissionAnswer | None = None
    _status_lines: deque[str] = field(default_factory=lambda: deque(maxlen=20))
    _text: list[str] = field(default_factory=list)
    dirty: bool = True
    """Changed since the store last saw it."""
    saving: anyio.Lock = field(default_factory=anyio.Lock, repr=False)
    """Held while its record is written: two writes of one job (the periodic sync's and its end's) land in
    order, so an older snapshot never overwrites a newer one on a store with several connections."""
    kept: bool = True
    """In the job book (listed, kept, synced with the store). A call's run that may outlive the call
    is a job not kept until it does; until then only its caller can be asked its questions."""
    failure: ClaudeMCPError | None = None
    """Why it failed, as the run raised it (for a caller waiting on it to raise the same)."""
    tool: str | None = None
    """Whose result it is: the MCP tool that started it, `batch`, or None."""
    batch_id: str | None = None
    custom_id: str | None = None
    request: dict[str, Any] | None = None
    """What it runs, as queued (kept so the record stays whole)."""

    @classmethod
    def claimed(cls, record: JobRecord) -> Job:
        """The live job for a record this replica has just claimed."""
        return cls(
            owner=record.namespace,
            agent=record.agent,
            job_id=record.job_id,
            session_id=record.session_id,
            started_at=record.created_at,
            tool=record.tool,
            batch_id=record.batch_id,
            custom_id=record.custom_id,
            request=record.request,
        )

    def record(self, replica: str, lease_until: float | None) -> JobRecord:
        """What the store keeps of this job."""
        view = self.view()
        cause = self.failure.cause if isinstance(self.failure, RunFailed) else self.failure  # an error result: why
        return JobRecord(
            namespace=self.owner,
            job_id=self.job_id,
            status=self.status,
            agent=self.agent,
            session_id=self.session_id,
            created_at=self.started_at,
            updated_at=time.time(),
            finished_at=self.finished_at,
            result=self.result.model_dump(mode="json") if self.result is not None else None,
            error=self.error,
            progress=view.progress,
            text=view.text,
            pending_permission=self.pending.model_dump(mode="json") if self.pending is not None else None,
            replica=replica,
            lease_expires_at=lease_until if self.status == "running" else None,
            request=self.request,
            tool=self.tool,
            batch_id=self.batch_id,
            custom_id=self.custom_id,
            error_kind=cause.kind if cause is not None else None,
            error_status=getattr(cause, "status", None),
        )

    def view(self) -> JobView:
        return JobView(
            job_id=self.job_id,
            status=self.status,
            agent=self.agent,
            session_id=self.session_id,
            started_at=_iso(self.started_at) or "",
            finished_at=_iso(self.finished_at),
            progress=list(self._status_lines),
            text="".join(self._text)[-4000:],
            result=self.result,
            error=self.error,
            pending_permission=self.pending,
        )

    async def wait(self, wait_s: float, listener: RunObserver | None = None, *, until_question: bool = False) -> None:
        """Wait up to `wait_s` for the job to finish (or, with `until_question`, to wait for a
        permission decision), passing its progress to `listener` meanwhile."""
        if listener is not None:
            self.listeners.add(listener)
        try:
            with anyio.move_on_after(wait_s):
                while not self.done.is_set() and not (until_question and self.pending is not None):
                    if self.changed.is_set():
                        self.changed = anyio.Event()
                    await self.changed.wait()
        finally:
            if listener is not None:
                self.listeners.discard(listener)

    def finish(
        self,
        status: JobState,
        *,
        result: AskResult | None = None,
        error: str | None = None,
        failure: ClaudeMCPError | None = None,
    ) -> None:
        self.status, self.result, self.error, self.failure = status, result, error, failure
        if self.kept:
            metrics.JOBS_FINISHED.labels(status).inc()
        if result is not None:
            self.session_id = result.session_id
        self.finished_at = time.time()
        self.dirty = True
        self.done.set()
        self.changed.set()

    # The RunObserver protocol: record, and pass on to whoever is waiting right now.
    async def queued(self, position: int) -> None:
        self._status_lines.append(f"queued, position {position}")
        self.dirty = True
        for listener in list(self.listeners):
            await listener.queued(position)

    async def waiting_for_session(self) -> None:
        self._status_lines.append("waiting for the previous call on this conversation to finish")
        self.dirty = True
        for listener in list(self.listeners):
            await listener.waiting_for_session()

    async def ask_permission(self, request: PermissionRequest) -> PermissionAnswer | None:
        """Ask a waiting client if one can be asked; else park the question until `answer`."""
        for listener in list(self.listeners):
            if (answer := await listener.ask_permission(request)) is not None:
                return answer
        if not self.kept:
            return None  # a call's own run: as if it ran in the call, nobody else can be asked
        self._status_lines.append(f"waiting for permission: {request.description}")
        self.pending, self._answer, self._answered = request, None, anyio.Event()
        self.dirty = True
        self.changed.set()
        try:
            await self._answered.wait()
            return self._answer
        finally:
            self.pending = None
            self.dirty = True

    def answer(self, permission_id: str, answer: PermissionAnswer) -> None:
        """Decide the job's pending permission request."""
        if self.pending is None or self.pending.permission_id != permission_id:
            raise InvalidArguments(
                "That permission request is not pending (it was answered, timed out, or never existed); "
                "see the job's pending_permission."
            )
        self._answer, self.pending = answer, None
        self._answered.set()

    async def message(self, message: Message) -> None:
        if isinstance(message, SystemMessage) and message.subtype == "init":
            self.session_id = message.data.get("session_id", self.session_id)
            self.dirty = True
        if chunk := text_delta(message):
            self._text.append(chunk)
            self.dirty = True
        if activity := activity_of(message):
            self._status_lines.extend(activity)
            self.dirty = True
        for listener in list(self.listeners):
            await listener.message(message)
