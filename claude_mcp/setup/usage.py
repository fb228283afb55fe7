"""`claude-mcp usage`: the usage records of the store the config names, summed by day, model or
namespace, as a table, CSV or JSON."""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from ..config.policy import Policy
from ..errors import ConfigError
from ..state.open import describe, store_for
from ..state.sticky import default_state_dir
from ..state.store import UsageGroup, UsageRow

By = Literal["day", "model", "namespace"]
Format = Literal["table", "csv", "json"]
COLUMNS = ("runs", "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "cost_usd")
_RELATIVE = re.compile(r"^(\d+)([mhd])$")
_UNITS = {"m": 60, "h": 3600, "d": 86_400}


def since_of(text: str, now: float) -> float:
    """`7d`, `24h`, `30m` (that long ago), or an ISO date or time (UTC unless it says otherwise)."""
    if (relative := _RELATIVE.match(text.strip())) is not None:
        return now - int(relative.group(1)) * _UNITS[relative.group(2)]
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(f"--since {text!r}: give e.g. 7d, 24h, 30m, 2027-01-01 or 2027-01-01T12:00") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def state_store_of(policy: Policy, environ: Mapping[str, str] | None = None) -> Path:
    """The state directory `claude-mcp serve` would use with this policy (for the SQLite store)."""
    environ = os.environ if environ is None else environ
    if policy.state_dir is not None:
        return policy.state_dir
    if policy.tenants or policy.credentials == "caller":
        return Path(environ.get("CLAUDE_MCP_STATE", Path.home() / ".claude-mcp"))
    return default_state_dir(policy.cli_env)


def store_name(policy: Policy) -> str:
    """The store `usage` reads, as a person reads it (`serve` for one person keeps SQLite in
    ~/.claude/claude-mcp; with tenants or callers, in ~/.claude-mcp; `state_url` names another)."""
    return describe(policy.state_url, state_store_of(policy))


async def usage_rows(policy: Policy, *, since: float, until: float, by: By) -> list[UsageRow]:
    """The sums of every namespace's usage from `since` to `until`, by `by`."""
    store = store_for(policy.state_url, state_store_of(policy))
    groups: tuple[UsageGroup, ...] = () if by == "day" else (by,)
    await store.open()
    try:
        return await store.usage_report(
            since=since, until=until, bucket_minutes=1440 if by == "day" else None, by=groups
        )
    finally:
        await store.close()


def _key(row: UsageRow, by: By) -> str:
    if by == "day":
        return datetime.fromtimestamp(row.bucket_start or 0, tz=UTC).date().isoformat()
    return (row.model if by == "model" else row.namespace) or "(none)"


def render(rows: list[UsageRow], by: By, fmt: Format) -> str:
    """The rows, with a total line and dollars to the cent (table), or as they are (CSV, JSON)."""
    lines = [{by: _key(row, by), **row.model_dump(include=set(COLUMNS))} for row in rows]
    for line in lines:  # sums of floats carry noise (0.005880000000000005): a millionth of a dollar is enough
        line["cost_usd"] = round(line["cost_usd"], 6)
    if fmt == "json":
        return json.dumps(lines, indent=2)
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=[by, *COLUMNS], lineterminator="\n")
        writer.writeheader()
        writer.writerows(lines)
        return out.getvalue().rstrip("\n")
    total = {by: "total", **{c: sum(line[c] for line in lines) for c in COLUMNS}}
    table = [[by, *COLUMNS]] + [
        [str(line[by]), *(f"{line[c]:.2f}" if c == "cost_usd" else str(line[c]) for c in COLUMNS)]
        for line in [*lines, total]
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    return "\n".join(
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in table
    )
