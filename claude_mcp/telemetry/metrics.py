"""The Prometheus metrics, in one registry of the server's own (`REGISTRY`), served at `/metrics`.

Every metric is defined here, with its labels; the layers that count import them. Labels are
bounded: tool names, outcomes, error kinds, process sources, job statuses, and tenants — a
configured tenant's name, `local`, or `caller` (callers' namespaces are unbounded, so never a
label). Gauges of live state (queues, warm processes, jobs) are read when scraped, from the
sources registered with `add_live_source`.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .._version import __version__

REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
CONTENT_TYPE = CONTENT_TYPE_LATEST

_RUN_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
_FAST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

BUILD = Info("claude_mcp_build", "The server's version.", registry=REGISTRY)
BUILD.info({"version": __version__})

TOOL_CALLS = Counter(
    "claude_mcp_tool_calls",
    "MCP tool calls by tool and outcome: `ok`, `input_required`, `task`, `shutting_down` or the error kind.",
    ["tool", "outcome"],
    registry=REGISTRY,
)
TOOL_CALL_SECONDS = Histogram(
    "claude_mcp_tool_call_duration_seconds",
    "Wall time of MCP tool calls, by tool.",
    ["tool"],
    buckets=_RUN_BUCKETS,
    registry=REGISTRY,
)
RUNS = Counter(
    "claude_mcp_runs",
    "Claude runs (one prompt through the CLI, jobs included) by tool, tenant and outcome: `ok`, `error`, `cancelled`.",
    ["tool", "tenant", "outcome"],
    registry=REGISTRY,
)
RUN_ERRORS = Counter(
    "claude_mcp_run_errors",
    "Runs that ended in an error, by tenant and kind (`api_401`, `api_429`, `api_529`, `api_other`, `timeout`, "
    "`stalled`, `max_turns`, `max_budget`, `cli_failed`, `busy`, `policy`, …).",
    ["tenant", "kind"],
    registry=REGISTRY,
)
RUN_SECONDS = Histogram(
    "claude_mcp_run_duration_seconds",
    "Wall time of runs, from the call to the result (queue and turn-taking included), by tool.",
    ["tool"],
    buckets=_RUN_BUCKETS,
    registry=REGISTRY,
)
FIRST_TEXT_SECONDS = Histogram(
    "claude_mcp_time_to_first_text_seconds",
    "From the call to the first chunk of the answer's text, by tool.",
    ["tool"],
    buckets=_FAST_BUCKETS,
    registry=REGISTRY,
)
QUEUE_WAIT_SECONDS = Histogram(
    "claude_mcp_queue_wait_seconds",
    "Time a run waited for a run slot (`max_concurrent`), zero included.",
    buckets=_FAST_BUCKETS,
    registry=REGISTRY,
)
RUNS_IN_FLIGHT = Gauge(
    "claude_mcp_runs_in_flight",
    "Runs in progress (waiting for a slot or running), by tenant.",
    ["tenant"],
    registry=REGISTRY,
)
RUN_PROCESSES = Counter(
    "claude_mcp_run_processes",
    "Runs by the CLI process they ran on: `warm` (the conversation's live process), `spare` (the pre-started "
    "one: a spare hit) or `cold` (a new start).",
    ["source"],
    registry=REGISTRY,
)
CLI_STARTS = Counter(
    "claude_mcp_cli_starts",
    "CLI processes started (cold runs, restarts and spare processes).",
    registry=REGISTRY,
)
CLI_START_SECONDS = Histogram(
    "claude_mcp_cli_start_seconds",
    "Time to start a CLI process, until it has answered the SDK's initialize request.",
    buckets=_FAST_BUCKETS,
    registry=REGISTRY,
)
COST_USD = Counter(
    "claude_mcp_cost_usd",
    "Cost of runs in USD, as the CLI computes it, by tenant.",
    ["tenant"],
    registry=REGISTRY,
)
TOKENS = Counter(
    "claude_mcp_tokens",
    "Tokens reported by the API, by tenant and type (`input`, `output`, `cache_read`, `cache_creation`).",
    ["tenant", "type"],
    registry=REGISTRY,
)
JOBS_FINISHED = Counter(
    "claude_mcp_jobs_finished",
    "Background jobs that ended, by status (`completed`, `failed`, `cancelled`).",
    ["status"],
    registry=REGISTRY,
)
DRAINING = Gauge(
    "claude_mcp_draining",
    "1 while the server drains before it stops (new calls refused, running ones finishing).",
    registry=REGISTRY,
)

JOB_STATUSES = ("running", "completed", "failed", "cancelled")


@dataclass
class Live:
    """Live state, read at scrape time."""

    queued: int = 0
    warm: int = 0
    warm_bytes: int = 0
    jobs: Tally[str] = field(default_factory=Tally)


class _LiveCollector(Collector):
    def __init__(self) -> None:
        self.sources: list[Callable[[], Live]] = []

    def collect(self) -> Iterable[Metric]:
        total = Live()
        for source in self.sources:
            live = source()
            total.queued += live.queued
            total.warm += live.warm
            total.warm_bytes += live.warm_bytes
            total.jobs.update(live.jobs)
        yield GaugeMetricFamily("claude_mcp_queue_depth", "Calls waiting for a run slot.", value=total.queued)
        yield GaugeMetricFamily(
            "claude_mcp_warm_processes", "Idle CLI processes kept alive for follow-ups (`max_warm`).", value=total.warm
        )
        yield GaugeMetricFamily(
            "claude_mcp_warm_memory_bytes",
            "Memory the idle warm CLI processes hold (USS of each process tree, as last measured; `max_warm_mb`).",
            value=total.warm_bytes,
        )
        jobs = GaugeMetricFamily(
            "claude_mcp_jobs",
            "Background jobs this replica holds, by status (finished ones are kept `job_retention_s`).",
            labels=["status"],
        )
        for status in JOB_STATUSES:
            jobs.add_metric([status], total.jobs[status])
        yield jobs


_live = _LiveCollector()
REGISTRY.register(_live)


def add_live_source(source: Callable[[], Live]) -> None:
    """Have `source` add to the live gauges at every scrape (until `remove_live_source`)."""
    _live.sources.append(source)


def remove_live_source(source: Callable[[], Live]) -> None:
    if source in _live.sources:
        _live.sources.remove(source)


def exposition() -> bytes:
    """The metrics in Prometheus text format."""
    return generate_latest(REGISTRY)
