"""`/v1/organizations/analytics/usage_report` and `…/cost_report`: the usage records in the
Admin API's report shapes, so the official `anthropic` SDK's
`client.beta.organization.analytics.usage_report.list(...)` and `cost_report.list(...)` read them.

Time buckets of `bucket_width` (`1d`, `1h`, `1m`) from `starting_at` (floored to the width, UTC)
to `ending_at`, `limit` buckets a page (`page` is the next bucket's start), each with one row, or
one per model with `group_by[]=model`. Who sees what: the operator, with the token in the
variable `usage_admin_token_env` names (as `x-api-key` or `Authorization: Bearer`), sees every
namespace; anyone else, authenticated as for `/v1/messages`, only their own. What Claude Code
does not tell apart is reported in one place: cache writes as 5-minute ones, cost as `tokens`.
"""

from __future__ import annotations

import hmac
import math
import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import Response

from ..bridge.tenancy import Tenancy
from ..state.store import UsageRow
from .anthropic import in_api_shape
from .auth import caller_of
from .inputs import query_int
from .shapes import ApiError

WIDTHS = {"1d": 1440, "1h": 60, "1m": 1}
"""Bucket widths in minutes."""
LIMITS = {"1d": (7, 31), "1h": (24, 168), "1m": (60, 256)}
"""Buckets a page: the default and the most, per width (the API's)."""
GROUPS = ("model",)
MAX_RANGE = timedelta(days=31)
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9999, 1, 1, tzinfo=UTC)
"""Times a report may name: a range past LATEST would overflow what a `datetime` can hold."""


def _bad(message: str) -> ApiError:
    return ApiError(400, "invalid_request_error", message)


def _time(text: str | None, name: str) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text.replace(" ", "+"))  # a "+" in a query string may arrive as a space
    except ValueError:
        raise _bad(f"{name} must be an RFC 3339 time, e.g. 2027-01-01T00:00:00Z.") from None
    if moment.tzinfo is None:
        raise _bad(f"{name} must say its time zone, e.g. 2027-01-01T00:00:00Z.")
    try:
        moment = moment.astimezone(UTC)
    except OverflowError:  # e.g. 9999-12-31T23:00:00-05:00
        moment = LATEST
    if not EARLIEST <= moment < LATEST:
        raise _bad(f"{name} must be from 1970-01-01T00:00:00Z to before 9999-01-01T00:00:00Z.")
    return moment


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, tz=UTC).isoformat().replace("+00:00", "Z")


def bucket_starts(start: int, step: int, limit: int, end: float) -> list[int]:
    """The starts of at most `limit` buckets of `step` seconds from `start`, before `end`."""
    return [at for at in (start + n * step for n in range(limit)) if at < end]


def page_start(query: QueryParams, first: int, step: int, end: float) -> int:
    """Where the page `page` asks for starts: the first bucket's start (`first`) without it; else a
    later bucket's start before `end` (a `next_page` of an earlier response), or `ApiError` 400."""
    meaning = "the next_page value of an earlier response (the start of one of the report's buckets, in seconds)"
    start = query_int(query, "page", default=first, low=first, high=math.ceil(end) - 1, meaning=meaning)
    if (start - first) % step:
        raise _bad(f"page must be {meaning}, not {start}.")
    return start


def _usage_row(row: UsageRow) -> dict[str, Any]:
    return {
        "uncached_input_tokens": row.input_tokens,
        "cache_read_input_tokens": row.cache_read_tokens,
        "cache_creation": {"ephemeral_5m_input_tokens": row.cache_write_tokens, "ephemeral_1h_input_tokens": 0},
        "output_tokens": row.output_tokens,
        "server_tool_use": {"web_search_requests": 0},
        "model": row.model,
    }


def _cost_row(row: UsageRow) -> dict[str, Any]:
    cents = f"{row.cost_usd * 100:.6f}".rstrip("0").rstrip(".")
    return {"amount": cents, "list_amount": cents, "currency": "USD", "model": row.model, "cost_type": None}


class UsageApi:
    """The usage and cost reports, for the caller's namespace or (the operator) every namespace."""

    def __init__(self, tenancy: Tenancy) -> None:
        self.tenancy = tenancy

    def _admin_token(self) -> str | None:
        policy = self.tenancy.policy
        name = policy.usage_admin_token_env if policy is not None else None
        return os.environ.get(name) or None if name else None

    async def _namespace(self, request: Request) -> str | None:
        """Whose usage the request may read: its caller's namespace, or None (the operator: all)."""
        presented = request.headers.get("x-api-key") or ""
        scheme, _, bearer = (request.headers.get("authorization") or "").partition(" ")
        if scheme.lower() == "bearer":
            presented = presented or bearer.strip()
        if (token := self._admin_token()) is not None and hmac.compare_digest(presented.encode(), token.encode()):
            for bridge in self.tenancy.bridges.values():
                await bridge.usage.flush()
            return None
        caller = caller_of(request, self.tenancy)
        async with self.tenancy.bridge_for(caller.tenant, caller.credential) as bridge:
            await bridge.usage.flush()  # its own latest runs included
            return bridge.namespace

    async def usage_report(self, request: Request) -> Response:
        return await self._report(request, _usage_row)

    async def cost_report(self, request: Request) -> Response:
        return await self._report(request, _cost_row)

    async def _report(self, request: Request, shape: Callable[[UsageRow], dict[str, Any]]) -> Response:
        async def work(request_id: str) -> dict[str, Any]:
            return await self._page(request, await self._namespace(request), shape)

        return await in_api_shape(work, ApiError(500, "api_error", "The report failed; the server log has details."))

    async def _page(
        self, request: Request, namespace: str | None, shape: Callable[[UsageRow], dict[str, Any]]
    ) -> dict[str, Any]:
        query = request.query_params
        width = query.get("bucket_width", "1d")
        if width not in WIDTHS:
            raise _bad("bucket_width must be one of 1d, 1h, 1m.")
        minutes = WIDTHS[width]
        starting_at = _time(query.get("starting_at"), "starting_at")
        if starting_at is None:
            raise _bad("starting_at is required.")
        now = datetime.now(UTC)
        ending_at = _time(query.get("ending_at"), "ending_at") or min(now, starting_at + MAX_RANGE)
        if ending_at <= starting_at:
            raise _bad("ending_at must be after starting_at.")
        if ending_at - starting_at > MAX_RANGE:
            raise _bad("The range may span at most 31 days.")
        groups = [g for key in ("group_by[]", "group_by") for g in query.getlist(key)]
        if unknown := sorted(set(groups) - set(GROUPS)):
            raise _bad(f"group_by {', '.join(unknown)} is not supported here; only model.")
        if query.getlist("models[]") or query.getlist("models"):
            raise _bad("The models[] filter is not supported here; use group_by[]=model.")
        default, most = LIMITS[width]
        meaning = f"an integer from 1 to {most} for bucket_width {width}"
        limit = query_int(query, "limit", default=default, low=1, high=most, meaning=meaning)
        step = minutes * 60
        first = int(starting_at.timestamp()) // step * step
        last = ending_at.timestamp()
        start = page_start(query, first, step, last)
        buckets: dict[float, list[dict[str, Any]]] = {at: [] for at in bucket_starts(start, step, limit, last)}
        end = min(last, start + limit * step)
        rows = await self.tenancy.store.usage_report(
            since=max(start, starting_at.timestamp()),
            until=end,
            namespace=namespace,
            bucket_minutes=minutes,
            by=("model",) if groups else (),
        )
        for row in rows:
            buckets.setdefault(row.bucket_start or start, []).append(shape(row))
        more = end < last
        return {
            "data": [
                {"starting_at": _iso(at), "ending_at": _iso(min(at + step, last)), "results": results}
                for at, results in buckets.items()
            ],
            "has_more": more,
            "next_page": str(start + limit * step) if more else None,
            "data_refreshed_at": _iso(now.timestamp()),
        }
