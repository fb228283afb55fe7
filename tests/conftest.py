"""Fixtures: the scripted fake model (one per test session), a fresh Claude config per test,
a policy that points the real bundled CLI at the fake, and MCP clients over that policy."""

from __future__ import annotations

import json
import os
import sys
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from claude_mcp import ClaudeBridge, Policy
from claude_mcp.mcp_surface.server import build_server
from tests.fake_model import running_fake_model
from tests.pg_server import postgres_database, postgres_url  # noqa: F401  (fixtures: a throwaway PostgreSQL)

# Python caches compiled modules unless told not to, and some machines (this one, CI) tell it not to: then every
# interpreter the suite starts (servers, commands, MCP servers under a CLI) compiles the package from source
# again, and pytest rewrites every test module in each worker. The suite and what it starts cache them.
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
sys.dont_write_bytecode = False

pytest.register_assert_rewrite("claude_mcp.state.conformance")  # its asserts say what they compared

TESTS = Path(__file__).parent
FAKE_CLI = TESTS / "fake_cli.py"

STORM = pytest.mark.xdist_group("storm")
"""For a test that keeps both cores busy (many CLIs at once, the hostile walk) or is timed: such tests share
one test worker, so no two of them run together (each would starve the other's, and the other worker's,
timings)."""

WAITS = pytest.mark.xdist_group("waits")
MORE_WAITS = pytest.mark.xdist_group("waits-2")
"""For a module whose tests mostly wait on the clock (timeouts, grace periods, leases, replicas that stop,
cancellations) and use little CPU meanwhile. Each group's tests run one after another on one worker, and
pytest-xdist hands out the groups with the most tests first: with three workers, the storm group starts
beside these two. Its timed tests (the hostile walk's /healthz within a second) then share the two cores
with waiting rather than with other CPU-heavy tests, and the suite's waiting overlaps its busiest part (a run
with them among the rest left the cores idle a fifth of the time). Each must hold more tests than any other
group but the storm (`api-content`: 31)."""


@dataclass
class FakeModel:
    """Handle on the fake Messages API server."""

    url: str

    def requests(self) -> list[dict[str, Any]]:
        with urllib.request.urlopen(f"{self.url}/_requests") as response:
            records: list[dict[str, Any]] = json.load(response)
            return records

    def requests_for(self, token: str) -> list[dict[str, Any]]:
        """The requests whose latest prompt contains `token` (use a unique token per test)."""
        return [r for r in self.requests() if token in r["prompt"]]


@pytest.fixture(scope="session")
def fake_model() -> Iterator[FakeModel]:
    with running_fake_model() as url:
        yield FakeModel(url)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """The allowed root of the test's server."""
    root = tmp_path / "work"
    root.mkdir()
    return root


QUIET_CLI = {
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    "DISABLE_TELEMETRY": "1",
    "DISABLE_AUTOUPDATER": "1",
    "BUN_GC_TIMER_DISABLE": "1",
}
"""What every CLI the suite starts through a server is given besides the fake model's address: no traffic but
the model's, and no timed garbage collection. The CLI's runtime (Bun) collects garbage on a timer, whether or
not anything is asked of it: a new CLI spends ~0.25 CPU-s in the 15 s after its first turn, 0.02 without the
timer, for ~15 % more memory while idle (`bench.sizing`). Most of the suite's ~500 CLIs live on for seconds
after their turn (warm, or until their test ends): with the timer, a seventh of the suite's CPU went there
(475 vs 409 CPU-s a run, side by side)."""


def cli_env_for(model_url: str, home: Path) -> dict[str, str]:
    """Environment for the CLI only: the fake model at `model_url`, a throwaway key, `home` (which
    must exist) with a fresh config dir in it, and a temporary directory of its own in it.

    The CLI keeps its temporary files in `$TMPDIR/claude-<uid>`, and a CLI stopped by a signal leaves
    some there (a directory it probes file watching with, at start); each CLI lists that directory
    seconds after its turn. Shared, it grew by ~100 entries a run and slowed every later run (2,600
    entries: 291 vs 267 s) and the person's own Claude Code; in the test's own directory, pytest
    removes it. (A sandboxed CLI has a private `/tmp` anyway.)"""
    (home / "tmp").mkdir(exist_ok=True)
    return {
        "ANTHROPIC_BASE_URL": model_url,
        "ANTHROPIC_API_KEY": "sk-ant-test-key",
        **QUIET_CLI,
        "HOME": str(home),
        "CLAUDE_CONFIG_DIR": str(home / ".claude"),
        "TMPDIR": str(home / "tmp"),
    }


@pytest.fixture
def cli_env(fake_model: FakeModel, tmp_path: Path) -> dict[str, str]:
    """Environment for the CLI only: the fake model, a throwaway key, a fresh config dir."""
    home = tmp_path / "home"
    home.mkdir()
    return cli_env_for(fake_model.url, home)


@pytest.fixture
def policy(workdir: Path, cli_env: dict[str, str]) -> Policy:
    return Policy(roots=(workdir,), cli_env=cli_env, api_retries=0, default_timeout_s=60)


@pytest.fixture
async def client(policy: Policy) -> AsyncIterator[Client]:
    """An MCP client connected in-process to a server over the test policy."""
    async with Client(build_server(ClaudeBridge(policy, depth=0))) as connected:
        yield connected


def text_of(result: Any) -> str:
    """The text of a tool result: its first text block (an answer's ids follow in a block of their own)."""
    return next((block.text for block in result.content if getattr(block, "type", None) == "text"), "")


def tool_prompt(tool: str, **tool_input: Any) -> str:
    """A prompt that makes the fake model call `tool` with `tool_input`."""
    return f"[[tool:{tool}:{json.dumps(tool_input)}]]"


async def call(client: Client, tool: str, **arguments: Any) -> dict[str, Any]:
    """Call a tool that must succeed; its structured result."""
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, text_of(result)
    assert result.structured_content is not None
    return result.structured_content
