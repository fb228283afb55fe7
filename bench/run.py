"""Benchmarks, run side by side in one process against the fake model on loopback.

    .venv/bin/python -m bench.run [--runs N]

Measures, per run, when the fake model sent the first text chunk and when it arrived:
(a) at a plain claude-agent-sdk consumer of the CLI (the floor: CLI + SDK alone), and
(b) at an MCP client of `claude-mcp serve` over stdio, as a `stream_ask` progress message.
Prints medians and the ratio, plus our own added milliseconds.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import anyio
from claude_agent_sdk import ClaudeAgentOptions, ClaudeSDKClient
from mcp import Client

from claude_mcp.progress import STATUS_PREFIX, text_delta
from tests.conftest import FakeModel
from tests.fake_model import running_fake_model
from tests.test_stdio import server_params, write_config

ROOT = Path(__file__).resolve().parent.parent


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
    times = [r["first_text_at"] for r in fake.requests_for(token) if r["first_text_at"]]
    return min(times)


async def sdk_first_chunk(fake: FakeModel, env: dict[str, str], cwd: Path) -> float:
    token = uuid.uuid4().hex
    options = ClaudeAgentOptions(env=env, cwd=cwd, include_partial_messages=True, strict_mcp_config=True)
    arrived = 0.0
    async with ClaudeSDKClient(options) as client:
        await client.query(f"[[slow:20]] {token} one two three")
        async for message in client.receive_response():
            if not arrived and text_delta(message):
                arrived = time.time()
    return (arrived - first_text_at(fake, token)) * 1000


async def mcp_first_chunk(fake: FakeModel, client: Client) -> float:
    token = uuid.uuid4().hex
    arrived = 0.0

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        nonlocal arrived
        if not arrived and message and not message.startswith(STATUS_PREFIX):
            arrived = time.time()

    await client.call_tool(
        "stream_ask", {"prompt": f"[[slow:20]] {token} one two three"}, progress_callback=on_progress
    )
    return (arrived - first_text_at(fake, token)) * 1000


async def measure(fake: FakeModel, runs: int) -> tuple[list[float], list[float]]:
    with tempfile.TemporaryDirectory() as tmp:
        home, work = Path(tmp) / "home", Path(tmp) / "work"
        home.mkdir()
        work.mkdir()
        env = cli_env(fake, home)
        config = write_config(Path(tmp) / "bench.toml", work, env)
        sdk, mcp = [], []
        async with Client(server_params(config)) as client:
            for _ in range(runs):  # interleaved, so both see the same machine state
                sdk.append(await sdk_first_chunk(fake, env, work))
                mcp.append(await mcp_first_chunk(fake, client))
    return sdk, mcp


def main(runs: int) -> None:
    with running_fake_model() as url:
        sdk, mcp = anyio.run(measure, FakeModel(url), runs)
    sdk_ms, mcp_ms = statistics.median(sdk), statistics.median(mcp)
    print(f"first text chunk: fake model → consumer, median of {runs} runs each")
    print("| path | median ms |")
    print("| --- | --- |")
    print(f"| CLI + claude-agent-sdk alone | {sdk_ms:.1f} |")
    print(f"| CLI + claude-mcp + MCP stdio client (stream_ask progress) | {mcp_ms:.1f} |")
    print(f"| ratio (MCP / SDK alone) | {mcp_ms / sdk_ms:.2f} |")
    print(f"| added by claude-mcp and the MCP transport | {mcp_ms - sdk_ms:.1f} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    main(parser.parse_args().runs)
