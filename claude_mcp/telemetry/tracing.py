"""OpenTelemetry spans, through `opentelemetry-api` (a dependency of `mcp`, whose own spans ours join).

Without a configured SDK every span is a no-op. `configure` installs the SDK with an OTLP/HTTP
exporter when the standard `OTEL_EXPORTER_OTLP_ENDPOINT` (or `…_TRACES_ENDPOINT`) is set and the
`otel` extra is installed. The spans of one call:

    tools/call ask                    the mcp SDK's SERVER span
    └─ claude_mcp.run                 the run: tool, tenant, session, outcome, cost, tokens
       ├─ claude_mcp.queue_wait       waiting for a run slot
       └─ claude_mcp.turn             one prompt to a CLI process, until its result
          ├─ claude_mcp.cli_start     on a cold start only
          └─ claude_mcp.tool_use      each tool Claude uses (sub-agents' tools nest under theirs)
             └─ claude_mcp.permission_wait   when a person is asked to approve it

Attributes never carry a prompt, a tool's input or a credential.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping

from opentelemetry import trace

from .._version import __version__

logger = logging.getLogger(__name__)

TRACER = trace.get_tracer("claude_mcp", __version__)

RUN = "claude_mcp.run"
QUEUE_WAIT = "claude_mcp.queue_wait"
TURN = "claude_mcp.turn"
CLI_START = "claude_mcp.cli_start"
TOOL_USE = "claude_mcp.tool_use"
PERMISSION_WAIT = "claude_mcp.permission_wait"

_ENDPOINTS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


def configure(environ: Mapping[str, str] | None = None) -> Callable[[], None] | None:
    """Export spans over OTLP/HTTP if an endpoint is configured; returns the function that flushes
    and stops the export at exit (None when nothing was configured)."""
    environ = os.environ if environ is None else environ
    if not any(environ.get(name) for name in _ENDPOINTS):
        return None
    if environ.get("OTEL_SDK_DISABLED", "").lower() == "true" or environ.get("OTEL_TRACES_EXPORTER") == "none":
        return None
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        logger.warning(
            "OTEL_EXPORTER_OTLP_ENDPOINT is set but the OpenTelemetry SDK is not installed, so no traces are "
            "exported: pip install 'claude-mcp[otel]'"
        )
        return None
    resource = Resource.create({} if environ.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: "claude-mcp"})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    logger.info("exporting traces over OTLP/HTTP")
    return provider.shutdown
