"""Sizing: what one cold ask costs in CPU, what one idle warm conversation holds in memory, and how
many concurrent runs and warm conversations this machine holds before latency doubles.

    .venv/bin/python -m bench.sizing [--runs N]

The real bundled CLI against the fake model on loopback (which answers at once, so every figure
is the server's and the CLI's own cost, not the model's). Concurrency: warm follow-ups on N
conversations at once (one server, `max_concurrent` and `max_warm` high enough), median latency
per follow-up against one at a time. Warm conversations: a warm follow-up's latency while N other
conversations are kept warm and idle, and the memory they hold (USS: the pages no other process
shares, which is what each more conversation adds).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import tempfile
import time
from pathlib import Path

import anyio
import psutil
from mcp import Client

from bench.run import ask, cli_env, server_process, timed
from tests.conftest import FakeModel
from tests.fake_model import running_fake_model
from tests.test_stdio import server_params, write_config

LEVELS = (1, 2, 4, 8, 16)
IDLE_LEVELS = (0, 8, 24)
AFTER_TURN_S = 15.0
NO_GC_TIMER = {"BUN_GC_TIMER_DISABLE": "1"}


def cpu_s(process: psutil.Process) -> float:
    """CPU seconds of a process and of the children it has waited for (a one-shot CLI, once ended)."""
    t = process.cpu_times()
    return t.user + t.system + t.children_user + t.children_system


def clis(server: psutil.Process) -> list[psutil.Process]:
    found = []
    for p in server.children():
        with contextlib.suppress(psutil.Error):  # one that is exiting (closed as another became warm)
            if "claude" in " ".join(p.cmdline()[:1]):
                found.append(p)
    return found


def tree_cpu_s(process: psutil.Process) -> float:
    """CPU seconds of a process and its living children (a warm CLI and what it runs)."""
    total = 0.0
    for p in [process, *process.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            t = p.cpu_times()
            total += t.user + t.system
    return total


def memory_mb(process: psutil.Process) -> tuple[float, float, float]:
    """RSS, PSS and USS of a process and its children, in MB."""
    rss = pss = uss = 0.0
    for p in [process, *process.children(recursive=True)]:
        try:
            info = p.memory_full_info()
        except psutil.Error:
            continue
        rss, pss, uss = rss + info.rss, pss + info.pss, uss + info.uss
    return rss / 2**20, pss / 2**20, uss / 2**20


async def follow_ups(client: Client, sessions: list[str]) -> list[float]:
    """One warm follow-up on each conversation at once; each one's latency (ms)."""
    took: list[float] = []

    async def one(session: str) -> None:
        took.append(await timed(ask(client, prompt="recall", session_id=session)))

    async with anyio.create_task_group() as tasks:
        for session in sessions:
            tasks.start_soon(one, session)
    return took


async def measure(fake: FakeModel, runs: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        home, work = Path(tmp) / "home", Path(tmp) / "work"
        home.mkdir()
        work.mkdir()
        env = cli_env(fake, home)
        most = max(LEVELS) + max(IDLE_LEVELS) + 1
        warm_cfg = write_config(
            Path(tmp) / "warm.toml", work, env, f"max_warm = {most}\nmax_concurrent = {max(LEVELS)}"
        )
        cold_cfg = write_config(Path(tmp) / "cold.toml", work, env, "max_warm = 0")
        async with Client(server_params(warm_cfg)) as warm, Client(server_params(cold_cfg)) as cold:
            cold_server, warm_server = server_process(cold_cfg), server_process(warm_cfg)
            await ask(cold, prompt="warm-up")
            cpu, wall = [], []
            for _ in range(runs):
                before, started = cpu_s(cold_server), time.perf_counter()
                await ask(cold, prompt="hello")
                wall.append(time.perf_counter() - started)
                await anyio.sleep(0.3)  # let the server reap the CLI, so its CPU is counted
                cpu.append(cpu_s(cold_server) - before)
            print("| cold one-shot ask | median |\n| --- | ---: |")
            print(f"| wall time (s) | {statistics.median(wall):.2f} |")
            print(f"| CPU time, server + CLI (s) | {statistics.median(cpu):.2f} |")
            cores = os.cpu_count() or 1
            per_minute = cores * 60 / statistics.median(cpu)
            print(f"| cold asks per minute the {cores} cores can run (CPU-bound) | {per_minute:.0f} |")

            sessions = [(await ask(warm, prompt=f"remember {i}"))["session_id"] for i in range(max(LEVELS))]
            latency: dict[int, float] = {}
            for n in LEVELS:
                samples: list[float] = []
                for _ in range(runs):
                    samples += await follow_ups(warm, sessions[:n])
                latency[n] = statistics.median(samples)
            print("\n| warm follow-ups at once | median latency (ms) | vs one at a time |\n| ---: | ---: | ---: |")
            for n, ms in latency.items():
                print(f"| {n} | {ms:.1f} | {ms / latency[1]:.2f} |")
            holds = max((n for n, ms in latency.items() if ms <= 2 * latency[1]), default=1)

            idle: dict[int, tuple[float, float]] = {}
            kept = list(sessions)
            for n in IDLE_LEVELS:
                while len(kept) < max(LEVELS) + n:
                    kept.append((await ask(warm, prompt="remember more"))["session_id"])
                await anyio.sleep(1.0)
                samples = []
                for _ in range(runs):
                    samples += await follow_ups(warm, sessions[:1])
                processes = clis(warm_server)
                uss = statistics.median(memory_mb(p)[2] for p in processes)
                idle[n] = (statistics.median(samples), uss)
            rss, pss, uss = memory_mb(clis(warm_server)[0])
            print(f"\n| one idle warm CLI (with its children) | MB |\n| --- | ---: |\n| RSS | {rss:.0f} |")
            print(f"| PSS | {pss:.0f} |\n| USS | {uss:.0f} |")
            print("\n| conversations kept warm | warm follow-up (ms) | vs the fewest |\n| ---: | ---: | ---: |")
            base = idle[IDLE_LEVELS[0]][0]
            for n, (ms, _) in idle.items():
                print(f"| {max(LEVELS) + n} | {ms:.1f} | {ms / base:.2f} |")
            per_warm = statistics.median(u for _, u in idle.values())
            total_mb = psutil.virtual_memory().total / 2**20
            server_mb = memory_mb(warm_server)[0] - sum(memory_mb(p)[0] for p in clis(warm_server))
            print(
                f"\nSizing on this machine ({os.cpu_count()} cores, {total_mb / 1024:.0f} GB): latency doubles past "
                f"{holds} concurrent warm runs; memory holds about {(total_mb * 0.9 - server_mb) / per_warm:.0f} idle "
                f"warm conversations at {per_warm:.0f} MB (USS) each, leaving 10% to the system."
            )
        await after_a_turn(Path(tmp), work, env, runs)


async def after_a_turn(tmp: Path, work: Path, env: dict[str, str], runs: int) -> None:
    """A new conversation (a cold start), then a follow-up, on a server with the GC timer and on one without,
    at once; after each, the CPU its CLI spends over the next `AFTER_TURN_S`, and the CLI's USS at the end."""
    configs = {
        "timer": write_config(tmp / "gc-timer.toml", work, env, "max_warm = 1"),
        "none": write_config(tmp / "no-gc-timer.toml", work, {**env, **NO_GC_TIMER}, "max_warm = 1"),
    }
    cpu: dict[tuple[str, str], list[float]] = {}
    uss: dict[tuple[str, str], list[float]] = {}
    async with Client(server_params(configs["timer"])) as timer, Client(server_params(configs["none"])) as none:
        clients = {"timer": timer, "none": none}
        sessions: dict[str, str] = {}

        async def one(name: str, turn: str) -> None:
            arguments = {"session_id": sessions[name]} if turn == "follow-up" else {}
            sessions[name] = (await ask(clients[name], prompt="remember fig", **arguments))["session_id"]

        for _ in range(runs):
            for turn in ("new conversation", "follow-up"):
                async with anyio.create_task_group() as tasks:
                    for name in clients:
                        tasks.start_soon(one, name, turn)
                newest = {n: max(clis(server_process(c)), key=psutil.Process.create_time) for n, c in configs.items()}
                before = {name: tree_cpu_s(p) for name, p in newest.items()}
                await anyio.sleep(AFTER_TURN_S)
                for name, p in newest.items():
                    cpu.setdefault((turn, name), []).append(tree_cpu_s(p) - before[name])
                    uss.setdefault((turn, name), []).append(memory_mb(p)[2])
    print(
        f"\n| one warm CLI, the {AFTER_TURN_S:.0f} s after its turn | GC timer (default) | `BUN_GC_TIMER_DISABLE=1` "
        "| ratio |\n| --- | ---: | ---: | ---: |"
    )
    for turn in ("new conversation", "follow-up"):
        for label, values, digits in (("CPU (s)", cpu, 2), ("USS at the end (MB)", uss, 0)):
            first, second = statistics.median(values[turn, "timer"]), statistics.median(values[turn, "none"])
            ratio = f"{second / first:.2f}" if first else "—"
            print(f"| {turn}: {label} | {first:.{digits}f} | {second:.{digits}f} | {ratio} |")


def main(runs: int) -> None:
    with running_fake_model() as url:
        anyio.run(measure, FakeModel(url), runs)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="claude-mcp sizing benchmark")
    parser.add_argument("--runs", type=int, default=5)
    main(parser.parse_args().runs)
