"""The state store, against both backends: SQLite on a temporary file, PostgreSQL on a fresh
database of a throwaway server (see tests/pg_server.py). Each role's contracts are in
`claude_mcp.state.conformance`, run here over both backends; what is left is opening them."""

from __future__ import annotations

import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import psycopg
import pytest
from claude_agent_sdk import SessionKey

from claude_mcp.state import conformance
from claude_mcp.state._sql import SCHEMA_VERSION
from claude_mcp.state.postgres import PostgresStore
from claude_mcp.state.sqlite import SqliteStore
from claude_mcp.state.store import JobRecord, SessionRecord, Store

pytestmark = pytest.mark.anyio

KEY: SessionKey = {"project_key": "proj", "session_id": "sess"}


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "sqlite":
        opened: Store = SqliteStore(tmp_path / "state" / "state.db")
    else:
        opened = PostgresStore(request.getfixturevalue("postgres_database"))
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


def entry(n: int, uuid: str | None = None, **fields: Any) -> Any:
    return {"type": "user", "n": n, **({"uuid": uuid} if uuid else {}), **fields}


def session(namespace: str, session_id: str, updated_at: float = 100.0, **fields: Any) -> SessionRecord:
    return SessionRecord(namespace=namespace, session_id=session_id, created_at=1.0, updated_at=updated_at, **fields)


def job(namespace: str, job_id: str, created_at: float = 100.0, **fields: Any) -> JobRecord:
    return JobRecord(namespace=namespace, job_id=job_id, created_at=created_at, updated_at=created_at, **fields)


# Each role's contracts, on one store (each contract names its own namespaces and ids).


async def test_transcripts_conform(store: Store) -> None:
    await conformance.run_transcripts_conformance(store)


async def test_the_session_index_conforms(store: Store) -> None:
    await conformance.run_session_index_conformance(store)


async def test_histories_conform(store: Store) -> None:
    await conformance.run_histories_conformance(store)


async def test_the_job_queue_conforms(store: Store) -> None:
    await conformance.run_job_queue_conformance(store)


async def test_leases_conform(store: Store) -> None:
    await conformance.run_leases_conformance(store)


async def test_batches_conform(store: Store) -> None:
    await conformance.run_batches_conformance(store)


async def test_the_usage_ledger_conforms(store: Store) -> None:
    await conformance.run_usage_ledger_conformance(store)


async def test_chain_accounts_conform(store: Store) -> None:
    await conformance.run_chain_accounts_conformance(store)


async def test_every_role_conforms_again_on_a_store_that_already_holds_their_rows(store: Store) -> None:
    for _ in range(2):
        await conformance.run_store_conformance(store)


# Opening.


async def test_a_reopened_sqlite_store_keeps_everything_in_a_private_file(tmp_path: Path) -> None:
    path = tmp_path / "state" / "state.db"
    first = SqliteStore(path)
    await first.open()
    await first.transcripts("ns").append(KEY, [entry(1, "a")])
    await first.put_session(session("ns", "s1"))
    await first.save_job(job("ns", "j1"))
    await first.request_cancel("ns", "j1")
    await first.try_lock("conv", "a", until=10.0, now=0.0)
    await first.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700

    again = SqliteStore(path)
    await again.open()
    try:
        assert await again.transcripts("ns").load(KEY) == [entry(1, "a")]
        assert await again.get_session("ns", "s1") == session("ns", "s1")
        assert await again.cancel_requested(["j1"]) == ["j1"]
        assert await again.try_lock("conv", "b", until=20.0, now=5.0) is False
    finally:
        await again.close()


async def test_two_postgres_stores_opening_at_once_migrate_once_and_both_work(request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue("postgres_database")
    first, second = PostgresStore(url), PostgresStore(url)
    async with anyio.create_task_group() as tg:
        tg.start_soon(first.open)
        tg.start_soon(second.open)
    try:
        await first.put_session(session("ns", "s1"))
        assert await second.get_session("ns", "s1") == session("ns", "s1")
        await second.transcripts("ns").append(KEY, [entry(1, "a")])
        assert await first.transcripts("ns").load(KEY) == [entry(1, "a")]
    finally:
        await first.close()
        await second.close()
    with psycopg.connect(url) as conn:
        applied = conn.execute("SELECT version FROM schema_version ORDER BY version").fetchall()
        assert applied == [(version,) for version in range(1, SCHEMA_VERSION + 1)]  # each once


async def test_a_store_that_is_not_open_says_so(tmp_path: Path) -> None:
    for closed in (SqliteStore(tmp_path / "state.db"), PostgresStore("postgresql://unused")):
        with pytest.raises(RuntimeError, match="not open"):
            await closed.count_jobs("ns")
