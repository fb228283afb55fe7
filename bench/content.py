"""What images and files cost through the Messages API, measured with the official `anthropic`
SDK against `claude-mcp serve --transport http` (the real bundled CLI, the fake model on
loopback, the default SQLite store), side by side in one run:

    .venv/bin/python -m bench.content [--runs N]

- a one-shot message with one image (a 1024x768 PNG, ~2.3 MB, which Claude Code re-encodes
  before sending) vs the same message as text only;
- uploading a 5 MB PDF (`beta.files.upload`), then its first use by `file_id` in a document
  block vs the same PDF sent inline as base64 in the message.

Medians of the runs (interleaved); ratios next to them. Every message starts a conversation of
its own (a cold CLI: `max_warm = 0`), as a one-shot is.
"""

from __future__ import annotations

import argparse
import base64
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import anthropic
import anyio

from bench.run import cli_env, timed
from tests.conftest import FakeModel
from tests.fake_model import running_fake_model
from tests.test_api_content import png
from tests.test_http import serving
from tests.test_stdio import write_config

PDF_BYTES = 5 * 1000 * 1000


async def ask(client: anthropic.AsyncAnthropic, *blocks: dict[str, Any]) -> None:
    text = {"type": "text", "text": f"[[say:seen]] {uuid.uuid4().hex[:8]}"}
    reply = await client.messages.create(
        model="sonnet",
        max_tokens=100,
        messages=[{"role": "user", "content": [*blocks, text]}],  # type: ignore[list-item]
    )
    assert reply.content[0].text == "seen", reply  # type: ignore[union-attr]


def source(media_type: str, data: bytes) -> dict[str, Any]:
    return {"type": "base64", "media_type": media_type, "data": base64.b64encode(data).decode()}


async def measure(fake: FakeModel, runs: int, tmp: Path) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {}
    home, work = tmp / "home", tmp / "work"
    home.mkdir()
    work.mkdir()
    config = write_config(tmp / "content.toml", work, cli_env(fake, home), "max_warm = 0\nmax_request_mb = 16")
    image = {"type": "image", "source": source("image/png", png(1024, 768, noise=True))}
    pdf = b"%PDF-1.4\n" + os.urandom(PDF_BYTES - 9)
    with serving(tmp, config, "http", name="content") as server:
        async with anthropic.AsyncAnthropic(base_url=server.base, api_key="x", max_retries=0, timeout=120) as api:
            await ask(api)  # warm-up
            for _ in range(runs):
                samples.setdefault("text", []).append(await timed(ask(api)))
                samples.setdefault("image", []).append(await timed(ask(api, image)))
                inline = {"type": "document", "source": source("application/pdf", pdf)}
                samples.setdefault("pdf_inline", []).append(await timed(ask(api, inline)))
                started = time.perf_counter()
                uploaded = await api.beta.files.upload(file=("bench.pdf", pdf, "application/pdf"))
                samples.setdefault("upload", []).append((time.perf_counter() - started) * 1000)
                by_id = {"type": "document", "source": {"type": "file", "file_id": uploaded.id}}
                samples.setdefault("pdf_file_id", []).append(await timed(ask(api, by_id)))
                await api.beta.files.delete(uploaded.id)
    samples["upload_and_use"] = [u + f for u, f in zip(samples["upload"], samples["pdf_file_id"], strict=True)]
    return samples


def report(samples: dict[str, list[float]], runs: int) -> None:
    m = {name: statistics.median(values) for name, values in samples.items()}
    print(f"Medians of {runs} interleaved runs (ms); ratio = first / second.\n")
    print("| comparison | first (ms) | second (ms) | ratio |")
    print("| --- | ---: | ---: | ---: |")
    rows = [
        ("a one-shot message with one image (1024x768 PNG, 2.3 MB) vs text only", "image", "text"),
        ("first use of an uploaded 5 MB PDF by file_id vs the PDF inline (base64)", "pdf_file_id", "pdf_inline"),
        ("upload + first use of the 5 MB PDF vs the PDF inline", "upload_and_use", "pdf_inline"),
        ("the 5 MB PDF inline vs text only", "pdf_inline", "text"),
    ]
    for label, first, second in rows:
        print(f"| {label} | {m[first]:.1f} | {m[second]:.1f} | {m[first] / m[second]:.2f} |")
    print(f"\nUploading the 5 MB PDF (`beta.files.upload`): {m['upload']:.1f} ms.")


def main(runs: int) -> None:
    with running_fake_model() as url, tempfile.TemporaryDirectory() as tmp:
        samples = anyio.run(measure, FakeModel(url), runs, Path(tmp))
    report(samples, runs)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="claude-mcp: images and files through the Messages API, measured")
    parser.add_argument("--runs", type=int, default=5)
    main(parser.parse_args().runs)
