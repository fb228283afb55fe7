"""Benchmarks: the real bundled CLI against the fake model on loopback, measured side by side.

    .venv/bin/python -m bench.run [--runs N]

Every figure is a median over N runs, taken interleaved (one of each per round), so all of
them see the same machine state; the tables give ratios next to the absolute medians.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import anyio
import psutil
from claude_agent_sdk import ClaudeAgentOptions, ClaudeSDKClient, ResultMessage, query
from mcp import Client, StdioServerParameters

from claude_mcp.bridge.observer import text_delta
from claude_mcp.mcp_surface.progress import STATUS_PREFIX
from claude_mcp.setup.doctor import bundled_cli
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


PEER_PACKAGE = "@steipete/claude-code-mcp@1.10.12"
PEER_DIR = Path(__file__).parent / ".peer"


async def peer_params(env: dict[str, str]) -> StdioServerParameters | str:
    """The reference peer (npm) as a stdio server on the same CLI and fake model, or why not."""
    node, npm, cli = shutil.which("node"), shutil.which("npm"), bundled_cli()
    if node is None or npm is None or cli is None:
        return "node, npm or the bundled CLI is missing"
    server_js = PEER_DIR / "node_modules/@steipete/claude-code-mcp/dist/server.js"
    if not server_js.exists():
        done = await anyio.run_process(
            [npm, "install", "--prefix", str(PEER_DIR), "--no-audit", "--no-fund", "--silent", PEER_PACKAGE],
            check=False,
        )
        if done.returncode != 0 or not server_js.exists():
            return f"npm install {PEER_PACKAGE} failed: {done.stderr.decode()[-300:]}"
    base = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "CLAUDE_"))}
    # The peer always runs `claude --dangerously-skip-permissions`, which the CLI refuses under root
    # unless told it is sandboxed.
    peer_env = {**base, **env, "CLAUDE_CLI_NAME": str(cli), "IS_SANDBOX": "1", "MCP_CLAUDE_DEBUG": "false"}
    return StdioServerParameters(command=node, args=[str(server_js)], env=peer_env)


def rss_mb(process: psutil.Process) -> float:
    try:
        return float(process.memory_info().rss) / 2**20
    except psutil.Error:
        return 0.0


def uss_mb(process: psutil.Process) -> float:
    """Memory only this process holds (what one more of it adds; the CLI binary's pages are shared)."""
    try:
        return float(process.memory_full_info().uss) / 2**20
    except psutil.Error:
        return 0.0


def server_process(config: Path) -> psutil.Process:
    return next(p for p in psutil.Process().children() if str(config) in " ".join(p.cmdline()))


async def measure(fake: FakeModel, runs: int) -> tuple[dict[str, list[float]], list[str]]:
    samples: dict[str, list[float]] = {}
    notes: list[str] = []

    def add(name: str, value: float) -> None:
        samples.setdefault(name, []).append(value)

    with tempfile.TemporaryDirectory() as tmp:
        home, work = Path(tmp) / "home", Path(tmp) / "work"
        home.mkdir()
        work.mkdir()
        env = cli_env(fake, home)
        bench = Bench(fake, env, work)
        warm_cfg = write_config(Path(tmp) / "warm.toml", work, env)
        cold_cfg = write_config(Path(tmp) / "cold.toml", work, env, "max_warm = 0\nmax_concurrent = 8")
        spare_cfg = write_config(Path(tmp) / "spare.toml", work, env, "max_warm = 0\nspare_process = true")
        peer = await peer_params(env)
        async with AsyncExitStack() as stack:
            warm = await stack.enter_async_context(Client(server_params(warm_cfg)))
            cold = await stack.enter_async_context(Client(server_params(cold_cfg)))
            spare = await stack.enter_async_context(Client(server_params(spare_cfg)))
            rival = None
            if isinstance(peer, str):
                notes.append(f"reference peer not measured: {peer}")
            else:
                rival = await stack.enter_async_context(Client(peer))
            warm_server = server_process(warm_cfg)
            peak_server = 0.0

            async def watch_memory() -> None:
                nonlocal peak_server
                while True:
                    peak_server = max(peak_server, rss_mb(warm_server))
                    await anyio.sleep(0.05)

            tasks = await stack.enter_async_context(anyio.create_task_group())
            tasks.start_soon(watch_memory)
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
                add("spare_burst", await burst(spare))
                add("cold_burst", await burst(cold))
                add("sdk_first_chunk", await bench.sdk_first_chunk())
                add("mcp_first_chunk", await bench.mcp_first_chunk(warm))
                if rival is not None:
                    add("peer_one_shot", await timed(peer_ask(rival, work, "hello")))
                    add("peer_follow_up", await timed(peer_ask(rival, work, "recall")))
            for _ in range(max(1, runs // 3)):
                add("sequential_8", await timed(sequential(cold, 8)))
                add("concurrent_8", await timed(concurrent(cold, 8)))
            idle_cli = [p for p in warm_server.children() if "claude" in " ".join(p.cmdline()[:1])]
            add("warm_cli_rss_mb", max((rss_mb(p) for p in idle_cli), default=0.0))
            add("warm_cli_uss_mb", max((uss_mb(p) for p in idle_cli), default=0.0))
            add("server_peak_rss_mb", peak_server)
            tasks.cancel_scope.cancel()
    return samples, notes


async def peer_ask(client: Client, work: Path, prompt: str) -> None:
    result = await client.call_tool("claude_code", {"prompt": prompt, "workFolder": str(work)})
    assert not result.is_error, result.content


async def burst(client: Client, n: int = 4, gap_s: float = 0.1) -> float:
    """Mean latency (ms) of `n` new conversations started `gap_s` apart: faster than spares start."""
    took: list[float] = []

    async def one(i: int) -> None:
        await anyio.sleep(i * gap_s)
        took.append(await timed(ask(client, prompt=f"burst {i}")))

    async with anyio.create_task_group() as tasks:
        for i in range(n):
            tasks.start_soon(one, i)
    return statistics.mean(took)


async def sequential(client: Client, n: int) -> None:
    for i in range(n):
        await ask(client, prompt=f"seq {i}")


async def concurrent(client: Client, n: int) -> None:
    async with anyio.create_task_group() as tasks:
        for i in range(n):
            tasks.start_soon(lambda i=i: ask(client, prompt=f"par {i}"))


def report(samples: dict[str, list[float]], notes: list[str], runs: int) -> None:
    m = {name: statistics.median(values) for name, values in samples.items()}
    rows = [
        ("one-shot ask over MCP stdio vs the SDK's `query()` alone", "mcp_one_shot", "sdk_one_shot"),
        ("warm follow-up vs cold one-shot ask", "warm_follow_up", "mcp_one_shot"),
        ("warm follow-up vs cold follow-up (resume)", "warm_follow_up", "cold_follow_up"),
        ("new conversation with the spare process vs without", "spare_new", "mcp_one_shot"),
        ("4 new conversations 0.1 s apart, mean per ask: with spares vs without", "spare_burst", "cold_burst"),
        ("first text chunk to the client: MCP progress vs SDK stream", "mcp_first_chunk", "sdk_first_chunk"),
        ("8 asks at once vs 8 one after another (wall time)", "concurrent_8", "sequential_8"),
        ("one-shot ask: claude-mcp vs the reference peer", "mcp_one_shot", "peer_one_shot"),
        ("follow-up: claude-mcp (warm) vs the peer (no sessions: a new one-shot)", "warm_follow_up", "peer_follow_up"),
    ]
    print(f"Medians of {runs} interleaved runs (ms); ratio = first / second.\n")
    print("| comparison | first (ms) | second (ms) | ratio |")
    print("| --- | ---: | ---: | ---: |")
    for label, first, second in rows:
        if first in m and second in m:
            print(f"| {label} | {m[first]:.1f} | {m[second]:.1f} | {m[first] / m[second]:.2f} |")
    print("\n| memory | MB |\n| --- | ---: |")
    print(f"| claude-mcp server process, peak over the run (RSS) | {m['server_peak_rss_mb']:.1f} |")
    print(f"| one idle warm session's CLI process (RSS) | {m['warm_cli_rss_mb']:.1f} |")
    print(f"| one idle warm session's CLI process, its own pages (USS) | {m['warm_cli_uss_mb']:.1f} |")
    for note in notes:
        print(f"\n{note}")


def main(runs: int) -> None:
    with running_fake_model() as url:
        samples, notes = anyio.run(measure, FakeModel(url), runs)
    report(samples, notes, runs)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="claude-mcp benchmarks")
    parser.add_argument("--runs", type=int, default=7)
    main(parser.parse_args().runs)
