"""The Messages API measured with the official `anthropic` SDK against `claude-mcp serve
--transport http` (the real bundled CLI, the fake model on loopback), side by side in one run:

    .venv/bin/python -m bench.api [--runs N]

- the first text byte of a streamed `/v1/messages` vs of claude-agent-sdk's own stream, both
  measured from the moment the fake model sent it;
- a 10-turn chat (each request resending the history) vs 10 cold one-shots.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import anthropic
import anyio

from bench.run import Bench, cli_env, first_text_at, timed
from tests.conftest import FakeModel
from tests.fake_model import running_fake_model
from tests.test_http import serving
from tests.test_stdio import write_config


async def api_first_chunk(client: anthropic.AsyncAnthropic, fake: FakeModel) -> float:
    token = uuid.uuid4().hex
    arrived = 0.0
    async with client.messages.stream(
        model="sonnet", max_tokens=100, messages=[{"role": "user", "content": f"[[slow:20]] {token} one two three"}]
    ) as stream:
        async for _ in stream.text_stream:
            if not arrived:
                arrived = time.time()
    return (arrived - first_text_at(fake, token)) * 1000


async def chat(client: anthropic.AsyncAnthropic, turns: int) -> None:
    messages: list[Any] = []
    for i in range(turns):
        messages.append({"role": "user", "content": f"[[say:answer {i}]] turn {i} {uuid.uuid4().hex[:6]}"})
        reply = await client.messages.create(model="sonnet", max_tokens=100, messages=messages)
        messages.append({"role": "assistant", "content": reply.content})


async def one_shots(client: anthropic.AsyncAnthropic, n: int) -> None:
    for i in range(n):
        prompt = f"[[say:answer {i}]] one-shot {uuid.uuid4().hex[:6]}"
        await client.messages.create(model="sonnet", max_tokens=100, messages=[{"role": "user", "content": prompt}])


async def measure(fake: FakeModel, runs: int, tmp: Path) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {}
    home, work = tmp / "home", tmp / "work"
    home.mkdir()
    work.mkdir()
    env = cli_env(fake, home)
    warm_cfg = write_config(tmp / "warm.toml", work, env, "max_warm = 4")
    cold_cfg = write_config(tmp / "cold.toml", work, env, "max_warm = 0")
    bench = Bench(fake, env, work)
    with serving(tmp, warm_cfg, "http", name="warm") as warm, serving(tmp, cold_cfg, "http", name="cold") as cold:
        async with (
            anthropic.AsyncAnthropic(base_url=warm.base, api_key="x", max_retries=0, timeout=120) as warm_api,
            anthropic.AsyncAnthropic(base_url=cold.base, api_key="x", max_retries=0, timeout=120) as cold_api,
        ):
            await chat(warm_api, 1)  # warm-up
            for _ in range(runs):
                samples.setdefault("sdk_first_chunk", []).append(await bench.sdk_first_chunk())
                samples.setdefault("api_first_chunk", []).append(await api_first_chunk(warm_api, fake))
            for _ in range(max(1, runs // 3)):
                samples.setdefault("chat_10", []).append(await timed(chat(warm_api, 10)))
                samples.setdefault("one_shots_10", []).append(await timed(one_shots(cold_api, 10)))
    return samples


def report(samples: dict[str, list[float]], runs: int) -> None:
    m = {name: statistics.median(values) for name, values in samples.items()}
    print(f"Medians of {runs} interleaved runs (ms); ratio = first / second.\n")
    print("| comparison | first (ms) | second (ms) | ratio |")
    print("| --- | ---: | ---: | ---: |")
    rows = [
        ("first text byte: /v1/messages stream vs the SDK stream", "api_first_chunk", "sdk_first_chunk"),
        ("a 10-turn chat through the `anthropic` SDK vs 10 cold one-shots", "chat_10", "one_shots_10"),
    ]
    for label, first, second in rows:
        print(f"| {label} | {m[first]:.1f} | {m[second]:.1f} | {m[first] / m[second]:.2f} |")
    added = m["api_first_chunk"] - m["sdk_first_chunk"]
    print(f"\nFirst text byte added by the API: {added:.1f} ms (goal ≤ 5 ms).")


def main(runs: int) -> None:
    with running_fake_model() as url, tempfile.TemporaryDirectory() as tmp:
        samples = anyio.run(measure, FakeModel(url), runs, Path(tmp))
    report(samples, runs)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="claude-mcp: the Messages API, measured")
    parser.add_argument("--runs", type=int, default=7)
    main(parser.parse_args().runs)
