"""Quotas: their fixed windows, and a namespace's stored usage in them, kept in memory so that a
run's quota check needs no store read.

The figures are read from the store off the request path (every `REFRESH_S`, for `ACTIVE_S` after
a run last asked for them) and this bridge adds its own records as it stores them, so between
reads they lack only what other replicas stored meanwhile. The meter reads the store itself when there are no
figures for the current windows, when they are older than `STALE_S`, or when they come near a
limit (`NEAR`): a refusal is always decided on exact figures, and replicas share every quota.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from pydantic import BaseModel, Field

from ..config.policy import Policy
from ..state.store import UsageLedger, UsageRecord, UsageTotals

REFRESH_S = 1.0
"""How often the figures are read again in the background, while runs ask for them."""
ACTIVE_S = 60.0
"""How long after a run last asked for them the figures are kept fresh."""
STALE_S = 5.0
"""Figures older than this are not used: the run waits for a read."""
NEAR = 0.5
"""A quota this far used (of its limit) on the figures in memory is checked in the store: what other
replicas spent since the last read is unknown, and must stay below the rest of the limit."""


Window = Literal["minute", "day", "month"]
Measure = Literal["usd", "runs", "tokens"]
QUOTAS: tuple[tuple[str, Window, Measure], ...] = (
    ("quota_usd_per_day", "day", "usd"),
    ("quota_usd_per_month", "month", "usd"),
    ("quota_runs_per_minute", "minute", "runs"),
    ("quota_tokens_per_day", "day", "tokens"),
)


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
class Quota:
    """A quota of the policy, in the window it is counted in now."""

    name: str
    limit: float
    measure: Measure
    start: float
    end: float


def quotas_of(policy: Policy, now: float) -> list[Quota]:
    """The policy's quotas, in their windows at `now`."""
    quotas = []
    for name, kind, measure in QUOTAS:
        if (limit := getattr(policy, name)) is not None:
            quotas.append(Quota(name, float(limit), measure, *window(kind, now)))
    return quotas


class QuotaTotals:
    """The stored totals of one namespace since each quota window's start (runs, tokens, USD)."""

    def __init__(self, store: UsageLedger, namespace: str) -> None:
        self._store = store
        self._namespace = namespace
        self._starts: tuple[float, ...] = ()
        self._totals: list[UsageTotals] = []
        self._read_at = float("-inf")
        self._runs: list[set[str]] = []
        """Per window, the runs this bridge stored since the last read (a run counts once)."""

    def cached(self, starts: Sequence[float]) -> list[UsageTotals] | None:
        """The figures for these window starts, if fresh enough (else None). Read them at once: they
        change as this bridge stores records."""
        if tuple(starts) != self._starts or time.monotonic() - self._read_at > STALE_S:
            return None
        return self._totals

    async def read(self, starts: Sequence[float]) -> list[UsageTotals]:
        """Read the figures from the store, and keep them. The caller holds the meter's store lock,
        so no record of this bridge's is being stored meanwhile (it would count twice, or not at all)."""
        read_at = time.monotonic()
        totals = await self._store.usage_totals(self._namespace, list(starts))
        self._starts, self._totals, self._read_at = tuple(starts), totals, read_at
        self._runs = [set() for _ in starts]
        return totals

    def stored(self, records: Sequence[UsageRecord]) -> None:
        """This bridge has just stored these records: count them in (no I/O)."""
        for start, totals, runs in zip(self._starts, self._totals, self._runs, strict=True):
            for record in records:
                if record.started_at < start:
                    continue
                totals.input_tokens += record.input_tokens
                totals.output_tokens += record.output_tokens
                totals.cache_read_tokens += record.cache_read_tokens
                totals.cache_write_tokens += record.cache_write_tokens
                totals.cost_usd += record.cost_usd
                if record.run_id not in runs:
                    runs.add(record.run_id)
                    totals.runs += 1
