"""Logging set-up: the plain text format (the default), or one JSON object per line on stderr.

A JSON line holds `time`, `level`, `logger`, `message`; the facts of the call or run it was
logged in (`tool`, `tenant`, `namespace`, `session`, `run_id`); what the line adds (`duration_s`,
`outcome`, …); the trace it belongs to (`trace_id`, `span_id`); and `exception`, if any.

Either way no secret is written: the server never logs one, the transports' payload dumps
(which would show per-call MCP servers' headers and env) are held back even at DEBUG, and
anything shaped like an Anthropic key or a bearer token is masked as a last resort.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any, Literal

from opentelemetry import trace

from . import context

LogFormat = Literal["text", "json"]
LOG_FORMATS: tuple[LogFormat, ...] = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# Loggers that dump whole request and response bodies at DEBUG.
_PAYLOAD_LOGGERS = (
    "mcp.server.sse",
    "mcp.server.streamable_http",
    "sse_starlette",  # its DEBUG "chunk:" lines are the answers streamed
    "claude_agent_sdk",
    "httpx",
    "httpcore",
    "httpx2",
    "httpcore2",
)
_SECRETS = [
    (re.compile(r"sk-ant-[A-Za-z0-9_\-]+"), "sk-ant-…[redacted]"),
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=\-]{8,}"), r"\1 [redacted]"),
    (
        re.compile(
            r"""(?i)(["']?(?:authorization|x-api-key|x-claude-credential|api[_-]?key|auth[_-]?token|oauth[_-]?token"""
            r"""|password|secret)["']?\s*[:=]\s*["']?)[^"'\s,}]+"""
        ),
        r"\1[redacted]",
    ),
]
# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}

_format: LogFormat = "text"

SDK_READER = "claude_agent_sdk._internal.query"
SDK_READER_END = "Fatal error in message reader"
_EXPECTED_ENDS_LOGGERS = (SDK_READER, "mcp.server.streamable_http")


def redact(text: str) -> str:
    """`text` with anything shaped like a credential masked."""
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


class JSONFormatter(logging.Formatter):
    """One JSON object per record."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        if (facts := context.current()) is not None:
            line.update((name, value) for name, value in asdict(facts).items() if value is not None)
        for name, value in vars(record).items():
            if name not in _STANDARD and not name.startswith("_"):
                line[name] = value
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            line["trace_id"] = format(span.trace_id, "032x")
            line["span_id"] = format(span.span_id, "016x")
        if record.exc_info:
            line["exception"] = redact(self.formatException(record.exc_info))
        elif record.exc_text:
            line["exception"] = redact(record.exc_text)
        return json.dumps(line, default=str, ensure_ascii=False)


class _ExpectedEnds(logging.Filter):
    """What the SDKs log at ERROR that is an expected end, said once elsewhere, kept at DEBUG (shown only when
    the server logs at DEBUG):

    - claude-agent-sdk logs every end of a CLI's output it did not ask for, the CLI this server stopped
      included (a cancelled call: "Fatal error in message reader: Command failed with exit code 143"). The
      run's end is `claude_mcp.runs`'s line; a CLI that stops during a run, the process's warning; a warm one
      found stopped, the pool's line when it is next used.
    - the MCP SDK's Streamable HTTP transport logs a client that went away before its request's body ended
      as an error with its traceback ("Error handling POST request": `ClientDisconnect`); nobody is left
      to answer."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR and self.expected(record):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger().isEnabledFor(logging.DEBUG)
        return True

    @staticmethod
    def expected(record: logging.LogRecord) -> bool:
        if record.name == SDK_READER:
            return record.getMessage().startswith(SDK_READER_END)
        from starlette.requests import ClientDisconnect  # loaded by then: only HTTP transports log it

        return record.exc_info is not None and isinstance(record.exc_info[1], ClientDisconnect)


class _Redacting(logging.Filter):
    """Masks credential-shaped text in a text-format record (JSON records mask their own)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = redact(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


def configure(level: str, log_format: LogFormat = "text") -> None:
    """Log to stderr at `level`, as text or as JSON lines."""
    global _format
    _format = log_format
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JSONFormatter())
        logging.captureWarnings(True)
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
        handler.addFilter(_Redacting())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    floor = max(logging.getLevelName(level), logging.INFO)
    for name in _PAYLOAD_LOGGERS:
        logging.getLogger(name).setLevel(floor)
    for name in _EXPECTED_ENDS_LOGGERS:
        sdk = logging.getLogger(name)
        for old_filter in [f for f in sdk.filters if isinstance(f, _ExpectedEnds)]:
            sdk.removeFilter(old_filter)
        sdk.addFilter(_ExpectedEnds())


def announce(text: str, level: int = logging.INFO) -> None:
    """A line for whoever started the server (where it listens, why it refuses to start), whatever
    the log level: plain on stderr, or a JSON log line in the JSON format."""
    if _format == "json":
        record = logging.LogRecord("claude_mcp", level, __file__, 0, text, None, None)
        print(JSONFormatter().format(record), file=sys.stderr, flush=True)
    else:
        print(text, file=sys.stderr, flush=True)
