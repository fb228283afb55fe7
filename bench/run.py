"""Benchmarks: the real bundled CLI against the fake model on loopback, measured side by side.

    .venv/bin/python -m bench.run [--runs N]

Every figure is a median over N runs, taken interleaved (one of each per round), so all of
them see the same machine state; the tables give ratios next to the absolute medians.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import anyio
from claude_agent_sdk import ClaudeAgentOptions, ClaudeSDKClient, ResultMessage, query
from mcp import Client

from claude_mcp.progress import STATUS_PREFIX, text_delta
from tests.conftest import FakeModel
from tests.fake_model import running_fake_model
from tests.test_stdio import server_params, write_config


def cli_env(fake: FakeModel, home: Path) -> dict[str, str]:
    return {
        "ANTHROPIC_BASE_URL": fake.url,
        "ANTHROPIC_API_KEY": "sk-bench",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_TELEMETRY": "1",
        "HOME": str(home),
        "CLAUDE_CONFIG_DIR": str(home / ".claude"),
    }


def first_text_at(fake: FakeModel, token: str) -> float:
    return min(r["first_text_at"] for r in fake.requests_for(token) if r["first_text_at"])


async def timed(work: Awaitable[Any]) -> float:
    """Milliseconds the awaitable takes (a coroutine does nothing until awaited)."""
    started = time.perf_counter()
    await work
    return (time.perf_counter() - started) * 1000


class Bench:
    def __init__(self, fake: FakeModel, env: dict[str, str], work: Path) -> None:
        self.fake, self.env, self.work = fake, env, work

    def options(self) -> ClaudeAgentOptions:
        return ClaudeAgentOptions(env=self.env, cwd=self.work, include_partial_messages=True, strict_mcp_config=True)

    async def sdk_one_shot(self) -> None:
        async for message in query(prompt="hello", options=self.options()):
            if isinstance(message, ResultMessage):
                assert not message.is_error

    async def sdk_first_chunk(self) -> float:
        token = uuid.uuid4().hex
        arrived = 0.0
        async with ClaudeSDKClient(self.options()) as client:
            await client.query(f"[[slow:20]] {token} one two three")
            async for message in client.receive_response():
                if not arrived and text_delta(message):
                    arrived = time.time()
        return (arrived - first_text_at(self.fake, token)) * 1000

    async def mcp_first_chunk(self, client: Client) -> float:
        token = uuid.uuid4().hex
        arrived = 0.0

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            nonlocal arrived
            if not arrived and message and not message.startswith(STATUS_PREFIX):
                arrived = time.time()

        prompt = f"[[slow:20]] {token} one two three"
        await client.call_tool("stream_ask", {"prompt": prompt}, progress_callback=on_progress)
        return (arrived - first_text_at(self.fake, token)) * 1000


async def ask(client: Client, **arguments: Any) -> dict[str, Any]:
    result = await client.call_tool("ask", arguments)
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return result.structured_content


async def measure(fake: FakeModel, runs: int) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {}

    def add(name: str, value: float) -> None:
        samples.setdefault(name, []).append(value)

    with tempfile.TemporaryDirectory() as tmp:
        home, work = Path(tmp) / "home", Path(tmp) / "work"
        home.mkdir()
        work.mkdir()
        env = cli_env(fake, home)
        bench = Bench(fake, env, work)
        warm_cfg = write_config(Path(tmp) / "warm.toml", work, env)
        cold_cfg = write_config(Path(tmp) / "cold.toml", work, env, "max_warm = 0")
        spare_cfg = write_config(Path(tmp) / "spare.toml", work, env, "max_warm = 0\nspare_process = true")
        async with (
            Client(server_params(warm_cfg)) as warm,
            Client(server_params(cold_cfg)) as cold,
            Client(server_params(spare_cfg)) as spare,
        ):
            await ask(warm, prompt="warm-up")
            for _ in range(runs):
                add("sdk_one_shot", await timed(bench.sdk_one_shot()))
                add("mcp_one_shot", await timed(ask(cold, prompt="hello")))
                session = (await ask(warm, prompt="remember fig"))["session_id"]
                add("warm_follow_up", await timed(ask(warm, prompt="recall", session_id=session)))
                session = (await ask(cold, prompt="remember fig"))["session_id"]
                add("cold_follow_up", await timed(ask(cold, prompt="recall", session_id=session)))
                await anyio.sleep(1.5)  # let the spare process be started again
                add("spare_new", await timed(ask(spare, prompt="hello")))
                add("sdk_first_chunk", await bench.sdk_first_chunk())
                add("mcp_first_chunk", await bench.mcp_first_chunk(warm))
    return samples


def report(samples: dict[str, list[float]], runs: int) -> None:
    m = {name: statistics.median(values) for name, values in samples.items()}
    rows = [
        ("one-shot ask over MCP stdio vs the SDK's `query()` alone", "mcp_one_shot", "sdk_one_shot"),
        ("warm follow-up vs cold one-shot ask", "warm_follow_up", "mcp_one_shot"),
        ("warm follow-up vs cold follow-up (resume)", "warm_follow_up", "cold_follow_up"),
        ("new conversation with the spare process vs without", "spare_new", "mcp_one_shot"),
        ("first text chunk to the client: MCP progress vs SDK stream", "mcp_first_chunk", "sdk_first_chunk"),
    ]
    print(f"Medians of {runs} interleaved runs (ms); ratio = first / second.\n")
    print("| comparison | first (ms) | second (ms) | ratio |")
    print("| --- | ---: | ---: | ---: |")
    for label, first, second in rows:
        print(f"| {label} | {m[first]:.1f} | {m[second]:.1f} | {m[first] / m[second]:.2f} |")


def main(runs: int) -> None:
    with running_fake_model() as url:
        samples = anyio.run(measure, FakeModel(url), runs)
    report(samples, runs)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="claude-mcp benchmarks")
    parser.add_argument("--runs", type=int, default=7)
    main(parser.parse_args().runs)
