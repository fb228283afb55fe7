"""What the bridge tells the metrics, the spans and the logs (the definitions are in `telemetry`).

`run` wraps one run: one span, one log line and the run metrics per run, its facts (tool,
tenant, session, run id) for everything logged inside it, and its place in the server's
`Activity`, so that a drain can stop it with a `ShuttingDown` that carries its session_id.
What it knows of the run is handed down to it (`RunFacts`); it reads nothing of the bridge.
`RunWatch` sits between the run and its observer: the time to the first text, and a span per
tool use. `queue_wait`, `cli_start` and `turn` measure those steps where they happen.
Over 300 lines so that the bridge's modules carry one-line hooks rather than telemetry code.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager

import anyio
from claude_agent_sdk import AssistantMessage, Message, ResultMessage, SystemMessage, ToolUseBlock, UserMessage
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, StatusCode

from ..errors import APIError, ClaudeMCPError, ShuttingDown
from ..telemetry import context, metrics, tracing
from ..telemetry.activity import Activity
from ..telemetry.tracing import TRACER
from .observer import RunObserver, text_delta
from .permissions import PermissionAnswer, PermissionRequest
from .results import AskResult, RunFailed
from .run_end import api_label
from .run_facts import RunFacts
from .turn_usage import TurnUsage

logger = logging.getLogger("claude_mcp.runs")


def error_kind(exc: BaseException) -> str:
    """A bounded name for what went wrong, for metric labels and logs (a run's end: `RunEnd.metric_kind`)."""
    if isinstance(exc, RunFailed):
        return exc.end.metric_kind
    if isinstance(exc, APIError):
        return api_label(exc.status)
    if isinstance(exc, ClaudeMCPError):
        return exc.kind
    return "internal"


def calling_tool() -> str | None:
    """The tool of the call being served, if any (from the call's facts)."""
    facts = context.current()
    return facts.tool if facts is not None and facts.tool not in (None, "none") else None


def note_caller(tenant: str, namespace: str) -> None:
    """Note in the current call's facts who is calling."""
    context.note(tenant=tenant, namespace=namespace)


async def run(
    known: RunFacts,
    observer: RunObserver | None,
    body: Callable[[RunObserver], Awaitable[AskResult]],
    activity: Activity,
) -> AskResult:
    """Run `body` as one observed run: its facts for everything logged inside it, a span, the run
    metrics and one log line, and its place in `activity`, so that a drain can stop it with a
    `ShuttingDown` that carries its session_id. `body` is given the observer to report to (a
    `RunWatch` over `observer`)."""
    parent = context.current()
    tool = known.tool or "none"
    tenant = known.tenant
    started = time.monotonic()
    outcome, kind = "cancelled", None
    attributes = {"claude_mcp.tool": tool, "claude_mcp.tenant": tenant}
    with (
        context.facts(tool=tool, tenant=tenant, namespace=known.namespace, session=known.session) as facts,
        TRACER.start_as_current_span(tracing.RUN, attributes=attributes, record_exception=False) as span,
    ):
        facts.run_id = uuid.uuid4().hex[:16]
        span.set_attribute("claude_mcp.run_id", facts.run_id)
        watcher = RunWatch(observer, facts, span, tool, started)
        metrics.RUNS_IN_FLIGHT.labels(tenant).inc()
        try:
            with activity.tracking("run") as stopping:
                result = await body(watcher)
            if stopping.cancelled_caught:
                raise ShuttingDown(session_id=facts.session)
            outcome = "ok"
            return result
        except ShuttingDown:
            kind = "shutting_down"
            raise
        except anyio.get_cancelled_exc_class():
            if not activity.stopped("run"):
                raise
            # Stopped by the drain, then cancelled by the shutdown while its processes were being
            # stopped: it still ends as stopped by the drain, so a job is left resumable.
            kind = "shutting_down"
            raise ShuttingDown(session_id=facts.session) from None
        except ClaudeMCPError as exc:
            outcome, kind = "error", error_kind(exc)
            raise
        except Exception:
            outcome, kind = "error", "internal"
            raise
        finally:
            metrics.RUNS_IN_FLIGHT.labels(tenant).dec()
            watcher.close()
            if parent is not None and facts.session:
                parent.session = facts.session  # the call's log line (and its error, if stopped) name it
            _finished(facts, span, outcome, kind, time.monotonic() - started)


def _finished(facts: context.Facts, span: Span, outcome: str, kind: str | None, duration_s: float) -> None:
    tool, tenant = facts.tool or "none", facts.tenant or "none"
    metrics.RUNS.labels(tool, tenant, outcome).inc()
    metrics.RUN_SECONDS.labels(tool).observe(duration_s)
    if outcome == "error" and kind is not None:
        metrics.RUN_ERRORS.labels(tenant, kind).inc()
    span.set_attribute("claude_mcp.outcome", outcome)
    if facts.session:
        span.set_attribute("gen_ai.conversation.id", facts.session)
    if kind is not None:
        span.set_attribute("error.type", kind)
        span.set_status(StatusCode.ERROR, kind)
    extra = {"outcome": outcome, "duration_s": round(duration_s, 3), **({"error_kind": kind} if kind else {})}
    logger.info("run %s: %s in %.2f s", facts.run_id, kind or outcome, duration_s, extra=extra)


class RunWatch:
    """The observer a run is given: measures what it sees, then passes it on to the real one."""

    def __init__(self, inner: RunObserver | None, facts: context.Facts, span: Span, tool: str, started: float) -> None:
        self._inner = inner
        self._facts = facts
        self._span = span
        self._tool = tool
        self._started = started
        self._context = otel_context.get_current()
        self._first_text = False
        self._tools: dict[str, tuple[str, Span]] = {}

    @property
    def observed(self) -> RunObserver | None:
        """The run's own observer (a job's, or a call's progress reporter), if any."""
        return self._inner

    async def queued(self, position: int) -> None:
        self._span.add_event("queued", {"position": position})
        if self._inner is not None:
            await self._inner.queued(position)

    async def waiting_for_session(self) -> None:
        self._span.add_event("waiting for the previous call on this conversation")
        if self._inner is not None:
            await self._inner.waiting_for_session()

    async def ask_permission(self, request: PermissionRequest) -> PermissionAnswer | None:
        # Asked from the SDK's own task: parent the span explicitly, under the tool use it is about.
        using = [span for name, span in self._tools.values() if name == request.tool]
        parent = trace.set_span_in_context(using[-1]) if using else self._context
        attributes = {"gen_ai.tool.name": request.tool}
        with TRACER.start_as_current_span(tracing.PERMISSION_WAIT, context=parent, attributes=attributes) as span:
            answer = await self._inner.ask_permission(request) if self._inner is not None else None
            span.set_attribute("claude_mcp.decision", answer.decision if answer is not None else "none")
            return answer

    async def message(self, message: Message) -> None:
        self._observe(message)
        if self._inner is not None:
            await self._inner.message(message)

    def _observe(self, message: Message) -> None:
        if isinstance(message, SystemMessage) and message.subtype == "init":
            if session := message.data.get("session_id"):
                self._facts.session = session
        elif not self._first_text and text_delta(message):
            self._first_text = True
            metrics.FIRST_TEXT_SECONDS.labels(self._tool).observe(time.monotonic() - self._started)
        elif isinstance(message, AssistantMessage):
            self._session(message.session_id)
            for block in message.content:
                if isinstance(block, ToolUseBlock):
                    self._tool_started(block, message.parent_tool_use_id)
        elif isinstance(message, UserMessage) and isinstance(message.content, list):
            for block in message.content:
                if (tool_use_id := getattr(block, "tool_use_id", None)) in self._tools:
                    _, span = self._tools.pop(tool_use_id)
                    if getattr(block, "is_error", False):
                        span.set_status(StatusCode.ERROR)
                    span.end()
        elif isinstance(message, ResultMessage):
            self._session(message.session_id)

    def _session(self, session_id: str | None) -> None:
        if session_id and session_id != "default":
            self._facts.session = session_id

    def _tool_started(self, block: ToolUseBlock, parent_tool_use_id: str | None) -> None:
        parent = self._tools.get(parent_tool_use_id or "")
        where = trace.set_span_in_context(parent[1]) if parent is not None else None  # else: the current turn
        attributes = {"gen_ai.tool.name": block.name, "gen_ai.tool.call.id": block.id}
        self._tools[block.id] = (block.name, TRACER.start_span(tracing.TOOL_USE, context=where, attributes=attributes))

    def close(self) -> None:
        """End the spans of tool uses the run never saw finish."""
        for _, span in self._tools.values():
            span.end()
        self._tools.clear()


@contextmanager
def queue_wait() -> Iterator[Callable[[], None]]:
    """Measure the wait for a run slot; call the function it yields once the slot is held."""
    started = time.monotonic()
    span = TRACER.start_span(tracing.QUEUE_WAIT)
    held = False

    def granted() -> None:
        nonlocal held
        if not held:
            held = True
            metrics.QUEUE_WAIT_SECONDS.observe(time.monotonic() - started)
            span.end()

    try:
        yield granted
    except BaseException as exc:
        if not held:
            span.set_status(StatusCode.ERROR, type(exc).__name__)
        raise
    finally:
        if not held:
            held = True
            span.end()


@contextmanager
def cli_start() -> Iterator[None]:
    """Measure a CLI process's start."""
    started = time.monotonic()
    metrics.CLI_STARTS.inc()
    if trace.get_current_span().get_span_context().is_valid:
        with TRACER.start_as_current_span(tracing.CLI_START):
            yield
    else:  # a spare process, started for no call in particular: no trace of its own
        yield
    metrics.CLI_START_SECONDS.observe(time.monotonic() - started)


class TurnMeter:
    """One turn on a CLI process: its span, and what it used added to the cost and token metrics."""

    def __init__(self, span: Span) -> None:
        self.span = span

    def finished(self, usage: TurnUsage, num_turns: int) -> None:
        """`usage`: what the turn used (computed once, by the process: `turn_usage`)."""
        tenant = facts.tenant if (facts := context.current()) is not None and facts.tenant else "none"
        if usage.cost_usd is not None:
            metrics.COST_USD.labels(tenant).inc(usage.cost_usd)
            self.span.set_attribute("claude_mcp.cost_usd", usage.cost_usd)
        tokens = usage.tokens
        for kind, count in (
            ("input", tokens.input_tokens),
            ("output", tokens.output_tokens),
            ("cache_read", tokens.cache_read_tokens),
            ("cache_creation", tokens.cache_write_tokens),
        ):
            if count > 0:
                metrics.TOKENS.labels(tenant, kind).inc(count)
                if kind in ("input", "output"):
                    self.span.set_attribute(f"gen_ai.usage.{kind}_tokens", count)
        self.span.set_attribute("claude_mcp.num_turns", num_turns)


@contextmanager
def turn(source: str, model: str | None) -> Iterator[TurnMeter]:
    """Measure one turn: which kind of process it ran on (`cold`, `spare`, `warm`), its span, its cost."""
    metrics.RUN_PROCESSES.labels(source).inc()
    attributes = {"claude_mcp.process": source, "gen_ai.request.model": model or "default"}
    with TRACER.start_as_current_span(tracing.TURN, attributes=attributes) as span:
        yield TurnMeter(span)
