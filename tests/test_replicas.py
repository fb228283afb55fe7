"""Two server replicas sharing one PostgreSQL store, as behind a load balancer: each is a
`claude-mcp serve --transport http` subprocess with its own local state directory (its own
"disk"), reached by the `mcp` client over Streamable HTTP, running the real CLI against the
fake model. Whatever one replica starts, the other continues, forks, lists, reads, polls and
cancels; a replica that dies leaves its jobs failed, not running; a restart loses nothing."""

from __future__ import annotations

import json
import re
import signal
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2
import psutil
import psycopg
import pytest
from psycopg import sql

from claude_mcp.state.usage_spool import SPOOL_DIR
from tests.conftest import WAITS, FakeModel, call, text_of
from tests.pg_server import fresh_database
from tests.test_http import ALICE, BOB, RunningServer, connect, serving, tenants_config
from tests.test_sessions import RECALL, recall, remember
from tests.test_streaming_and_cancellation import ALLOW_SLEEP, SLEEP, cmdline, wait_until_gone

pytestmark = [pytest.mark.anyio, WAITS]

SLEEPER = {"sleeper": {"description": "Waits", "prompt": "You wait.", "tools": ["Bash"]}}


@pytest.fixture
def config(tmp_path: Path, workdir: Path, cli_env: dict[str, str]) -> Path:
    path = tenants_config(tmp_path / "replicas.toml", workdir, cli_env)
    # Replicas share their tenants' workspaces, as they share the store: a conversation resumes where it ran.
    shared = f'workspace_root = "{tmp_path / "workspaces"}"\n'
    path.write_text("job_lease_s = 3\n" + shared + path.read_text())
    return path


@contextmanager
def replica(tmp_path: Path, config: Path, state_url: str, name: str) -> Iterator[RunningServer]:
    with serving(tmp_path, config, "http", "--state-url", state_url, name=name) as running:
        yield running


def sleeps_under(server: RunningServer) -> list[psutil.Process]:
    """The server's process tree, if the fake model's `sleep 37` runs in it."""
    try:
        tree = [psutil.Process(server.process.pid), *psutil.Process(server.process.pid).children(recursive=True)]
    except psutil.Error:
        return []
    return tree if any("sleep 37" in cmdline(p) for p in tree) else []


async def wait_for_sleep_under(server: RunningServer) -> list[psutil.Process]:
    with anyio.fail_after(30):
        while not (tree := sleeps_under(server)):
            await anyio.sleep(0.05)
    return tree


async def test_a_conversation_started_on_one_replica_is_continued_forked_listed_and_read_on_the_other(
    tmp_path: Path, config: Path, postgres_database: str
) -> None:
    with replica(tmp_path, config, postgres_database, "a") as a, replica(tmp_path, config, postgres_database, "b") as b:
        async with connect(a, ALICE) as alice_a:
            session_id = await remember(alice_a, "plum")
        async with connect(b, ALICE) as alice_b, connect(b, BOB) as bob_b:
            assert await recall(alice_b, session_id) == "You asked me to remember plum"
            forked = await call(alice_b, "fork_session", session_id=session_id, prompt=RECALL)
            assert forked["answer"]["result"] == "You asked me to remember plum"
            listed = [s["session_id"] for s in (await call(alice_b, "list_sessions"))["sessions"]]
            assert listed[:2] == [forked["session_id"], session_id]
            transcript = await call(alice_b, "get_session", session_id=session_id)
            assert [m["text"] for m in transcript["messages"] if m["role"] == "assistant"] == [
                "OK, I will remember plum",
                "You asked me to remember plum",
            ]
            # Another tenant, on either replica, sees none of it.
            assert (await call(bob_b, "list_sessions"))["sessions"] == []
            for tool, arguments in [
                ("get_session", {"session_id": session_id}),
                ("ask", {"prompt": RECALL, "session_id": session_id}),
                ("fork_session", {"session_id": session_id}),
                ("delete_session", {"session_id": session_id}),
            ]:
                refused = await bob_b.call_tool(tool, arguments)
                assert refused.is_error and "No conversation with that session_id" in text_of(refused), tool
        async with connect(a, ALICE) as alice_a:  # the turns taken on B are there on A too
            assert await recall(alice_a, forked["session_id"]) == "You asked me to remember plum"


async def test_a_job_started_on_one_replica_is_polled_and_cancelled_from_the_other(
    tmp_path: Path, config: Path, postgres_database: str
) -> None:
    with replica(tmp_path, config, postgres_database, "a") as a, replica(tmp_path, config, postgres_database, "b") as b:
        async with connect(a, ALICE) as alice_a, connect(b, ALICE) as alice_b, connect(b, BOB) as bob_b:
            started = await call(
                alice_a, "run_agent", agent="sleeper", agents=SLEEPER, prompt=SLEEP, wait_s=0, **ALLOW_SLEEP
            )
            tree = await wait_for_sleep_under(a)
            polled = await call(alice_b, "get_job", job_id=started["job_id"], wait_s=1)
            assert polled["status"] == "running"
            assert any("Running Bash" in line for line in polled["progress"])
            stranger = await bob_b.call_tool("cancel_job", {"job_id": started["job_id"]})
            assert stranger.is_error and "No job with that job_id" in text_of(stranger)
            asked = time.monotonic()
            cancelled = await call(alice_b, "cancel_job", job_id=started["job_id"])
            assert cancelled["status"] == "cancelled"
            assert time.monotonic() - asked < 2 + 1  # the 2 s, plus the CLI's own exit
            await wait_until_gone([p for p in tree if p.pid != a.process.pid])
            listed = (await call(alice_a, "list_jobs"))["jobs"]
            assert [(j["job_id"], j["status"]) for j in listed] == [(started["job_id"], "cancelled")]


async def test_the_jobs_of_a_replica_that_dies_end_failed_with_their_session(
    tmp_path: Path, config: Path, postgres_database: str
) -> None:
    with replica(tmp_path, config, postgres_database, "b") as b:
        with replica(tmp_path, config, postgres_database, "a") as a:
            async with connect(a, ALICE) as alice_a:
                started = await call(
                    alice_a, "run_agent", agent="sleeper", agents=SLEEPER, prompt=SLEEP, wait_s=0, **ALLOW_SLEEP
                )
                tree = await wait_for_sleep_under(a)
                running = await call(alice_a, "get_job", job_id=started["job_id"], wait_s=0.6)
                session_id = running["session_id"]
                assert session_id
            a.process.send_signal(signal.SIGKILL)  # no goodbye: its lease simply stops being renewed
            a.process.wait(timeout=10)
            killed = time.monotonic()
            await wait_until_gone([p for p in tree if p.pid != a.process.pid])  # its CLIs die with it
        async with connect(b, ALICE) as alice_b:
            outcome: dict[str, Any] = {}
            with anyio.fail_after(3 + 5 + 5):  # the lease, one housekeeping round, slack
                while outcome.get("status") in (None, "running"):
                    result = await alice_b.call_tool("get_job", {"job_id": started["job_id"], "wait_s": 0.5})
                    outcome = result.structured_content or {}
            assert outcome["status"] == "failed"
            assert "replica running this job stopped" in outcome["error"]
            assert outcome["session_id"] == session_id
            assert time.monotonic() - killed < 3 + 5 + 5


async def test_conversations_and_finished_jobs_survive_a_restart_of_every_replica(
    tmp_path: Path, config: Path, postgres_database: str
) -> None:
    with replica(tmp_path, config, postgres_database, "a") as a, replica(tmp_path, config, postgres_database, "b"):
        async with connect(a, ALICE) as alice_a:
            session_id = await remember(alice_a, "fig")
            echo = {"echo": {"description": "Echoes", "prompt": "You echo.", "tools": []}}
            job = await call(alice_a, "run_agent", agent="echo", agents=echo, prompt="[[say:done and kept]]", wait_s=30)
            assert job["status"] == "completed"
    with replica(tmp_path, config, postgres_database, "a2"), replica(tmp_path, config, postgres_database, "b2") as b:
        async with connect(b, ALICE) as alice_b:
            listed = [s["session_id"] for s in (await call(alice_b, "list_sessions"))["sessions"]]
            assert session_id in listed
            assert await recall(alice_b, session_id) == "You asked me to remember fig"
            kept = await call(alice_b, "get_job", job_id=job["job_id"])
            assert kept["status"] == "completed" and kept["result"]["result"] == job["result"]["result"]


def on_the_server(postgres_url: str, statement: str, url: str) -> None:
    """`statement` (`CREATE DATABASE {}`, `DROP DATABASE {} WITH (FORCE)`) on the database of `url`."""
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute(sql.SQL(statement).format(sql.Identifier(url.rsplit("/", 1)[1])))


DROP, CREATE = "DROP DATABASE {} WITH (FORCE)", "CREATE DATABASE {}"


async def test_with_the_store_gone_a_call_is_refused_in_seconds_and_readyz_says_so(
    tmp_path: Path, config: Path, postgres_url: str
) -> None:
    with fresh_database(postgres_url) as url, replica(tmp_path, config, url, "a") as a:
        async with connect(a, ALICE) as alice, httpx2.AsyncClient(timeout=30) as http:
            await remember(alice, "plum")
            assert (await http.get(a.base + "/readyz")).json() == {"status": "ready"}
            on_the_server(postgres_url, DROP, url)  # the database goes away
            started = time.monotonic()
            ready = await http.get(a.base + "/readyz")
            readyz_s = time.monotonic() - started
            assert ready.status_code == 503 and ready.json() == {"status": "store unavailable"}
            refused = await alice.call_tool("ask", {"prompt": "remember fig"})
            mcp_s = time.monotonic() - started - readyz_s
            assert refused.is_error and "store cannot be reached" in text_of(refused)
            assert time.monotonic() - started < 15
            message = {"model": "sonnet", "max_tokens": 16, "messages": [{"role": "user", "content": "fig"}]}
            answered = await http.post(a.base + "/v1/messages", json=message, headers={"x-api-key": ALICE})
            http_s = time.monotonic() - started - readyz_s - mcp_s
            print(f"\nstore gone: /readyz 503 in {readyz_s:.2f} s, MCP refusal {mcp_s:.2f} s, HTTP 503 {http_s:.2f} s")
            assert http_s < 12  # was ~17-20 s: a run started, and failed when it was recorded
            assert answered.status_code == 503 and answered.json()["error"]["type"] == "api_error", answered.text
            assert "store cannot be reached" in answered.json()["error"]["message"]
            assert (await http.get(a.base + "/healthz")).status_code == 200  # alive: not ready
            # The replica's background loops (job sync, claims, usage writes) meet the outage on every try: a
            # line each, naming it, and no traceback (it is no bug).
            background = re.compile(r"WARNING claude_mcp\.bridge\.\w+: could not .+: The server's store cannot be")
            with anyio.fail_after(20):  # each try waits for a connection up to 5 s
                while not background.search(log := (tmp_path / "server-a.log").read_text()):
                    await anyio.sleep(0.2)
            assert "Traceback" not in log, log
            on_the_server(postgres_url, CREATE, url)  # as the fixture expects to drop it


async def test_usage_spent_while_the_store_is_gone_is_kept_over_a_stop_and_stored_at_the_next_start(
    tmp_path: Path, config: Path, postgres_url: str, fake_model: FakeModel
) -> None:
    """A run that ends while PostgreSQL is gone queues its usage; the replica stops before the store is back:
    the records are kept in its own state dir (no sandbox sees it) and stored when it starts again."""
    token = uuid.uuid4().hex
    unsent = tmp_path / "a" / SPOOL_DIR
    with fresh_database(postgres_url) as url:
        with replica(tmp_path, config, url, "a") as a:
            async with connect(a, ALICE) as alice:
                with anyio.fail_after(60):
                    async with anyio.create_task_group() as tasks:
                        tasks.start_soon(alice.call_tool, "ask", {"prompt": f"[[slow:600]] {token} one two three four"})
                        while not await anyio.to_thread.run_sync(fake_model.requests_for, token):
                            await anyio.sleep(0.05)
                        on_the_server(postgres_url, DROP, url)  # mid-run: the turn goes on, unrecorded
        kept = [json.loads(line) for path in unsent.glob("*.jsonl") for line in path.read_text().splitlines()]
        assert [(r["namespace"], r["surface"]) for r in kept] == [("alice", "ask")], kept
        on_the_server(postgres_url, CREATE, url)
        with replica(tmp_path, config, url, "a"):
            with anyio.fail_after(30):
                while list(unsent.glob("*.jsonl")):
                    await anyio.sleep(0.1)
        with psycopg.connect(url) as conn:
            stored = conn.execute("SELECT run_id, namespace FROM usage").fetchall()
    assert stored == [(kept[0]["run_id"], "alice")]
