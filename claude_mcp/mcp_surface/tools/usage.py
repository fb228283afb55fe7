"""The `usage` tool (and the `claude://usage` resource's body): what the caller's own namespace
used, by UTC day and model, with its quotas and what is left of each."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field

from ...bridge.claude import ClaudeBridge
from ...bridge.quotas import QuotaState, window
from ...config.limits import FewFields
from ..call import Call
from .spec import READS, ToolSpec


class UsageArgs(FewFields):
    model_config = ConfigDict(extra="forbid")

    days: int = Field(30, ge=1, le=366, description="How many UTC days to report, today included.")


class UsageSums(BaseModel):
    runs: int
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    cost_usd: float = Field(description="USD, as Claude Code computes it.")


class UsageLine(UsageSums):
    day: str = Field(description="The UTC day (YYYY-MM-DD).")
    model: str = Field(description="The model, as Claude Code reports it (empty: none reported).")


class UsageReport(BaseModel):
    """What `usage` returns."""

    since: str = Field(description="The start of the first day reported (RFC 3339, UTC).")
    totals: UsageSums = Field(description="Everything since then.")
    by_day_and_model: list[UsageLine] = Field(description="Per UTC day (oldest first) and model (costliest first).")
    quotas: list[QuotaState] = Field(description="Your quotas on this server, with what is used and left of each.")


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, tz=UTC).isoformat().replace("+00:00", "Z")


async def report(bridge: ClaudeBridge, days: int = 30) -> UsageReport:
    """The bridge's namespace's usage over the last `days` UTC days, and its quotas."""
    book = bridge.usage  # this bridge's own latest runs included
    now = book.now()
    since = window("day", now)[0] - (days - 1) * 86_400
    lines = await book.report(since=since, until=now + 1, bucket_minutes=1440, by=("model",))
    totals = await book.report(since=since, until=now + 1)
    sums = ("runs", "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "cost_usd")
    return UsageReport(
        since=_iso(since),
        totals=UsageSums(**(totals[0].model_dump(include=set(sums)) if totals else dict.fromkeys(sums, 0))),
        by_day_and_model=[
            UsageLine(
                day=_iso(line.bucket_start or 0)[:10], model=line.model or "", **line.model_dump(include=set(sums))
            )
            for line in lines
        ],
        quotas=await book.quotas(),
    )


async def usage(args: UsageArgs, call: Call) -> UsageReport:
    return await report(call.bridge, args.days)


TOOLS = [
    ToolSpec(
        name="usage",
        description="What you have used on this server — runs, tokens and USD by UTC day and model — and your "
        "quotas (USD per day and month, runs per minute, tokens per day) with what is left of each.",
        args=UsageArgs,
        result=UsageReport,
        handler=usage,
        annotations=READS,
    ),
]
