"""Conformance checks for the store's roles: what every implementation of a role must do.

Call `run_<role>_conformance(store)` from an async test to assert the role's behavioural
contracts, as claude-agent-sdk's `run_session_store_conformance` does for transcripts (which
`run_transcripts_conformance` runs too); `run_store_conformance` runs every role's on a whole
`Store`. Each contract is one function, named for what it asserts, in its role's module, which
lists them (`LEASES`, `JOB_QUEUE`, …); a failure names the contract. A role whose contracts read
another role's rows (a batch's requests are jobs; a chain's spending is usage; deleting a session
forgets its histories) is checked on a store that has both (`BatchesOfJobs`, `LedgerAccounts`,
`IndexedHistories`).

The store may hold rows already (a previous contract's, another run's): each contract names its
own namespaces, ids, keys and chains, and where a method acts on every namespace (the expiry of
jobs and batches, chain accounts forgotten, reports over every namespace) it first settles what
is there, or reads only its own rows. Nothing else may write to the store while a check runs.
"""

from __future__ import annotations

from ..store import Store
from .batches import BATCHES, run_batches_conformance
from .jobs import JOB_QUEUE, run_job_queue_conformance
from .leases import LEASES, run_leases_conformance
from .sessions import HISTORIES, SESSION_INDEX, run_histories_conformance, run_session_index_conformance
from .transcripts import TRANSCRIPTS, run_transcripts_conformance
from .usage import CHAIN_ACCOUNTS, USAGE_LEDGER, run_chain_accounts_conformance, run_usage_ledger_conformance

__all__ = [
    "BATCHES",
    "CHAIN_ACCOUNTS",
    "HISTORIES",
    "JOB_QUEUE",
    "LEASES",
    "SESSION_INDEX",
    "TRANSCRIPTS",
    "USAGE_LEDGER",
    "run_batches_conformance",
    "run_chain_accounts_conformance",
    "run_histories_conformance",
    "run_job_queue_conformance",
    "run_leases_conformance",
    "run_session_index_conformance",
    "run_store_conformance",
    "run_transcripts_conformance",
    "run_usage_ledger_conformance",
]


async def run_store_conformance(store: Store) -> None:
    """Every role's contracts, on a whole `Store`."""
    await run_transcripts_conformance(store)
    await run_session_index_conformance(store)
    await run_histories_conformance(store)
    await run_job_queue_conformance(store)
    await run_leases_conformance(store)
    await run_batches_conformance(store)
    await run_usage_ledger_conformance(store)
    await run_chain_accounts_conformance(store)
