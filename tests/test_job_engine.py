"""The job engine with a stub `run` (no CLI at all) over SQLite: it claims queued jobs only for free
run slots, refuses what it cannot take when it is asked, cancels queued jobs, claims nothing while
draining, and keeps a pinned job's secrets in memory only as long as the job is queued; then a few
jobs through a whole bridge on the scripted CLI."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest

from claude_mcp import Policy
from claude_mcp.bridge import job_engine
from claude_mcp.bridge.job_book import JobBook
from claude_mcp.bridge.job_engine import JobEngine, Request
from claude_mcp.bridge.jobs import Job
from claude_mcp.bridge.options import RunTarget
from claude_mcp.bridge.results import AskResult
from claude_mcp.bridge.slots import BridgeSlots, RunSlots
from claude_mcp.config.call_settings import CallSettings
from claude_mcp.config.specs import AgentSpec
from claude_mcp.errors import Busy, ClaudeMCPError, CLIFailed, InvalidArguments
from claude_mcp.state.sqlite import SqliteStore
from tests.scripted import Reply, ScriptedLauncher, scripted_bridge, scripted_policy

pytestmark = pytest.mark.anyio

OWNER = "tenant"


@dataclass
class Ran:
    job: Job
    prompt: str
    settings: CallSettings
    target: RunTarget
    keep_warm: bool


class StubRun:
    """A `JobRun` that runs nothing: each run holds a run slot (if given slots) until its prompt is
    released, then answers with the prompt; a prompt in `failing` raises instead."""

    def __init__(self, slots: BridgeSlots | None = None) -> None:
        self.slots = slots
        self.runs: list[Ran] = []
        self.failing: dict[str, ClaudeMCPError] = {}
        self._gates: dict[str, anyio.Event] = {}
        self._changed = anyio.Event()

    def release(self, prompt: str) -> None:
        self._gate(prompt).set()

    def _gate(self, prompt: str) -> anyio.Event:
        return self._gates.setdefault(prompt, anyio.Event())

    async def until(self, condition: Callable[[], bool]) -> None:
        with anyio.fail_after(5):
            while not condition():
                await self._changed.wait()

    def prompts(self) -> list[str]:
        return [ran.prompt for ran in self.runs]

    async def __call__(
        self,
        job: Job,
        prompt: str,
        settings: CallSettings,
        target: RunTarget,
        *,
        keep_warm: bool,
        queueing: Callable[[], None] | None,
    ) -> AskResult:
        if self.slots is None:
            if queueing is not None:
                queueing()
            return await self._run(Ran(job, prompt, settings, target, keep_warm))
        async with self.slots.hold(None, 60, queueing):
            return await self._run(Ran(job, prompt, settings, target, keep_warm))

    async def _run(self, ran: Ran) -> AskResult:
        self.runs.append(ran)
        self._changed.set()
        self._changed = anyio.Event()
        await self._gate(ran.prompt).wait()
        if (failure := self.failing.get(ran.prompt)) is not None:
            raise failure
        return AskResult(
            result=ran.prompt,
            session_id=f"s-{ran.prompt}",
            is_error=False,
            subtype="success",
            num_turns=1,
            duration_ms=1,
        )


class Switch:
    """A value a test flips while the engine reads it."""

    def __init__(self, value: Any) -> None:
        self.value = value


@asynccontextmanager
async def engine_of(
    store: SqliteStore,
    policy: Policy,
    run: StubRun,
    *,
    free: Callable[[int], int] | None = None,
    draining: Switch | None = None,
) -> AsyncIterator[JobEngine]:
    slots = run.slots or BridgeSlots(RunSlots(4, 32))
    engine = JobEngine(
        JobBook(store, "replica-a", policy.job_lease_s),
        policy,
        OWNER,
        run=run,
        free_slots=free or slots.free,
        draining=lambda: bool(draining and draining.value),
    )
    async with engine:
        try:
            yield engine
        finally:
            for ran in run.runs:
                run.release(ran.prompt)


def request(prompt: str, settings: CallSettings | None = None) -> Request:
    return Request(prompt, settings or CallSettings(), RunTarget())


async def statuses(store: SqliteStore) -> dict[str, str]:
    """Each job's prompt and its status, as the store keeps them."""
    return {str((r.request or {})["prompt"]): r.status for r in await store.list_jobs(OWNER)}


async def test_with_one_free_slot_queued_jobs_are_claimed_one_at_a_time_in_order(tmp_path: Path) -> None:
    stub = StubRun(BridgeSlots(RunSlots(1, 32)))
    assert stub.slots is not None
    async with SqliteStore(tmp_path / "jobs.db") as store:
        async with engine_of(store, scripted_policy(tmp_path), stub) as engine:
            for i in range(6):
                await engine.submit(OWNER, request(f"job {i}"), agent=None, tool="run_agent")
            for i in range(6):
                await stub.until(lambda i=i: len(stub.runs) == i + 1)  # type: ignore[misc]
                assert stub.prompts() == [f"job {k}" for k in range(i + 1)]
                assert (stub.slots.own.running, stub.slots.own.queued) == (1, 0)
                queued = [status for status in (await statuses(store)).values() if status == "queued"]
                assert len(queued) == 5 - i
                stub.release(f"job {i}")
            last = stub.runs[-1].job
            with anyio.fail_after(5):
                await last.done.wait()
        assert set((await statuses(store)).values()) == {"completed"}


async def test_a_calls_own_run_joins_the_job_book_only_when_kept(tmp_path: Path) -> None:
    stub = StubRun()
    async with SqliteStore(tmp_path / "jobs.db") as store:
        async with engine_of(store, scripted_policy(tmp_path), stub) as engine:
            job = await engine.start(OWNER, request("mine"), agent=None, tool="ask", kept=False)
            await stub.until(lambda: stub.prompts() == ["mine"])
            assert await store.count_jobs(OWNER) == 0 and job.job_id not in engine.book.live
            await engine.keep(job)
            assert await store.count_jobs(OWNER) == 1 and engine.book.live[job.job_id] is job
            stub.release("mine")
            with anyio.fail_after(5):
                await job.done.wait()
        record = await store.get_job(OWNER, job.job_id)
        assert record is not None and record.status == "completed"
        assert record.result is not None and record.result["result"] == "mine"


async def test_a_job_never_kept_leaves_nothing_in_the_store(tmp_path: Path) -> None:
    stub = StubRun()
    async with SqliteStore(tmp_path / "jobs.db") as store:
        async with engine_of(store, scripted_policy(tmp_path), stub) as engine:
            job = await engine.start(OWNER, request("mine"), agent=None, tool="ask", kept=False)
            stub.release("mine")
            with anyio.fail_after(5):
                await job.done.wait()
        assert job.status == "completed" and await store.count_jobs(OWNER) == 0


async def test_past_max_jobs_a_job_is_refused_but_a_batch_request_is_not(tmp_path: Path) -> None:
    stub = StubRun()
    async with (
        SqliteStore(tmp_path / "jobs.db") as store,
        engine_of(store, scripted_policy(tmp_path, max_jobs=2), stub, free=lambda _: 0) as engine,
    ):
        await engine.start(OWNER, request("one"), agent=None, tool="run_agent", kept=True)
        await engine.submit(OWNER, request("two"), agent=None, tool="run_agent")
        with pytest.raises(Busy, match="2 jobs"):
            await engine.start(OWNER, request("three"), agent=None, tool="run_agent", kept=True)
        with pytest.raises(Busy):
            await engine.submit(OWNER, request("three"), agent=None, tool="run_agent")
        with pytest.raises(Busy):  # a call's own run may become a job: it counts too
            await engine.start(OWNER, request("own"), agent=None, tool="ask", kept=False)
        await engine.submit(OWNER, request("batched"), agent=None, tool="batch", counted=False)
        assert sorted(r.status for r in await store.list_jobs(OWNER)) == ["queued", "queued", "running"]


async def test_calls_detaching_at_once_never_pass_max_jobs_together(tmp_path: Path) -> None:
    stub = StubRun()
    async with (
        SqliteStore(tmp_path / "jobs.db") as store,
        engine_of(store, scripted_policy(tmp_path, max_jobs=3), stub) as engine,
    ):
        admitted: list[Job] = []
        refused = 0

        async def detach(n: int) -> None:
            nonlocal refused
            try:
                job = await engine.start(OWNER, request(f"own {n}"), agent=None, tool="ask", kept=False)
            except Busy:
                refused += 1
                return
            admitted.append(job)
            await engine.keep(job)  # the call lets its run go on without it: a job like any other

        async with anyio.create_task_group() as tasks:
            for n in range(10):
                tasks.start_soon(detach, n)
        assert (len(admitted), refused) == (3, 7)
        assert len(await store.list_jobs(OWNER)) == 3


async def test_an_unknown_agent_is_refused_at_submit(tmp_path: Path) -> None:
    helper = AgentSpec(description="Helps", prompt="You help.")
    stub = StubRun()
    async with (
        SqliteStore(tmp_path / "jobs.db") as store,
        engine_of(store, scripted_policy(tmp_path, agents={"helper": helper}), stub) as engine,
    ):
        with pytest.raises(InvalidArguments, match="Unknown agent 'nope'; known agents: helper"):
            await engine.submit(OWNER, request("one"), agent="nope", tool="run_agent")
        with pytest.raises(InvalidArguments):
            await engine.start(OWNER, request("one"), agent="nope", tool="run_agent", kept=True)
        assert await store.count_jobs(OWNER) == 0 and stub.runs == []
        await engine.submit(OWNER, request("two"), agent="helper", tool="run_agent")
        await stub.until(lambda: len(stub.runs) == 1)
        assert stub.runs[0].job.agent == "helper"


async def test_a_job_needs_a_running_engine(tmp_path: Path) -> None:
    async with SqliteStore(tmp_path / "jobs.db") as store:
        policy = scripted_policy(tmp_path)
        engine = JobEngine(
            JobBook(store, "r", policy.job_lease_s), policy, OWNER, run=StubRun(), free_slots=lambda _: 1, draining=bool
        )
        with pytest.raises(ClaudeMCPError, match="running bridge"):
            await engine.submit(OWNER, request("one"), agent=None, tool=None)
        assert await store.count_jobs(OWNER) == 0


async def test_a_cancelled_queued_job_is_never_claimed(tmp_path: Path) -> None:
    stub, free = StubRun(), Switch(0)
    async with (
        SqliteStore(tmp_path / "jobs.db") as store,
        engine_of(store, scripted_policy(tmp_path), stub, free=lambda n: max(0, free.value - n)) as engine,
    ):
        first = await engine.submit(OWNER, request("first"), agent=None, tool="run_agent")
        view = await engine.cancel(OWNER, first.job_id)
        assert view.status == "cancelled" and view.error is not None
        await engine.submit(OWNER, request("second"), agent=None, tool="run_agent")
        assert await statuses(store) == {"first": "cancelled", "second": "queued"}
        free.value = 1
        engine.wake()  # the oldest queued job is claimed: not the cancelled one
        await stub.until(lambda: len(stub.runs) == 1)
        assert stub.prompts() == ["second"]


async def test_a_draining_engine_claims_nothing(tmp_path: Path) -> None:
    stub, draining = StubRun(), Switch(True)
    async with (
        SqliteStore(tmp_path / "jobs.db") as store,
        engine_of(store, scripted_policy(tmp_path), stub, draining=draining) as engine,
    ):
        await engine.submit(OWNER, request("one"), agent=None, tool="run_agent")
        engine.wake()
        assert await statuses(store) == {"one": "queued"} and stub.runs == []
        draining.value = False
        engine.wake()
        await stub.until(lambda: len(stub.runs) == 1)
        assert await statuses(store) == {"one": "running"}


async def test_a_pinned_jobs_secrets_stay_in_memory_until_it_is_claimed_or_cancelled(tmp_path: Path) -> None:
    stub, free = StubRun(), Switch(0)
    secret = CallSettings.model_validate({"mcp_servers": {"db": {"command": "db-server", "env": {"TOKEN": "s3cret"}}}})
    async with (
        SqliteStore(tmp_path / "jobs.db") as store,
        engine_of(store, scripted_policy(tmp_path), stub, free=lambda n: max(0, free.value - n)) as engine,
    ):
        first = await engine.submit(OWNER, request("first", secret), agent=None, tool="run_agent")
        record = await store.get_job(OWNER, first.job_id)
        assert record is not None and record.replica == "replica-a"  # only this replica may claim it
        assert "s3cret" not in json.dumps(record.model_dump(mode="json"))
        assert first.job_id in engine.book.pinned and not engine.idle

        await engine.cancel(OWNER, first.job_id)
        second = await engine.submit(OWNER, request("second", secret), agent=None, tool="run_agent")
        assert set(engine._held) == {second.job_id}  # the cancelled job's settings are forgotten

        free.value = 1
        engine.wake()
        await stub.until(lambda: len(stub.runs) == 1)
        [ran] = stub.runs
        assert ran.prompt == "second" and ran.settings.mcp_servers is not None
        assert ran.settings.mcp_servers["db"].env == {"TOKEN": "s3cret"}  # type: ignore[union-attr]
        assert engine._held == {} and not engine.book.pinned


async def test_a_failed_run_fails_its_job_and_the_next_job_is_claimed(tmp_path: Path) -> None:
    stub = StubRun(BridgeSlots(RunSlots(1, 32)))
    stub.failing["one"] = CLIFailed("The scripted CLI crashed.")
    async with SqliteStore(tmp_path / "jobs.db") as store:
        async with engine_of(store, scripted_policy(tmp_path), stub) as engine:
            await engine.submit(OWNER, request("one"), agent=None, tool="run_agent")
            await engine.submit(OWNER, request("two"), agent=None, tool="batch")
            await stub.until(lambda: len(stub.runs) == 1)
            stub.release("one")
            await stub.until(lambda: len(stub.runs) == 2)
            one, two = stub.runs
            assert one.job.status == "failed" and one.job.error == "The scripted CLI crashed."
            assert isinstance(one.job.failure, CLIFailed)
            assert (one.keep_warm, two.keep_warm) == (True, False)  # a batch request's process is not kept
        assert (await statuses(store))["one"] == "failed"


# Jobs through a whole bridge on the scripted CLI.


async def test_cancelling_a_running_job_stops_its_process(tmp_path: Path) -> None:
    launcher = ScriptedLauncher()
    reply = launcher.script("long", Reply(wait=anyio.Event()))
    async with scripted_bridge(scripted_policy(tmp_path), launcher) as (bridge, _):
        job = await bridge.start_job(bridge.namespace, "long")
        with anyio.fail_after(5):
            await reply.reached.wait()
        view = await bridge.cancel_job(bridge.namespace, job.job_id)
        assert view.status == "cancelled"
        [process] = launcher.processes
        assert process.closed and process.graceful is False and process.turns == 0


async def test_a_batch_jobs_process_is_not_kept_warm(tmp_path: Path) -> None:
    async with scripted_bridge(scripted_policy(tmp_path)) as (bridge, launcher):
        asked = await bridge.submit_job(bridge.namespace, "for later", tool="run_agent")
        batched = await bridge.submit_job(bridge.namespace, "batched", tool="batch", counted=False)
        for record in (asked, batched):
            await launcher.until(lambda record=record: record.job_id in bridge.jobs.live)  # type: ignore[misc]
            with anyio.fail_after(5):
                await bridge.jobs.live[record.job_id].done.wait()
        by_prompt = {process.prompts[0]: process for process in launcher.processes}
        await launcher.until(lambda: by_prompt["batched"].closed)
        assert not by_prompt["for later"].closed
        results = [bridge.jobs.live[r.job_id].result for r in (asked, batched)]
        assert [r.result for r in results if r is not None] == ["for later", "batched"]


class SlowFirstWrite:
    """A store whose first job write waits on a busy connection, so a later write can land before it."""

    def __init__(self, store: SqliteStore) -> None:
        self.store = store
        self.writes = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    async def save_job(self, record: Any) -> None:
        self.writes += 1
        if self.writes == 1:
            await anyio.sleep(0.2)
        await self.store.save_job(record)


async def test_a_jobs_end_is_never_overwritten_by_an_older_snapshot_of_it(tmp_path: Path) -> None:
    """Seen in CI on PostgreSQL: the periodic sync wrote a job as running while its end was being written;
    the older write landed last, the job stayed running with a lease nobody renewed, and another replica
    failed it as orphaned although its run had succeeded."""
    store = SqliteStore(tmp_path / "state.sqlite3")
    await store.open()
    try:
        book = JobBook(SlowFirstWrite(store), "r1", lease_s=15)  # type: ignore[arg-type]
        job = Job(owner=OWNER, agent=None, session_id=None, tool="ask", kept=True)
        book.live[job.job_id] = job
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(book.sync)  # writes the job, still running, on the slow connection
            await anyio.sleep(0.05)
            job.finish("failed", error="it ended")
            await book.save(job)  # its end, while the sync's write is in flight
        record = await store.get_job(OWNER, job.job_id)
        assert record is not None and (record.status, record.error) == ("failed", "it ended")
    finally:
        await store.close()


async def test_a_batch_queued_on_one_replica_is_shared_with_another_each_running_its_free_slots(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """24 batch requests submitted on replica a, three run slots on each of two replicas over one store: both
    claim them as their slots free up, no request runs twice or is lost, and neither runs more than its slots."""
    monkeypatch.setattr(job_engine, "SYNC_S", 0.05)  # the other replica looks for queued work often
    monkeypatch.setattr(job_engine, "IDLE_CLAIM_S", 0.05)
    policy = scripted_policy(tmp_path)
    peaks = {"replica-a": 0, "replica-b": 0}
    async with SqliteStore(tmp_path / "jobs.db") as store, anyio.create_task_group() as tasks:
        runs = {replica: StubRun(BridgeSlots(RunSlots(3, 32))) for replica in peaks}

        async def answer(replica: str) -> None:  # each run answers a moment after it started
            run = runs[replica]
            assert run.slots is not None
            while True:
                if started := [ran for ran in run.runs if not run._gate(ran.prompt).is_set()]:
                    peaks[replica] = max(peaks[replica], run.slots.own.running)
                    await anyio.sleep(0.05)  # a run takes a moment, so the other replica gets its share
                    for ran in started:
                        run.release(ran.prompt)
                await anyio.sleep(0.005)

        engines = [
            JobEngine(
                JobBook(store, replica, policy.job_lease_s),
                policy,
                OWNER,
                run=run,
                free_slots=run.slots.free,
                draining=lambda: False,
            )
            for replica, run in runs.items()
            if run.slots is not None
        ]
        async with engines[0] as here, engines[1]:
            for replica in peaks:
                tasks.start_soon(answer, replica)
            for i in range(24):
                await here.submit(
                    OWNER,
                    request(f"r{i:02}"),
                    agent=None,
                    tool="batch",
                    batch_id="b",
                    custom_id=f"r{i:02}",
                    counted=False,
                )
            with anyio.fail_after(10):
                while (await store.batch_counts(OWNER, ["b"]))["b"] != {"completed": 24}:
                    await anyio.sleep(0.02)
            tasks.cancel_scope.cancel()
    ran = {replica: run.prompts() for replica, run in runs.items()}
    assert sorted(ran["replica-a"] + ran["replica-b"]) == [f"r{i:02}" for i in range(24)]  # each once
    assert all(ran.values()) and all(1 <= peak <= 3 for peak in peaks.values()), (ran, peaks)
