"""The Message Batches API's shapes: a batch's body, checked request by request, and a batch and
its results as the API renders them. Pure.

Each request of a batch is a Messages API request body, turned into a Claude Code turn exactly
as `/v1/messages` turns it (`turn_of`). What a batch cannot do is refused at creation, naming
the request: streaming (results are read once the batch has ended) and the client's own tools
(nobody could answer a tool call in the middle of a batch).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import ConfigDict, Field, ValidationError

from ..bridge.results import AskResult, failure_of
from ..config.limits import MOST_BATCH_REQUESTS, MOST_FIELDS, InputLimits
from ..errors import APIError
from ..state.store import BATCH_EXPIRED, BatchOutcome, BatchRecord, JobRecord
from .anthropic import turn_of
from .errors import SERVER_CREDENTIAL_REFUSED, api_error_of, status_and_type
from .inputs import describe
from .serving import ApiTurn
from .shapes import ApiError, ManyPerRequest, MessagesRequest, at_most, usage_of
from .stream import MessageStream

BATCH_LIFETIME_S = 24 * 3600
"""How long a batch's requests may wait to be run (the API's 24 hours); those left then expire."""
MOST_PROBLEMS_NAMED = 20


class BatchItem(ManyPerRequest):
    model_config = ConfigDict(extra="forbid")

    custom_id: str = Field(..., pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    params: dict[str, Any] = at_most(MOST_FIELDS)


class BatchCreate(ManyPerRequest):
    """`POST /v1/messages/batches`."""

    model_config = ConfigDict(extra="forbid")

    requests: list[BatchItem] = Field(..., min_length=1, max_length=MOST_BATCH_REQUESTS, fail_fast=True)


@dataclass(frozen=True, slots=True)
class BatchEntry:
    """One request of a batch, as the turn it asks of Claude Code."""

    custom_id: str
    turn: ApiTurn


def _problems_of(params: dict[str, Any], limits: InputLimits) -> tuple[ApiTurn | None, list[str]]:
    try:
        request = MessagesRequest.model_validate(params)
    except ValidationError as exc:
        return None, [describe(exc)]
    problems = []
    if request.stream:
        problems.append("stream cannot be true in a batch (its results are read once the batch has ended).")
    if request.tools:
        problems.append(
            "tools cannot be used in a batch: nobody could answer a call of one of your tools in the middle of "
            "it; send such requests to /v1/messages."
        )
    if request.mcp_servers:
        problems.append(
            "mcp_servers cannot be used in a batch (a batch's requests are stored; their tokens may not be)."
        )
    if request.messages[-1].attachments():
        problems.append("images and documents cannot be sent in a batch here; send such requests to /v1/messages.")
    try:
        return turn_of(request, limits), problems
    except ApiError as error:
        return None, [*problems, error.message]


def checked_requests(body: BatchCreate, limits: InputLimits) -> list[BatchEntry]:
    """Each request of the batch as its turn; `ApiError` naming every request that cannot be run
    (by index and custom_id), duplicate custom_ids and requests over the input `limits` of
    `/v1/messages` included."""
    entries: list[BatchEntry] = []
    problems: list[str] = []
    first_use: dict[str, int] = {}
    for index, item in enumerate(body.requests):
        where = f"requests.{index} (custom_id {item.custom_id!r})"
        if (first := first_use.setdefault(item.custom_id, index)) != index:
            problems.append(f"{where}: requests.{first} has the same custom_id; each must be unique in a batch.")
            continue
        turn, found = _problems_of(item.params, limits)
        if found or turn is None:
            problems.append(f"{where}: {' '.join(found)}")
        else:
            entries.append(BatchEntry(item.custom_id, turn))
    if problems:
        named = problems[:MOST_PROBLEMS_NAMED]
        more = f" | and {len(problems) - len(named)} more." if len(problems) > len(named) else ""
        raise ApiError(
            400,
            "invalid_request_error",
            f"{len(problems)} of the batch's requests cannot be run: {' | '.join(named)}{more}",
        )
    return entries


def batch_entries(data: Any, limit: int, limits: InputLimits) -> list[BatchEntry]:
    """A decoded `POST /v1/messages/batches` body as its entries (`checked_requests`), holding at
    most `limit` requests (`max_batch_requests`), each within `limits`; `ApiError` otherwise."""
    body = BatchCreate.model_validate(data)
    if len(body.requests) > limit:
        raise ApiError(
            400,
            "invalid_request_error",
            f"A batch may hold at most {limit} requests on this server; this one has {len(body.requests)}. "
            "Split it into several batches.",
        )
    return checked_requests(body, limits)


def _iso(moment: float | None) -> str | None:
    """RFC 3339, as the API writes times."""
    if moment is None:
        return None
    return datetime.fromtimestamp(moment, tz=UTC).isoformat().replace("+00:00", "Z")


def results_path(batch_id: str) -> str:
    """Where a batch's results are: relative, so that a client resolves it against the base URL it
    reached the server by (the SDKs do; an absolute URL would be wrong behind a proxy)."""
    return f"/v1/messages/batches/{batch_id}/results"


def request_counts(record: BatchRecord, counts: dict[BatchOutcome, int]) -> dict[str, int]:
    """The batch's requests by outcome; any not finished (or not yet stored) is `processing`."""
    succeeded, errored = counts.get("completed", 0), counts.get("failed", 0)
    canceled, expired = counts.get("cancelled", 0), counts.get("expired", 0)
    return {
        "processing": max(0, record.request_count - succeeded - errored - canceled - expired),
        "succeeded": succeeded,
        "errored": errored,
        "canceled": canceled,
        "expired": expired,
    }


def batch_body(record: BatchRecord, counts: dict[BatchOutcome, int]) -> dict[str, Any]:
    """A `message_batch` object."""
    ended = record.ended_at is not None
    return {
        "id": record.batch_id,
        "type": "message_batch",
        "processing_status": "ended" if ended else "canceling" if record.cancel_initiated_at else "in_progress",
        "request_counts": request_counts(record, counts),
        "created_at": _iso(record.created_at),
        "expires_at": _iso(record.expires_at),
        "ended_at": _iso(record.ended_at),
        "cancel_initiated_at": _iso(record.cancel_initiated_at),
        "archived_at": None,
        "results_url": results_path(record.batch_id) if ended else None,
    }


def message_of(result: AskResult, model: str, message_id: str) -> dict[str, Any]:
    """A run's result as the Messages API's `message` (the shape `/v1/messages` answers with)."""
    stream = MessageStream(message_id, model)
    usage = usage_of(result.usage)
    stream.finish(usage, result.result)
    return stream.message(stream.blocks, usage)


def error_of(record: JobRecord, *, caller_credentials: bool = False) -> ApiError:
    """Why a request of a batch failed, in the API's error shape: typed by the failure the job
    recorded, else by its error result, else a server-side `api_error` (`caller_credentials`:
    its run used the caller's own credential, whose rejection is the caller's to fix)."""
    message = record.error or "The request failed; the server log has details."
    if record.error_kind is not None:
        status, kind = status_and_type(record.error_kind, record.error_status, caller_credentials=caller_credentials)
        if record.error_kind == APIError.kind and record.error_status == 401 and not caller_credentials:
            message = SERVER_CREDENTIAL_REFUSED
        return ApiError(status, kind, message)
    failure = failure_of(AskResult.model_validate(record.result), None) if record.result is not None else None
    shown = api_error_of(failure, caller_credentials=caller_credentials) if failure is not None else None
    return ApiError(500, shown.type if shown is not None else "api_error", message)


def result_line(record: JobRecord, *, caller_credentials: bool = False) -> dict[str, Any]:
    """One line of a batch's results: the outcome of the request that `record` ran."""
    result: dict[str, Any]
    if record.status == "completed" and record.result is not None:
        model = str(((record.request or {}).get("settings") or {}).get("model") or "")
        message_id = "msg_" + record.job_id.replace("-", "")[:24]  # the same on every read
        message = message_of(AskResult.model_validate(record.result), model, message_id)
        result = {"type": "succeeded", "message": message}
    elif record.status == "cancelled":
        result = {"type": "expired" if record.error == BATCH_EXPIRED else "canceled"}
    else:
        result = {"type": "errored", "error": error_of(record, caller_credentials=caller_credentials).body()}
    return {"custom_id": record.custom_id, "result": result}
