"""What one turn used is computed once, by the process, and read by the meter and the metrics:
each turn's share of the CLI's running totals, per model — no CLI needed (the totals are the
CLI's `ResultMessage` fields)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from claude_agent_sdk import ResultMessage

from claude_mcp import Policy
from claude_mcp.bridge.jobs import Job
from claude_mcp.bridge.launcher import RunOutcome
from claude_mcp.bridge.metering import Meter
from claude_mcp.bridge.run_facts import RunFacts
from claude_mcp.bridge.turn_usage import Figures, UsageCounter
from claude_mcp.state.sqlite import SqliteStore

pytestmark = pytest.mark.anyio


def result(
    *, cost: float | None = None, models: dict[str, dict[str, float]] | None = None, tokens: tuple[int, int] = (0, 0)
) -> ResultMessage:
    return ResultMessage(
        subtype="success",
        duration_ms=1,
        duration_api_ms=1,
        is_error=False,
        num_turns=1,
        session_id="s-1",
        total_cost_usd=cost,
        usage={"input_tokens": tokens[0], "output_tokens": tokens[1]},
        model_usage=models,
        result="ok",
        uuid=str(uuid.uuid4()),
    )


def sonnet(inputs: int, outputs: int, cost: float) -> dict[str, float]:
    return {"inputTokens": inputs, "outputTokens": outputs, "costUSD": cost}


def test_a_warm_process_turns_its_running_totals_into_each_turns_share() -> None:
    counter = UsageCounter()
    first = counter.turn(result(cost=0.5, models={"sonnet": sonnet(100, 10, 0.5)}, tokens=(100, 10)), "sonnet")
    second = counter.turn(
        result(cost=0.75, models={"sonnet": sonnet(160, 25, 0.7), "haiku": sonnet(5, 1, 0.05)}, tokens=(60, 15)),
        "sonnet",
    )
    assert first.by_model == {"sonnet": Figures(100, 10, 0, 0, 0.5)}
    assert first.cost_usd == 0.5
    assert dict(second.by_model) == {
        "sonnet": Figures(60, 15, 0, 0, pytest.approx(0.2)),
        "haiku": Figures(5, 1, 0, 0, 0.05),
    }
    assert second.cost_usd == pytest.approx(0.25)
    assert second.tokens == Figures(60, 15)


def test_a_result_without_per_model_figures_counts_the_turns_tokens_under_the_process_model() -> None:
    usage = UsageCounter().turn(result(tokens=(12, 7)), "opus")
    assert usage.by_model == {"opus": Figures(12, 7)}
    assert usage.cost_usd is None


def test_a_restarted_count_never_gives_a_negative_share() -> None:
    counter = UsageCounter()
    counter.turn(result(cost=1.0, models={"sonnet": sonnet(100, 10, 1.0)}), None)
    after = counter.turn(result(cost=0.2, models={"sonnet": sonnet(20, 2, 0.2)}), None)
    assert after.by_model == {"sonnet": Figures(0, 0, 0, 0, 0.0)}
    assert after.cost_usd == 0.0


async def test_the_meter_records_what_the_outcome_says_and_names_the_jobs_tool(tmp_path: Path, policy: Policy) -> None:
    async with SqliteStore(tmp_path / "state.db") as store:
        meter = Meter(store, "ns", policy, depth=0)
        job = Job(owner="ns", agent="reviewer", tool="run_agent")
        facts = RunFacts("local", "ns", None, tool=None, job=job)
        _, metered = await meter.admit(policy.resolve(policy.defaults), facts)
        assert metered.surface == "run_agent"
        counter = UsageCounter()
        turn = result(cost=0.3, models={"sonnet": sonnet(40, 4, 0.3)}, tokens=(40, 4))
        meter.ran(metered, RunOutcome(turn, "ok", None, counter.turn(turn, "sonnet")))
        await meter.flush()
        [totals] = await store.usage_totals("ns", [0.0])
        assert (totals.runs, totals.input_tokens, totals.output_tokens, totals.cost_usd) == (1, 40, 4, 0.3)
        assert metered.cost_usd == 0.3
