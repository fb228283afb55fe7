"""The Message Batches API measured with the official `anthropic` SDK against `claude-mcp serve
--transport http` (the real bundled CLI, the fake model on loopback, PostgreSQL as the store),
side by side in one run:

    .venv/bin/python -m bench.batches [--count N] [--runs N] [--max-concurrent N]

- an N-request batch on one replica vs on two replicas sharing one PostgreSQL (the same
  `max_concurrent` each), from `create` to the `retrieve` that first says `ended`;
- both vs N sequential `/v1/messages` calls (each a new conversation, as each request of a
  batch is).

Medians of the runs (interleaved); ratios next to them. Each replica is a subprocess with its
own state directory; the 1-replica server has a database of its own, so that the pair's
claims never reach it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import anthropic
import anyio
import psycopg

from bench.run import cli_env, timed
from tests.conftest import FakeModel
from tests.fake_model import running_fake_model
from tests.pg_server import fresh_database, running_postgres
from tests.test_http import serving
from tests.test_stdio import write_config


def params(prompt: str) -> Any:
    return {"model": "sonnet", "max_tokens": 100, "messages": [{"role": "user", "content": prompt}]}


async def batch(client: anthropic.AsyncAnthropic, count: int) -> str:
    """Run an N-request batch to its end; its id."""
    token = uuid.uuid4().hex[:8]
    requests: Any = [{"custom_id": f"r{i}", "params": params(f"[[say:answer {i} {token}]]")} for i in range(count)]
    created = await client.messages.batches.create(requests=requests)
    while (done := await client.messages.batches.retrieve(created.id)).processing_status != "ended":
        await anyio.sleep(0.1)
    if done.request_counts.succeeded != count:
        failed = [line async for line in await client.messages.batches.results(created.id)]
        raise AssertionError([line.result for line in failed if line.result.type != "succeeded"][:3])
    return created.id


async def sequential(client: anthropic.AsyncAnthropic, count: int) -> None:
    token = uuid.uuid4().hex[:8]
    for i in range(count):
        await client.messages.create(**params(f"[[say:answer {i} {token}]]"))


def spread(database: str, batch_id: str) -> list[int]:
    """How many of the batch's requests each replica ran, most first."""
    with psycopg.connect(database) as conn:
        rows = conn.execute("SELECT replica FROM jobs WHERE batch_id = %s", (batch_id,)).fetchall()
    return sorted(Counter(replica for (replica,) in rows).values(), reverse=True)


async def measure(fake: FakeModel, pg_server: str, count: int, runs: int, max_concurrent: int) -> dict[str, Any]:
    samples: dict[str, list[float]] = {}
    spreads: list[list[int]] = []
    with (
        tempfile.TemporaryDirectory() as tmp,
        fresh_database(pg_server) as alone_db,
        fresh_database(pg_server) as pair_db,
    ):
        root = Path(tmp)
        home, work = root / "home", root / "work"
        home.mkdir()
        work.mkdir()
        settings = f"max_concurrent = {max_concurrent}\nmax_warm = 0"
        config = write_config(root / "bench.toml", work, cli_env(fake, home), settings)
        with (
            serving(root, config, "http", "--state-url", alone_db, name="alone") as alone,
            serving(root, config, "http", "--state-url", pair_db, name="a") as a,
            serving(root, config, "http", "--state-url", pair_db, name="b"),
        ):
            async with (
                anthropic.AsyncAnthropic(base_url=alone.base, api_key="x", max_retries=0, timeout=600) as one,
                anthropic.AsyncAnthropic(base_url=a.base, api_key="x", max_retries=0, timeout=600) as pair,
            ):
                await batch(one, 2)  # warm-up: the store's connections, the CLI's files in the page cache
                await batch(pair, 2)
                for _ in range(runs):
                    samples.setdefault("one_replica", []).append(await timed(batch(one, count)))
                    started = time.perf_counter()
                    batch_id = await batch(pair, count)
                    samples.setdefault("two_replicas", []).append((time.perf_counter() - started) * 1000)
                    spreads.append(spread(pair_db, batch_id))
                    samples.setdefault("sequential", []).append(await timed(sequential(one, count)))
    return {"samples": samples, "spreads": spreads}


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def report(measured: dict[str, Any], count: int, runs: int, max_concurrent: int) -> None:
    m = {name: statistics.median(values) for name, values in measured["samples"].items()}
    print(
        f"{count} requests, max_concurrent = {max_concurrent} per replica; medians of {runs} interleaved runs (ms); "
        "ratio = first / second.\n"
    )
    print("| comparison | first (ms) | second (ms) | ratio |")
    print("| --- | ---: | ---: | ---: |")
    rows = [
        (f"a {count}-request batch on 2 replicas vs on 1", "two_replicas", "one_replica"),
        (f"a {count}-request batch on 1 replica vs {count} sequential `/v1/messages`", "one_replica", "sequential"),
        (f"a {count}-request batch on 2 replicas vs {count} sequential `/v1/messages`", "two_replicas", "sequential"),
    ]
    for label, first, second in rows:
        print(f"| {label} | {m[first]:.0f} | {m[second]:.0f} | {m[first] / m[second]:.2f} |")
    print(f"\nRequests each of the two replicas ran, per run: {measured['spreads']}.")
    print(f"Machine: {os.cpu_count()} cores; load average {measured['load']} at the start, {load()} at the end.")


def main(count: int, runs: int, max_concurrent: int) -> None:
    at_start = load()
    with running_fake_model() as url, running_postgres() as pg_server:
        measured = anyio.run(measure, FakeModel(url), pg_server, count, runs, max_concurrent)
    measured["load"] = at_start
    report(measured, count, runs, max_concurrent)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="claude-mcp: the Message Batches API, measured")
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--max-concurrent", type=int, default=4)
    args = parser.parse_args()
    main(args.count, args.runs, args.max_concurrent)
