"""MCP tasks measured with FastMCP's client (the `fastmcp-tasks` extension) against `claude-mcp
serve --transport http` (the real bundled CLI, the fake model on loopback), side by side in one run:

    .venv/bin/python -m bench.tasks [--runs N] [--jobs N]

- time to a task handle (a task-augmented `ask` answered with `resultType: "task"`) vs a
  `tools/list` round trip on the same connection (goal: the handle within 50 ms);
- `tasks/get` of a finished task in a store holding no other jobs vs one holding `--jobs`
  (10,000) finished jobs of the same namespace (goal: flat).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
from fastmcp import Client
from fastmcp_tasks.client import _send_get, call_tool_task

from bench.run import cli_env
from claude_mcp.state.sqlite import SqliteStore
from claude_mcp.state.store import JobRecord
from tests.conftest import FakeModel
from tests.fake_model import running_fake_model
from tests.test_http import serving
from tests.test_stdio import write_config


async def fill(path: Path, jobs: int) -> None:
    """A store with `jobs` finished jobs of the local namespace, as a busy server leaves it."""
    now = time.time()
    async with SqliteStore(path) as store:
        for n in range(jobs):
            result = {"result": f"answer {n}", "session_id": str(uuid.uuid4()), "is_error": False}
            await store.save_job(
                JobRecord(
                    namespace="local",
                    job_id=str(uuid.uuid4()),
                    status="completed",
                    created_at=now - n,
                    updated_at=now - n,
                    finished_at=now - n,
                    result={**result, "subtype": "success", "num_turns": 1, "duration_ms": 5},
                    tool="ask",
                )
            )


async def median_ms(runs: int, work: Callable[[], Awaitable[Any]]) -> float:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        await work()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


async def finished_task(client: Client[Any]) -> str:
    task = await call_tool_task(client, "ask", {"prompt": f"[[say:done]] {uuid.uuid4().hex}"})
    await task.result()
    return task.task_id


async def measure(fake: FakeModel, runs: int, jobs: int, tmp: Path) -> dict[str, float]:
    home, work = tmp / "home", tmp / "work"
    home.mkdir()
    work.mkdir()
    env = cli_env(fake, home)
    full_db = tmp / "full.sqlite3"
    await fill(full_db, jobs)
    empty = write_config(tmp / "empty.toml", work, env, f'state_url = "sqlite://{tmp / "empty.sqlite3"}"')
    full = write_config(tmp / "full.toml", work, env, f'state_url = "sqlite://{full_db}"\nmax_jobs = {jobs + 100}')
    m: dict[str, float] = {}
    with serving(tmp, empty, "http", name="empty") as a, serving(tmp, full, "http", name="full") as b:
        async with Client(a.url, timeout=120) as on_empty, Client(b.url, timeout=120) as on_full:
            await finished_task(on_empty)  # warm-up: a CLI started, a conversation cached
            m["tools_list"] = await median_ms(runs, on_empty.list_tools)

            handles = []
            for _ in range(runs):  # each run ends before the next starts: the handle alone is timed
                started = time.perf_counter()
                task = await call_tool_task(on_empty, "ask", {"prompt": f"[[say:x]] {uuid.uuid4().hex}"})
                handles.append((time.perf_counter() - started) * 1000)
                await task.result()
            m["handle"] = statistics.median(handles)
            empty_id, full_id = await finished_task(on_empty), await finished_task(on_full)
            for _ in range(2):  # interleaved
                m["get_empty"] = await median_ms(runs * 3, lambda: _send_get(on_empty.session, empty_id))
                m["get_full"] = await median_ms(runs * 3, lambda: _send_get(on_full.session, full_id))
    return m


def report(m: dict[str, float], runs: int, jobs: int) -> None:
    print(f"Medians of {runs} runs (ms); ratio = first / second.\n")
    print("| comparison | first (ms) | second (ms) | ratio |")
    print("| --- | ---: | ---: | ---: |")
    rows = [
        ("task handle for `ask` vs a `tools/list` round trip", "handle", "tools_list"),
        (f"`tasks/get` with {jobs:,} other jobs stored vs none", "get_full", "get_empty"),
    ]
    for label, first, second in rows:
        print(f"| {label} | {m[first]:.1f} | {m[second]:.1f} | {m[first] / m[second]:.2f} |")
    print(f"\nTime to a task handle: {m['handle']:.1f} ms (goal ≤ 50 ms).")


def main(runs: int, jobs: int) -> None:
    with running_fake_model() as url, tempfile.TemporaryDirectory() as tmp:
        m = anyio.run(measure, FakeModel(url), runs, jobs, Path(tmp))
    report(m, runs, jobs)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="claude-mcp: MCP tasks, measured")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--jobs", type=int, default=10_000)
    args = parser.parse_args()
    main(args.runs, args.jobs)
