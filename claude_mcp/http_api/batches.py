"""`/v1/messages/batches`: the Message Batches API over the job engine, so that an unmodified
Anthropic SDK's `client.messages.batches` works against the server.

A batch is a row in the store; each of its requests is a job queued there (`submit_job`),
claimed by whichever replica serving the caller's namespace has a free run slot, so a batch
spreads over every replica and never takes more than the namespace's share of any. Nothing
watches a batch: whoever reads it (on any replica) records what it finds — that it has ended,
or that it has expired and its requests still queued with it.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from ..bridge.claude import ClaudeBridge
from ..bridge.job_book import CANCELLED
from ..bridge.records import BatchBook
from ..bridge.tenancy import Tenancy
from ..config.limits import InputLimits
from ..errors import LimitReached, TooLarge
from ..state.store import BatchRecord
from .anthropic import in_api_shape
from .auth import caller_of
from .batch_shapes import (
    BATCH_LIFETIME_S,
    BatchEntry,
    batch_body,
    batch_entries,
    request_counts,
    result_line,
)
from .history import CARRIED, carried_prompt, digest
from .inputs import Bodies, query_int, read_capped
from .shapes import ApiError, api_id

RESULTS_PAGE = 500
"""Jobs read from the store at a time while the results stream."""
INTERNAL = ApiError(500, "api_error", "The server failed to answer (the server log has details); retry.")

Answer = dict[str, Any] | Response
Handler = Callable[[Request, ClaudeBridge], Awaitable[Answer]]


class BatchesApi:
    """The Message Batches endpoints, for the namespace each request's caller has."""

    def __init__(self, tenancy: Tenancy, bodies: Bodies) -> None:
        self.tenancy = tenancy
        self.bodies = bodies

    async def _serve(self, request: Request, handler: Handler) -> Response:
        """Run `handler` on the caller's bridge; every failure in the API's error shape."""

        async def work(request_id: str) -> Response | dict[str, Any]:
            caller = caller_of(request, self.tenancy)
            async with self.tenancy.bridge_for(caller.tenant, caller.credential) as bridge:
                return await handler(request, bridge)

        return await in_api_shape(work, INTERNAL, caller_credentials=self.tenancy.takes_caller_credentials)

    async def create(self, request: Request) -> Response:
        async def work(request_id: str) -> Answer:
            caller = caller_of(request, self.tenancy)  # first: a stranger's body is never read
            raw = await read_capped(request, self.bodies.batch)
            async with self.tenancy.bridge_for(caller.tenant, caller.credential) as bridge:
                limit = bridge.policy.max_batch_requests
                parse = functools.partial(batch_entries, limit=limit, limits=self.bodies.limits)
                entries = await self.bodies.decode(raw, parse)
                return await _create(bridge, entries, self.bodies.limits)

        return await in_api_shape(work, INTERNAL, caller_credentials=self.tenancy.takes_caller_credentials)

    async def list(self, request: Request) -> Response:
        return await self._serve(request, _list)

    async def retrieve(self, request: Request) -> Response:
        return await self._serve(request, _retrieve)

    async def cancel(self, request: Request) -> Response:
        return await self._serve(request, _cancel)

    async def delete(self, request: Request) -> Response:
        return await self._serve(request, _delete)

    async def results(self, request: Request) -> Response:
        return await self._serve(request, _results)


async def _observed(bridge: ClaudeBridge, batches: list[BatchRecord]) -> list[dict[str, Any]]:
    """The batches as the API shows them, after recording what has happened to them: requests
    still queued past the batch's expiry expire; a batch with none left to run has ended."""
    book, now = bridge.batches, time.time()
    for batch in batches:
        if batch.ended_at is None and now >= batch.expires_at:
            await book.expire(batch.batch_id, now)
    counts = await book.counts([batch.batch_id for batch in batches])
    shown = []
    for batch in batches:
        if batch.ended_at is None and request_counts(batch, counts[batch.batch_id])["processing"] == 0:
            batch = await book.end(batch.batch_id, now) or batch
        shown.append(batch_body(batch, counts[batch.batch_id]))
    return shown


async def _found(bridge: ClaudeBridge, request: Request) -> dict[str, Any]:
    """The batch a path names, observed; `not_found_error` if the caller has none by that id."""
    batch_id = request.path_params["batch_id"]
    batch = await bridge.batches.get(batch_id)
    if batch is None:
        raise ApiError(404, "not_found_error", f"message_batch: no batch {batch_id!r} exists for you.")
    return (await _observed(bridge, [batch]))[0]


@dataclass(frozen=True, slots=True)
class _Planned:
    """One request of a batch as the job it becomes: its prompt, and the conversation it forks."""

    entry: BatchEntry
    prompt: str
    session_id: str | None


async def _planned(bridge: ClaudeBridge, entry: BatchEntry, limits: InputLimits) -> _Planned:
    """A history the server holds a conversation for is forked from it (the batch's requests stay
    independent of each other); another is carried in the first prompt of a new conversation, as
    `/v1/messages` does — within `max_prompt_kb`, or the batch is refused naming the request."""
    turn, session_id = entry.turn, None
    if turn.history:
        session_id = await bridge.histories.session_for(digest(turn.history))
    if session_id is not None or not turn.history:
        return _Planned(entry, turn.prompt, session_id)
    prompt = carried_prompt(turn.history, turn.prompt)
    try:
        limits.prompt(prompt, field="messages", what=CARRIED)
    except TooLarge as exc:
        raise ApiError(413, "request_too_large", f"requests (custom_id {entry.custom_id!r}): {exc}") from None
    return _Planned(entry, prompt, None)


async def _submit(bridge: ClaudeBridge, batch: BatchRecord, planned: _Planned) -> None:
    """Queue one request of the batch as a job."""
    entry, prompt, session_id = planned.entry, planned.prompt, planned.session_id
    turn = entry.turn
    await bridge.submit_job(
        bridge.namespace,
        prompt,
        session_id=session_id,
        fork=session_id is not None,
        settings=turn.settings,
        agent=turn.agent,
        tool="batch",
        batch_id=batch.batch_id,
        custom_id=entry.custom_id,
        counted=False,
    )


async def _create(bridge: ClaudeBridge, entries: list[BatchEntry], limits: InputLimits) -> Answer:
    book, limit, most = bridge.batches, bridge.policy.max_batch_requests, bridge.policy.max_batches
    now = time.time()
    await book.forget_older_than(now - bridge.policy.batch_retention_s)
    if len(await book.page(limit=most, before_id=None, after_id=None)) >= most:
        raise LimitReached(
            f"You keep {most} message batches (processing or ended), the limit on this server: delete ended ones "
            "(or wait until they expire) before creating another."
        )
    if (pending := await book.requests_pending()) + len(entries) > limit:
        raise ApiError(
            429,
            "rate_limit_error",
            f"You have {pending} batch requests still processing; this batch's {len(entries)} more would pass this "
            f"server's limit of {limit}. Retry once some have ended (or cancel a batch).",
            retry_after_s=60,
        )
    batch = BatchRecord(
        namespace=bridge.namespace,
        batch_id=api_id("msgbatch_"),
        created_at=now,
        expires_at=now + BATCH_LIFETIME_S,
        request_count=len(entries),
    )
    planned = [await _planned(bridge, entry, limits) for entry in entries]
    await book.put(batch)
    try:
        for each in planned:
            await _submit(bridge, batch, each)
    except BaseException:  # a batch is created whole or not at all
        with anyio.CancelScope(shield=True):
            await book.cancel(batch.batch_id, CANCELLED)
            await book.delete(batch.batch_id)
        raise
    return (await _observed(bridge, [batch]))[0]


async def _list(request: Request, bridge: ClaudeBridge) -> Answer:
    limit = query_int(request.query_params, "limit", default=20, low=1, high=1000)
    before_id, after_id = request.query_params.get("before_id"), request.query_params.get("after_id")
    if before_id is not None and after_id is not None:
        raise ApiError(400, "invalid_request_error", "Send before_id or after_id, not both.")
    await bridge.batches.forget_older_than(time.time() - bridge.policy.batch_retention_s)
    found = await bridge.batches.page(limit=limit + 1, before_id=before_id, after_id=after_id)
    # One more than the page tells whether there are more: the one past the page's far end.
    page = found[-limit:] if before_id is not None else found[:limit]
    data = await _observed(bridge, page)
    return {
        "data": data,
        "has_more": len(found) > limit,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
    }


async def _retrieve(request: Request, bridge: ClaudeBridge) -> Answer:
    return await _found(bridge, request)


async def _cancel(request: Request, bridge: ClaudeBridge) -> Answer:
    shown = await _found(bridge, request)
    if shown["processing_status"] != "in_progress":  # canceling already, or ended: nothing more to stop
        return shown
    await bridge.batches.cancel(shown["id"], CANCELLED)
    return await _found(bridge, request)


async def _delete(request: Request, bridge: ClaudeBridge) -> Answer:
    shown = await _found(bridge, request)
    if shown["processing_status"] != "ended":
        raise ApiError(
            400,
            "invalid_request_error",
            f"Batch {shown['id']} is still processing: cancel it first, and delete it once it has ended.",
        )
    await bridge.batches.delete(shown["id"])
    return {"id": shown["id"], "type": "message_batch_deleted"}


async def _results(request: Request, bridge: ClaudeBridge) -> Answer:
    shown = await _found(bridge, request)
    if shown["processing_status"] != "ended":
        raise ApiError(
            400,
            "invalid_request_error",
            f"Batch {shown['id']} has not ended yet: its results can be read once its processing_status is 'ended'.",
        )
    own = bridge.policy.credentials == "caller"
    return StreamingResponse(_lines(bridge.batches, shown["id"], own), media_type="application/x-jsonl")


async def _lines(book: BatchBook, batch_id: str, caller_credentials: bool) -> AsyncIterator[bytes]:
    """The batch's results as JSON Lines, read from the store a page at a time."""
    after: str | None = None
    while page := await book.results(batch_id, limit=RESULTS_PAGE, after_custom_id=after):
        lines = (result_line(job, caller_credentials=caller_credentials) for job in page)
        yield "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines).encode()
        after = page[-1].custom_id
