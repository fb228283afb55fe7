"""The Files API (`/v1/files`, #29) with the official `anthropic` SDK's `beta.files` calls against
two `claude-mcp serve --transport http` replicas sharing one PostgreSQL store, running the real CLI
against the fake model: a file uploaded to one replica is listed, used by `file_id` in a message,
downloaded and deleted through the other, and another tenant never sees it. The store's Files
role (expiry, quota — concurrent uploads too —, paging, namespaces) on both backends."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import anthropic
import anyio
import httpx2
import openai
import pytest

from claude_mcp.state.files import FileQueries, FileRecord
from claude_mcp.state.postgres import PostgresStore
from claude_mcp.state.sqlite import SqliteStore
from tests.conftest import FakeModel, cli_env_for
from tests.pg_server import fresh_database
from tests.test_api_content import PDF, PNG
from tests.test_callers import api_key, callers_config
from tests.test_http import ALICE, BOB, RunningServer, serving, tenants_config
from tests.test_replicas import replica

pytestmark = [pytest.mark.anyio, pytest.mark.xdist_group("files-api")]


@dataclass
class Replicas:
    a: RunningServer
    b: RunningServer


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory, fake_model: FakeModel, postgres_url: str) -> Iterator[Replicas]:
    """Two replicas of one server (tenants alice and bob), one PostgreSQL store; a namespace may
    keep 256 KiB of files, an upload may be 0.5 MiB."""
    directory = tmp_path_factory.mktemp("files-api")
    (workdir := directory / "work").mkdir()
    (home := directory / "home").mkdir()
    cli_env = cli_env_for(fake_model.url, home)
    config = tenants_config(directory / "files.toml", workdir, cli_env)
    config.write_text("files_quota_mb = 0.25\nmax_file_mb = 0.5\n" + config.read_text())
    with (
        fresh_database(postgres_url) as database,
        replica(directory, config, database, "a") as a,
        replica(directory, config, database, "b") as b,
    ):
        yield Replicas(a, b)


@asynccontextmanager
async def claude_at(server: RunningServer, token: str) -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with anthropic.AsyncAnthropic(base_url=server.base, api_key=token, max_retries=0, timeout=60) as client:
        yield client


def reported_blocks(message: anthropic.types.Message) -> list[dict[str, object]]:
    blocks: list[dict[str, object]] = json.loads(message.content[0].text)["blocks"]  # type: ignore[union-attr]
    return blocks


async def test_a_file_uploaded_to_one_replica_is_used_downloaded_and_deleted_through_the_other(
    replicas: Replicas,
) -> None:
    pdf = base64.b64decode(PDF)
    async with claude_at(replicas.a, ALICE) as alice_a, claude_at(replicas.b, ALICE) as alice_b:
        uploaded = await alice_a.beta.files.upload(file=("report.pdf", pdf, "application/pdf"))
        assert (uploaded.filename, uploaded.mime_type, uploaded.size_bytes) == (
            "report.pdf",
            "application/pdf",
            len(pdf),
        )
        assert (await alice_b.beta.files.retrieve_metadata(uploaded.id)).filename == "report.pdf"
        assert uploaded.id in [f.id async for f in alice_b.beta.files.list()]
        assert await (await alice_b.beta.files.download(uploaded.id)).read() == pdf
        document = {"type": "document", "source": {"type": "file", "file_id": uploaded.id}}
        answer = await alice_b.messages.create(
            model="sonnet",
            max_tokens=100,
            messages=[{"role": "user", "content": [document, {"type": "text", "text": "[[report]]"}]}],  # type: ignore[list-item]
        )
        source = {"type": "base64", "media_type": "application/pdf", "data": f"{len(PDF)}:{PDF[:16]}"}
        assert reported_blocks(answer) == [{"type": "document", "source": source}]  # its data, as a block
        deleted = await alice_b.beta.files.delete(uploaded.id)
        assert (deleted.id, deleted.type) == (uploaded.id, "file_deleted")
        with pytest.raises(anthropic.NotFoundError):
            await alice_a.beta.files.retrieve_metadata(uploaded.id)


async def test_another_tenant_never_sees_a_file(replicas: Replicas) -> None:
    async with claude_at(replicas.a, ALICE) as alice, claude_at(replicas.b, BOB) as bob:
        uploaded = await alice.beta.files.upload(file=("pixel.png", base64.b64decode(PNG), "image/png"))
        assert uploaded.id not in [f.id async for f in bob.beta.files.list()]
        for call in (bob.beta.files.retrieve_metadata, bob.beta.files.download, bob.beta.files.delete):
            with pytest.raises(anthropic.NotFoundError, match="File not found"):
                await call(uploaded.id)
        image = {"type": "image", "source": {"type": "file", "file_id": uploaded.id}}
        with pytest.raises(anthropic.NotFoundError, match="File not found"):
            await bob.messages.create(
                model="sonnet",
                max_tokens=10,
                messages=[{"role": "user", "content": [image, {"type": "text", "text": "x"}]}],  # type: ignore[list-item]
            )
        answer = await alice.messages.create(
            model="sonnet",
            max_tokens=100,
            messages=[{"role": "user", "content": [image, {"type": "text", "text": "[[report]]"}]}],  # type: ignore[list-item]
        )
        assert [(b["type"], b["source"]["media_type"]) for b in reported_blocks(answer)] == [("image", "image/png")]  # type: ignore[index]
        await alice.beta.files.delete(uploaded.id)


async def test_files_are_listed_newest_first_a_page_at_a_time(replicas: Replicas) -> None:
    async with claude_at(replicas.a, ALICE) as alice:
        ids = [(await alice.beta.files.upload(file=(f"{n}.txt", b"text", "text/plain"))).id for n in range(3)]
        page = await alice.beta.files.list(limit=2)
        assert [f.id for f in page.data] == ids[:0:-1] and page.next_page == ids[1]
        assert [f.id async for f in alice.beta.files.list(limit=2)][:3] == ids[::-1]  # the SDK pages on
        for file_id in ids:
            await alice.beta.files.delete(file_id)


async def test_uploads_past_the_quota_or_the_body_cap_are_refused(replicas: Replicas) -> None:
    async with claude_at(replicas.b, BOB) as bob:
        kept = await bob.beta.files.upload(file=("a.bin", b"\0" * 200 * 1024, "application/octet-stream"))
        with pytest.raises(anthropic.BadRequestError, match="files_quota_mb"):
            await bob.beta.files.upload(file=("b.bin", b"\0" * 100 * 1024, "application/octet-stream"))
        with pytest.raises(anthropic.RequestTooLargeError, match="max_file_mb"):
            await bob.beta.files.upload(file=("c.bin", b"\0" * 600 * 1024, "application/octet-stream"))
        await bob.beta.files.delete(kept.id)
        again = await bob.beta.files.upload(file=("b.bin", b"\0" * 100 * 1024, "application/octet-stream"))
        await bob.beta.files.delete(again.id)  # deleting gave the room back


@pytest.fixture(params=["sqlite", "postgres"])
async def files(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[FileQueries]:
    if request.param == "sqlite":
        store: SqliteStore | PostgresStore = SqliteStore(tmp_path / "state.db")
    else:
        store = PostgresStore(request.getfixturevalue("postgres_database"))
    async with store:
        yield store


def record(namespace: str, created_at: float, ttl_s: float = 100, size: int = 10) -> FileRecord:
    return FileRecord(
        namespace=namespace,
        file_id=f"file_{uuid.uuid4().hex[:24]}",
        filename="f.bin",
        mime_type="application/octet-stream",
        size_bytes=size,
        created_at=created_at,
        expires_at=created_at + ttl_s,
    )


async def test_the_store_keeps_files_per_namespace_within_the_quota_until_they_expire(files: FileQueries) -> None:
    now = time.time()
    old, new = record("ns-a", now - 50, ttl_s=60), record("ns-a", now)
    assert await files.put_file(old, b"0123456789", quota_bytes=20)
    assert await files.put_file(new, b"abcdefghij", quota_bytes=20)
    assert not await files.put_file(record("ns-a", now), b"x" * 10, quota_bytes=20)  # past the quota
    assert await files.put_file(record("ns-b", now), b"x" * 10, quota_bytes=20)  # another namespace's own
    assert await files.file_content("ns-a", new.file_id, now) == b"abcdefghij"
    assert await files.get_file("ns-b", new.file_id, now) is None
    listed = await files.list_files("ns-a", now=now, limit=10)
    assert [f.file_id for f in listed] == [new.file_id, old.file_id]
    assert [f.file_id for f in await files.list_files("ns-a", now=now, limit=10, after_id=new.file_id)] == [old.file_id]
    assert [f.file_id for f in await files.list_files("ns-a", now=now, limit=10, before_id=old.file_id)] == [
        new.file_id
    ]
    later = now + 20  # the old one has expired
    assert await files.get_file("ns-a", old.file_id, later) is None
    assert await files.file_content("ns-a", old.file_id, later) is None
    assert [f.file_id for f in await files.list_files("ns-a", now=later, limit=10)] == [new.file_id]
    assert await files.put_file(record("ns-a", later), b"y" * 10, quota_bytes=20)  # the expired one's room is free
    assert await files.delete_file("ns-a", new.file_id) and not await files.delete_file("ns-a", new.file_id)


async def test_chat_completions_take_an_uploaded_file_by_id(replicas: Replicas) -> None:
    async with (
        claude_at(replicas.a, ALICE) as alice,
        openai.AsyncOpenAI(base_url=f"{replicas.b.base}/v1", api_key=ALICE, max_retries=0, timeout=60) as chat,
    ):
        uploaded = await alice.beta.files.upload(file=("pixel.png", base64.b64decode(PNG), "image/png"))
        completion = await chat.chat.completions.create(
            model="sonnet",
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "file", "file": {"file_id": uploaded.id}},
                        {"type": "text", "text": "[[report]]"},
                    ],
                }
            ],
        )
        blocks = json.loads(completion.choices[0].message.content or "")["blocks"]
        assert [(b["type"], b["source"]["media_type"]) for b in blocks] == [("image", "image/png")]
        await alice.beta.files.delete(uploaded.id)


async def test_an_upload_named_with_control_characters_is_kept_under_a_printable_name(replicas: Replicas) -> None:
    body = (
        b'--b\r\nContent-Disposition: form-data; name="file"; filename="a\x00b\x1bc.txt"\r\n'
        b"Content-Type: text/plain\r\n\r\nx\r\n--b--\r\n"
    )  # a NUL no store takes (PostgreSQL refuses it in text)
    headers = {"x-api-key": ALICE, "content-type": "multipart/form-data; boundary=b"}
    async with httpx2.AsyncClient(base_url=replicas.a.base, headers=headers) as raw:
        uploaded = (await raw.post("/v1/files", content=body)).json()
        assert uploaded["filename"] == "abc.txt"
        assert (await raw.delete(f"/v1/files/{uploaded['id']}")).status_code == 200


async def test_callers_who_bring_their_own_key_never_see_each_others_files(
    tmp_path: Path, workdir: Path, cli_env: dict[str, str]
) -> None:
    config = callers_config(tmp_path / "callers.toml", workdir, cli_env)
    with serving(tmp_path, config, "http", name="callers") as server:
        async with claude_at(server, api_key("carol")) as carol, claude_at(server, api_key("dave")) as dave:
            uploaded = await carol.beta.files.upload(file=("notes.txt", b"carol's", "text/plain"))
            assert [f.id async for f in carol.beta.files.list()] == [uploaded.id]
            assert [f.id async for f in dave.beta.files.list()] == []
            with pytest.raises(anthropic.NotFoundError):
                await dave.beta.files.download(uploaded.id)
            assert await (await carol.beta.files.download(uploaded.id)).read() == b"carol's"


async def test_concurrent_uploads_never_hold_more_than_the_quota_together(files: FileQueries) -> None:
    # Eight uploads of 64 KiB at once, room for three: on PostgreSQL each may run on a connection of its
    # own (as on replicas of their own), so the check and the insert must be one step per namespace.
    now, size, quota = time.time(), 64 * 1024, 3 * 64 * 1024 + 10
    kept: list[bool] = []

    async def upload() -> None:
        kept.append(await files.put_file(record("ns-race", now, size=size), b"r" * size, quota_bytes=quota))

    for _ in range(5):  # several rounds: one lucky interleaving proves nothing
        kept.clear()
        async with anyio.create_task_group() as uploads:
            for _ in range(8):
                uploads.start_soon(upload)
        assert sorted(kept) == [False] * 5 + [True] * 3
        stored = await files.list_files("ns-race", now=now, limit=100)
        assert sum(f.size_bytes for f in stored) <= quota and len(stored) == 3
        for file in stored:
            await files.delete_file("ns-race", file.file_id)
