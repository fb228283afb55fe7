"""What an MCP client pays at each launch: spawn → `tools/list` answered over stdio, claude-mcp
against a bare `mcp` SDK server with one tool (`MCPServer`, the SDK's own import being the floor),
side by side in one run.

    .venv/bin/python -m bench.startup [--runs N]

Each round starts each server once (the order turned each round) as a client would: a fresh
process from `/`, the client's bare environment (HOME and PATH), the handshake and `tools/list`
written at once; the time from spawn until the `tools/list` answer is in, and the server's CPU
time until then (steadier than the wall on a busy machine). Medians over N rounds, and
claude-mcp's ratios to the bare server (the goal: at most 1.10). Then how long `claude-mcp --help`
takes (the goal: at most 0.3 s), beside a bare `python -c pass`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
from mcp import StdioServerParameters

BARE_SERVER = """
from mcp.server.mcpserver import MCPServer

server = MCPServer("bare")


@server.tool()
def echo(text: str) -> str:
    \"\"\"Say it back.\"\"\"
    return text


server.run()
"""
VARIANTS = ("claude-mcp", "bare mcp")


def servers(workdir: Path) -> dict[str, StdioServerParameters]:
    """Each variant as a client starts it: the executable, its arguments, HOME and PATH only."""
    env = {"HOME": str(workdir), "PATH": os.environ.get("PATH", "")}
    bare = workdir / "bare_server.py"
    bare.write_text(BARE_SERVER)
    return {
        "claude-mcp": StdioServerParameters(
            command=sys.executable, args=["-m", "claude_mcp", "serve", "--root", str(workdir)], env=env, cwd="/"
        ),
        "bare mcp": StdioServerParameters(command=sys.executable, args=[str(bare)], env=env, cwd="/"),
    }


HANDSHAKE = [
    {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "bench.startup", "version": "1"},
        },
    },
    {"jsonrpc": "2.0", "method": "notifications/initialized"},
    {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
]


def listed_after(params: StdioServerParameters) -> tuple[float, float, int]:
    """Seconds from spawn to the `tools/list` answer, the server's CPU seconds until then, and how
    many tools it listed. The handshake an IDE makes (2025-11-25), written at once as a client may."""
    started = time.perf_counter()
    server = subprocess.Popen(
        [params.command, *params.args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=params.env,
        cwd=params.cwd,
    )
    assert server.stdin is not None and server.stdout is not None
    server.stdin.write(b"".join(json.dumps(message).encode() + b"\n" for message in HANDSHAKE))
    server.stdin.flush()
    while (answer := json.loads(server.stdout.readline() or "{}")).get("id") != 2:
        assert answer, "the server closed its output before answering tools/list"
    took = time.perf_counter() - started
    cpu = psutil.Process(server.pid).cpu_times()
    server.stdin.close()
    server.wait(timeout=30)
    return took, cpu.user + cpu.system, len(answer["result"]["tools"])


def measure(runs: int) -> dict[str, list[tuple[float, float]]]:
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in VARIANTS}
    with tempfile.TemporaryDirectory() as tmp:
        params = servers(Path(tmp))
        for name in VARIANTS:  # one unmeasured start each: the first start reads the files from disk
            listed_after(params[name])
        for round_ in range(runs):
            order = VARIANTS if round_ % 2 == 0 else tuple(reversed(VARIANTS))
            for name in order:
                took, cpu, count = listed_after(params[name])
                assert count > 0, f"{name} listed no tools"
                times[name].append((took, cpu))
    return times


def help_seconds(runs: int) -> tuple[float, float]:
    """Medians of `claude-mcp --help` and of a bare `python -c pass`, in seconds (the wall)."""
    times: dict[str, list[float]] = {"help": [], "python": []}
    for _ in range(runs):
        for name, argv in (("help", ["-m", "claude_mcp", "--help"]), ("python", ["-c", "pass"])):
            started = time.perf_counter()
            subprocess.run([sys.executable, *argv], check=True, stdout=subprocess.DEVNULL)
            times[name].append(time.perf_counter() - started)
    return statistics.median(times["help"]), statistics.median(times["python"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="rounds (default 10)")
    args = parser.parse_args()
    times = measure(args.runs)
    bare = [statistics.median(sample[i] for sample in times["bare mcp"]) for i in (0, 1)]
    print(f"spawn → tools/list over stdio, medians of {args.runs} interleaved rounds:")
    for name in VARIANTS:
        wall, cpu = (statistics.median(sample[i] for sample in times[name]) for i in (0, 1))
        print(
            f"  {name:<11} wall {wall * 1000:6.0f} ms (ratio {wall / bare[0]:.2f})   "
            f"server CPU {cpu * 1000:6.0f} ms (ratio {cpu / bare[1]:.2f})"
        )
    shown, python = help_seconds(args.runs)
    print(f"claude-mcp --help: {shown * 1000:.0f} ms (python -c pass: {python * 1000:.0f} ms; goal: at most 300 ms)")


if __name__ == "__main__":
    main()
