"""Metering: what every run used, and the quotas that cap a namespace.

The runner calls `Meter.admit` before a run starts (the quotas are checked, and the run's
`max_budget_usd` clipped to what is left of a USD quota), `Meter.begin` once it has the CLI process
the run will use, and `Meter.ran` once the CLI has given its result. `ran` only queues the run's
usage records; a writer in the bridge's own tasks stores them half a second later, in one
transaction with whatever else was queued meanwhile, so the result never waits for the store. What
a run used is the CLI's own figures per model, as the process computed them for the turn
(`turn_usage`). The meter is told what it needs (`RunFacts`, `ProcessChain`, the outcome) and reads
nothing of the bridge, a process or an observer.

Quotas are counted in fixed windows: the clock minute, the UTC day, the UTC calendar month, over
the store's records, so replicas share them. The stored figures are kept in memory and read again
off the request path (`quotas`); a run waits for a store read only when they are missing,
old, or near a limit. Until the writer has stored them, this bridge's own records (and its runs in
flight, for the runs per minute) are counted from memory.

A chain is one top call's turn and every run below it: claude-mcp servers started by its CLI, the
runs of their CLIs, and so on. Its id is the top run's id, and its account (in the store) has the
top call's `max_budget_usd`. A CLI process tells the servers it starts a key
(`CLAUDE_MCP_CHAIN_ID`, fixed when it starts); a process serves many turns (a warm conversation, a
spare), so `begin` points the process's key at the chain of the turn about to run, opening that
turn's account with that turn's budget. A run below the top looks its key up in the store, clips
its budget to what the chain's usage records leave of the account (or is refused once nothing is),
and stores its records before it answers (`settle`), so the run above, and its next delegation,
count them; the run at the top reads the chain's total once it has its result.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import anyio

from ..config.policy import Policy, ResolvedSettings
from ..errors import ChainBudgetExceeded, QuotaExceeded, unexpected
from ..state.store import LedgerAccounts, UsageRecord, UsageTotals
from ..state.usage_spool import UsageSpool
from .identity import inherited_chain
from .jobs import Job
from .quotas import ACTIVE_S, NEAR, REFRESH_S, Quota, QuotaState, QuotaTotals, measured, quotas_of
from .run_end import classify
from .run_facts import RunFacts
from .turn_usage import Figures

if TYPE_CHECKING:
    from claude_agent_sdk import ResultMessage

    from .launcher import RunOutcome

logger = logging.getLogger(__name__)

_MAX_QUEUED = 100_000
"""Records kept in memory while the store cannot be written; beyond it the oldest are dropped."""
_RETRY_S = 5.0
_GATHER_S = 0.5
"""How long the writer waits after a record is queued before it writes."""


@dataclass(eq=False)
class Metered:
    """A run admitted by the meter: what its usage records will say of it."""

    run_id: str
    started_at: float
    chain_id: str
    """The chain the run belongs to: its own id at the top; below, the chain its server's key points
    at. Its records carry it, and a CLI process started for the run is given it as its key."""
    surface: str
    job: Job | None
    budget_usd: float | None = None
    """The run's `max_budget_usd`, as admitted."""
    accounted: bool = False
    """Whether the chain has a budget (at the top: the run's own)."""
    delegates: bool = True
    """Whether its CLI process may have started a claude-mcp server (see `options.starts_servers`)."""
    cost_usd: float = 0.0
    """What the run cost (once it has a result)."""
    started: float = field(default_factory=time.monotonic)


@dataclass(frozen=True, slots=True)
class ProcessChain:
    """What the meter needs of the CLI process a turn runs on (told, never read off the process)."""

    key: str | None
    """The chain key the process was started with (`CLAUDE_MCP_CHAIN_ID`); None: it has none."""
    delegates: bool
    """Whether it may have started a claude-mcp server (see `options.starts_servers`)."""
    chained: bool
    """Whether it ran a turn of a budgeted chain before (its servers may find that chain's account
    under its key, so every later turn points the key at its own chain)."""


def outcome_of(result: ResultMessage) -> str:
    """`ok`, `api_<status>`, or the CLI's error subtype (`RunEnd.usage_outcome`)."""
    return classify(result).usage_outcome


CHAIN_RETENTION_S = 86_400.0
"""Chain accounts and heads are kept at least a day (twice the longest timeout, if longer)."""


class Meter:
    """One namespace's metering on one bridge: quota checks, and the queue of usage records."""

    def __init__(
        self,
        store: LedgerAccounts,
        namespace: str,
        policy: Policy,
        *,
        depth: int,
        now: Callable[[], float] = time.time,
        spool: UsageSpool | None = None,
    ) -> None:
        """`store`: where the usage records and the chain accounts are (below a sandboxed CLI, the chains
        are over the channel of the server above: `remote_chains.HopLedger`). `spool`: where the records the
        store did not take are kept when the writer stops, and taken back from when it starts."""
        self.store = store
        self.spool = spool
        self._spooled = False
        self.namespace = namespace
        self.policy = policy
        self.depth = depth
        self.now = now
        """The clock quotas are counted by (tests move it to the next window)."""
        self.chain = inherited_chain()
        """The key this server was started with by the CLI above (None at the top of a chain)."""
        self._totals = QuotaTotals(store, namespace)
        self._refresh = anyio.Event()
        self._asked_at = float("-inf")
        self._queue: list[UsageRecord] = []
        self._writing: list[UsageRecord] = []
        self._in_flight: dict[str, float] = {}
        self._wake = anyio.Event()
        self._lock = anyio.Lock()

    @property
    def chain_retention_s(self) -> float:
        """How long a chain's account and a key's head are kept: well past the longest turn."""
        return max(CHAIN_RETENTION_S, 2 * self.policy.max_timeout_s)

    async def forget_old_chains(self) -> None:
        """Forget chain accounts and heads no turn can still be using."""
        await self.store.forget_chains(self.now() - self.chain_retention_s)

    def _quotas(self, now: float) -> list[Quota]:
        return quotas_of(self.policy, now)

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

    async def _chain_left(self, key: str, metered: Metered) -> float | None:
        """Below the top: the chain `key` points at becomes the run's, and what its account leaves
        (None: the chain has no budget)."""
        account = await self.store.current_chain(key)
        metered.chain_id = account.chain_id
        if account.budget_usd is None:
            return None
        metered.accounted = True
        spent = account.spent_usd + self._local_chain_usd(account.chain_id)
        if spent >= account.budget_usd:
            raise ChainBudgetExceeded(account.chain_id, budget_usd=account.budget_usd, spent_usd=round(spent, 6))
        return account.budget_usd - spent

    def _with_local(self, quotas: list[Quota], stored: list[UsageTotals]) -> list[float]:
        return [
            measured(q.measure, totals) + measured(q.measure, self._local(q.start))
            for q, totals in zip(quotas, stored, strict=True)
        ]

    async def _used(self, quotas: list[Quota]) -> list[float]:
        """Exact: the store's figures, read now (and kept for the next runs)."""
        async with self._lock:  # not while a flush moves records from memory to the store
            stored = await self._totals.read([q.start for q in quotas])
        return self._with_local(quotas, stored)

    async def _used_soon(self, quotas: list[Quota]) -> list[float]:
        """The figures in memory when they may be used (else exact ones); they are kept fresh in the
        background for a while."""
        self._asked_at = time.monotonic()
        self._refresh.set()
        stored = self._totals.cached([q.start for q in quotas])
        if stored is not None:
            used = self._with_local(quotas, stored)
            if all(u < q.limit * NEAR for q, u in zip(quotas, used, strict=True)):
                return used
        return await self._used(quotas)

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

    async def admit(self, resolved: ResolvedSettings, facts: RunFacts | None) -> tuple[ResolvedSettings, Metered]:
        """Admit a run, or raise `QuotaExceeded` (or `ChainBudgetExceeded`); its settings with the
        budget clipped to what is left of the USD quotas and of its chain's account. `facts`: who
        runs what (None: a run of no call and no job)."""
        now = self.now()
        run_id = uuid.uuid4().hex
        surface = facts.surface if facts is not None else "none"
        job = facts.job if facts is not None else None
        metered = Metered(run_id, now, self.chain if self.depth > 0 and self.chain else run_id, surface, job)
        if not self.policy.metering:
            return resolved, metered
        self._in_flight = {run: at for run, at in self._in_flight.items() if at > now - 120}
        if quotas := self._quotas(now):
            left: float | None = None
            for quota, used in zip(quotas, await self._used_soon(quotas), strict=True):
                if used >= quota.limit:
                    raise QuotaExceeded(
                        quota.name, limit=quota.limit, used=round(used, 6), resets_at=quota.end, now=now
                    )
                if quota.measure == "usd":
                    left = min(left, quota.limit - used) if left is not None else quota.limit - used
            if left is not None and (resolved.max_budget_usd is None or resolved.max_budget_usd > left):
                resolved = replace(resolved, max_budget_usd=round(left, 6))
        if self.depth > 0 and self.chain is not None:
            left = await self._chain_left(self.chain, metered)
            if left is not None and (resolved.max_budget_usd is None or resolved.max_budget_usd > left):
                resolved = replace(resolved, max_budget_usd=round(left, 6))
        self._in_flight[run_id] = now
        metered.budget_usd = resolved.max_budget_usd
        metered.accounted |= self.depth == 0 and metered.budget_usd is not None
        return resolved, metered

    async def begin(self, metered: Metered, process: ProcessChain) -> bool:
        """Before the run's turn on `process`: point the process's chain key at the run's chain, so the
        servers the process started spend from this turn's account (not an earlier turn's); at the
        top of a budgeted chain, open its account with the run's budget. No store write when
        neither is needed (the process's first turn, or a chain without a budget on a process that
        never ran one, or a process that cannot have started a claude-mcp server). Whether the
        process has now run a turn of a budgeted chain (`ProcessChain.chained` for its next turn)."""
        metered.delegates = process.delegates
        if not self.policy.metering or not metered.delegates:
            return process.chained
        key = process.key
        repoint = (
            key is not None
            and key != metered.chain_id
            and not (self.depth > 0 and key == self.chain)  # the run above points it
            and (metered.accounted or process.chained)
        )
        opening = self.depth == 0 and metered.accounted
        if repoint or opening:
            budget = metered.budget_usd if opening else None
            await self.store.point_chain(key if repoint else None, metered.chain_id, self.now(), budget_usd=budget)
        return process.chained or metered.accounted

    def ran(self, metered: Metered, outcome: RunOutcome) -> None:
        """Queue the usage records of a run that gave a result (no I/O: the writer stores them)."""
        self._in_flight.pop(metered.run_id, None)
        if not self.policy.metering:
            return
        result = outcome.result
        shares = dict(outcome.usage.by_model)
        shares = {m: f for m, f in shares.items() if f != Figures()} or {next(iter(shares)): Figures()}
        metered.cost_usd = sum(share.cost_usd for share in shares.values())
        job = metered.job
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
            self._queue.append(UsageRecord(model=model, **common, **asdict(share)))
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
            except Exception as exc:  # the writer retries; the chain counts them once they are stored
                logger.warning("could not store the usage records of a chained run: %s", exc, exc_info=unexpected(exc))
            return None
        if not metered.accounted:
            return None
        if not metered.delegates:  # nothing below it can have spent in its chain
            return round(metered.cost_usd, 6)
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
                else:
                    self._totals.stored(self._writing)
                finally:
                    self._writing = []

    async def run_writer(self) -> None:
        """Run until cancelled: store queued records soon after they are queued (on the way out, what
        is left, for a few seconds at most), and read the quotas' figures again when asked."""
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(self._refresh_quotas)
            await self._write()

    async def _refresh_quotas(self) -> None:
        """Read the quotas' figures every `REFRESH_S` while runs ask for them (a run reads them itself
        when there are none)."""
        while True:
            await self._refresh.wait()
            while time.monotonic() - self._asked_at < ACTIVE_S:
                await anyio.sleep(REFRESH_S)
                self._refresh = anyio.Event()
                if quotas := self._quotas(self.now()):
                    try:
                        await self._used(quotas)
                    except Exception:  # the store is unreachable for now: a run reads it itself
                        logger.debug("could not read the quotas' figures", exc_info=True)

    async def _write(self) -> None:
        await self._unspool()
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
                except Exception as exc:  # the store is unreachable for now: the records wait for the next try
                    queued, shown = len(self._queue), unexpected(exc)
                    logger.warning("could not store %d usage records; will retry: %s", queued, exc, exc_info=shown)
                else:
                    await self._spool_stored()
        finally:
            with anyio.CancelScope(shield=True):
                with anyio.move_on_after(5):
                    try:
                        await self.flush()
                    except Exception as exc:
                        queued, shown = len(self._queue), unexpected(exc)
                        logger.warning("could not store %d usage records: %s", queued, exc, exc_info=shown)
                await self._spool_left()

    async def _unspool(self) -> None:
        """Queue what this namespace's bridge could not store before an earlier stop (the writer stores it next)."""
        if self.spool is None:
            return
        kept = await anyio.to_thread.run_sync(self.spool.load)
        if kept:
            logger.info("storing %d usage records kept since the last stop", len(kept))
            self._queue[:0] = kept
            self._spooled = True
            self._wake.set()

    async def _spool_stored(self) -> None:
        """Once what was kept is stored, its file goes."""
        if self.spool is not None and self._spooled and not self._queue:
            await anyio.to_thread.run_sync(self.spool.clear)
            self._spooled = False

    async def _spool_left(self) -> None:
        """On the way out: what the store did not take is kept for the next start."""
        if not self._queue:
            await self._spool_stored()
        elif self.spool is None:
            logger.warning("%d usage records were not stored", len(self._queue))
        else:
            records = list(self._queue)
            try:
                await anyio.to_thread.run_sync(self.spool.save, records)
            except OSError as exc:
                logger.warning("%d usage records were not stored, nor kept: %s", len(records), exc)
            else:
                logger.warning("%d usage records were not stored; kept for the next start", len(records))
