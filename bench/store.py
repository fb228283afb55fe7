"""What the state store gives `list_sessions` and transcript reads, measured side by side in one run:

    .venv/bin/python -m bench.store [--runs N] [--scan-budget SECONDS]

1. A page of 20 conversations with N = 100, 1,000 and 10,000 of them: the directory scan the
   server used before the store (`claude_agent_sdk.list_sessions(limit=20)` over N synthetic
   transcript files under a temp `CLAUDE_CONFIG_DIR`) vs `Conversations.page` on SqliteStore and
   on PostgresStore (a throwaway server). Median and p95 of interleaved runs; the scan gets as
   many runs as fit its time budget per N (at least 3).
2. Event-loop lag: a task sleeping 1 ms in a loop records how late each wake-up is while the
   loop lists a page 200 times from the 10,000-row index, reads 50 messages of a 2,000-entry
   transcript, or (as the old code did) runs the directory scan over 10,000 files on the loop.

Prints Markdown tables, then one JSON line with the raw figures.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import anyio.to_thread
import claude_agent_sdk as sdk
from claude_agent_sdk._cli_version import __cli_version__

from claude_mcp.state.conversations import Conversations
from claude_mcp.state.postgres import PostgresStore
from claude_mcp.state.sqlite import SqliteStore
from claude_mcp.state.store import SessionRecord, Store
from tests.pg_server import fresh_database, running_postgres

SIZES = (100, 1_000, 10_000)
PAGE = 20
NAMESPACE = "bench"
READ_NAMESPACE = "bench-read"
PROJECTS = [f"/home/dev/project-{k}" for k in range(5)]
LIST_GOAL_MS = 20.0
LAG_GOAL_MS = 10.0
LAG_LISTS = 200
LONG_TRANSCRIPT = 2_000
TRANSCRIPT_READS = 20
SCAN_LAG_RUNS = 2
TICK = 0.001

REPLY = (
    "I looked at the module and the failing test. The fixture builds the client before the "
    "settings are loaded, so the timeout it reads is the default one; moving the call into the "
    "fixture's body fixes it. I also added a regression test that sets a short timeout and checks "
    "the request is abandoned after it. All 184 tests pass."
)


# Synthetic conversations, in the CLI's transcript format.
def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def transcript(session_id: str, cwd: str, prompt: str, started: float, turns: int) -> list[dict[str, Any]]:
    """`turns` user/assistant pairs as the CLI writes them (a chain through `parentUuid`)."""
    entries: list[dict[str, Any]] = []
    parent: str | None = None
    common = {"isSidechain": False, "userType": "external", "cwd": cwd, "sessionId": session_id}
    common |= {"version": __cli_version__, "gitBranch": "main"}
    for turn in range(turns):
        asked, answered = str(uuid.uuid4()), str(uuid.uuid4())
        text = prompt if turn == 0 else f"Thanks. Now step {turn}: check the other call sites too."
        entries.append(
            {
                "parentUuid": parent,
                **common,
                "type": "user",
                "message": {"role": "user", "content": text},
                "uuid": asked,
                "timestamp": _iso(started + turn * 30),
            }
        )
        message = {
            "id": f"msg_{uuid.uuid4().hex[:24]}",
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-4-5-20250929",
            "content": [{"type": "text", "text": REPLY}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": 1200 + turn * 400, "output_tokens": 90},
        }
        entries.append(
            {
                "parentUuid": asked,
                **common,
                "message": message,
                "requestId": f"req_{uuid.uuid4().hex[:24]}",
                "type": "assistant",
                "uuid": answered,
                "timestamp": _iso(started + turn * 30 + 8),
            }
        )
        parent = answered
    return entries


class Corpus:
    """Conversation i: its id, project, first prompt and time, the same in the files and the stores."""

    def __init__(self, count: int) -> None:
        self.ids = [str(uuid.uuid4()) for _ in range(count)]
        self.base = time.time() - count * 60

    def cwd(self, i: int) -> str:
        return PROJECTS[i % len(PROJECTS)]

    def prompt(self, i: int) -> str:
        return f"Conversation {i}: the integration test for the HTTP client times out; find out why and fix it."

    def moment(self, i: int) -> float:
        return self.base + i * 60

    def record(self, i: int) -> SessionRecord:
        moment = self.moment(i)
        return SessionRecord(
            namespace=NAMESPACE,
            session_id=self.ids[i],
            cwd=self.cwd(i),
            first_prompt=self.prompt(i),
            created_at=moment - 90,
            updated_at=moment,
            settings={"model": "sonnet", "max_turns": 8} if i % 3 == 0 else {},
        )

    def write_files(self, projects: Path, indices: range) -> None:
        """Conversation files as the CLI leaves them (3 turns each), mtime = last update."""
        for i in indices:
            folder = projects / sdk.project_key_for_directory(self.cwd(i))
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"{self.ids[i]}.jsonl"
            lines = transcript(self.ids[i], self.cwd(i), self.prompt(i), self.moment(i) - 90, turns=3)
            path.write_text("".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines))
            os.utime(path, (self.moment(i), self.moment(i)))


async def put_all(store: Store, records: Iterable[SessionRecord], concurrency: int) -> None:
    """Insert index rows through `put_session` (the store has no bulk path), `concurrency` at a time."""
    pending = iter(records)

    async def worker() -> None:
        for record in pending:
            await store.put_session(record)

    async with anyio.create_task_group() as tasks:
        for _ in range(concurrency):
            tasks.start_soon(worker)


# Figures.
def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


async def timed(work: Awaitable[Any]) -> float:
    started = time.perf_counter()
    await work
    return (time.perf_counter() - started) * 1000


async def scan_page() -> None:
    """The old `list_sessions`: a synchronous scan of every transcript file, on the event loop."""
    assert len(sdk.list_sessions(limit=PAGE)) == PAGE


async def store_page(conversations: Conversations) -> None:
    assert len(await conversations.page(limit=PAGE, offset=0)) == PAGE


async def lag_during(work: Callable[[], Awaitable[None]]) -> dict[str, Any]:
    """How late a task sleeping 1 ms in a loop wakes up while `work` runs on the same loop."""
    lags: list[float] = []

    async def monitor() -> None:
        while True:
            started = time.perf_counter()
            await anyio.sleep(TICK)
            lags.append(max(0.0, (time.perf_counter() - started - TICK) * 1000))

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(monitor)
        await anyio.sleep(0.01)
        lags.clear()
        started = time.perf_counter()
        await work()
        wall = (time.perf_counter() - started) * 1000
        await anyio.sleep(0.01)  # let the monitor record the wake-up the work last delayed
        tasks.cancel_scope.cancel()
    return {
        "wall_ms": round(wall, 1),
        "p99_ms": percentile(lags, 99),
        "max_ms": max(lags),
        "lags_ms": [round(lag, 3) for lag in lags],
    }


async def measure(tmp: Path, pg_url: str, runs: int, scan_budget: float) -> dict[str, Any]:
    projects = tmp / "config" / "projects"
    os.environ["CLAUDE_CONFIG_DIR"] = str(tmp / "config")  # read by sdk.list_sessions
    corpus = Corpus(max(SIZES))
    lists: dict[str, dict[int, list[float]]] = {"scan": {}, "sqlite": {}, "postgres": {}}
    setup: dict[str, float] = {"files": 0.0, "sqlite": 0.0, "postgres": 0.0}
    lag: dict[str, dict[str, Any]] = {}
    reads: dict[str, list[float]] = {}
    async with SqliteStore(tmp / "state.sqlite3") as lite, PostgresStore(pg_url) as pg:
        stores = {"sqlite": lite, "postgres": pg}
        done = 0
        for size in SIZES:
            new = range(done, size)
            setup["files"] += await timed(anyio.to_thread.run_sync(corpus.write_files, projects, new))
            for name, store in stores.items():
                records = (corpus.record(i) for i in new)
                setup[name] += await timed(put_all(store, records, 4 if name == "sqlite" else 8))
            done = size
            pages = {name: Conversations(store, NAMESPACE) for name, store in stores.items()}
            scan_once = await timed(scan_page())  # warm-up (and an estimate of the scan's cost)
            for conversations in pages.values():
                await store_page(conversations)
            scan_runs = max(3, min(runs, int(scan_budget * 1000 / scan_once)))
            for round_ in range(runs):
                if round_ < scan_runs:
                    lists["scan"].setdefault(size, []).append(await timed(scan_page()))
                for name, conversations in pages.items():
                    lists[name].setdefault(size, []).append(await timed(store_page(conversations)))

        lag["idle"] = await lag_during(lambda: anyio.sleep(1.0))
        cwd = tmp / "work" / "long-project"
        cwd.mkdir(parents=True)
        session_id = str(uuid.uuid4())
        entries = transcript(
            session_id, str(cwd), "Refactor the billing module.", time.time() - 86_400, LONG_TRANSCRIPT // 2
        )
        key = {"project_key": sdk.project_key_for_directory(cwd), "session_id": session_id}
        for name, store in stores.items():
            conversations = Conversations(store, NAMESPACE)

            async def list_many(conversations: Conversations = conversations) -> None:
                for _ in range(LAG_LISTS):
                    await store_page(conversations)

            lag[f"list:{name}"] = await lag_during(list_many)

            moment = time.time()
            record = SessionRecord(
                namespace=READ_NAMESPACE,
                session_id=session_id,
                cwd=str(cwd),
                first_prompt="Refactor the billing module.",
                created_at=moment,
                updated_at=moment,
            )
            await store.put_session(record)
            mirror = store.transcripts(READ_NAMESPACE)
            for start in range(0, len(entries), 50):  # batches, as the SDK mirrors them
                await mirror.append(key, entries[start : start + 50])  # type: ignore[arg-type]
            reader = Conversations(store, READ_NAMESPACE)
            page = await reader.read(await reader.find(session_id), limit=50, offset=0)
            assert page.total == LONG_TRANSCRIPT and len(page.messages) == 50, (page.total, len(page.messages))
            times = reads.setdefault(name, [])

            async def read_one(reader: Conversations = reader) -> None:  # as get_session: find, then read
                await reader.read(await reader.find(session_id), limit=50, offset=0)

            async def read_many(times: list[float] = times) -> None:
                for _ in range(TRANSCRIPT_READS):
                    times.append(await timed(read_one()))

            lag[f"read:{name}"] = await lag_during(read_many)

        async def scan_many() -> None:
            for _ in range(SCAN_LAG_RUNS):
                await scan_page()
                await anyio.lowlevel.checkpoint()

        lag["scan"] = await lag_during(scan_many)
    return {"list_ms": lists, "lag": lag, "read_ms": reads, "setup_ms": setup}


def report(figures: dict[str, Any], elapsed: float) -> None:
    lists: dict[str, dict[int, list[float]]] = figures["list_ms"]
    labels = {
        "scan": "directory scan (`sdk.list_sessions`, before the store)",
        "sqlite": "`Conversations.page` on SqliteStore",
        "postgres": "`Conversations.page` on PostgresStore",
    }
    print(
        f"`list_sessions`, a page of {PAGE} (ms); median and p95 of interleaved runs. "
        f"Goal: ≤ {LIST_GOAL_MS:g} ms, flat.\n"
    )
    print("| source | conversations | median | p95 | runs | median vs N=100 | goal |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | :---: |")
    for source, by_size in lists.items():
        base = statistics.median(by_size[SIZES[0]])
        for size, values in by_size.items():
            median, p95 = statistics.median(values), percentile(values, 95)
            met = "yes" if p95 <= LIST_GOAL_MS else "**no**"
            cells = f"{median:.2f} | {p95:.2f} | {len(values)} | {median / base:.2f}x"
            print(f"| {labels[source]} | {size:,} | {cells} | {met} |")

    lag: dict[str, dict[str, Any]] = figures["lag"]
    reads: dict[str, list[float]] = figures["read_ms"]
    long_read = f"read 50 of a {LONG_TRANSCRIPT:,}-entry transcript ×{TRANSCRIPT_READS}"
    workloads = {
        "idle": "nothing (1 s, the monitor's own noise)",
        "list:sqlite": f"list a page ×{LAG_LISTS}, 10,000 rows, SqliteStore",
        "list:postgres": f"list a page ×{LAG_LISTS}, 10,000 rows, PostgresStore",
        "read:sqlite": f"{long_read}, SqliteStore",
        "read:postgres": f"{long_read}, PostgresStore",
        "scan": f"directory scan over 10,000 files ×{SCAN_LAG_RUNS}, on the loop (before the store)",
    }
    print(
        f"\nEvent-loop lag: how late a 1 ms sleep wakes up while the work runs (ms). Goal: p99 ≤ {LAG_GOAL_MS:g} ms.\n"
    )
    print("| work on the loop | wall | wake-ups | p99 lag | max lag | goal |")
    print("| --- | ---: | ---: | ---: | ---: | :---: |")
    for name, label in workloads.items():
        f = lag[name]
        met = "yes" if f["p99_ms"] <= LAG_GOAL_MS else "**no**"
        print(f"| {label} | {f['wall_ms']:.0f} | {len(f['lags_ms'])} | {f['p99_ms']:.2f} | {f['max_ms']:.2f} | {met} |")
    print(f"\n| {long_read}: one read (ms) | median | p95 |\n| --- | ---: | ---: |")
    for name, values in reads.items():
        print(f"| {name} | {statistics.median(values):.1f} | {percentile(values, 95):.1f} |")
    setup = figures["setup_ms"]
    print(
        f"\nSetup for {max(SIZES):,} conversations: files {setup['files'] / 1000:.1f} s, "
        f"SQLite rows {setup['sqlite'] / 1000:.1f} s, PostgreSQL rows {setup['postgres'] / 1000:.1f} s; "
        f"whole run {elapsed:.0f} s."
    )
    raw = {
        "list_ms": {src: {str(n): [round(v, 3) for v in vs] for n, vs in by.items()} for src, by in lists.items()},
        "lag": lag,
        "read_ms": {name: [round(v, 2) for v in values] for name, values in reads.items()},
        "setup_ms": {name: round(ms, 1) for name, ms in setup.items()},
    }
    print("\n" + json.dumps(raw, separators=(",", ":")))


def main(runs: int, scan_budget: float) -> None:
    started = time.perf_counter()
    previous = os.environ.get("CLAUDE_CONFIG_DIR")
    try:
        with (
            tempfile.TemporaryDirectory(prefix="claude-mcp-bench-") as tmp,
            running_postgres() as server,
            fresh_database(server) as pg_url,
        ):
            gc.freeze()  # as `claude-mcp serve` does after start-up
            figures = anyio.run(measure, Path(tmp), pg_url, runs, scan_budget)
    finally:
        if previous is None:
            os.environ.pop("CLAUDE_CONFIG_DIR", None)
        else:
            os.environ["CLAUDE_CONFIG_DIR"] = previous
    report(figures, time.perf_counter() - started)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="claude-mcp state store benchmarks")
    parser.add_argument("--runs", type=int, default=50, help="store pages measured per N (default 50)")
    parser.add_argument(
        "--scan-budget", type=float, default=20.0, help="seconds of directory scans per N (at least 3 runs)"
    )
    args = parser.parse_args()
    main(args.runs, args.scan_budget)
