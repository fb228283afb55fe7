"""The usage table's queries, the same in both dialects: what each run used, per model, and the
budgets chains of delegations spend from.

A chain is one top call's turn and every run below it (`chain_id`: the top run's id). The servers
below a CLI process know it by the key the process was started with (`CLAUDE_MCP_CHAIN_ID`); a
process outlives a turn, so `chain_heads` points a process's key at the chain of its current turn
(a key with no head is the chain's own id: a process's first turn).

Time buckets are whole minutes since the epoch (`started_minute`, written with the record), so a
report buckets by integer division, which SQLite and PostgreSQL read alike.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

from .store import ChainAccount, UsageGroup, UsageRecord, UsageRow, UsageTotals

MIGRATION = [
    """CREATE TABLE usage (
        run_id TEXT NOT NULL, model TEXT NOT NULL, namespace TEXT NOT NULL, surface TEXT NOT NULL,
        started_at DOUBLE PRECISION NOT NULL, started_minute BIGINT NOT NULL, duration_ms BIGINT NOT NULL,
        input_tokens BIGINT NOT NULL, output_tokens BIGINT NOT NULL, cache_read_tokens BIGINT NOT NULL,
        cache_write_tokens BIGINT NOT NULL, cost_usd DOUBLE PRECISION NOT NULL, outcome TEXT NOT NULL,
        session_id TEXT, job_id TEXT, chain_id TEXT NOT NULL, depth INTEGER NOT NULL,
        PRIMARY KEY (run_id, model))""",
    # A namespace's sums over a time window (quotas, its own reports); everyone's (the operator's).
    "CREATE INDEX usage_window ON usage (namespace, started_at)",
    "CREATE INDEX usage_time ON usage (started_at)",
    "CREATE INDEX usage_chain ON usage (chain_id)",
]
CHAIN_MIGRATION = [
    """CREATE TABLE chain_budgets (
        chain_id TEXT PRIMARY KEY, budget_usd DOUBLE PRECISION NOT NULL, opened_at DOUBLE PRECISION NOT NULL)""",
]
HEADS_MIGRATION = [
    """CREATE TABLE chain_heads (
        key TEXT PRIMARY KEY, chain_id TEXT NOT NULL, updated_at DOUBLE PRECISION NOT NULL)""",
]
AGE_MIGRATION = [
    "CREATE INDEX chain_budgets_age ON chain_budgets (opened_at)",
    "CREATE INDEX chain_heads_age ON chain_heads (updated_at)",
]
_POINT_CHAIN = (
    "INSERT INTO chain_heads (key, chain_id, updated_at) VALUES (?, ?, ?) ON CONFLICT (key) "
    "DO UPDATE SET chain_id = excluded.chain_id, updated_at = excluded.updated_at"
)
_CURRENT_CHAIN = (
    "WITH c AS (SELECT coalesce((SELECT chain_id FROM chain_heads WHERE key = ?), ?) AS chain_id) "
    "SELECT c.chain_id, b.budget_usd, (SELECT sum(cost_usd) FROM usage u WHERE u.chain_id = c.chain_id) AS spent_usd, "
    "(SELECT count(DISTINCT run_id) FROM usage u WHERE u.chain_id = c.chain_id) AS runs "
    "FROM c LEFT JOIN chain_budgets b ON b.chain_id = c.chain_id"
)
_OPEN_CHAIN = (
    "INSERT INTO chain_budgets (chain_id, budget_usd, opened_at) VALUES (?, ?, ?) ON CONFLICT (chain_id) DO NOTHING"
)
_CHAIN_ACCOUNT = (
    "SELECT b.budget_usd, (SELECT sum(cost_usd) FROM usage u WHERE u.chain_id = b.chain_id) AS spent_usd, "
    "(SELECT count(DISTINCT run_id) FROM usage u WHERE u.chain_id = b.chain_id) AS runs "
    "FROM chain_budgets b WHERE b.chain_id = ?"
)

_COLUMNS = [*UsageRecord.model_fields, "started_minute"]
_ADD = (
    f"INSERT INTO usage ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))}) "
    "ON CONFLICT (run_id, model) DO NOTHING"
)
_SUMS = (
    "sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens, "
    "sum(cache_read_tokens) AS cache_read_tokens, sum(cache_write_tokens) AS cache_write_tokens, "
    "sum(cost_usd) AS cost_usd, count(DISTINCT run_id) AS runs"
)
_TOTALS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")


def _totals(row: dict[str, Any], suffix: str = "") -> dict[str, Any]:
    found: dict[str, Any] = {name: int(row[name + suffix] or 0) for name in (*_TOTALS, "runs")}
    found["cost_usd"] = float(row["cost_usd" + suffix] or 0.0)
    return found


class UsageQueries(ABC):
    """The `Store`'s usage methods, over the SQL backends' own `_fetch` and `_transaction`."""

    @abstractmethod
    async def _fetch(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]: ...

    @abstractmethod
    async def _transaction(self, statements: list[tuple[str, Sequence[Any]]]) -> None: ...

    async def add_usage(self, records: list[UsageRecord]) -> None:
        if records:
            rows = [[*r.model_dump().values(), int(r.started_at // 60)] for r in records]
            await self._transaction([(_ADD, row) for row in rows])

    async def usage_totals(self, namespace: str, since: list[float]) -> list[UsageTotals]:
        if not since:
            return []
        columns, params = [], []
        for i, moment in enumerate(since):
            columns += [f"sum(CASE WHEN started_at >= ? THEN {c} ELSE 0 END) AS {c}_{i}" for c in _TOTALS]
            columns += [
                f"sum(CASE WHEN started_at >= ? THEN cost_usd ELSE 0 END) AS cost_usd_{i}",
                f"count(DISTINCT CASE WHEN started_at >= ? THEN run_id END) AS runs_{i}",
            ]
            params += [moment] * (len(_TOTALS) + 2)
        sql = f"SELECT {', '.join(columns)} FROM usage WHERE namespace = ? AND started_at >= ?"
        rows = await self._fetch(sql, [*params, namespace, min(since)])
        return [UsageTotals(**_totals(rows[0], f"_{i}")) for i in range(len(since))]

    async def usage_report(
        self,
        *,
        since: float,
        until: float,
        namespace: str | None = None,
        bucket_minutes: int | None = None,
        by: tuple[UsageGroup, ...] = (),
    ) -> list[UsageRow]:
        keys: list[str] = ["started_minute / ? AS bucket"] if bucket_minutes else []
        keys += list(by)
        where = "started_at >= ? AND started_at < ?"
        params: list[Any] = [since, until]
        if namespace is not None:
            where += " AND namespace = ?"
            params.append(namespace)
        group = f" GROUP BY {', '.join(str(i + 1) for i in range(len(keys)))}" if keys else ""
        order = " ORDER BY bucket, cost_usd DESC" if bucket_minutes else " ORDER BY cost_usd DESC"
        sql = f"SELECT {', '.join([*keys, _SUMS])} FROM usage WHERE {where}{group}{order if keys else ''}"
        rows = await self._fetch(sql, [*([bucket_minutes] if bucket_minutes else []), *params])
        report = []
        for row in rows:
            if not keys and not row["runs"]:
                continue
            bucket = row.get("bucket")
            report.append(
                UsageRow(
                    **_totals(row),
                    bucket_start=float(int(bucket) * (bucket_minutes or 0) * 60) if bucket is not None else None,
                    model=row.get("model"),
                    namespace=row.get("namespace"),
                )
            )
        return report

    async def open_chain(self, chain_id: str, budget_usd: float, now: float) -> None:
        await self._transaction([(_OPEN_CHAIN, [chain_id, budget_usd, now])])

    async def chain_account(self, chain_id: str) -> ChainAccount | None:
        rows = await self._fetch(_CHAIN_ACCOUNT, [chain_id])
        if not rows:
            return None
        row = rows[0]
        return ChainAccount(
            chain_id=chain_id,
            budget_usd=float(row["budget_usd"]),
            spent_usd=float(row["spent_usd"] or 0.0),
            runs=int(row["runs"] or 0),
        )

    async def point_chain(self, key: str | None, chain_id: str, now: float, *, budget_usd: float | None = None) -> None:
        statements: list[tuple[str, Sequence[Any]]] = []
        if key is not None and key != chain_id:
            statements.append((_POINT_CHAIN, [key, chain_id, now]))
        if budget_usd is not None:
            statements.append((_OPEN_CHAIN, [chain_id, budget_usd, now]))
        if statements:
            await self._transaction(statements)

    async def forget_chains(self, before: float) -> None:
        await self._transaction(
            [
                ("DELETE FROM chain_heads WHERE updated_at < ?", [before]),
                ("DELETE FROM chain_budgets WHERE opened_at < ?", [before]),
            ]
        )

    async def current_chain(self, key: str) -> ChainAccount:
        row = (await self._fetch(_CURRENT_CHAIN, [key, key]))[0]
        budget = row["budget_usd"]
        return ChainAccount(
            chain_id=str(row["chain_id"]),
            budget_usd=None if budget is None else float(budget),
            spent_usd=float(row["spent_usd"] or 0.0),
            runs=int(row["runs"] or 0),
        )
