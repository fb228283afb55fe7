"""The store: one async interface for what outlives a process, and its records.

Two backends implement it: `SqliteStore` (the default, one file under the state directory,
for one process) and `PostgresStore` (several replicas share it). Everything is scoped by a
*namespace* (today the tenant, later the caller), and nothing one namespace names reaches
another's rows. Times are Unix seconds passed in by the caller, so tests can inject a clock.

What lives here, one role (a Protocol) each, `Store` being them all:
- `Transcripts`: claude-agent-sdk's own `SessionStore` protocol, per namespace (`transcripts(ns)`);
- `SessionIndex`: the conversations (owner, title, first prompt, cwd, times, fork origin, the
  replica that holds it warm) with each conversation's sticky settings;
- `JobQueue`: jobs (status, result, recent activity, a pending permission question, a lease);
- `Batches`: Message Batches, whose requests are jobs carrying the batch's id;
- `Leases`: leases on named locks (turn-taking per conversation across replicas);
- `Histories`: which conversation a Messages API history continues;
- `UsageLedger`: what each run used, per model (tokens, cost), for quotas and reports;
- `ChainAccounts`: the budget a chain of delegations shares, keyed by the chain's id, and which
  chain each CLI process's current turn belongs to.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol

from claude_agent_sdk import SessionStore
from pydantic import BaseModel, ConfigDict, Field

JobStatus = Literal["queued", "running", "completed", "failed", "cancelled"]
"""`queued`: waiting for a replica with a free run slot to claim it; `running`: claimed."""
FINISHED: tuple[JobStatus, ...] = ("completed", "failed", "cancelled")


class SessionRecord(BaseModel):
    """One conversation in the index."""

    model_config = ConfigDict(frozen=True)

    namespace: str
    session_id: str
    cwd: str | None = None
    title: str | None = None
    first_prompt: str | None = None
    created_at: float
    updated_at: float
    forked_from: str | None = None
    warm_replica: str | None = None
    settings: dict[str, Any] = Field(default_factory=dict)
    """The conversation's sticky settings (a `CallSettings` dump); never secrets."""


class JobRecord(BaseModel):
    """One background run, as every replica sees it."""

    model_config = ConfigDict(frozen=True)

    namespace: str
    job_id: str
    status: JobStatus = "running"
    agent: str | None = None
    session_id: str | None = None
    created_at: float
    updated_at: float
    finished_at: float | None = None
    result: dict[str, Any] | None = None
    """The run's `AskResult` as JSON, once it ended with one."""
    error: str | None = None
    progress: list[str] = Field(default_factory=list)
    text: str = ""
    pending_permission: dict[str, Any] | None = None
    """The question the run waits on (a `PermissionRequest` as JSON)."""
    replica: str | None = None
    """The replica running it; on a queued job, the only replica that may claim it (one that holds
    its owner's credential or its settings' secrets in memory), or None: any replica."""
    lease_expires_at: float | None = None
    """A running job's lease (and a queued job's that only one replica may claim): when it runs out
    the job is failed, its replica having died."""
    request: dict[str, Any] | None = None
    """What to run, for the replica that claims it: prompt, settings (no secrets), session_id, fork."""
    tool: str | None = None
    """Whose result it is: the MCP tool that started it, `batch`, or None (the job tools read it)."""
    batch_id: str | None = None
    custom_id: str | None = None
    error_kind: str | None = None
    """Why a failed job failed, as a `ClaudeMCPError.kind` (APIs that type their errors read it)."""
    error_status: int | None = None
    """The Anthropic API's HTTP status, where the model's API refused the run."""
    cancel_requested: bool = False
    """Set by `request_cancel` (any replica); never written by `save_job`."""


BATCH_EXPIRED = "The batch expired before this request was run."
"""The error of a batch's job that was still queued when its batch expired (counted as `expired`)."""
BatchOutcome = Literal["queued", "running", "completed", "failed", "cancelled", "expired"]


class BatchRecord(BaseModel):
    """One Message Batch. Its requests are the jobs with its `batch_id` (and their `custom_id`)."""

    model_config = ConfigDict(frozen=True)

    namespace: str
    batch_id: str
    created_at: float
    expires_at: float
    """When its requests still queued stop being run (they end `expired`)."""
    request_count: int
    cancel_initiated_at: float | None = None
    ended_at: float | None = None
    """When someone first saw that none of its requests was left to run."""


class UsageRecord(BaseModel):
    """What one run used of one model (a run that used several models has a record for each)."""

    model_config = ConfigDict(frozen=True)

    run_id: str
    model: str
    """The model as the CLI reports it (`""` when the run reported none)."""
    namespace: str
    surface: str
    """The MCP tool that ran it, `messages`, `chat_completions` or `batch` (the APIs), or `none`."""
    started_at: float
    duration_ms: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: float = 0.0
    """As the CLI computes it."""
    outcome: str = "ok"
    session_id: str | None = None
    job_id: str | None = None
    chain_id: str
    """The run at the top of its chain of delegations (this run's own id at the top)."""
    depth: int = 0


class UsageTotals(BaseModel):
    """Sums over some usage records."""

    runs: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: float = 0.0

    @property
    def tokens(self) -> int:
        """The tokens quotas count: input, output and cache writes (cache reads are not counted)."""
        return self.input_tokens + self.output_tokens + self.cache_write_tokens


UsageGroup = Literal["model", "namespace"]


class ChainAccount(BaseModel):
    """The budget of a chain of delegations, and what the chain's stored usage records cost."""

    chain_id: str
    budget_usd: float | None
    """None: the chain has no budget (its top call had no `max_budget_usd`)."""
    spent_usd: float = 0.0
    runs: int = 0


class UsageRow(UsageTotals):
    """One line of a usage report: a time bucket (its start, Unix seconds) and a group's sums."""

    bucket_start: float | None = None
    model: str | None = None
    namespace: str | None = None


# The store's roles. A component asks for the role it uses (`SessionLocks` for `Leases`,
# `QuotaTotals` for a `UsageLedger`, …), so that a test can hand it a small fake; `Store` is them
# all. `claude_mcp.state.conformance` checks each role's contracts against an implementation. Every
# method is safe to call from the event loop: backends do their I/O off it.


class Transcripts(Protocol):
    """Where the CLI's transcripts are mirrored, per namespace."""

    def transcripts(self, namespace: str) -> SessionStore:
        """The SDK `SessionStore` for one namespace (append, load, list_sessions,
        list_session_summaries, delete, list_subkeys)."""
        ...


class SessionIndex(Protocol):
    """The conversations of each namespace: one row each, with its sticky settings."""

    async def put_session(self, record: SessionRecord) -> None:
        """Insert or replace a conversation's index row."""
        ...

    async def get_session(self, namespace: str, session_id: str) -> SessionRecord | None: ...

    async def list_sessions(self, namespace: str, *, limit: int, offset: int) -> list[SessionRecord]:
        """A page, most recently updated first. Its cost must not grow with the number of rows."""
        ...

    async def count_sessions(self, namespace: str) -> int: ...

    async def delete_session(self, namespace: str, session_id: str) -> bool:
        """Remove the index row (the transcript is deleted through `transcripts`), and the
        Messages API histories that name it."""
        ...

    async def set_warm(self, namespace: str, session_id: str, replica: str | None) -> None:
        """Record which replica holds the conversation warm (None: none)."""
        ...


class JobQueue(Protocol):
    """Background runs every replica sees: queued, claimed by one replica, leased while it runs,
    cancelled or answered from any replica. Job ids are unique over every namespace."""

    async def save_job(self, record: JobRecord) -> None:
        """Insert or update a job, leaving `cancel_requested` and any permission answer as they are
        (`ValueError` if the id is another namespace's job)."""
        ...

    async def get_job(self, namespace: str, job_id: str) -> JobRecord | None: ...

    async def list_jobs(self, namespace: str, *, limit: int = 100) -> list[JobRecord]:
        """Newest first; not a batch's requests (they are listed with their batch)."""
        ...

    async def count_jobs(self, namespace: str) -> int:
        """The namespace's jobs, except those of batches (which have a limit of their own)."""
        ...

    async def request_cancel(self, namespace: str, job_id: str) -> bool:
        """Ask the replica running a job to stop it. False if there is no such job."""
        ...

    async def cancel_requested(self, job_ids: list[str]) -> list[str]:
        """Of these jobs, the ones whose cancellation was requested."""
        ...

    async def answer_permission(self, namespace: str, job_id: str, permission_id: str, answer: dict[str, Any]) -> bool:
        """Answer the job's pending question; False if that question is not pending."""
        ...

    async def take_permission_answer(self, job_id: str, permission_id: str) -> dict[str, Any] | None:
        """The answer to that question, once given (read and cleared atomically)."""
        ...

    async def renew_leases(self, replica: str, job_ids: list[str], until: float) -> list[str]:
        """Extend the leases of the jobs this replica runs (or alone may claim); the ones still
        running or queued."""
        ...

    async def fail_expired_jobs(self, now: float, message: str) -> list[JobRecord]:
        """Mark running jobs whose lease ran out as failed (their replica died); return them."""
        ...

    async def expire_jobs(self, finished_before: float) -> int:
        """Delete jobs that finished before this time, except those of a batch that still exists
        (they go with their batch); how many."""
        ...

    async def claim_jobs(
        self, namespace: str, replica: str, limit: int, *, now: float, lease_until: float, job_id: str | None = None
    ) -> list[JobRecord]:
        """Claim up to `limit` of the namespace's queued jobs (oldest first; only `job_id`, if
        given) that this replica may run, passing over those of expired batches: they become
        `running` here. Replicas claiming at once never claim the same job (PostgreSQL: `FOR
        UPDATE SKIP LOCKED`)."""
        ...

    async def cancel_queued(self, namespace: str, job_id: str, now: float, message: str) -> bool:
        """Cancel a job no replica has claimed yet. False if it is not queued."""
        ...


class Leases(Protocol):
    """Leases on named locks (turn-taking per conversation across replicas)."""

    async def try_lock(self, key: str, holder: str, until: float, now: float) -> bool:
        """Take the lock if it is free, expired, or already this holder's (then extend it)."""
        ...

    async def unlock(self, key: str, holder: str) -> None:
        """Release the lock if this holder has it."""
        ...


class Histories(Protocol):
    """Which conversation a Messages API history (its digest) continues, per namespace."""

    async def put_history(self, namespace: str, digest: str, session_id: str, now: float) -> None:
        """Record that a conversation's history so far (its digest) is this session."""
        ...

    async def session_for_history(self, namespace: str, digest: str) -> str | None: ...


class Batches(Protocol):
    """Message Batches. A batch's requests are jobs of the `JobQueue` carrying its id."""

    async def put_batch(self, record: BatchRecord) -> None:
        """Insert or replace a batch (its jobs are saved one by one, with `save_job`)."""
        ...

    async def get_batch(self, namespace: str, batch_id: str) -> BatchRecord | None: ...

    async def list_batches(
        self, namespace: str, *, limit: int, before_id: str | None = None, after_id: str | None = None
    ) -> list[BatchRecord]:
        """Up to `limit` batches, newest first: the newest of all, those just older than `after_id`,
        or those just newer than `before_id` (none if the cursor is not the namespace's batch)."""
        ...

    async def batch_jobs(
        self, namespace: str, batch_id: str, *, limit: int, after_custom_id: str | None = None
    ) -> list[JobRecord]:
        """A page of the batch's jobs in `custom_id` order, after `after_custom_id`."""
        ...

    async def batch_counts(self, namespace: str, batch_ids: list[str]) -> dict[str, dict[BatchOutcome, int]]:
        """How many of each batch's jobs are in each status (those cancelled because the batch
        expired apart, as `expired`); a status no job is in is left out."""
        ...

    async def count_batch_jobs(self, namespace: str) -> int:
        """The namespace's batch jobs still queued or running, over all its batches."""
        ...

    async def cancel_batch(self, namespace: str, batch_id: str, now: float, message: str) -> BatchRecord | None:
        """Record that the batch's cancellation began (the first time only), cancel its queued jobs
        with `message`, and ask the replicas running the others to stop them. None: no such batch."""
        ...

    async def expire_batch(self, namespace: str, batch_id: str, now: float) -> int:
        """Cancel the batch's jobs still queued, as expired (`BATCH_EXPIRED`); how many."""
        ...

    async def end_batch(self, namespace: str, batch_id: str, now: float) -> BatchRecord | None:
        """Record that the batch has ended, unless it already was: the record, with the first time."""
        ...

    async def delete_batch(self, namespace: str, batch_id: str) -> bool:
        """Delete a batch and its jobs. False if there is no such batch."""
        ...

    async def expire_batches(self, created_before: float) -> int:
        """Delete the batches (of every namespace) created before this time, with their jobs; how many."""
        ...


class UsageLedger(Protocol):
    """What each run used, per model: for quotas and usage reports."""

    async def add_usage(self, records: list[UsageRecord]) -> None:
        """Store usage records (one already stored, by run and model, is left as it is)."""
        ...

    async def usage_totals(self, namespace: str, since: list[float]) -> list[UsageTotals]:
        """The namespace's sums since each of these times (records by when their run started)."""
        ...

    async def usage_report(
        self,
        *,
        since: float,
        until: float,
        namespace: str | None = None,
        bucket_minutes: int | None = None,
        by: tuple[UsageGroup, ...] = (),
    ) -> list[UsageRow]:
        """Sums of runs started in [since, until), of one namespace (None: all), in buckets of
        whole minutes since the epoch (None: one), per group; by bucket, then largest cost first."""
        ...


class ChainAccounts(Protocol):
    """The budgets chains of delegations share. What a chain spent is the sum of the `UsageLedger`'s
    records with its `chain_id`, over every namespace."""

    async def open_chain(self, chain_id: str, budget_usd: float, now: float) -> None:
        """Open a chain's account with this budget, unless it is already open (its budget stays)."""
        ...

    async def chain_account(self, chain_id: str) -> ChainAccount | None:
        """The chain's budget and the sum of its usage records over every namespace (None: no account)."""
        ...

    async def point_chain(self, key: str | None, chain_id: str, now: float, *, budget_usd: float | None = None) -> None:
        """In one transaction: point a CLI process's chain key at the chain of its current turn (not
        when `key` is None or the chain's own id), and open that chain's account with `budget_usd`
        (if given; an account already open keeps its budget)."""
        ...

    async def forget_chains(self, before: float) -> None:
        """Forget the chain accounts opened and the keys pointed before `before` (their turns are
        long over; the usage records stay)."""
        ...

    async def current_chain(self, key: str) -> ChainAccount:
        """The chain a key points at (the key itself if it points nowhere): its budget (None: no
        account) and the sum of its usage records over every namespace."""
        ...


# Roles whose contracts read each other's rows, for a component (and a check) that needs both.


class IndexedHistories(Histories, SessionIndex, Protocol):
    """Histories with the session index whose conversations they name."""


class BatchesOfJobs(Batches, JobQueue, Protocol):
    """Batches with the job queue that holds their requests."""


class LedgerAccounts(ChainAccounts, UsageLedger, Protocol):
    """Chain accounts with the usage ledger whose records they sum."""


class Store(Transcripts, SessionIndex, JobQueue, Leases, Histories, Batches, UsageLedger, ChainAccounts, Protocol):
    """The state layer's one interface: every role, on one database, opened and closed."""

    async def open(self) -> None:
        """Connect, and create or migrate the schema (safe when several replicas start at once)."""
        ...

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Return once the database answers (`errors.StoreUnavailable`, or the driver's error, if not)."""
        ...
