"""What a namespace keeps besides its conversations and jobs, as the surfaces read it: the
histories the HTTP APIs map to conversations, its Message Batches, and its usage. Each view is
bound to the bridge's namespace, so a surface never names one (nor reaches into the store)."""

from __future__ import annotations

import time

from ..state.store import (
    BatchesOfJobs,
    BatchOutcome,
    BatchRecord,
    Histories,
    JobRecord,
    UsageGroup,
    UsageLedger,
    UsageRow,
)
from .metering import Meter
from .quotas import QuotaState


class HistoryBook:
    """Which conversation a resent message history is (the HTTP APIs are stateless)."""

    def __init__(self, store: Histories, namespace: str) -> None:
        self._store = store
        self._namespace = namespace

    async def session_for(self, digest: str) -> str | None:
        return await self._store.session_for_history(self._namespace, digest)

    async def remember(self, digest: str, session_id: str) -> None:
        await self._store.put_history(self._namespace, digest, session_id, time.time())


class BatchBook:
    """The namespace's Message Batches (each request a job of the job queue)."""

    def __init__(self, store: BatchesOfJobs, namespace: str) -> None:
        self._store = store
        self.namespace = namespace

    async def put(self, batch: BatchRecord) -> None:
        await self._store.put_batch(batch)

    async def get(self, batch_id: str) -> BatchRecord | None:
        return await self._store.get_batch(self.namespace, batch_id)

    async def page(self, *, limit: int, before_id: str | None, after_id: str | None) -> list[BatchRecord]:
        return await self._store.list_batches(self.namespace, limit=limit, before_id=before_id, after_id=after_id)

    async def counts(self, batch_ids: list[str]) -> dict[str, dict[BatchOutcome, int]]:
        return await self._store.batch_counts(self.namespace, batch_ids)

    async def requests_pending(self) -> int:
        return await self._store.count_batch_jobs(self.namespace)

    async def results(self, batch_id: str, *, limit: int, after_custom_id: str | None) -> list[JobRecord]:
        return await self._store.batch_jobs(self.namespace, batch_id, limit=limit, after_custom_id=after_custom_id)

    async def expire(self, batch_id: str, now: float) -> int:
        return await self._store.expire_batch(self.namespace, batch_id, now)

    async def end(self, batch_id: str, now: float) -> BatchRecord | None:
        return await self._store.end_batch(self.namespace, batch_id, now)

    async def cancel(self, batch_id: str, message: str) -> BatchRecord | None:
        return await self._store.cancel_batch(self.namespace, batch_id, time.time(), message)

    async def delete(self, batch_id: str) -> bool:
        return await self._store.delete_batch(self.namespace, batch_id)

    async def forget_older_than(self, created_before: float) -> int:
        """Forget every namespace's batches created before then (the retention is the server's)."""
        return await self._store.expire_batches(created_before)


class UsageBook:
    """The namespace's usage, with its own latest runs included, and its quotas."""

    def __init__(self, ledger: UsageLedger, meter: Meter, namespace: str) -> None:
        self._ledger = ledger
        self.meter = meter
        self.namespace = namespace

    def now(self) -> float:
        return self.meter.now()

    async def flush(self) -> None:
        """Store this bridge's runs not yet written (the writer does so within a second)."""
        await self.meter.flush()

    async def report(
        self, *, since: float, until: float, bucket_minutes: int | None = None, by: tuple[UsageGroup, ...] = ()
    ) -> list[UsageRow]:
        await self.meter.flush()
        return await self._ledger.usage_report(
            since=since, until=until, namespace=self.namespace, bucket_minutes=bucket_minutes, by=by
        )

    async def quotas(self) -> list[QuotaState]:
        return await self.meter.status()
