"""The Message Batches API with the official `anthropic` SDK as the client of `claude-mcp serve
--transport http` subprocesses that run the real CLI against the fake model: a batch run to its
end, one cancelled mid-way, the API's errors, and one batch spread over two replicas sharing a
PostgreSQL store."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anthropic
import anyio
import httpx2
import psutil
import psycopg
import pytest
from anthropic.types.messages import MessageBatch, MessageBatchIndividualResponse

from claude_mcp.state.postgres import PostgresStore
from claude_mcp.state.store import BatchRecord, JobRecord
from tests.conftest import STORM, FakeModel
from tests.test_http import ALICE, BOB, RunningServer, serving, tenants_config
from tests.test_messages_api import clis_under
from tests.test_replicas import replica
from tests.test_stdio import write_config
from tests.test_streaming_and_cancellation import wait_until_gone

pytestmark = pytest.mark.anyio

LIMIT = 30
"""The servers' `max_batch_requests`."""


@pytest.fixture
def server(tmp_path: Path, workdir: Path, cli_env: dict[str, str]) -> Iterator[RunningServer]:
    settings = f"max_concurrent = 4\nmax_warm = 4\nmax_batch_requests = {LIMIT}"
    config = write_config(tmp_path / "batches.toml", workdir, cli_env, settings)
    with serving(tmp_path, config, "http", name="batches") as running:
        yield running


@asynccontextmanager
async def claude_at(server: RunningServer, key: str = "sk-ant-anything") -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with anthropic.AsyncAnthropic(base_url=server.base, api_key=key, max_retries=0, timeout=60) as client:
        yield client


def request(custom_id: str, prompt: str, **params: Any) -> Any:
    """One request of a batch: a Messages API body under its custom_id."""
    body = {"model": "sonnet", "max_tokens": 100, "messages": [{"role": "user", "content": prompt}], **params}
    return {"custom_id": custom_id, "params": body}


async def ended(client: anthropic.AsyncAnthropic, batch_id: str, within_s: float = 120) -> MessageBatch:
    with anyio.fail_after(within_s):
        while (batch := await client.messages.batches.retrieve(batch_id)).processing_status != "ended":
            await anyio.sleep(0.2)
    return batch


async def results_of(client: anthropic.AsyncAnthropic, batch_id: str) -> dict[str, MessageBatchIndividualResponse]:
    lines = [line async for line in await client.messages.batches.results(batch_id)]
    by_id = {line.custom_id: line for line in lines}
    assert len(by_id) == len(lines)  # one line per request
    return by_id


def answer_of(line: MessageBatchIndividualResponse) -> str:
    assert line.result.type == "succeeded", line.result
    message = line.result.message
    assert message.role == "assistant" and message.stop_reason == "end_turn" and message.model == "sonnet"
    return message.content[0].text  # type: ignore[union-attr]


@STORM
async def test_a_batch_runs_to_its_end_with_each_request_answered_then_is_listed_and_deleted(
    server: RunningServer,
) -> None:
    token = uuid.uuid4().hex[:8]
    async with claude_at(server) as client:
        created = await client.messages.batches.create(
            requests=[request(f"req-{i:02}", f"[[say:answer {i} {token}]]") for i in range(6)]  # more than its 4 slots
        )
        assert created.type == "message_batch" and created.id.startswith("msgbatch_")
        assert created.processing_status == "in_progress" and created.results_url is None
        assert created.request_counts.processing + created.request_counts.succeeded == 6
        assert created.expires_at.timestamp() - created.created_at.timestamp() == pytest.approx(24 * 3600)
        done = await ended(client, created.id)
        assert done.request_counts.model_dump() == {
            "processing": 0,
            "succeeded": 6,
            "errored": 0,
            "canceled": 0,
            "expired": 0,
        }
        assert done.ended_at is not None and done.ended_at >= done.created_at and done.cancel_initiated_at is None
        results = await results_of(client, created.id)
        assert sorted(results) == [f"req-{i:02}" for i in range(6)]
        assert {custom_id: answer_of(line) for custom_id, line in results.items()} == {
            f"req-{i:02}": f"answer {i} {token}" for i in range(6)
        }
        assert (await results_of(client, created.id))["req-00"] == results["req-00"]  # the same on every read
        assert clis_under(server) == set()  # nobody follows a batch request up: no process is kept warm for it

        later = [(await client.messages.batches.create(requests=[request("only", "[[say:x]]")])).id for _ in range(2)]
        newest_first = [later[1], later[0], created.id]
        assert [batch.id async for batch in client.messages.batches.list(limit=2)] == newest_first  # two pages
        page = await client.messages.batches.list(limit=2)
        assert (page.has_more, page.first_id, page.last_id) == (True, later[1], later[0])
        before = await client.messages.batches.list(before_id=created.id, limit=1)
        assert ([b.id for b in before.data], before.has_more) == ([later[0]], True)

        with pytest.raises(anthropic.BadRequestError, match="still processing"):
            await client.messages.batches.delete(later[1])
        deleted = await client.messages.batches.delete(created.id)
        assert (deleted.id, deleted.type) == (created.id, "message_batch_deleted")
        with pytest.raises(anthropic.NotFoundError):
            await client.messages.batches.retrieve(created.id)
        for batch_id in later:
            await ended(client, batch_id)


async def test_a_batch_cancelled_mid_way_ends_with_its_unfinished_requests_canceled_and_no_process_left(
    server: RunningServer, fake_model: FakeModel
) -> None:
    token = uuid.uuid4().hex[:8]
    slow = f"[[slow:200]] {token} " + "word " * 40  # eight seconds of answer each
    async with claude_at(server) as client, httpx2.AsyncClient(base_url=server.base, timeout=30) as http:
        created = await client.messages.batches.create(requests=[request(f"s{i}", slow) for i in range(12)])
        with anyio.fail_after(60):
            while not fake_model.requests_for(token):  # the first runs are streaming their answers
                await anyio.sleep(0.05)
        tree = [psutil.Process(pid) for pid in clis_under(server)]
        assert tree
        # While it runs: its results are not there yet, it cannot be deleted, and it counts against the limit.
        early = await http.get(f"/v1/messages/batches/{created.id}/results", headers={"x-api-key": "k"})
        assert (early.status_code, early.json()["error"]["type"]) == (400, "invalid_request_error")
        with pytest.raises(anthropic.BadRequestError, match="cancel it first"):
            await client.messages.batches.delete(created.id)
        with pytest.raises(anthropic.RateLimitError, match="still processing"):
            await client.messages.batches.create(requests=[request(f"m{i}", "[[say:x]]") for i in range(LIMIT - 11)])

        asked = time.monotonic()
        cancelling = await client.messages.batches.cancel(created.id)
        assert cancelling.processing_status in ("canceling", "ended") and cancelling.cancel_initiated_at is not None
        done = await ended(client, created.id, within_s=10)
        assert time.monotonic() - asked < 5
        assert done.request_counts.canceled == 12 and done.request_counts.processing == 0
        assert done.cancel_initiated_at == cancelling.cancel_initiated_at
        results = await results_of(client, created.id)
        assert {line.result.type for line in results.values()} == {"canceled"} and len(results) == 12
        await wait_until_gone(tree)
        assert clis_under(server) == set()
        again = await client.messages.batches.cancel(created.id)  # an ended batch stays as it is
        assert again.processing_status == "ended" and again.request_counts == done.request_counts


async def test_bad_batches_are_refused_in_the_apis_shapes_naming_each_bad_request(server: RunningServer) -> None:
    async with claude_at(server) as client:
        with pytest.raises(anthropic.NotFoundError, match="no batch"):
            await client.messages.batches.retrieve("msgbatch_nope")
        with pytest.raises(anthropic.BadRequestError) as refused:
            await client.messages.batches.create(
                requests=[
                    request("fine", "[[say:x]]"),
                    {"custom_id": "no-messages", "params": {"model": "sonnet", "max_tokens": 10}},
                    request("tools", "hi", tools=[{"name": "t", "input_schema": {"type": "object"}}]),
                    request("streamed", "hi", stream=True),
                    request("fine", "[[say:y]]"),
                    request("warm", "hi", temperature=0.2),
                ]
            )
        message = str(refused.value)
        assert "5 of the batch's requests cannot be run" in message
        assert "requests.1 (custom_id 'no-messages'): messages: Field required" in message
        assert "requests.2 (custom_id 'tools'): tools cannot be used in a batch" in message
        assert "requests.3 (custom_id 'streamed'): stream cannot be true in a batch" in message
        assert "requests.4 (custom_id 'fine'): requests.0 has the same custom_id" in message
        assert "requests.5 (custom_id 'warm'): temperature is not supported" in message
        assert "requests.0 " not in message.split("requests.4")[0]  # the good one is not named
        with pytest.raises(anthropic.BadRequestError, match=f"at most {LIMIT} requests"):
            await client.messages.batches.create(requests=[request(f"r{i}", "x") for i in range(LIMIT + 1)])
        with pytest.raises(anthropic.BadRequestError, match="custom_id"):
            await client.messages.batches.create(requests=[request("not allowed!", "x")])
        with pytest.raises(anthropic.BadRequestError, match="requests"):
            await client.messages.batches.create(requests=[])
        with pytest.raises(anthropic.BadRequestError, match="limit"):
            await client.messages.batches.list(limit=0)
        assert (await client.messages.batches.list()).data == []  # nothing refused was kept

        mixed = await client.messages.batches.create(
            requests=[
                request("ok", "[[say:fine]]"),
                request("limited", "[[error:429]]"),
                request("overloaded", "[[error:529]]"),
                request("broken", "[[error:500]]"),
            ]
        )
        done = await ended(client, mixed.id)
        assert (done.request_counts.succeeded, done.request_counts.errored) == (1, 3)
        results = await results_of(client, mixed.id)
        assert answer_of(results["ok"]) == "fine"
        failed = results["limited"].result
        assert failed.type == "errored" and failed.error.type == "error"
        assert failed.error.error.type == "rate_limit_error" and "rate limit" in failed.error.error.message
        typed = {cid: results[cid].result.error.error.type for cid in ("overloaded", "broken")}  # type: ignore[union-attr]
        assert typed == {"overloaded": "overloaded_error", "broken": "api_error"}


@STORM
async def test_a_batch_created_on_one_replica_spreads_over_both_and_is_read_from_the_other(
    tmp_path: Path, workdir: Path, cli_env: dict[str, str], postgres_database: str
) -> None:
    config = tenants_config(tmp_path / "replicas.toml", workdir, cli_env)
    config.write_text(config.read_text().replace("max_concurrent = 8", "max_concurrent = 3\nmax_warm = 0"))
    token = uuid.uuid4().hex[:8]
    with replica(tmp_path, config, postgres_database, "a") as a, replica(tmp_path, config, postgres_database, "b") as b:
        async with claude_at(a, ALICE) as alice_a, claude_at(b, ALICE) as alice_b, claude_at(b, BOB) as bob_b:
            # More than both replicas' slots (3 each); how a long queue is shared between replicas runs on the
            # scripted CLI at a larger scale (`test_job_engine`).
            requests = [request(f"r{i:02}", f"[[slow:30]] [[say:answer {i} {token} one two three]]") for i in range(8)]
            created = await alice_a.messages.batches.create(requests=requests)
            with pytest.raises(anthropic.NotFoundError):  # another tenant, on either replica, finds nothing
                await bob_b.messages.batches.retrieve(created.id)
            with pytest.raises(anthropic.NotFoundError):
                await bob_b.messages.batches.cancel(created.id)
            assert (await bob_b.messages.batches.list()).data == []
            done = await ended(alice_b, created.id)
            results = await results_of(alice_b, created.id)
            failed = {cid: line.result for cid, line in results.items() if line.result.type != "succeeded"}
            assert done.request_counts.succeeded == 8, failed  # what went wrong, if anything did
            assert {custom_id: answer_of(line) for custom_id, line in results.items()} == {
                f"r{i:02}": f"answer {i} {token} one two three" for i in range(8)
            }
            with pytest.raises(anthropic.NotFoundError):
                await bob_b.messages.batches.results(created.id)
            with pytest.raises(anthropic.NotFoundError):
                await bob_b.messages.batches.delete(created.id)
    with psycopg.connect(postgres_database) as conn:
        rows = conn.execute("SELECT replica, count(*) FROM jobs WHERE batch_id = %s GROUP BY 1", (created.id,))
        taken = dict(rows.fetchall())
    assert len(taken) == 2 and sum(taken.values()) == 8, taken  # each replica ran some of the requests


async def test_the_requests_still_queued_when_a_batch_expires_end_expired(
    tmp_path: Path, workdir: Path, cli_env: dict[str, str], postgres_database: str
) -> None:
    config = tenants_config(tmp_path / "expiry.toml", workdir, cli_env)
    past = time.time() - 10  # a batch made 24 hours ago, put in the store as the server would have
    stale = BatchRecord(
        namespace="alice", batch_id="msgbatch_stale", created_at=past - 86400, expires_at=past, request_count=2
    )
    async with PostgresStore(postgres_database) as store:
        await store.put_batch(stale)
        for custom_id in ("x", "y"):
            queued = JobRecord(
                namespace="alice",
                job_id=str(uuid.uuid4()),
                status="queued",
                created_at=past,
                updated_at=past,
                request={"prompt": "[[say:late]]"},
                tool="batch",
                batch_id=stale.batch_id,
                custom_id=custom_id,
            )
            await store.save_job(queued)
    with replica(tmp_path, config, postgres_database, "a") as a:
        async with claude_at(a, ALICE) as alice:
            expired = await alice.messages.batches.retrieve(stale.batch_id)
            assert expired.processing_status == "ended" and expired.request_counts.expired == 2
            assert {line.result.type for line in (await results_of(alice, stale.batch_id)).values()} == {"expired"}


async def test_requests_past_a_quota_end_errored_as_rate_limited(
    tmp_path: Path, workdir: Path, cli_env: dict[str, str]
) -> None:
    config = write_config(tmp_path / "quota.toml", workdir, cli_env, "max_concurrent = 1\nquota_runs_per_minute = 1")
    with serving(tmp_path, config, "http", name="batch-quota") as running:
        async with claude_at(running) as client:
            if (into := time.time() % 60) > 45:  # the quota counts whole UTC minutes: keep the batch in one
                await anyio.sleep(60.2 - into)
            created = await client.messages.batches.create(requests=[request(f"q{i}", "[[say:x]]") for i in range(3)])
            done = await ended(client, created.id)
            assert (done.request_counts.succeeded, done.request_counts.errored) == (1, 2)
            kinds = sorted(line.result.type for line in (await results_of(client, created.id)).values())
            assert kinds == ["errored", "errored", "succeeded"]
            for line in (await results_of(client, created.id)).values():
                if line.result.type == "errored":
                    assert line.result.error.error.type == "rate_limit_error"
                    assert "quota_runs_per_minute" in line.result.error.error.message
