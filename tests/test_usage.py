"""Usage, cost and quotas: every run metered in the store, namespaces capped, reports — end to end
through the real CLI against the fake model (which reports 12 input and 7 output tokens for
every model request). What only counts runs or keeps figures (a runs-per-minute quota, the figures held
in memory, one count between replicas) runs on the scripted CLI."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anthropic
import anyio
import pytest
from claude_agent_sdk import ClaudeAgentOptions
from mcp import Client

from claude_mcp import ClaudeBridge, Policy
from claude_mcp.bridge.metering import Meter
from claude_mcp.bridge.options import build_options, starts_servers
from claude_mcp.bridge.quotas import REFRESH_S, window
from claude_mcp.config.call_settings import CallSettings
from claude_mcp.config.specs import AgentSpec
from claude_mcp.errors import ChainBudgetExceeded, QuotaExceeded
from claude_mcp.mcp_surface.server import build_server
from claude_mcp.state.postgres import PostgresStore
from claude_mcp.state.sqlite import SqliteStore
from claude_mcp.state.store import ChainAccount, UsageRecord, UsageTotals
from tests.conftest import call, text_of, tool_prompt
from tests.fake_model import nested_tool
from tests.scripted import ScriptedLauncher
from tests.test_http import serving
from tests.test_stdio import write_config

pytestmark = pytest.mark.anyio

IN, OUT = 12, 7
"""What the fake model reports for each request."""
DAY = 86_400.0


class Clock:
    """A clock tests move by hand (quota windows are fixed: minute, UTC day, UTC month)."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:  # 2027-01-15T08:00:00Z
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def bridge(policy: Policy) -> AsyncIterator[ClaudeBridge]:
    agents = {"reviewer": AgentSpec(description="Reviews", prompt="You review.", tools=["Read"])}
    async with ClaudeBridge(policy.model_copy(update={"agents": agents}), depth=0) as opened:
        yield opened


async def records(bridge: ClaudeBridge) -> list[UsageRecord]:
    """Every usage record of the bridge's namespace, once its writer has stored them."""
    await bridge.usage.meter.flush()
    rows = await bridge.store._fetch("SELECT * FROM usage ORDER BY started_at")  # type: ignore[attr-defined]
    return [UsageRecord.model_validate({k: v for k, v in row.items() if k != "started_minute"}) for row in rows]


async def test_every_run_is_recorded_with_the_models_own_figures(bridge: ClaudeBridge) -> None:
    async with Client(build_server(bridge)) as client:
        first = await call(client, "ask", prompt="remember kiwi")
        await call(client, "ask", prompt="what did I ask you to remember", session_id=first["session_id"])
        fork = await call(client, "fork_session", session_id=first["session_id"], prompt="[[say:branch]]")
        tooled = await call(client, "ask", prompt=tool_prompt("Bash", command="echo hi"))
        job = await call(client, "run_agent", agent="reviewer", prompt="[[say:reviewed]]", wait_s=30)
    assert job["status"] == "completed"
    found = await records(bridge)
    by_surface = [(r.surface, r.input_tokens, r.output_tokens, r.session_id) for r in found]
    assert by_surface == [
        ("ask", IN, OUT, first["session_id"]),
        ("ask", IN, OUT, first["session_id"]),  # the warm follow-up: its own share, not the process's total
        ("fork_session", IN, OUT, fork["session_id"]),
        ("ask", 2 * IN, 2 * OUT, tooled["session_id"]),  # two model requests
        ("run_agent", IN, OUT, job["session_id"]),
    ]
    assert [r.job_id for r in found] == [None, None, None, None, job["job_id"]]
    assert all(r.namespace == "local" and r.outcome == "ok" and r.depth == 0 for r in found)
    assert all(r.model and r.cost_usd > 0 and r.duration_ms > 0 for r in found)
    assert found[1].cost_usd == pytest.approx(found[0].cost_usd)  # a share, again
    assert tooled["total_cost_usd"] == pytest.approx(found[3].cost_usd)
    assert len({r.run_id for r in found}) == len(found)
    assert all(r.chain_id == r.run_id for r in found)  # each top call is a chain of its own, warm or not
    totals = await bridge.store.usage_report(since=0, until=4e9, namespace="local")
    assert (totals[0].runs, totals[0].input_tokens, totals[0].output_tokens) == (5, 6 * IN, 6 * OUT)
    assert totals[0].cost_usd == pytest.approx(sum(r.cost_usd for r in found))


async def test_records_survive_a_restart(policy: Policy) -> None:
    async with ClaudeBridge(policy, depth=0) as first:
        await first.ask("[[say:one]]")
    async with ClaudeBridge(policy, depth=0) as second:  # the writer stored it on the way out
        assert [(r.input_tokens, r.output_tokens) for r in await records(second)] == [(IN, OUT)]


def clocked(bridges: list[ClaudeBridge], clock: Clock) -> list[ClaudeBridge]:
    """The bridges, counting quotas by the test's clock."""
    for bridge in bridges:
        bridge.usage.meter.now = clock
    return bridges


async def quota_bridges(
    policy: Policy, tmp_path: Path, clock: Clock, launcher: ScriptedLauncher | None = None, **quotas: Any
) -> AsyncIterator[list[ClaudeBridge]]:
    """Two namespaces' bridges on one store, under the same quotas and the test's clock (on the real CLI, or
    on `launcher`)."""
    capped = policy.model_copy(update=quotas)
    async with SqliteStore(tmp_path / "shared.db") as store:
        bridges = clocked(
            [ClaudeBridge(capped, depth=0, store=store, namespace=name, launcher=launcher) for name in ("a", "b")],
            clock,
        )
        async with bridges[0], bridges[1]:
            yield bridges


async def test_a_namespace_over_its_runs_per_minute_is_refused_until_the_next_minute(
    policy: Policy, tmp_path: Path
) -> None:
    clock = Clock()  # counting runs needs no model's figures: on the scripted CLI
    async for a, b in quota_bridges(policy, tmp_path, clock, ScriptedLauncher(), quota_runs_per_minute=2):
        await a.ask("[[say:1]]")
        await a.ask("[[say:2]]")
        with pytest.raises(QuotaExceeded) as refused:
            await a.ask("[[say:3]]")
        assert refused.value.kind == "quota_exceeded" and refused.value.quota == "quota_runs_per_minute"
        assert "resets at 2027-01-15T08:01:00Z" in str(refused.value) and refused.value.retry_after_s == 60
        await b.ask("[[say:other namespace]]")  # its own count
        clock.now += 60
        await a.ask("[[say:next minute]]")


async def test_a_namespace_over_its_daily_usd_is_refused_as_a_typed_tool_error_until_the_next_day(
    policy: Policy, tmp_path: Path
) -> None:
    clock = Clock()
    async for a, b in quota_bridges(policy, tmp_path, clock, quota_usd_per_day=0.0003, quota_usd_per_month=1.0):
        async with Client(build_server(a)) as client:
            await call(client, "ask", prompt="[[say:1]]")  # 0.000188 of 0.0003
            clipped = await client.call_tool("ask", {"prompt": "[[say:2]]"})  # admitted, its budget clipped
            spent = (await a.usage.meter.status())[0]
            assert spent.quota == "quota_usd_per_day" and spent.used > 0.0003 and spent.left == 0
            refused = await client.call_tool("ask", {"prompt": "[[say:3]]"})
            assert refused.is_error and "Quota exceeded: quota_usd_per_day is 0.0003" in text_of(refused)
            assert refused.structured_content is not None
            assert refused.structured_content["kind"] == "quota_exceeded"
            assert refused.structured_content["resets_at"] == "2027-01-16T00:00:00Z"
            assert clipped.is_error or clipped.structured_content is not None
        await b.ask("[[say:other namespace]]")
        clock.now += DAY
        await a.ask("[[say:next day]]")
        month = (await a.usage.meter.status())[1]
        assert month.quota == "quota_usd_per_month" and month.used == pytest.approx(spent.used + 0.000188, rel=0.05)


async def test_a_run_below_a_usd_quota_gets_its_budget_clipped_to_what_is_left(policy: Policy, tmp_path: Path) -> None:
    clock = Clock()
    async for a, _ in quota_bridges(policy, tmp_path, clock, quota_usd_per_day=0.05, max_budget_usd=1.0):
        resolved, _ = await a.usage.meter.admit(a.policy.resolve(a.policy.defaults), None)
        assert resolved.max_budget_usd == 0.05
        await a.ask("[[say:spend]]")
        resolved, _ = await a.usage.meter.admit(a.policy.resolve(a.policy.defaults), None)
        assert resolved.max_budget_usd == pytest.approx(0.05 - 0.000188, rel=0.01)


async def test_the_usage_tool_and_resource_show_the_callers_own_totals_and_quotas(policy: Policy) -> None:
    capped = policy.model_copy(update={"quota_runs_per_minute": 50})
    async with ClaudeBridge(capped, depth=0) as bridge, Client(build_server(bridge)) as client:
        bridge.usage.meter.now = Clock()  # both runs in one clock minute and one UTC day, however slow
        await call(client, "ask", prompt="[[say:1]]")
        await call(client, "ask", prompt="[[say:2]]")
        report = await call(client, "usage", days=7)
        resource = await client.read_resource("claude://usage")
    assert report["totals"]["runs"] == 2 and report["totals"]["input_tokens"] == 2 * IN
    assert report["totals"]["output_tokens"] == 2 * OUT
    [line] = report["by_day_and_model"]
    assert line["runs"] == 2 and line["model"] and line["cost_usd"] == pytest.approx(report["totals"]["cost_usd"])
    assert report["quotas"][0] | {"resets_at": None} == {
        "quota": "quota_runs_per_minute",
        "limit": 50,
        "used": 2,
        "left": 48,
        "resets_at": None,
    }
    read = json.loads(resource.contents[0].text)  # type: ignore[union-attr]
    assert read["totals"] == report["totals"]


async def test_the_messages_api_is_metered_capped_with_429_and_reported_through_the_anthropic_sdk(
    tmp_path: Path, workdir: Path, cli_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("USAGE_ADMIN", "admin-secret")
    extra = 'quota_tokens_per_day = 30\nusage_admin_token_env = "USAGE_ADMIN"'
    config = write_config(tmp_path / "metered.toml", workdir, cli_env, extra)
    with serving(tmp_path, config, "http", name="metered") as server:
        async with anthropic.AsyncAnthropic(base_url=server.base, api_key="sk-any", max_retries=0) as claude:
            for n in range(2):  # 19 tokens each: the second is admitted at 19 of 30
                await claude.messages.create(
                    model="sonnet", max_tokens=50, messages=[{"role": "user", "content": f"[[say:{n}]]"}]
                )
            with pytest.raises(anthropic.RateLimitError, match="quota_tokens_per_day is 30") as limited:
                await claude.messages.create(model="sonnet", max_tokens=50, messages=[{"role": "user", "content": "x"}])
            assert 0 < int(limited.value.response.headers["retry-after"]) <= 86_400
            start = datetime.now(UTC).strftime("%Y-%m-%dT00:00:00Z")
            reports = {}
            for who, key in (("caller", "sk-any"), ("operator", "admin-secret")):
                async with anthropic.AsyncAnthropic(base_url=server.base, api_key=key, max_retries=0) as reader:
                    analytics = reader.beta.organization.analytics
                    usage = [b async for b in analytics.usage_report.list(starting_at=start, group_by=["model"])]
                    cost = [b async for b in analytics.cost_report.list(starting_at=start, bucket_width="1h", limit=24)]
                reports[who] = (usage, cost)
        usage, cost = reports["operator"]
        rows = [r for bucket in usage for r in bucket.results]
        assert sum(r.uncached_input_tokens for r in rows) == 2 * IN and sum(r.output_tokens for r in rows) == 2 * OUT
        assert all(r.model for r in rows)
        cents = sum(float(r.amount) for bucket in cost for r in bucket.results)
        assert cents > 0 and all(r.currency == "USD" for bucket in cost for r in bucket.results)
        assert [r.model_dump() for b in reports["caller"][0] for r in b.results] == [r.model_dump() for r in rows]
        command = [sys.executable, "-m", "claude_mcp", "usage", "--config", str(config)]
        printed = await anyio.run_process([*command, "--by", "model", "--format", "json"])
        [line] = json.loads(printed.stdout)
        assert (line["runs"], line["input_tokens"], line["output_tokens"]) == (2, 2 * IN, 2 * OUT)
        assert line["cost_usd"] * 100 == pytest.approx(cents)
        table = (await anyio.run_process(command)).stdout.decode()
        assert "total" in table and str(2 * IN) in table


async def test_two_replicas_on_one_postgresql_enforce_one_quota_between_them(
    policy: Policy, postgres_database: str
) -> None:
    clock = Clock()
    capped = policy.model_copy(update={"quota_runs_per_minute": 2})
    async with PostgresStore(postgres_database) as first_store, PostgresStore(postgres_database) as second_store:
        launcher = ScriptedLauncher()  # one count in the shared store is the meter's logic: on the scripted CLI
        replicas = clocked(
            [
                ClaudeBridge(capped, depth=0, store=store, namespace="shared", replica=name, launcher=launcher)
                for name, store in (("a", first_store), ("b", second_store))
            ],
            clock,
        )
        async with replicas[0] as a, replicas[1] as b:
            await a.ask("[[say:1 on a]]")
            await b.ask("[[say:2 on b]]")
            await a.usage.meter.flush()
            await b.usage.meter.flush()
            for replica in (a, b):
                with pytest.raises(QuotaExceeded, match="quota_runs_per_minute is 2 and 2 is used"):
                    await replica.ask("[[say:3]]")
            clock.now += 60
            await b.ask("[[say:next minute]]")


class CountingStore(SqliteStore):
    """A store that counts the quota reads."""

    reads = 0

    async def usage_totals(self, namespace: str, since: list[float]) -> list[UsageTotals]:
        self.reads += 1
        return await super().usage_totals(namespace, since)


async def test_a_quota_check_reads_the_store_only_when_the_figures_in_memory_are_missing_old_or_near_a_limit(
    policy: Policy, tmp_path: Path
) -> None:
    capped = policy.model_copy(update={"quota_runs_per_minute": 4, "quota_usd_per_day": 100.0})
    async with CountingStore(tmp_path / "counted.db") as store:
        meter = ClaudeBridge(capped, depth=0, store=store).usage.meter
        meter.now = Clock()  # one clock minute throughout
        settings = capped.resolve(capped.defaults)
        await meter.admit(settings, None)  # nothing in memory yet
        assert store.reads == 1
        await meter.admit(settings, None)  # 1 of 4 runs (in flight): far from the limit
        assert store.reads == 1
        await meter.admit(settings, None)  # 2 of 4: near, so counted in the store
        assert store.reads == 2
        await meter.admit(settings, None)
        assert store.reads == 3
        with pytest.raises(QuotaExceeded):  # a refusal is decided on the store's figures
            await meter.admit(settings, None)
        assert store.reads == 4


async def test_the_figures_in_memory_are_read_again_off_the_request_path_and_count_other_replicas(
    policy: Policy, tmp_path: Path
) -> None:
    clock = Clock()
    capped = policy.model_copy(update={"quota_runs_per_minute": 1000})
    async with SqliteStore(tmp_path / "shared.db") as store:
        launcher = ScriptedLauncher()  # the figures' caching is the meter's logic: on the scripted CLI
        replicas = clocked(
            [
                ClaudeBridge(capped, depth=0, store=store, namespace="shared", replica=name, launcher=launcher)
                for name in "ab"
            ],
            clock,
        )
        async with replicas[0] as a, replicas[1] as b:
            await a.ask("[[say:a]]")
            await b.ask("[[say:b]]")
            await b.usage.meter.flush()
            assert (await a.usage.meter.status())[0].used == 2  # exact: a's own run (in memory) and b's
            await a.ask("[[say:a again]]")  # from memory: b's run is counted, a's is in flight then queued
            await a.usage.meter.flush()
            await b.ask("[[say:b again]]")
            await b.usage.meter.flush()
            minute = [window("minute", clock.now)[0]]
            with anyio.fail_after(10 * REFRESH_S):  # a asks nothing more: b's second run comes in by itself
                while (a.usage.meter._totals.cached(minute) or [UsageTotals()])[0].runs < 4:
                    await anyio.sleep(0.05)


async def test_runs_below_the_top_of_a_chain_spend_from_one_account_and_are_refused_once_it_is_spent(
    policy: Policy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two hops of one chain, as the claude-mcp servers a top call's CLI would start: the key the
    # CLI was started with comes in the environment; the account is the one the top opened in its store.
    async with SqliteStore(tmp_path / "shared.db") as store:
        async with ClaudeBridge(policy, depth=0, store=store) as probe:
            await probe.ask("[[say:price]]")
            per_request = (await records(probe))[0].cost_usd
        budget = round(2.5 * per_request, 6)
        await store.point_chain("top-process", "top-run", now=1.0, budget_usd=budget)  # as the top's turn does
        monkeypatch.setenv("CLAUDE_MCP_CHAIN_ID", "top-process")
        deep = policy.model_copy(update={"max_depth": 3})
        hops = [ClaudeBridge(deep, depth=depth, store=store) for depth in (1, 2)]
        async with hops[0] as child, hops[1] as grandchild:
            resolved, metered = await child.usage.meter.admit(child.policy.resolve(child.policy.defaults), None)
            assert resolved.max_budget_usd == budget and metered.chain_id == "top-run"
            await child.ask("[[say:one]]")
            await grandchild.ask("[[say:two]]")  # stored before it answers: the chain counts it at once
            resolved, _ = await child.usage.meter.admit(child.policy.resolve(child.policy.defaults), None)
            assert resolved.max_budget_usd == pytest.approx(budget - 2 * per_request, rel=0.01)
            await store.add_usage(
                [
                    UsageRecord(
                        run_id="top",
                        model="m",
                        namespace="x",
                        surface="ask",
                        started_at=0,
                        cost_usd=per_request,
                        chain_id="top-run",
                    )
                ]
            )  # the top's own run, once it has ended
            for hop in (child, grandchild):
                with pytest.raises(ChainBudgetExceeded) as refused:
                    await hop.ask("[[say:too much]]")
                assert refused.value.kind == "chain_budget_exceeded" and refused.value.budget_usd == budget
                assert refused.value.chain_id == "top-run"
            account = await store.chain_account("top-run")
            found = await records(child)
    assert account is not None and account.budget_usd == budget and account.runs == 3
    assert account.spent_usd == pytest.approx(3 * per_request)
    assert [(r.depth, r.chain_id) for r in found if r.depth] == [(1, "top-run"), (2, "top-run")]


async def test_the_top_of_a_budgeted_chain_reports_the_chains_total(policy: Policy) -> None:
    async with ClaudeBridge(policy, depth=0) as bridge, Client(build_server(bridge)) as client:
        unbudgeted = await call(client, "ask", prompt="[[say:free]]")
        budgeted = await call(client, "ask", prompt="[[say:counted]]", max_budget_usd=1.0)
        found = await records(bridge)
    assert unbudgeted["chain_cost_usd"] is None
    assert budgeted["chain_cost_usd"] == pytest.approx(
        sum(r.cost_usd for r in found if r.chain_id == found[1].chain_id)
    )


def chains_store(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> SqliteStore | PostgresStore:
    if backend == "sqlite":
        return SqliteStore(tmp_path / "chains.db")
    return PostgresStore(request.getfixturevalue("postgres_database"))


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_chain_accounts_and_heads_are_forgotten_a_day_after_their_turn(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    store = chains_store(backend, tmp_path, request)
    day = 86_400.0
    async with store:
        await store.point_chain("old-process", "old-turn", now=1000.0, budget_usd=0.5)
        await store.point_chain("new-process", "new-turn", now=1000.0 + day, budget_usd=0.5)
        meter = Meter(store, "n", Policy(), depth=0, now=lambda: 1010.0 + day)
        assert meter.chain_retention_s == day  # the longest timeout (an hour) is far shorter
        await meter.forget_old_chains()
        assert await store.chain_account("old-turn") is None
        assert (await store.current_chain("old-process")).chain_id == "old-process"  # its head is gone
        assert await store.chain_account("new-turn") == ChainAccount(chain_id="new-turn", budget_usd=0.5)
        assert (await store.current_chain("new-process")).chain_id == "new-turn"
    assert Meter(store, "n", Policy(max_timeout_s=day), depth=0).chain_retention_s == 2 * day


def test_only_a_cli_that_may_start_stdio_servers_can_have_a_hop_below_it(policy: Policy) -> None:
    def options(policy: Policy, **settings: Any) -> ClaudeAgentOptions:
        return build_options(policy.resolve(CallSettings.model_validate(settings)), policy)

    assert not starts_servers(options(policy))
    assert not starts_servers(options(policy, mcp_servers={"web": {"type": "http", "url": "http://127.0.0.1:9/mcp"}}))
    assert starts_servers(options(policy, mcp_servers={"claude": {"command": sys.executable}}))
    assert starts_servers(options(policy.model_copy(update={"inherit_mcp_config": True})))  # its settings' servers


def delegation(prompt: str, **settings: Any) -> str:
    """A prompt that makes the fake model call this server's `ask` (as the CLI's MCP server `claude`)."""
    return nested_tool("mcp__claude__ask", prompt=prompt, **settings)


def chain_servers(tmp_path: Path, workdir: Path, cli_env: dict[str, str]) -> dict[str, Any]:
    """This server as an MCP server the CLI starts: on the same store (the same config dir), 3 deep."""
    config = write_config(tmp_path / "inner.toml", workdir, cli_env, "max_depth = 3\nspare_process = false")
    return {"claude": {"command": sys.executable, "args": ["-m", "claude_mcp", "serve", "--config", str(config)]}}


async def test_a_three_hop_chain_stops_when_its_total_reaches_the_top_calls_budget(
    policy: Policy, tmp_path: Path, workdir: Path, cli_env: dict[str, str]
) -> None:
    # The top and the hop below it run on haiku (1/40 of opus here), the third hop on opus: the third
    # hop spends the budget. Its first run fits; the second is clipped to what is left, and is stopped
    # by its CLI's budget; the third is refused, typed, and the run above reads why.
    servers = chain_servers(tmp_path, workdir, cli_env)
    chained: dict[str, Any] = {"mcp_servers": servers, "allowed_tools": ["mcp__claude__ask"]}
    third = [delegation(f"[[say:third hop {n}]]", model="opus") for n in range(3)]
    second = delegation("".join(third), model="haiku", **chained)
    async with ClaudeBridge(policy.model_copy(update={"max_depth": 3}), depth=0) as bridge:
        await bridge.ask("[[say:price]]", model="opus")
        opus = (await records(bridge))[0].cost_usd
        budget = round(1.5 * opus, 6)
        top = await bridge.ask(second, model="haiku", max_budget_usd=budget, **chained)
        found = (await records(bridge))[1:]  # the price's record aside
    chain = [r for r in found if r.chain_id == found[0].run_id]
    assert chain == found  # every hop's records are the top run's chain
    assert [r.depth for r in chain] == [0, 1, 2, 2]  # the third hop's third run was refused: no record
    hops = [r for r in chain if r.depth == 2]
    assert [r.outcome for r in hops] == ["ok", "error_max_budget_usd"]
    assert sum(r.cost_usd for r in chain if r.depth) >= budget  # what was stored when the refusal came
    assert "Chain budget exceeded" in (top.result or "") and f"max_budget_usd={budget:g}" in (top.result or "")
    assert top.chain_cost_usd == round(sum(r.cost_usd for r in chain), 6)


async def test_a_warm_follow_ups_delegations_spend_from_its_own_turns_account(
    policy: Policy, tmp_path: Path, workdir: Path, cli_env: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="claude_mcp.bridge.pool")
    servers = chain_servers(tmp_path, workdir, cli_env)
    chained: dict[str, Any] = {"mcp_servers": servers, "allowed_tools": ["mcp__claude__ask"], "model": "haiku"}
    async with ClaudeBridge(policy, depth=0) as bridge:
        await bridge.ask("[[say:price]]", model="opus")
        budget = round(1.5 * (await records(bridge))[0].cost_usd, 6)
        spend = delegation("[[say:spend]]", model="opus")
        first = await bridge.ask(spend + spend, max_budget_usd=budget, **chained)  # spends its whole account
        assert first.session_id in bridge.pool.warm.live_ids()
        second = await bridge.ask(spend, session_id=first.session_id, max_budget_usd=budget, **chained)
        assert not [r for r in caplog.records if "restarting the warm process" in r.getMessage()]
        found = await records(bridge)
    tops = [r for r in found if r.depth == 0 and r.session_id == first.session_id]
    turns = [[r for r in found if r.chain_id == top.run_id] for top in tops]
    assert [[(r.depth, r.outcome) for r in turn] for turn in turns] == [
        [(0, "ok"), (1, "ok"), (1, "error_max_budget_usd")],
        [(0, "ok"), (1, "ok")],  # admitted with the whole budget: the first turn's account is not its
    ]
    assert "Chain budget exceeded" not in (second.result or "")
    assert first.chain_cost_usd == round(sum(r.cost_usd for r in turns[0]), 6)
    assert second.chain_cost_usd == round(sum(r.cost_usd for r in turns[1]), 6)
