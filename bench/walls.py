"""What the walls between users cost a run: a cold one-shot and a warm follow-up through
`ClaudeBridge` with each CLI started in a bubblewrap sandbox (`isolation = "sandbox"`) against
the same without one (`isolation = "none"`: the wrapper still keeps only an allowlisted
environment), and the CLI started directly (no wrapper, as before the walls), side by side
against the fake model on loopback; what the wall alone adds to a start (`/bin/true` started
directly, through the wrapper, and through the wrapper into bubblewrap); then the memory an idle
warm CLI holds with and without the sandbox (the USS of its whole process tree, bubblewrap's own
processes included: what closing it frees, as `max_warm_mb` counts it).

    .venv/bin/python -m bench.walls [--runs N]

Medians over N interleaved rounds (one of each variant per round, the order turned each round),
with each variant's ratio to `none`; the starts 5 × N times each, interleaved too.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from contextlib import AsyncExitStack
from pathlib import Path

import anyio
import psutil
from claude_agent_sdk import ClaudeAgentOptions

from bench.run import cli_env
from claude_mcp import ClaudeBridge, Policy
from claude_mcp.bridge import wall_exec
from claude_mcp.bridge.launcher import Launcher, Process
from claude_mcp.bridge.permissions import PermissionGate
from claude_mcp.bridge.process import SdkLauncher
from claude_mcp.bridge.walls import Walls, sandbox_problem, write_wrapper
from claude_mcp.bridge.warm import measure_tree
from tests.conftest import FakeModel
from tests.fake_model import running_fake_model

VARIANTS = ("none", "sandbox", "direct")
"""`none` and `sandbox`: through the wall's wrapper; `direct`: the CLI itself, no wrapper."""
IDLE_PER_VARIANT = 4
"""Idle warm conversations whose process trees are measured, per variant."""


class Recording:
    """A launcher that remembers the processes it started (to find a warm session's pid)."""

    def __init__(self, inner: Launcher) -> None:
        self.inner = inner
        self.startups = inner.startups
        self.started: list[Process] = []

    def launch(self, options: ClaudeAgentOptions, gate: PermissionGate | None = None) -> Process:
        process = self.inner.launch(options, gate)
        self.started.append(process)
        return process


def launcher(name: str, state: Path, writable: list[Path]) -> Recording:
    if name == "direct":
        return Recording(SdkLauncher())
    walls = Walls("sandbox" if name == "sandbox" else "none", write_wrapper(state / "walls"), hidden=(state,))
    return Recording(walls.launcher(writable if name == "sandbox" else ()))


def warm_pid(recording: Recording, session_id: str) -> int:
    """The pid at the top of the idle warm process tree that holds `session_id`."""
    pids = [p.pid for p in recording.started if p.session_id == session_id and p.alive and p.pid is not None]
    assert pids, f"no live process holds {session_id}"
    return pids[-1]


def tree_uss_mb(pid: int) -> tuple[float, float]:
    """The USS of a process tree (`measure_tree`) and of its processes other than the CLI (the
    wall's own), in MB."""
    total = (measure_tree(pid) or 0) / 2**20
    top = psutil.Process(pid)
    walls = sum(p.memory_full_info().uss for p in [top, *top.children(recursive=True)] if p.name() != "claude")
    return total, walls / 2**20


def tree(pid: int) -> str:
    """The process names of a tree, outermost first (`bwrap → bwrap → claude` in a sandbox)."""
    names, process = [], psutil.Process(pid)
    while True:
        names.append(process.name())
        children = process.children()
        if not children:
            return " → ".join(names)
        process = children[0]


def wall_starts(tmp: Path, writable: list[Path], runs: int) -> dict[str, list[float]]:
    """Milliseconds to start `/bin/true` directly, through the wrapper (`none`), and through the
    wrapper into bubblewrap (`sandbox`): what the wall alone adds to a CLI's start."""
    true = "/bin/true"
    for path in writable:
        path.mkdir(parents=True, exist_ok=True)
    commands: dict[str, tuple[list[str], dict[str, str]]] = {"direct": ([true], {})}
    for isolation in ("none", "sandbox"):
        walls = Walls(isolation, write_wrapper(tmp / "walls"), hidden=(tmp,))
        spec = walls.wall(writable if isolation == "sandbox" else (), true).spec(true, ())
        commands[isolation] = ([str(walls.wrapper)], {wall_exec.WALL_ENV: spec})
    took: dict[str, list[float]] = {name: [] for name in commands}
    for round_ in range(runs):
        names = list(commands)
        for name in names[round_ % 3 :] + names[: round_ % 3]:
            argv, env = commands[name]
            started = time.perf_counter()
            subprocess.run(argv, env={"PATH": os.environ["PATH"], **env}, check=True, cwd=writable[-1])
            took[name].append((time.perf_counter() - started) * 1000)
    return took


Figures = dict[str, dict[str, list[float]]]


async def measure(runs: int) -> tuple[Figures, dict[str, str]]:
    figures: Figures = {name: {"warm": [], "cold": [], "uss": [], "wall_uss": []} for name in VARIANTS}
    with running_fake_model() as url, tempfile.TemporaryDirectory() as tmp:
        bridges, recordings, sessions = {}, {}, {}
        for name in VARIANTS:
            home, work = Path(tmp) / name / "home", Path(tmp) / name / "work"
            work.mkdir(parents=True)
            env = cli_env(FakeModel(url), home)
            policy = Policy(roots=(work,), cli_env=env, api_retries=0, max_warm=8, state_dir=Path(tmp) / name / "state")
            recordings[name] = launcher(name, Path(tmp) / name / "state", [home, work])
            bridges[name] = ClaudeBridge(policy, depth=0, launcher=recordings[name])
        starts = wall_starts(Path(tmp) / "starts", [Path(tmp) / "none" / "home", Path(tmp) / "none" / "work"], 5 * runs)
        for name, values in starts.items():
            figures[name]["start"] = values
        async with AsyncExitStack() as stack:
            for name, bridge in bridges.items():
                await stack.enter_async_context(bridge)
                sessions[name] = (await bridge.ask("[[say:ready]]")).session_id
            for round_ in range(runs):
                order = VARIANTS[round_ % len(VARIANTS) :] + VARIANTS[: round_ % len(VARIANTS)]
                for kind in ("warm", "cold"):
                    for name in order:
                        started = time.perf_counter()
                        if kind == "warm":
                            await bridges[name].ask("[[say:again]]", session_id=sessions[name])
                        else:
                            await bridges[name].ask("[[say:cold]]")
                        figures[name][kind].append((time.perf_counter() - started) * 1000)
            # Memory: fresh conversations, one turn each, idle for a few seconds, then their trees.
            idle: dict[str, list[str]] = {name: [] for name in VARIANTS}
            for _ in range(IDLE_PER_VARIANT):
                for name in VARIANTS:
                    idle[name].append((await bridges[name].ask("[[say:idle]]")).session_id)
            await anyio.sleep(3.0)
            trees = {name: tree(warm_pid(recordings[name], idle[name][0])) for name in VARIANTS}
            for name in VARIANTS:
                for session in idle[name]:
                    uss, wall_uss = await anyio.to_thread.run_sync(tree_uss_mb, warm_pid(recordings[name], session))
                    figures[name]["uss"].append(uss)
                    figures[name]["wall_uss"].append(wall_uss)
    return figures, trees


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    if (problem := sandbox_problem()) is not None:
        raise SystemExit(f"no sandbox can be made here: {problem}")
    figures, trees = anyio.run(measure, args.runs)
    m = {name: {key: statistics.median(values) for key, values in kinds.items()} for name, kinds in figures.items()}
    print(f"walls: medians over {args.runs} interleaved rounds (ms; ratio to isolation none)\n")
    print("| variant | cold one-shot (ms) | ratio | warm follow-up (ms) | ratio |")
    print("| --- | ---: | ---: | ---: | ---: |")
    labels = {
        "none": "`isolation = none` (wrapper: environment allowlist)",
        "sandbox": "`isolation = sandbox` (wrapper + bubblewrap)",
        "direct": "no wrapper (the CLI started directly)",
    }
    for name in VARIANTS:
        cold, warm = m[name]["cold"], m[name]["warm"]
        cells = [f"{cold:.1f}", f"{cold / m['none']['cold']:.3f}", f"{warm:.1f}", f"{warm / m['none']['warm']:.3f}"]
        print(f"| {labels[name]} | {' | '.join(cells)} |")
    print(f"\n| start of `/bin/true` ({5 * args.runs} runs) | ms |\n| --- | ---: |")
    for name, label in (
        ("direct", "directly"),
        ("none", "through the wrapper"),
        ("sandbox", "through the wrapper + bubblewrap"),
    ):
        print(f"| {label} | {m[name]['start']:.1f} |")
    idle = f"idle warm CLI ({IDLE_PER_VARIANT} per variant, median)"
    print(f"\n| {idle} | process tree USS (MB) | of it, the wall's processes |")
    print("| --- | ---: | ---: |")
    for name in VARIANTS:
        print(f"| {labels[name]}: {trees[name]} | {m[name]['uss']:.1f} | {m[name]['wall_uss']:.2f} |")


if __name__ == "__main__":
    main()
