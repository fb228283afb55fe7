"""Hostile input on the HTTP APIs (`claude-mcp serve --transport http` as a subprocess on
loopback): numeric query parameters that overflow, are not integers or point outside the report,
and request bodies too large for the server to read. Each is refused quickly with a clear error
in the API's own shape, and the server keeps answering `/healthz`."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import anthropic
import anyio
import httpx2
import openai
import psutil
import pytest
from pydantic import BaseModel, ValidationError
from starlette.datastructures import QueryParams

from claude_mcp.config.limits import MOST_BATCH_REQUESTS, MOST_BLOCKS, MOST_MESSAGES
from claude_mcp.http_api.batch_shapes import BatchCreate
from claude_mcp.http_api.inputs import describe, query_int
from claude_mcp.http_api.openai import ChatRequest
from claude_mcp.http_api.shapes import ApiError, MessagesRequest
from tests.conftest import FakeModel
from tests.test_http import ALICE, RunningServer, serving, tenants_config
from tests.test_stdio import write_config

pytestmark = pytest.mark.anyio

MiB = 1024 * 1024
START = "2026-01-01T00:00:00Z"
FIRST = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp())
"""The first bucket's start of the reports asked for here (`bucket_width=1m`)."""
END = "2026-01-01T04:16:00Z"
"""256 one-minute buckets after START."""
REPORTS = ("usage_report", "cost_report")
JSON = {"content-type": "application/json"}


def anthropic_error(response: httpx2.Response, status: int, kind: str) -> str:
    """The message of an error in the Anthropic shape, after checking its status and type."""
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert body["type"] == "error" and body["error"]["type"] == kind, body
    message: str = body["error"]["message"]
    assert "Traceback" not in message
    return message


@pytest.fixture
async def http() -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient(timeout=30) as client:
        yield client


def stopped_if_stuck(running: RunningServer) -> None:
    """Kill a server that no longer answers (a hostile request that hung it ignores SIGTERM too),
    so a failing test leaves no process spinning behind it."""
    try:
        httpx2.get(running.base + "/healthz", timeout=3)
    except httpx2.HTTPError:
        running.process.kill()


@pytest.fixture
def local(tmp_path: Path, workdir: Path, cli_env: dict[str, str]) -> Iterator[RunningServer]:
    """On loopback with no tenants: any key is accepted."""
    config = write_config(tmp_path / "local.toml", workdir, cli_env)
    with serving(tmp_path, config, "http", name="local") as running:
        try:
            yield running
        finally:
            stopped_if_stuck(running)


@pytest.fixture
def tenants(tmp_path: Path, workdir: Path, cli_env: dict[str, str]) -> Iterator[RunningServer]:
    """With tenants: a request without a tenant's token is refused."""
    config = tenants_config(tmp_path / "tenants.toml", workdir, cli_env)
    with serving(tmp_path, config, "http", name="tenants") as running:
        try:
            yield running
        finally:
            stopped_if_stuck(running)


@pytest.fixture
def capped(tmp_path: Path, workdir: Path, cli_env: dict[str, str]) -> Iterator[RunningServer]:
    """Small body caps (1 MiB a request, 2 MiB a batch), so the tests need not send much."""
    config = write_config(tmp_path / "capped.toml", workdir, cli_env, "max_request_mb = 1\nmax_batch_mb = 2")
    with serving(tmp_path, config, "http", name="capped") as running:
        try:
            yield running
        finally:
            stopped_if_stuck(running)


@pytest.fixture
def roomy(tmp_path: Path, workdir: Path, cli_env: dict[str, str]) -> Iterator[RunningServer]:
    """A body cap of 16 MiB: room for a body that takes seconds to decode."""
    config = write_config(tmp_path / "roomy.toml", workdir, cli_env, "max_request_mb = 16")
    with serving(tmp_path, config, "http", name="roomy") as running:
        try:
            yield running
        finally:
            stopped_if_stuck(running)


async def healthy(http: httpx2.AsyncClient, server: RunningServer, within_s: float = 2) -> None:
    with anyio.fail_after(within_s):
        assert (await http.get(server.base + "/healthz")).status_code == 200


# --- numeric query parameters ------------------------------------------------------------------------------


def report_query(**changes: str) -> str:
    return urlencode({"starting_at": START, "ending_at": END, "bucket_width": "1m", "limit": "256"} | changes)


HOSTILE_QUERIES: list[tuple[str, str]] = [
    *[(f"page={page}", report_query(page=page)) for page in ("-1e20", "-1e12", "1e20", "1.5", "1e3", "0x10", "")],
    ("page not a bucket's start", report_query(page=str(FIRST + 30))),
    ("page before the first bucket", report_query(page=str(FIRST - 60))),
    ("page at ending_at", report_query(page=str(FIRST + 256 * 60))),
    ("page past ending_at", report_query(page=str(FIRST + 10**12))),
    ("page in Arabic-Indic digits", report_query(page="١٧٦٧٢٢٥٦٠٠")),
    *[(f"limit={limit}", report_query(limit=limit)) for limit in ("1.5", "0", "257", "-1", "1e2", "", " 5")],
    ("starting_at in year 9999", report_query(starting_at="9999-12-31T00:00:00Z", ending_at="9999-12-31T01:00:00Z")),
    ("starting_at in year 9999, no end", urlencode({"starting_at": "9999-12-31T00:00:00Z", "bucket_width": "1m"})),
    ("ending_at in year 9999", report_query(ending_at="9999-12-31T00:00:00Z")),
    ("starting_at in year 1", urlencode({"starting_at": "0001-01-01T00:00:00Z", "ending_at": "0001-01-02T00:00:00Z"})),
]


async def test_hostile_report_queries_get_a_quick_400_and_the_server_keeps_serving(
    local: RunningServer, http: httpx2.AsyncClient
) -> None:
    headers = {"x-api-key": "sk-ant-api03-anything"}
    wrong = []
    for report in REPORTS:
        for name, query in HOSTILE_QUERIES:
            with anyio.fail_after(5):  # the page=-1e20 of issue 31 looped forever on the event loop
                response = await http.get(f"{local.base}/v1/organizations/analytics/{report}?{query}", headers=headers)
            body = response.json()
            if response.status_code != 400 or body.get("error", {}).get("type") != "invalid_request_error":
                wrong.append((report, name, response.status_code, body))
            await healthy(http, local)
    assert not wrong


async def test_report_pages_are_integers_aligned_to_buckets_and_bounded_by_limit(
    local: RunningServer, http: httpx2.AsyncClient
) -> None:
    url = f"{local.base}/v1/organizations/analytics/usage_report"
    headers = {"x-api-key": "sk-ant-api03-anything"}
    first = (await http.get(f"{url}?{report_query(limit='100')}", headers=headers)).json()
    assert len(first["data"]) == 100 and first["has_more"] and first["next_page"] == str(FIRST + 100 * 60)
    assert first["data"][0]["starting_at"] == START
    second = (await http.get(f"{url}?{report_query(limit='100', page=first['next_page'])}", headers=headers)).json()
    assert second["data"][0]["starting_at"] == "2026-01-01T01:40:00Z" and second["has_more"]
    last = (await http.get(f"{url}?{report_query(limit='100', page=str(FIRST + 200 * 60))}", headers=headers)).json()
    assert len(last["data"]) == 56 and not last["has_more"] and last["next_page"] is None
    assert last["data"][-1]["ending_at"] == END
    message = anthropic_error(
        await http.get(f"{url}?{report_query(page=str(FIRST + 30))}", headers=headers), 400, "invalid_request_error"
    )
    assert "page" in message and "next_page" in message
    message = anthropic_error(
        await http.get(f"{url}?{report_query(starting_at='9999-12-31T00:00:00Z')}", headers=headers),
        400,
        "invalid_request_error",
    )
    assert "starting_at" in message


async def test_the_batch_list_limit_is_an_integer_within_its_bounds(
    local: RunningServer, http: httpx2.AsyncClient
) -> None:
    headers = {"x-api-key": "sk-ant-api03-anything"}
    for limit in ("1e3", "-1", "0", "1001", "0x10", "2.0", "1_000", "99999999999999999999999"):
        with anyio.fail_after(5):
            response = await http.get(f"{local.base}/v1/messages/batches?limit={limit}", headers=headers)
        assert "limit" in anthropic_error(response, 400, "invalid_request_error")
    listed = await http.get(f"{local.base}/v1/messages/batches?limit=1000", headers=headers)
    assert listed.status_code == 200 and listed.json()["data"] == []


async def test_header_checks_refuse_in_the_apis_shape(local: RunningServer, http: httpx2.AsyncClient) -> None:
    body = {"model": "sonnet", "max_tokens": 10, "messages": [{"role": "user", "content": "x"}]}
    plain = {"x-api-key": "sk-any", "content-type": "text/plain"}
    response = await http.post(local.base + "/v1/messages", json=body, headers=plain)
    assert "Content-Type: application/json" in anthropic_error(response, 400, "invalid_request_error")
    response = await http.post(local.base + "/v1/chat/completions", json=body, headers=plain)
    assert response.status_code == 400 and "Content-Type" in response.json()["error"]["message"]
    response = await http.get(local.base + "/v1/models", headers={"x-api-key": "sk-any", "host": "evil.example"})
    assert "allowed_hosts" in anthropic_error(response, 421, "invalid_request_error")
    origin = {"x-api-key": "sk-any", "origin": "http://evil.example"}
    response = await http.post(local.base + "/v1/messages", json=body, headers=origin)
    assert "Origin" in anthropic_error(response, 403, "permission_error")


def test_query_int_takes_plain_integers_within_bounds_only() -> None:
    def parsed(text: str | None) -> int:
        return query_int(QueryParams({} if text is None else {"n": text}), "n", default=7, low=-5, high=100)

    assert [parsed(text) for text in (None, "0", "-5", "100", "0042")] == [7, 0, -5, 100, 42]
    for text in ("", "101", "-6", "1.0", "1e1", "+3", " 3", "3 ", "1_0", "٣", "9" * 30, "nan", "inf"):
        with pytest.raises(ApiError) as refused:
            parsed(text)
        assert refused.value.status == 400 and refused.value.type == "invalid_request_error"
        assert "n must be an integer from -5 to 100" in refused.value.message


MESSAGES_BODY = {"model": "sonnet", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}
CHAT_BODY = {"model": "sonnet", "messages": [{"role": "user", "content": "hi"}]}
MANY_WRONG: list[tuple[type[BaseModel], dict[str, Any], str, Any]] = [
    (MessagesRequest, MESSAGES_BODY, "messages", [0] * 200_000),
    (MessagesRequest, MESSAGES_BODY, "messages", [{"role": "user", "content": [0] * 200_000}]),
    (MessagesRequest, MESSAGES_BODY, "system", [0] * 200_000),
    (MessagesRequest, MESSAGES_BODY, "stop_sequences", [0] * 200_000),
    (MessagesRequest, MESSAGES_BODY, "tools", [0] * 200_000),
    (MessagesRequest, MESSAGES_BODY, "mcp_servers", [0] * 200_000),
    (MessagesRequest, MESSAGES_BODY, "metadata", {f"k{i}": 0 for i in range(200_000)}),
    (
        MessagesRequest,
        MESSAGES_BODY,
        "messages",
        [{"role": "user", "content": "hi", **{f"k{i}": 0 for i in range(200_000)}}],
    ),
    (MessagesRequest, MESSAGES_BODY, "claude_code", {f"k{i}": 0 for i in range(200_000)}),
    (ChatRequest, CHAT_BODY, "claude_code", {f"k{i}": 0 for i in range(200_000)}),
    (MessagesRequest, MESSAGES_BODY, "claude_code", {"agents": {f"a{i}": 0 for i in range(200_000)}}),
    (MessagesRequest, MESSAGES_BODY, "claude_code", {"allowed_tools": [0] * 200_000}),
    (ChatRequest, CHAT_BODY, "claude_code", {"add_dirs": [0] * 200_000}),
    (ChatRequest, CHAT_BODY, "messages", [0] * 200_000),
    (ChatRequest, CHAT_BODY, "messages", [{"role": "user", "content": [0] * 200_000}]),
    (ChatRequest, CHAT_BODY, "metadata", {f"k{i}": 0 for i in range(200_000)}),
    (ChatRequest, CHAT_BODY, "stop", [0] * 200_000),
    (ChatRequest, CHAT_BODY, "logit_bias", {f"k{i}": 0 for i in range(200_000)}),
    (BatchCreate, {"requests": []}, "requests", [0] * 200_000),
    (BatchCreate, {"requests": []}, "requests", [{"custom_id": "a", "params": {f"k{i}": 0 for i in range(200_000)}}]),
]


@pytest.mark.parametrize(("model", "base", "name", "value"), MANY_WRONG, ids=lambda v: v if isinstance(v, str) else "")
def test_a_body_of_very_many_wrong_items_is_one_short_refusal(
    model: type[BaseModel], base: dict[str, Any], name: str, value: Any
) -> None:
    """A list or object of 200,000 wrong-typed items (or of unknown fields) is refused at its first
    wrong item or at its cap: a few errors built, not 200,000 (building them took seconds of the GIL
    and ~1 GB), and the refusal names the field."""
    with pytest.raises(ValidationError) as refused:
        model.model_validate({**base, name: value})
    assert refused.value.error_count() <= 3
    message = describe(refused.value)
    assert name in message and len(message) < 1000, message


def test_the_caps_are_at_least_what_the_apis_allow() -> None:
    """The caps refuse only what the real APIs refuse too: 100,000 messages, 100,000 batch requests."""
    many = [{"role": "user", "content": "hi"}] * MOST_MESSAGES
    assert len(MessagesRequest.model_validate({**MESSAGES_BODY, "messages": many}).messages) == MOST_MESSAGES
    with pytest.raises(ValidationError, match="at most 100000 items"):
        MessagesRequest.model_validate({**MESSAGES_BODY, "messages": [*many, many[0]]})
    requests = [{"custom_id": f"r{i}", "params": MESSAGES_BODY} for i in range(MOST_BATCH_REQUESTS)]
    assert len(BatchCreate.model_validate({"requests": requests}).requests) == MOST_BATCH_REQUESTS


# --- request bodies ---------------------------------------------------------------------------------------


def tiny_messages(size: int, last: str = "user") -> bytes:
    """A Messages API body of about `size` bytes, all of it one-character messages."""
    one = b'{"role":"user","content":"x"},'
    return b'{"model":"sonnet","max_tokens":10,"messages":[%b{"role":"%b","content":"x"}]}' % (
        one * (size // len(one)),
        last.encode(),
    )


def tiny_blocks(size: int) -> bytes:
    """A Messages API body of about `size` bytes, all of it one-character text blocks (as many to a
    message as one may hold), its last message the assistant's."""
    block = b'{"type":"text","text":"x"},'
    count = size // len(block)
    messages = [
        b'{"role":"%b","content":[%b{"type":"text","text":"x"}]}'
        % (b"user" if start + MOST_BLOCKS < count else b"assistant", block * (min(count - start, MOST_BLOCKS) - 1))
        for start in range(0, count, MOST_BLOCKS)
    ]
    return b'{"model":"sonnet","max_tokens":10,"messages":[%b]}' % b",".join(messages)


async def answer_to_a_body_never_sent(server: RunningServer, path: str, headers: dict[str, str]) -> tuple[int, Any]:
    """POST a request that declares a 100 MB body but sends only its first 64 KiB, and read the
    answer: a server that reads the body before it answers would wait for the rest for ever."""
    parts = urlsplit(server.base)
    head = [f"POST {path} HTTP/1.1", f"Host: {parts.netloc}", "Content-Type: application/json",
            f"Content-Length: {100 * 1000 * 1000}", *(f"{k}: {v}" for k, v in headers.items())]  # fmt: skip
    async with await anyio.connect_tcp(parts.hostname or "127.0.0.1", parts.port or 80) as stream:
        await stream.send(("\r\n".join(head) + "\r\n\r\n").encode() + tiny_messages(64 * 1024))
        received = b""
        while b"\r\n\r\n" not in received:
            received += await stream.receive()
        top, _, rest = received.partition(b"\r\n\r\n")
        length = re.search(rb"(?im)^content-length: *([0-9]+)", top)
        assert length is not None, top
        while len(rest) < int(length[1]):
            rest += await stream.receive()
    return int(top.split()[1]), json.loads(rest)


async def test_an_unauthenticated_request_is_refused_before_its_body_is_read(tenants: RunningServer) -> None:
    with anyio.fail_after(10):
        status, body = await answer_to_a_body_never_sent(tenants, "/v1/messages", {"x-api-key": "not-a-token"})
        assert status == 401 and body["error"]["type"] == "authentication_error", body
        status, body = await answer_to_a_body_never_sent(tenants, "/v1/chat/completions", {})
        assert status == 401 and body == {"error": body["error"]} and "message" in body["error"], body
        status, body = await answer_to_a_body_never_sent(tenants, "/v1/messages/batches", {})
        assert status == 401 and body["error"]["type"] == "authentication_error", body


async def test_a_100_mb_body_without_a_key_leaves_the_servers_memory_as_it_was(
    tenants: RunningServer, http: httpx2.AsyncClient
) -> None:
    server = psutil.Process(tenants.process.pid)
    await healthy(http, tenants)
    before = server.memory_info().rss

    async def chunks() -> AsyncIterator[bytes]:  # sent chunked: the server cannot know the size up front
        body = tiny_messages(100 * 1000 * 1000)
        for at in range(0, len(body), MiB):
            yield body[at : at + MiB]

    with anyio.fail_after(10):
        response = await http.post(
            tenants.base + "/v1/messages", content=chunks(), headers=JSON | {"x-api-key": "wrong"}
        )
    anthropic_error(response, 401, "authentication_error")
    grown = (server.memory_info().rss - before) / MiB
    assert grown < 50, f"the server's RSS grew by {grown:.0f} MiB"
    await healthy(http, tenants)


async def test_a_body_over_the_cap_gets_413_in_each_apis_shape(capped: RunningServer, http: httpx2.AsyncClient) -> None:
    big = "x" * (MiB + 1000)
    async with anthropic.AsyncAnthropic(base_url=capped.base, api_key="sk-any", max_retries=0, timeout=30) as claude:
        with anyio.fail_after(10), pytest.raises(anthropic.APIStatusError) as refused:
            await claude.messages.create(model="sonnet", max_tokens=10, messages=[{"role": "user", "content": big}])
        assert refused.value.status_code == 413
        assert refused.value.body["error"]["type"] == "request_too_large"  # type: ignore[index]
        assert "max_request_mb" in refused.value.message
        with anyio.fail_after(10), pytest.raises(anthropic.APIStatusError) as refused:
            await claude.messages.count_tokens(model="sonnet", messages=[{"role": "user", "content": big}])
        assert refused.value.status_code == 413
    async with openai.AsyncOpenAI(base_url=capped.base + "/v1", api_key="sk-any", max_retries=0) as gpt:
        with anyio.fail_after(10), pytest.raises(openai.APIStatusError) as too_big:
            await gpt.chat.completions.create(model="sonnet", messages=[{"role": "user", "content": big}])
        assert too_big.value.status_code == 413
        assert too_big.value.response.json()["error"]["type"] == "request_too_large"
        assert "max_request_mb" in too_big.value.response.json()["error"]["message"]

    async def chunked(body: bytes) -> AsyncIterator[bytes]:  # no Content-Length: counted as it arrives
        for at in range(0, len(body), 64 * 1024):
            yield body[at : at + 64 * 1024]

    headers = JSON | {"x-api-key": "sk-any"}
    with anyio.fail_after(10):
        response = await http.post(
            capped.base + "/v1/messages", content=chunked(tiny_messages(2 * MiB)), headers=headers
        )
    assert "1 MiB" in anthropic_error(response, 413, "request_too_large")

    def batch(size: int) -> dict[str, Any]:
        params = {"model": "sonnet", "max_tokens": 10, "stream": True, "messages": [{"role": "user", "content": "x"}]}
        return {"requests": [{"custom_id": "big", "params": params | {"system": "x" * size}}]}

    with anyio.fail_after(10):  # under the batch cap: read and checked (stream is refused in a batch)
        response = await http.post(capped.base + "/v1/messages/batches", json=batch(3 * MiB // 2), headers=headers)
    assert "stream cannot be true" in anthropic_error(response, 400, "invalid_request_error")
    with anyio.fail_after(10):
        response = await http.post(capped.base + "/v1/messages/batches", json=batch(3 * MiB), headers=headers)
    assert "max_batch_mb" in anthropic_error(response, 413, "request_too_large")
    async with anthropic.AsyncAnthropic(base_url=capped.base, api_key="sk-any", max_retries=0, timeout=60) as claude:
        reply = await claude.messages.create(
            model="sonnet", max_tokens=10, messages=[{"role": "user", "content": "[[say:still here]]"}]
        )
    assert reply.content[0].text == "still here"  # type: ignore[union-attr]


async def test_a_large_allowed_body_is_decoded_while_other_requests_are_served(
    roomy: RunningServer, http: httpx2.AsyncClient
) -> None:
    """14 MiB of one-character text blocks take seconds to decode and validate (on the event loop,
    before: /healthz waited ~4 s); off the loop, /healthz keeps answering meanwhile."""
    body = tiny_blocks(14 * MiB)  # refused once all of it is validated: no run starts
    answered = 0

    async def ask() -> httpx2.Response:
        return await http.post(roomy.base + "/v1/messages", content=body, headers=JSON | {"x-api-key": "sk-any"})

    async with anyio.create_task_group() as tasks:
        response = None

        async def big() -> None:
            nonlocal response
            response = await ask()
            tasks.cancel_scope.cancel()

        tasks.start_soon(big)
        while True:  # until the big request is answered, which cancels this loop
            await healthy(http, roomy, within_s=1.5)
            answered += 1
            await anyio.sleep(0.05)
    assert response is not None
    assert "last message must have role 'user'" in anthropic_error(response, 400, "invalid_request_error")
    assert answered > 3


# --- what one request may hold, and how the APIs answer what it cannot ---------------------------------------


@pytest.fixture
def limited(tmp_path: Path, workdir: Path, cli_env: dict[str, str]) -> Iterator[RunningServer]:
    """One conversation and one batch kept at most, and room for 10,000 client tools."""
    extra = "max_conversations = 1\nmax_batches = 1\nmax_client_tools = 10000\nmax_client_tools_kb = 4096"
    config = write_config(tmp_path / "limited.toml", workdir, cli_env, extra)
    with serving(tmp_path, config, "http", name="limited") as running:
        try:
            yield running
        finally:
            stopped_if_stuck(running)


def user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


async def test_a_prompt_within_max_prompt_kb_runs_and_one_over_it_is_refused_up_front(
    local: RunningServer, http: httpx2.AsyncClient, fake_model: FakeModel
) -> None:
    """The SDK's default 1 MB bound on a line of the CLI's output stopped a ~500 KB prompt after the
    CLI had started (a 500 "The CLI wrote output that is not JSON"): it now fits `max_prompt_kb`."""
    token = uuid.uuid4().hex
    async with anthropic.AsyncAnthropic(base_url=local.base, api_key="sk-any", max_retries=0, timeout=60) as claude:
        reply = await claude.messages.create(
            model="sonnet", max_tokens=10, messages=[user(f"[[say:big {token}]] " + "x" * 1_000_000)]
        )
        assert reply.content[0].text == f"big {token}"  # type: ignore[union-attr]
        over = [
            {"messages": [user(f"{token} " + "x" * (MiB + 1))]},
            {"messages": [user(token)], "system": "s" * (256 * 1024 + 1)},
            # A history this server holds no conversation for is carried into the first prompt of a new one.
            {"messages": [user(token + "a" * 600_000), {"role": "assistant", "content": "ok"}, user("b" * 600_000)]},
        ]
        for params, setting in zip(over, ("max_prompt_kb", "max_system_prompt_kb", "max_prompt_kb"), strict=True):
            with anyio.fail_after(5), pytest.raises(anthropic.APIStatusError) as refused:
                await claude.messages.create(model="sonnet", max_tokens=10, **params)  # type: ignore[arg-type]
            assert refused.value.status_code == 413, refused.value.message
            assert refused.value.body["error"]["type"] == "request_too_large"  # type: ignore[index]
            assert setting in refused.value.message
        assert "carried" in refused.value.message
    async with openai.AsyncOpenAI(base_url=local.base + "/v1", api_key="sk-any", max_retries=0) as gpt:
        for messages in (
            [user(f"{token} " + "x" * (MiB + 1))],
            [{"role": "system", "content": "s" * (256 * 1024 + 1)}, user(token)],
        ):
            with anyio.fail_after(5), pytest.raises(openai.APIStatusError) as too_big:
                await gpt.chat.completions.create(model="sonnet", messages=messages)  # type: ignore[arg-type]
            assert too_big.value.status_code == 413
            assert too_big.value.response.json()["error"]["type"] == "request_too_large"
    assert len(fake_model.requests_for(token)) == 1  # only the request within the limits reached the model
    await healthy(http, local)


async def test_a_long_system_prompt_and_many_tools_never_meet_the_command_lines_limits(
    tenants: RunningServer, limited: RunningServer
) -> None:
    """200,000 characters of `system` and 10,000 client tools failed to start the CLI ("[Errno 7]
    Argument list too long", a 500 naming the install's path): the system prompt goes in a file the
    sandboxed CLI reads (alice's runs are in the sandbox), the tools are allowed by one rule (the
    CLI offers so many through its tool search: a call of the last one is handed to the client)."""
    system = "Answer briefly. " * 12_400 + "SYSTEM-END-MARK"  # 198,415 characters
    async with anthropic.AsyncAnthropic(base_url=tenants.base, api_key=ALICE, max_retries=0, timeout=60) as claude:
        reply = await claude.messages.create(
            model="sonnet", max_tokens=10, system=system, messages=[user("[[report]]")]
        )
    assert json.loads(reply.content[0].text)["system"].endswith("SYSTEM-END-MARK")  # type: ignore[union-attr]
    tools = [
        {"name": f"tool_{n:05d}", "description": "d", "input_schema": {"type": "object", "properties": {}}}
        for n in range(10_000)
    ]
    asked = [user("[[tool:mcp__client__tool_09999:{}]]")]
    async with anthropic.AsyncAnthropic(base_url=limited.base, api_key="sk-any", max_retries=0, timeout=120) as claude:
        called = await claude.messages.create(model="sonnet", max_tokens=10, tools=tools, messages=asked)  # type: ignore[arg-type]
        call = called.content[-1]
        assert called.stop_reason == "tool_use" and call.type == "tool_use" and call.name == "tool_09999"
        result = {"type": "tool_result", "tool_use_id": call.id, "content": "done"}
        answered = [*asked, {"role": "assistant", "content": called.content}, {"role": "user", "content": [result]}]
        reply = await claude.messages.create(model="sonnet", max_tokens=10, tools=tools, messages=answered)  # type: ignore[arg-type]
        assert reply.content[-1].text == "TOOL_RESULT: done"  # type: ignore[union-attr]
        with anyio.fail_after(5), pytest.raises(anthropic.APIStatusError) as refused:
            await claude.messages.create(
                model="sonnet",
                max_tokens=10,
                tools=[*tools, *tools[:1]],
                messages=[user("x")],  # type: ignore[arg-type]
            )
        assert refused.value.status_code == 413 and "max_client_tools" in refused.value.message


async def test_more_client_tools_than_max_client_tools_are_refused_up_front(local: RunningServer) -> None:
    tools = [{"name": f"t{n}", "input_schema": {"type": "object"}} for n in range(257)]
    async with anthropic.AsyncAnthropic(base_url=local.base, api_key="sk-any", max_retries=0, timeout=30) as claude:
        with anyio.fail_after(5), pytest.raises(anthropic.APIStatusError) as refused:
            await claude.messages.create(model="sonnet", max_tokens=10, tools=tools, messages=[user("x")])  # type: ignore[arg-type]
    assert refused.value.status_code == 413 and "257 tools" in refused.value.message
    assert refused.value.body["error"]["type"] == "request_too_large"  # type: ignore[index]


async def test_unknown_paths_under_v1_answer_in_the_apis_shape(local: RunningServer, http: httpx2.AsyncClient) -> None:
    headers = {"x-api-key": "sk-any"}
    for path in ("/v1/messages/batches/..%2F..", "/v1/nothing", "/v1/messages/batches/x/y/z"):
        message = anthropic_error(await http.get(local.base + path, headers=headers), 404, "not_found_error")
        assert "no endpoint GET" in message
    message = anthropic_error(
        await http.get(local.base + "/v1/messages", headers=headers), 405, "invalid_request_error"
    )
    assert "POST" in message
    response = await http.get(local.base + "/v1/chat/nothing", headers=headers)
    assert response.status_code == 404 and response.json()["error"]["type"] == "not_found_error"
    async with anthropic.AsyncAnthropic(base_url=local.base, api_key="sk-any", max_retries=0) as claude:
        with pytest.raises(anthropic.NotFoundError):
            await claude.messages.batches.retrieve("../..")


async def test_the_model_apis_refusals_keep_their_meaning(local: RunningServer) -> None:
    """The API's 400 and 413 were a 502 "Retry shortly" (retried by every SDK, failing the same way
    each time); the server's own credential rejected was a 401 (the client's SDK blames its own key)."""
    async with anthropic.AsyncAnthropic(base_url=local.base, api_key="sk-any", max_retries=0, timeout=60) as claude:
        for code, status, kind in ((400, 400, "invalid_request_error"), (413, 413, "request_too_large")):
            with pytest.raises(anthropic.APIStatusError) as refused:
                await claude.messages.create(model="sonnet", max_tokens=10, messages=[user(f"[[error:{code}]]")])
            assert (refused.value.status_code, refused.value.body["error"]["type"]) == (status, kind)  # type: ignore[index]
            assert f"(HTTP {code})" in refused.value.message and "Detail: " in refused.value.message
            assert "Retry shortly" not in refused.value.message
        with pytest.raises(anthropic.APIStatusError) as refused:
            await claude.messages.create(model="sonnet", max_tokens=10, messages=[user("[[error:401]]")])
        assert refused.value.status_code == 502 and not isinstance(refused.value, anthropic.AuthenticationError)
        assert "this server's own credential" in refused.value.message
    async with openai.AsyncOpenAI(base_url=local.base + "/v1", api_key="sk-any", max_retries=0) as gpt:
        with pytest.raises(openai.APIStatusError) as refused_openai:
            await gpt.chat.completions.create(model="sonnet", messages=[user("[[error:400]]")])  # type: ignore[list-item]
        assert refused_openai.value.status_code == 400


async def test_a_namespace_at_its_limits_is_refused_with_a_status_no_sdk_retries(limited: RunningServer) -> None:
    """`max_conversations` reached was a 529, which the SDKs retry (twice, 5 s apart, for nothing)."""
    async with anthropic.AsyncAnthropic(base_url=limited.base, api_key="sk-any", timeout=60) as claude:  # retries on
        await claude.messages.create(model="sonnet", max_tokens=10, messages=[user("[[say:first]]")])
        started = time.monotonic()
        with pytest.raises(anthropic.BadRequestError) as refused:
            await claude.messages.create(model="sonnet", max_tokens=10, messages=[user("[[say:second]]")])
        assert time.monotonic() - started < 3  # not retried
        assert refused.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
        assert "1 conversations" in refused.value.message
        batch = await claude.messages.batches.create(
            requests=[{"custom_id": "a", "params": {"model": "sonnet", "max_tokens": 10, "messages": [user("x")]}}]
        )
        with pytest.raises(anthropic.BadRequestError) as refused:
            await claude.messages.batches.create(
                requests=[{"custom_id": "b", "params": {"model": "sonnet", "max_tokens": 10, "messages": [user("x")]}}]
            )
        assert "1 message batches" in refused.value.message
        await claude.messages.batches.cancel(batch.id)


async def test_a_batchs_requests_are_held_to_the_same_limits(local: RunningServer, http: httpx2.AsyncClient) -> None:
    """A batch with one 100 MB prompt was accepted and stored (SQLite 221 MB and a 211 MB WAL)."""
    params = {"model": "sonnet", "max_tokens": 10}
    requests = [
        {"custom_id": "fine", "params": params | {"messages": [user("x")]}},
        {"custom_id": "long", "params": params | {"messages": [user("x" * (MiB + 1))]}},
        {"custom_id": "system", "params": params | {"system": "s" * (256 * 1024 + 1), "messages": [user("x")]}},
    ]
    with anyio.fail_after(10):
        response = await http.post(
            local.base + "/v1/messages/batches", json={"requests": requests}, headers=JSON | {"x-api-key": "sk-any"}
        )
    message = anthropic_error(response, 400, "invalid_request_error")
    assert "2 of the batch's requests" in message and "'long'" in message and "'system'" in message
    assert "max_prompt_kb" in message and "max_system_prompt_kb" in message
    listed = await http.get(local.base + "/v1/messages/batches", headers={"x-api-key": "sk-any"})
    assert listed.json()["data"] == []  # nothing stored
