"""OpenTelemetry spans, captured in memory with the SDK's exporter: our spans of a call nest under
the `mcp` SDK's own span of the request, in one trace."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from mcp import Client
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from claude_mcp import ClaudeBridge, Policy
from claude_mcp.mcp_surface.server import build_server
from claude_mcp.telemetry import tracing
from tests.conftest import call, tool_prompt
from tests.test_permissions import Person, write

pytestmark = pytest.mark.anyio

_EXPORTER = InMemorySpanExporter()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Every finished span, in memory (the SDK is installed once per test process)."""
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))
        trace.set_tracer_provider(provider)
    _EXPORTER.clear()
    yield _EXPORTER
    _EXPORTER.clear()


def tree(exporter: InMemorySpanExporter, root: str) -> dict[str, list[ReadableSpan]]:
    """The spans of the trace whose span is named `root` (the last one), by name."""
    finished = exporter.get_finished_spans()
    top = [s for s in finished if s.name == root][-1]
    assert top.context is not None
    named: dict[str, list[ReadableSpan]] = {}
    for span in finished:
        if span.context is not None and span.context.trace_id == top.context.trace_id:
            named.setdefault(span.name, []).append(span)
    return named


def parent_of(span: ReadableSpan, candidates: list[ReadableSpan]) -> ReadableSpan:
    assert span.parent is not None, span.name
    found = [c for c in candidates if c.context is not None and c.context.span_id == span.parent.span_id]
    assert len(found) == 1, (span.name, [c.name for c in candidates])
    return found[0]


async def test_one_ask_is_a_tree_of_spans_under_the_mcp_request(spans: InMemorySpanExporter, client: Client) -> None:
    result = await call(client, "ask", prompt=tool_prompt("Bash", command="echo traced"))
    named = tree(spans, "tools/call ask")
    everything = [span for group in named.values() for span in group]
    request = named["tools/call ask"][0]
    (run,) = named[tracing.RUN]
    (queue,) = named[tracing.QUEUE_WAIT]
    (turn,) = named[tracing.TURN]
    (start,) = named[tracing.CLI_START]
    (tool,) = named[tracing.TOOL_USE]
    assert parent_of(run, everything) is request
    assert parent_of(queue, everything) is run
    assert parent_of(turn, everything) is run
    assert parent_of(start, everything) is turn
    assert parent_of(tool, everything) is turn
    assert run.attributes is not None and turn.attributes is not None and tool.attributes is not None
    assert run.attributes["claude_mcp.tool"] == "ask"
    assert run.attributes["claude_mcp.outcome"] == "ok"
    assert run.attributes["gen_ai.conversation.id"] == result["session_id"]
    assert turn.attributes["claude_mcp.process"] == "cold"
    assert tool.attributes["gen_ai.tool.name"] == "Bash"
    assert queue.end_time is not None and turn.start_time is not None and queue.end_time <= turn.start_time
    assert start.end_time is not None and tool.start_time is not None and start.end_time <= tool.start_time

    spans.clear()
    await call(client, "ask", prompt="and again", session_id=result["session_id"])
    named = tree(spans, "tools/call ask")
    (turn,) = named[tracing.TURN]
    assert turn.attributes is not None and turn.attributes["claude_mcp.process"] == "warm"
    assert tracing.CLI_START not in named


async def test_a_permission_wait_is_a_span_under_its_tool_use(
    spans: InMemorySpanExporter, policy: Policy, workdir: Path
) -> None:
    person = Person("allow_once")
    server = build_server(ClaudeBridge(policy, depth=0))
    async with Client(server, mode="legacy", elicitation_callback=person) as client:
        await call(client, "ask", prompt=write(workdir / "traced.txt"))
    named = tree(spans, "tools/call ask")
    everything = [span for group in named.values() for span in group]
    (wait,) = named[tracing.PERMISSION_WAIT]
    tool = parent_of(wait, everything)
    assert tool.name == tracing.TOOL_USE
    assert tool.attributes is not None and tool.attributes["gen_ai.tool.name"] == "Write"
    assert wait.attributes is not None and wait.attributes["claude_mcp.decision"] == "allow_once"


def test_without_an_endpoint_nothing_is_exported() -> None:
    assert tracing.configure({}) is None
    assert (
        tracing.configure({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_SDK_DISABLED": "true"}) is None
    )
