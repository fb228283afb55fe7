"""What metering costs a run: a warm follow-up and a cold ask through `ClaudeBridge`, with metering
off, on (records written in the background), on with quotas (their figures kept in memory, read
again in the background), and on with a `max_budget_usd` per call (each turn opens its chain's
account in the store and reads the chain's total after), side by side against the fake model.

    .venv/bin/python -m bench.metering [--runs N]

Medians over N interleaved rounds (one of each variant per round, so all see the same machine
state; the order turns each round, so none always follows a cold ask), with each variant's ratio
to metering off.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from contextlib import AsyncExitStack
from pathlib import Path

import anyio

from bench.run import cli_env
from claude_mcp import ClaudeBridge, Policy
from claude_mcp.config.call_settings import CallSettings
from tests.conftest import FakeModel
from tests.fake_model import running_fake_model

VARIANTS: dict[str, dict[str, object]] = {
    "off": {"metering": False},
    "on": {"metering": True},
    "on + quotas": {
        "metering": True,
        "quota_usd_per_day": 1000.0,
        "quota_usd_per_month": 10_000.0,
        "quota_runs_per_minute": 100_000,
        "quota_tokens_per_day": 10**12,
    },
    "on + budget": {"metering": True},
}
CALLS: dict[str, CallSettings] = {"on + budget": CallSettings(max_budget_usd=100.0)}
"""Per-call settings of a variant (the same on its first ask, so its warm process is kept)."""


async def measure(runs: int) -> dict[str, dict[str, list[float]]]:
    times: dict[str, dict[str, list[float]]] = {name: {"warm": [], "cold": []} for name in VARIANTS}
    with running_fake_model() as url, tempfile.TemporaryDirectory() as tmp:
        home, work = Path(tmp) / "home", Path(tmp) / "work"
        home.mkdir()
        work.mkdir()
        base = Policy(roots=(work,), cli_env=cli_env(FakeModel(url), home), api_retries=0, max_warm=8)
        bridges = {
            name: ClaudeBridge(base.model_copy(update={**update, "state_dir": Path(tmp) / name}), depth=0)
            for name, update in VARIANTS.items()
        }
        sessions = {}
        async with AsyncExitStack() as stack:
            for name, bridge in bridges.items():
                await stack.enter_async_context(bridge)
                sessions[name] = (await bridge.ask("[[say:ready]]", settings=CALLS.get(name))).session_id
            names = list(bridges)
            for round_ in range(runs):
                order = names[round_ % len(names) :] + names[: round_ % len(names)]
                for kind in ("warm", "cold"):
                    for name in order:
                        bridge = bridges[name]
                        started = time.perf_counter()
                        call = CALLS.get(name)
                        if kind == "warm":
                            await bridge.ask("[[say:again]]", session_id=sessions[name], settings=call)
                        else:
                            await bridge.ask("[[say:cold]]", settings=call)
                        times[name][kind].append((time.perf_counter() - started) * 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    times = anyio.run(measure, args.runs)
    print(f"metering: medians over {args.runs} interleaved rounds (ms; ratio to metering off)")
    print(f"{'variant':<14}{'warm follow-up':>22}{'cold ask':>22}")
    for name, kinds in times.items():
        cells = []
        for kind in ("warm", "cold"):
            median = statistics.median(kinds[kind])
            ratio = median / statistics.median(times["off"][kind])
            cells.append(f"{median:9.1f} ({ratio:5.3f}x)")
        print(f"{name:<14}{cells[0]:>22}{cells[1]:>22}")


if __name__ == "__main__":
    main()
