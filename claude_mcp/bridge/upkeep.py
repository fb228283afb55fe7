"""A bridge's background upkeep: closing idle warm processes, forgetting expired jobs and old
chain accounts, and keeping this replica's jobs and leases in step with the store."""

from __future__ import annotations

import logging
import time

import anyio

from ..errors import unexpected
from .job_book import SYNC_S, JobBook
from .metering import Meter
from .pool import ProcessPool
from .turns import SessionLocks

logger = logging.getLogger(__name__)


FORGET_CHAINS_S = 3600.0
"""How often a bridge forgets old chain accounts (a table every namespace shares)."""


async def housekeeping(
    pool: ProcessPool, jobs: JobBook, meter: Meter, *, every_s: float, job_retention_s: float
) -> None:
    """Run until cancelled: every `every_s`, close expired warm processes, measure the rest and
    trim them to the memory budget, and forget old jobs; every `FORGET_CHAINS_S`, old chain accounts."""
    forgot = anyio.current_time()
    while True:
        await anyio.sleep(every_s)
        await pool.upkeep()
        try:
            await jobs.expire(time.time() - job_retention_s)
            if anyio.current_time() - forgot >= FORGET_CHAINS_S:
                forgot = anyio.current_time()
                await meter.forget_old_chains()
        except Exception as exc:  # the store is unreachable for now: try again next time
            logger.warning("could not forget old jobs or chain accounts: %s", exc, exc_info=unexpected(exc))


async def sync(jobs: JobBook, locks: SessionLocks, *, lease_s: float) -> None:
    """Run until cancelled: save changed jobs and act on requests from other replicas every
    `SYNC_S`; renew leases and fail the jobs of dead replicas every third of a lease."""
    renew_every = max(SYNC_S, lease_s / 3)
    renewed = anyio.current_time()
    while True:
        await anyio.sleep(SYNC_S)
        try:
            await jobs.sync()
            if anyio.current_time() - renewed >= renew_every:
                renewed = anyio.current_time()
                await locks.renew()
                await jobs.fail_orphans()
        except Exception as exc:  # the store is unreachable for now: try again next time
            logger.warning("could not sync jobs with the store: %s", exc, exc_info=unexpected(exc))
