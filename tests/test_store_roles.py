"""The store's roles: they split `Store` without overlap, each role's conformance check exercises
every method of the role, and a role is narrow enough to fake in a few lines — the dict below
passes the same check as SQLite and PostgreSQL, and turn-taking runs on it."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import anyio
import pytest

from claude_mcp.bridge.turns import SessionLocks
from claude_mcp.errors import RunTimeout
from claude_mcp.state import conformance, store
from claude_mcp.state.sqlite import SqliteStore

pytestmark = pytest.mark.anyio

ROLES: dict[type, Any] = {
    store.Transcripts: conformance.run_transcripts_conformance,
    store.SessionIndex: conformance.run_session_index_conformance,
    store.Histories: conformance.run_histories_conformance,
    store.JobQueue: conformance.run_job_queue_conformance,
    store.Leases: conformance.run_leases_conformance,
    store.Batches: conformance.run_batches_conformance,
    store.UsageLedger: conformance.run_usage_ledger_conformance,
    store.ChainAccounts: conformance.run_chain_accounts_conformance,
}


class MemoryLeases:
    """`Leases` in a dict: key -> (holder, until)."""

    def __init__(self) -> None:
        self.held: dict[str, tuple[str, float]] = {}

    async def try_lock(self, key: str, holder: str, until: float, now: float) -> bool:
        current = self.held.get(key)
        if current is not None and current[0] != holder and current[1] >= now:
            return False
        self.held[key] = (holder, until)
        return True

    async def unlock(self, key: str, holder: str) -> None:
        if key in self.held and self.held[key][0] == holder:
            del self.held[key]


def methods(role: type) -> set[str]:
    return {name for name, value in vars(role).items() if callable(value) and not name.startswith("_")}


def test_the_roles_split_the_store_without_overlap() -> None:
    roles = [methods(role) for role in ROLES]
    assert sum(map(len, roles)) == len(set().union(*roles)) == 43  # no method in two roles
    assert set(store.Store.__bases__) == {*ROLES, Protocol}
    assert methods(store.Store) == {"open", "close", "ping"}


class Recording:
    """A store that notes which of its methods were called."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.called: set[str] = set()

    def __getattr__(self, name: str) -> Any:
        self.called.add(name)
        return getattr(self.inner, name)


@pytest.mark.parametrize("role", list(ROLES), ids=lambda role: role.__name__)
async def test_each_roles_check_calls_every_method_of_the_role(role: type, tmp_path: Path) -> None:
    async with SqliteStore(tmp_path / "state.db") as sqlite:
        recording = Recording(sqlite)
        await ROLES[role](recording)
    assert methods(role) <= recording.called


async def test_a_dict_passes_the_leases_check() -> None:
    await conformance.run_leases_conformance(MemoryLeases())


async def test_a_fake_that_lets_anyone_unlock_fails_the_leases_check_naming_the_contract() -> None:
    class Careless(MemoryLeases):
        async def unlock(self, key: str, holder: str) -> None:
            self.held.pop(key, None)

    with pytest.raises(AssertionError, match="only_the_holder_can_unlock"):
        await conformance.run_leases_conformance(Careless())


async def test_turns_on_one_conversation_take_turns_across_replicas_on_a_dict_of_leases() -> None:
    leases = MemoryLeases()
    here = SessionLocks(leases, namespace="n", holder="replica-a", lease_s=30)
    there = SessionLocks(leases, namespace="n", holder="replica-b", lease_s=30)
    async with here.hold("s", timeout_s=1, on_wait=None):
        assert [holder for holder, _ in leases.held.values()] == ["replica-a"]
        with pytest.raises(RunTimeout):
            async with there.hold("s", timeout_s=0.3, on_wait=None):
                pass
        async with there.hold("other", timeout_s=1, on_wait=None):  # another conversation: no wait
            pass
    assert leases.held == {}
    with anyio.fail_after(1):
        async with there.hold("s", timeout_s=1, on_wait=None):
            assert [holder for holder, _ in leases.held.values()] == ["replica-b"]
