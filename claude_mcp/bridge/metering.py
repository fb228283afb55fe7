"""Metering: what every run used, and the quotas that cap a namespace.

`ClaudeBridge._run` calls `Meter.admit` before a run starts (the quotas are checked against the
store, so replicas share them, and the run's `max_budget_usd` is clipped to what is left of a
USD quota) and `Meter.ran` once the CLI has given its result. `ran` only queues the run's usage
records; a writer in the bridge's own tasks stores them half a second later, in one transaction
with whatever else was queued meanwhile, so the result never waits for the store. What a run
used is the CLI's own figures: its per-model usage and cost, which on a warm process add up
over the process's life, so each run's share is the difference since the last.

A chain of delegations (claude-mcp servers started by the CLIs of the runs above them) spends from
one account: the first run below the top opens it in the store with the top call's `max_budget_usd`
(carried down in `CLAUDE_MCP_MAX_BUDGET_USD`), and every run below the top is clipped to what the
chain's usage records leave of it, or refused once nothing is. A run below the top stores its
records before it answers (`settle`), so the run above, and its next delegation, count them; the
run at the top reads the chain's total once it has its result.

Quotas are counted in fixed windows: the clock minute, the UTC day, the UTC calendar month.
Until the writer has stored them, this bridge's own records (and its runs in flight, for the
runs per minute) are counted from memory; another replica sees them once they are written.
"""

from __future__ import annotations

import logging
import time
import uuid
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

import anyio
from pydantic import BaseModel, Field

from ..config.policy import Policy, ResolvedSettings
from ..errors import ChainBudgetExceeded, QuotaExceeded
from ..state.store import Store, UsageRecord, UsageTotals
from ..telemetry import context
from .identity import inherited_budget, inherited_chain
from .jobs import Job
from .observer import RunObserver
from .options import CHAIN_ENV

if TYPE_CHECKING:
    from claude_agent_sdk import ResultMessage

    from .process import CLIProcess, RunOutcome

logger = logging.getLogger(__name__)

Window = Literal["minute", "day", "month"]
Measure = Literal["usd", "runs", "tokens"]
_QUOTAS: tuple[tuple[str, Window, Measure], ...] = (
    ("quota_usd_per_day", "day", "usd"),
    ("quota_usd_per_month", "month", "usd"),
    ("quota_runs_per_minute", "minute", "runs"),
    ("quota_tokens_per_day", "day", "tokens"),
)
_MAX_QUEUED = 100_000
"""Records kept in memory while the store cannot be written; beyond it the oldest are dropped."""
_RETRY_S = 5.0
_GATHER_S = 0.5
"""How long the writer waits after a record is queued before it writes."""


def window(kind: Window, now: float) -> tuple[float, float]:
    """The fixed window (start, end) that `now` falls in, in Unix seconds (UTC)."""
    if kind == "minute":
        start = now // 60 * 60
        return start, start + 60
    moment = datetime.fromtimestamp(now, tz=UTC)
    if kind == "day":
        day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
        return day.timestamp(), (day + timedelta(days=1)).timestamp()
    month = moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    following = (
        month.replace(year=month.year + 1, month=1) if month.month == 12 else month.replace(month=month.month + 1)
    )
    return month.timestamp(), following.timestamp()


def measured(measure: Measure, totals: UsageTotals) -> float:
    if measure == "usd":
        return totals.cost_usd
    return float(totals.runs if measure == "runs" else totals.tokens)


class QuotaState(BaseModel):
    """One quota of a namespace, and how much of it is used in its current window."""

    quota: str = Field(description="The policy setting: `quota_usd_per_day`, `quota_runs_per_minute`, …")
    limit: float
    used: float
    left: float
    resets_at: str = Field(description="When the current window ends (RFC 3339, UTC).")


@dataclass(frozen=True, slots=True)
class _Quota:
    name: str
    limit: float
    measure: Measure
    start: float
    end: float


@dataclass(eq=False)
class Metered:
    """A run admitted by the meter: what its usage records will say of it."""

    run_id: str
    started_at: float
    chain_id: str
    surface: str
    job: Job | None
    budget_usd: float | None = None
    """The run's `max_budget_usd`, as admitted."""
    started: float = field(default_factory=time.monotonic)


@dataclass
class _Figures:
    """A process's cumulative usage of one model, as the CLI reports it."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: float = 0.0

    def minus(self, before: _Figures) -> _Figures:
        inputs, outputs, reads, writes = (max(0, a - b) for a, b in zip(self._ints(), before._ints(), strict=True))
        return _Figures(inputs, outputs, reads, writes, max(0.0, self.cost_usd - before.cost_usd))

    def _ints(self) -> tuple[int, int, int, int]:
        return self.input_tokens, self.output_tokens, self.cache_read_tokens, self.cache_write_tokens


def _int(value: Any) -> int:
    return value if isinstance(value, int) and value > 0 else 0


def figures_of(result: ResultMessage) -> dict[str, _Figures]:
    """The per-model figures of a result (cumulative over its process), from `modelUsage`."""
    found = {}
    for model, usage in (result.model_usage or {}).items():
        got: dict[str, Any] = dict(usage)
        found[model] = _Figures(
            _int(got.get("inputTokens")),
            _int(got.get("outputTokens")),
            _int(got.get("cacheReadInputTokens")),
            _int(got.get("cacheCreationInputTokens")),
            float(got.get("costUSD") or 0.0),
        )
    return found


def outcome_of(result: ResultMessage) -> str:
    """`ok`, `api_<status>`, or the CLI's error subtype."""
    if not result.is_error:
        return "ok"
    if result.api_error_status is not None or result.terminal_reason == "api_error":
        return f"api_{result.api_error_status or 'error'}"
    return result.subtype if result.subtype != "success" else "error"


class Meter:
    """One namespace's metering on one bridge: quota checks, and the queue of usage records."""

    def __init__(
        self, store: Store, namespace: str, policy: Policy, *, depth: int, now: Callable[[], float] = time.time
    ) -> None:
        self.store = store
        self.namespace = namespace
        self.policy = policy
        self.depth = depth
        self.now = now
        """The clock quotas are counted by (tests move it to the next window)."""
        self.chain = inherited_chain()
        self.chain_budget = inherited_budget()
        """The budget of the run above (at depth 1, the top call's): a chain's account opens with it."""
        self._opened: set[str] = set()
        self._queue: list[UsageRecord] = []
        self._writing: list[UsageRecord] = []
        self._in_flight: dict[str, float] = {}
        self._wake = anyio.Event()
        self._lock = anyio.Lock()
        self._seen: weakref.WeakKeyDictionary[CLIProcess, dict[str, _Figures]] = weakref.WeakKeyDictionary()

    def _quotas(self, now: float) -> list[_Quota]:
        quotas = []
        for name, kind, measure in _QUOTAS:
            if (limit := getattr(self.policy, name)) is not None:
                quotas.append(_Quota(name, float(limit), measure, *window(kind, now)))
        return quotas

    def _local(self, since: float) -> UsageTotals:
        """This bridge's records not yet in the store (and its runs in flight) since a time."""
        records = [r for r in (*self._writing, *self._queue) if r.started_at >= since]
        runs = {r.run_id for r in records} | {run for run, at in self._in_flight.items() if at >= since}
        return UsageTotals(
            runs=len(runs),
            input_tokens=sum(r.input_tokens for r in records),
            output_tokens=sum(r.output_tokens for r in records),
            cache_read_tokens=sum(r.cache_read_tokens for r in records),
            cache_write_tokens=sum(r.cache_write_tokens for r in records),
            cost_usd=sum(r.cost_usd for r in records),
        )

    def _local_chain_usd(self, chain_id: str) -> float:
        """What this bridge's records not yet in the store cost the chain."""
        return sum(r.cost_usd for r in (*self._writing, *self._queue) if r.chain_id == chain_id)

    async def _chain_left(self, chain_id: str, now: float) -> float | None:
        """What the chain's account leaves (None: no account in this store); opens it the first time."""
        if self.chain_budget is not None and chain_id not in self._opened:
            await self.store.open_chain(chain_id, self.chain_budget, now)
            self._opened.add(chain_id)
        account = await self.store.chain_account(chain_id)
        if account is None:
            return None
        spent = account.spent_usd + self._local_chain_usd(chain_id)
        if spent >= account.budget_usd:
            raise ChainBudgetExceeded(chain_id, budget_usd=account.budget_usd, spent_usd=round(spent, 6))
        return account.budget_usd - spent

    async def _used(self, quotas: list[_Quota]) -> list[float]:
        stored = await self.store.usage_totals(self.namespace, [q.start for q in quotas])
        return [
            measured(q.measure, totals) + measured(q.measure, self._local(q.start))
            for q, totals in zip(quotas, stored, strict=True)
        ]

    async def status(self) -> list[QuotaState]:
        """The namespace's quotas, with what is used and left of each in its current window."""
        quotas = self._quotas(self.now())
        used = await self._used(quotas) if quotas else []
        return [
            QuotaState(
                quota=q.name,
                limit=q.limit,
                used=round(u, 6),
                left=round(max(0.0, q.limit - u), 6),
                resets_at=datetime.fromtimestamp(q.end, tz=UTC).isoformat().replace("+00:00", "Z"),
            )
            for q, u in zip(quotas, used, strict=True)
        ]

    async def admit(self, resolved: ResolvedSettings, observer: RunObserver | None) -> tuple[ResolvedSettings, Metered]:
        """Admit a run, or raise `QuotaExceeded` (or `ChainBudgetExceeded`); its settings with the
        budget clipped to what is left of the USD quotas and of its chain's account."""
        now = self.now()
        run_id = uuid.uuid4().hex
        inner = getattr(observer, "observed", observer)
        job = inner if isinstance(inner, Job) else None
        facts = context.current()
        tool = facts.tool if facts is not None and facts.tool not in (None, "none") else None
        surface = tool or (job.tool if job is not None else None) or "none"
        metered = Metered(run_id, now, self.chain or run_id, surface, job)
        if not self.policy.metering:
            return resolved, metered
        self._in_flight = {run: at for run, at in self._in_flight.items() if at > now - 120}
        if quotas := self._quotas(now):
            left: float | None = None
            for quota, used in zip(quotas, await self._used(quotas), strict=True):
                if used >= quota.limit:
                    raise QuotaExceeded(
                        quota.name, limit=quota.limit, used=round(used, 6), resets_at=quota.end, now=now
                    )
                if quota.measure == "usd":
                    left = min(left, quota.limit - used) if left is not None else quota.limit - used
            if left is not None and (resolved.max_budget_usd is None or resolved.max_budget_usd > left):
                resolved = replace(resolved, max_budget_usd=round(left, 6))
        if self.depth > 0 and self.chain is not None:
            left = await self._chain_left(self.chain, now)
            if left is not None and (resolved.max_budget_usd is None or resolved.max_budget_usd > left):
                resolved = replace(resolved, max_budget_usd=round(left, 6))
        self._in_flight[run_id] = now
        metered.budget_usd = resolved.max_budget_usd
        return resolved, metered

    def ran(self, metered: Metered, process: CLIProcess, outcome: RunOutcome) -> None:
        """Queue the usage records of a run that gave a result (no I/O: the writer stores them)."""
        self._in_flight.pop(metered.run_id, None)
        if not self.policy.metering:
            return
        result = outcome.result
        now_figures = figures_of(result)
        before = self._seen.get(process, {})
        self._seen[process] = now_figures
        shares = {model: figures.minus(before.get(model, _Figures())) for model, figures in now_figures.items()}
        if not shares:  # no per-model figures: the turn's own usage
            usage = result.usage or {}
            shares[process.options.model or ""] = _Figures(
                _int(usage.get("input_tokens")),
                _int(usage.get("output_tokens")),
                _int(usage.get("cache_read_input_tokens")),
                _int(usage.get("cache_creation_input_tokens")),
            )
        shares = {m: f for m, f in shares.items() if f != _Figures()} or {next(iter(shares)): _Figures()}
        job = metered.job
        # A warm process stays in the chain it started in: the claude-mcp servers it started know no other.
        metered.chain_id = process.options.env.get(CHAIN_ENV) or metered.chain_id
        common = {
            "run_id": metered.run_id,
            "namespace": self.namespace,
            "surface": metered.surface,
            "started_at": metered.started_at,
            "duration_ms": int((time.monotonic() - metered.started) * 1000),
            "outcome": outcome_of(result),
            "session_id": result.session_id,
            "job_id": job.job_id if job is not None and job.kept else None,
            "chain_id": metered.chain_id,
            "depth": self.depth,
        }
        for model, share in shares.items():
            self._queue.append(UsageRecord(model=model, **common, **share.__dict__))
        del self._queue[:-_MAX_QUEUED]
        self._wake.set()

    async def settle(self, metered: Metered) -> float | None:
        """After a run's result, before its answer: below the top of a chain, store the run's records
        now (the run above counts them when it delegates next, and in its total); at the top of a
        budgeted chain, the chain's total cost so far (None otherwise)."""
        if not self.policy.metering:
            return None
        if self.depth > 0 and self.chain is not None:
            try:
                await self.flush()
            except Exception:  # the writer retries; the chain counts them once they are stored
                logger.warning("could not store the usage records of a chained run", exc_info=True)
            return None
        if metered.budget_usd is None:
            return None
        async with self._lock:  # not while a flush moves records from memory to the store
            account = await self.store.chain_account(metered.chain_id)
            stored = account.spent_usd if account is not None else 0.0
            return round(stored + self._local_chain_usd(metered.chain_id), 6)

    async def flush(self) -> None:
        """Store every queued record now (the writer does this on its own; tests and exits wait on it)."""
        async with self._lock:
            while self._queue:
                self._writing, self._queue = self._queue, []
                try:
                    await self.store.add_usage(self._writing)
                except BaseException:
                    self._queue[:0] = self._writing
                    raise
                finally:
                    self._writing = []

    async def run_writer(self) -> None:
        """Run until cancelled: store queued records soon after they are queued; on the way out,
        what is left (for a few seconds at most)."""
        try:
            while True:
                with anyio.move_on_after(_RETRY_S):
                    await self._wake.wait()
                # Let the run that queued them finish first (its own store writes share SQLite's one
                # connection), and gather what other runs queue meanwhile into one transaction.
                await anyio.sleep(_GATHER_S)
                self._wake = anyio.Event()
                try:
                    await self.flush()
                except Exception:  # the store is unreachable for now: the records wait for the next try
                    logger.warning("could not store %d usage records; will retry", len(self._queue), exc_info=True)
        finally:
            with anyio.move_on_after(5, shield=True):
                try:
                    await self.flush()
                except Exception:
                    logger.warning("%d usage records were not stored", len(self._queue), exc_info=True)
