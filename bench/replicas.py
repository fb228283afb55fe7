"""What the shared store costs and gives, measured with the real bundled CLI against the fake
model, side by side in one run:

    .venv/bin/python -m bench.replicas [--runs N]

- a warm turn with transcript mirroring on (SQLite, PostgreSQL) vs off (the SDK client alone);
- a cold resume materialized from the store vs one from the local transcript (no store);
- a follow-up on the other replica (resumed from PostgreSQL) vs a cold follow-up on the same
  replica, and vs a warm one.

Medians of N interleaved runs; ratios next to them.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import anyio
from claude_agent_sdk import ClaudeAgentOptions, ClaudeSDKClient, ResultMessage, SessionStore

from bench.run import cli_env, timed
from claude_mcp import ClaudeBridge, Policy
from claude_mcp.state.postgres import PostgresStore
from claude_mcp.state.sqlite import SqliteStore
from tests.conftest import FakeModel
from tests.fake_model import running_fake_model
from tests.pg_server import fresh_database, running_postgres


async def turn(client: ClaudeSDKClient, prompt: str) -> str:
    await client.query(prompt)
    async for message in client.receive_response():
        if isinstance(message, ResultMessage):
            assert not message.is_error, message.result
            return message.session_id
    raise AssertionError("no result")


async def measure(fake: FakeModel, pg_url: str, runs: int) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {}

    def add(name: str, value: float) -> None:
        samples.setdefault(name, []).append(value)

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        homes = {name: root / name for name in ("sdk", "a", "b")}
        for home in homes.values():
            home.mkdir()
        work = root / "work"
        work.mkdir()
        env = cli_env(fake, homes["sdk"])
        async with AsyncExitStack() as stack:
            sqlite = await stack.enter_async_context(SqliteStore(root / "bench.sqlite3"))
            postgres = await stack.enter_async_context(PostgresStore(pg_url))

            def options(store: SessionStore | None, **extra: Any) -> ClaudeAgentOptions:
                return ClaudeAgentOptions(
                    env=env,
                    cwd=work,
                    strict_mcp_config=True,
                    session_store=store,
                    include_partial_messages=True,
                    **extra,
                )

            # 1. Warm turns on three live clients: no store, mirrored to SQLite, mirrored to PostgreSQL.
            plain = await stack.enter_async_context(ClaudeSDKClient(options(None)))
            to_sqlite = await stack.enter_async_context(ClaudeSDKClient(options(sqlite.transcripts("bench"))))
            to_postgres = await stack.enter_async_context(ClaudeSDKClient(options(postgres.transcripts("bench"))))
            for client in (plain, to_sqlite, to_postgres):
                await turn(client, "remember fig")

            # 2. Two replicas (bridges with their own config dirs) on one PostgreSQL store, no warm processes.
            policy = {"roots": (work,), "api_retries": 0, "max_warm": 0}
            a = ClaudeBridge(
                Policy(**policy, cli_env=cli_env(fake, homes["a"])), depth=0, store=postgres, namespace="bench-r"
            )
            b = ClaudeBridge(
                Policy(**policy, cli_env=cli_env(fake, homes["b"])), depth=0, store=postgres, namespace="bench-r"
            )
            warm_bridge = ClaudeBridge(
                Policy(**{**policy, "max_warm": 4}, cli_env=cli_env(fake, homes["a"])),
                depth=0,
                store=postgres,
                namespace="bench-w",
            )
            for bridge in (a, b, warm_bridge):
                await stack.enter_async_context(bridge)
            shared = (await a.ask("remember plum")).session_id
            warm_session = (await warm_bridge.ask("remember plum")).session_id
            local = await turn(plain, "remember kiwi")  # a transcript on local disk only
            stored = await turn(to_postgres, "remember kiwi")

            for _ in range(runs):
                add("warm_plain", await timed(turn(plain, "what did I ask you to remember")))
                add("warm_sqlite", await timed(turn(to_sqlite, "what did I ask you to remember")))
                add("warm_postgres", await timed(turn(to_postgres, "what did I ask you to remember")))
                add("resume_local", await timed(resume(options(None, resume=local))))
                add("resume_store", await timed(resume(options(postgres.transcripts("bench"), resume=stored))))
                add("same_replica", await timed(a.ask("what did I ask you to remember", session_id=shared)))
                add("other_replica", await timed(b.ask("what did I ask you to remember", session_id=shared)))
                add("warm_bridge", await timed(warm_bridge.ask("what did I ask", session_id=warm_session)))
    return samples


async def resume(options: ClaudeAgentOptions) -> None:
    async with ClaudeSDKClient(options) as client:
        await turn(client, "what did I ask you to remember")


def report(samples: dict[str, list[float]], runs: int) -> None:
    m = {name: statistics.median(values) for name, values in samples.items()}
    rows = [
        ("warm turn, transcripts mirrored to SQLite vs not mirrored", "warm_sqlite", "warm_plain"),
        ("warm turn, transcripts mirrored to PostgreSQL vs not mirrored", "warm_postgres", "warm_plain"),
        ("cold resume materialized from PostgreSQL vs from the local transcript", "resume_store", "resume_local"),
        ("follow-up on the other replica vs a cold one on the same replica", "other_replica", "same_replica"),
        ("follow-up on the other replica vs a warm one", "other_replica", "warm_bridge"),
    ]
    print(f"Medians of {runs} interleaved runs (ms); ratio = first / second.\n")
    print("| comparison | first (ms) | second (ms) | ratio |")
    print("| --- | ---: | ---: | ---: |")
    for label, first, second in rows:
        print(f"| {label} | {m[first]:.1f} | {m[second]:.1f} | {m[first] / m[second]:.2f} |")


def main(runs: int) -> None:
    with running_fake_model() as url, running_postgres() as server, fresh_database(server) as database:
        samples = anyio.run(measure, FakeModel(url), database, runs)
    report(samples, runs)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="claude-mcp: what the shared store costs and gives")
    parser.add_argument("--runs", type=int, default=7)
    main(parser.parse_args().runs)
