"""What each MCP tool call tells the metrics and the logs, and how a drain ends one.

`observed` wraps the server's `call_tool`: the call's facts (its tool; the tenant is noted once
known) for every line logged inside it, a count by tool and outcome, its duration, one log line,
and its place in the process's `ACTIVITY`. A call the drain stops (one that runs no Claude run,
such as a long `get_job` poll; runs end with their own error) returns a clear error result.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Collection
from typing import Any

import mcp_types as types
from mcp.server.context import ServerRequestContext

from ..errors import ShuttingDown
from ..telemetry import context, metrics
from ..telemetry.activity import ACTIVITY

logger = logging.getLogger("claude_mcp.calls")

CallTool = Callable[
    [ServerRequestContext[Any, Any], types.CallToolRequestParams],
    Awaitable[types.CallToolResult | types.InputRequiredResult],
]


def observed(call_tool: CallTool, tools: Collection[str]) -> CallTool:
    """`call_tool`, measured and logged, and stopped by a drain."""

    async def call(
        ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult | types.InputRequiredResult:
        tool = params.name if params.name in tools else "unknown"
        started = time.monotonic()
        with context.facts(tool=tool, error=None) as facts, ACTIVITY.tracking("call") as stopping:
            result = await call_tool(ctx, params)
        if stopping.cancelled_caught:
            facts.error = ShuttingDown.kind
            message = str(ShuttingDown(session_id=facts.session, what="call"))
            result = types.CallToolResult(content=[types.TextContent(type="text", text=message)], is_error=True)
        if isinstance(result, types.InputRequiredResult):
            outcome = "input_required"
        else:
            outcome = (facts.error or "error") if result.is_error else "ok"
        duration_s = time.monotonic() - started
        metrics.TOOL_CALLS.labels(tool, outcome).inc()
        metrics.TOOL_CALL_SECONDS.labels(tool).observe(duration_s)
        with context.facts(**vars(facts)):  # the line carries what the call learnt (tenant, namespace)
            extra = {"outcome": outcome, "duration_s": round(duration_s, 3)}
            logger.info("%s: %s in %.2f s", tool, outcome, duration_s, extra=extra)
        return result

    return call
