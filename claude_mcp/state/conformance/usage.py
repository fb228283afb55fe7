"""`UsageLedger`: each run's usage counted once, summed over windows and reported by bucket and
group; and `ChainAccounts` (over the ledger): budgets kept from the first opening, spending summed
over every namespace, keys pointed at a turn's chain, and old accounts forgotten."""

from __future__ import annotations

from ..store import ChainAccount, LedgerAccounts, UsageLedger, UsageTotals
from ._common import Contract, Names, run_all, spent


async def usage_sums_a_namespaces_windows_and_reports_by_bucket_and_model(store: UsageLedger) -> None:
    n = Names()
    ns, other = n("ns"), n("other")
    r1, r2, r3 = n("r1"), n("r2"), n("r3")
    day = 86_400.0
    await store.add_usage(
        [
            spent(ns, r1, "opus", 10.0, 10, 0.5),
            spent(ns, r1, "haiku", 10.0, 1, 0.25),  # one run, two models
            spent(ns, r2, "opus", day + 30.0, 20, 1.0),
            spent(other, r3, "opus", day + 40.0, 1000, 9.0),
        ]
    )
    await store.add_usage([spent(ns, r1, "opus", 10.0, 999, 99.0)])  # a record stored twice counts once
    since_start, since_day = await store.usage_totals(ns, [0.0, day])
    assert (since_start.runs, since_start.input_tokens, since_start.cost_usd) == (2, 31, 1.75)
    assert since_start.tokens == 31 + 3 + 6  # input, output and cache writes; never cache reads
    assert (since_day.runs, since_day.input_tokens, since_day.cost_usd) == (1, 20, 1.0)
    assert await store.usage_totals(n("nobody"), [0.0]) == [UsageTotals()]
    assert await store.usage_totals(ns, []) == []
    by_day = await store.usage_report(since=0, until=2 * day, namespace=ns, bucket_minutes=1440, by=("model",))
    assert [(r.bucket_start, r.model, r.runs, r.input_tokens) for r in by_day] == [
        (0.0, "opus", 1, 10),
        (0.0, "haiku", 1, 1),
        (day, "opus", 1, 20),
    ]
    everyone = await store.usage_report(since=0, until=2 * day, by=("namespace",))
    mine = [(r.namespace, r.runs, r.cost_usd) for r in everyone if r.namespace in (ns, other)]
    assert mine == [(other, 1, 9.0), (ns, 2, 1.75)]
    assert await store.usage_report(since=day + 35.0, until=2 * day, namespace=ns) == []


async def a_report_counts_runs_started_from_since_up_to_not_at_until(store: UsageLedger) -> None:
    n = Names()
    ns = n("ns")
    await store.add_usage([spent(ns, n(f"r{at}"), "opus", float(at), 1, 0.5) for at in (60, 120, 180)])
    [row] = await store.usage_report(since=60.0, until=180.0, namespace=ns)
    assert (row.runs, row.cost_usd, row.bucket_start, row.model, row.namespace) == (2, 1.0, None, None, None)
    by_minute = await store.usage_report(since=0.0, until=1000.0, namespace=ns, bucket_minutes=2)
    assert [(r.bucket_start, r.runs) for r in by_minute] == [(0.0, 1), (120.0, 2)]
    [late] = await store.usage_totals(ns, [120.0])
    assert late.runs == 2


USAGE_LEDGER: list[Contract[UsageLedger]] = [
    usage_sums_a_namespaces_windows_and_reports_by_bucket_and_model,
    a_report_counts_runs_started_from_since_up_to_not_at_until,
]


async def run_usage_ledger_conformance(store: UsageLedger) -> None:
    await run_all(store, USAGE_LEDGER)


# Chain accounts (with the usage ledger).


async def a_chains_account_keeps_its_first_budget_and_sums_the_chains_records(store: LedgerAccounts) -> None:
    n = Names()
    ns, other, c1, top = n("ns"), n("other"), n("c1"), n("top")
    assert await store.chain_account(c1) is None
    await store.open_chain(c1, 1.0, now=5.0)
    await store.open_chain(c1, 9.0, now=6.0)  # already open: its budget stays
    assert await store.chain_account(c1) == ChainAccount(chain_id=c1, budget_usd=1.0)
    records = [
        spent(ns, top, "opus", 10.0, 1, 0.25),
        spent(other, n("hop"), "opus", 11.0, 1, 0.5, chain_id=top),  # a hop, in another namespace
        spent(ns, n("x"), "opus", 12.0, 1, 7.0),
    ]
    await store.add_usage(records)
    await store.open_chain(top, 2.0, now=13.0)
    account = await store.chain_account(top)
    assert account is not None and (account.budget_usd, account.runs, account.spent_usd) == (2.0, 2, 0.75)


async def a_process_key_points_at_the_chain_of_its_current_turn(store: LedgerAccounts) -> None:
    n = Names()
    process, turn2, turn3 = n("process"), n("turn-2"), n("turn-3")
    first = await store.current_chain(process)  # a key that points nowhere is its own chain
    assert (first.chain_id, first.budget_usd, first.spent_usd) == (process, None, 0.0)
    await store.point_chain(None, process, now=1.0, budget_usd=0.5)  # the process's first turn
    await store.add_usage([spent(n("n"), n("r1"), "m", 1.0, 1, 0.25, chain_id=process)])
    assert (await store.current_chain(process)).spent_usd == 0.25
    await store.point_chain(process, process, now=1.5)  # a key never points at itself
    assert (await store.current_chain(process)).chain_id == process
    await store.point_chain(process, turn2, now=2.0, budget_usd=0.75)  # its next turn
    second = await store.current_chain(process)
    assert (second.chain_id, second.budget_usd, second.spent_usd, second.runs) == (turn2, 0.75, 0.0, 0)
    await store.point_chain(n("other-process"), turn2, now=2.5, budget_usd=9.0)  # open already: budget stays
    assert (await store.current_chain(process)).budget_usd == 0.75
    await store.point_chain(process, turn3, now=3.0)  # a turn without a budget
    assert await store.current_chain(process) == ChainAccount(chain_id=turn3, budget_usd=None)
    assert (await store.chain_account(process)) == ChainAccount(
        chain_id=process, budget_usd=0.5, spent_usd=0.25, runs=1
    )


async def chains_opened_and_keys_pointed_before_a_time_are_forgotten_their_usage_kept(
    store: LedgerAccounts,
) -> None:
    n = Names()
    old_key, old, new_key, new = n("old-process"), n("old-turn"), n("new-process"), n("new-turn")
    await store.point_chain(old_key, old, now=1000.0, budget_usd=0.5)
    await store.point_chain(new_key, new, now=2000.0, budget_usd=0.5)
    await store.add_usage([spent(n("ns"), n("r1"), "m", 1000.0, 1, 0.25, chain_id=old)])
    await store.forget_chains(1500.0)
    assert await store.chain_account(old) is None
    assert (await store.current_chain(old_key)).chain_id == old_key  # its head is gone
    assert await store.chain_account(new) == ChainAccount(chain_id=new, budget_usd=0.5)
    assert (await store.current_chain(new_key)).chain_id == new
    assert (await store.current_chain(old)).spent_usd == 0.25  # the usage stays


CHAIN_ACCOUNTS: list[Contract[LedgerAccounts]] = [
    a_chains_account_keeps_its_first_budget_and_sums_the_chains_records,
    a_process_key_points_at_the_chain_of_its_current_turn,
    chains_opened_and_keys_pointed_before_a_time_are_forgotten_their_usage_kept,
]


async def run_chain_accounts_conformance(store: LedgerAccounts) -> None:
    await run_all(store, CHAIN_ACCOUNTS)
