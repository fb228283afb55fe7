"""Usage records the store did not take before a stop are kept in the server's state dir and stored at the
next start: the meter's logic, on the scripted CLI over a real SQLite store that refuses writes while
"down" (`tests/test_replicas.py` holds it end to end, with PostgreSQL gone under a replica and the real CLI)."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest

from claude_mcp import ClaudeBridge
from claude_mcp.errors import StoreUnavailable
from claude_mcp.state.sqlite import SqliteStore
from claude_mcp.state.store import UsageRecord
from claude_mcp.state.usage_spool import SPOOL_DIR, UsageSpool
from claude_mcp.telemetry.activity import Activity
from tests.scripted import ScriptedLauncher, scripted_policy

pytestmark = pytest.mark.anyio


class DownStore(SqliteStore):
    """A real store whose usage ledger refuses writes while `down`, as PostgreSQL does when it is gone."""

    down = False

    async def add_usage(self, records: list[UsageRecord]) -> None:
        if self.down:
            raise StoreUnavailable()
        await super().add_usage(records)


async def runs_stored(store: SqliteStore, namespace: str) -> int:
    return (await store.usage_totals(namespace, [0.0]))[0].runs


def spooled(server_dir: Path) -> list[Path]:
    return sorted((server_dir / SPOOL_DIR).glob("*.jsonl"))


async def test_records_the_store_did_not_take_are_kept_over_a_stop_and_stored_once_at_the_next_start(
    tmp_path: Path,
) -> None:
    policy = scripted_policy(tmp_path)
    server_dir = tmp_path / "server"
    launcher = ScriptedLauncher()

    def bridge(store: SqliteStore) -> ClaudeBridge:
        where = {"namespace": "alice", "server_dir": server_dir}
        return ClaudeBridge(policy, depth=0, store=store, launcher=launcher, activity=Activity(), **where)

    async with DownStore(tmp_path / "shared.db") as store:
        store.down = True
        async with bridge(store) as first:
            await first.ask("[[say:spent while the store is gone]]")
            await first.ask("[[say:and again]]")
        assert await runs_stored(store, "alice") == 0
        [kept] = spooled(server_dir)
        assert kept.stat().st_mode & 0o777 == 0o600
        lines = [json.loads(line) for line in kept.read_text().splitlines()]
        assert len(lines) == 2 and {line["namespace"] for line in lines} == {"alice"}

        store.down = False
        async with bridge(store) as second:
            with anyio.fail_after(10):
                while spooled(server_dir):
                    await anyio.sleep(0.05)
            assert await runs_stored(store, "alice") == 2
            await second.ask("[[say:a run of its own]]")
        assert await runs_stored(store, "alice") == 3

        UsageSpool(server_dir, "alice", str(policy.cli_env["CLAUDE_CONFIG_DIR"])).save(
            [UsageRecord.model_validate(line) for line in lines]
        )  # kept again, as by a replica that stopped before it saw them stored: counted once
        async with bridge(store):
            with anyio.fail_after(10):
                while spooled(server_dir):
                    await anyio.sleep(0.05)
        assert await runs_stored(store, "alice") == 3


def test_a_spool_takes_back_only_its_own_namespaces_records(tmp_path: Path) -> None:
    """A line for another namespace, or not a record at all, is skipped: a file in the spool cannot charge or
    relieve anyone but the namespace it belongs to."""
    spool = UsageSpool(tmp_path, "alice", "/config/alice")
    record = UsageRecord(run_id="r1", model="m", namespace="alice", surface="mcp", started_at=1.0, chain_id="r1")
    spool.save([record, record.model_copy(update={"run_id": "r2", "namespace": "bob", "cost_usd": -100.0})])
    spool.path.write_text(spool.path.read_text() + "not json\n")
    assert [r.run_id for r in spool.load()] == ["r1"]
    assert UsageSpool(tmp_path, "alice", "/config/another-caller").path != spool.path
    spool.clear()
    assert spool.load() == []
