"""What is known about the call or run in progress: the tool, who calls, the conversation, the
run. Log lines, spans and metric labels read it from here, so no layer has to pass it down."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, replace
from typing import Any


@dataclass
class Facts:
    """The current call's or run's facts. Never a credential or a prompt.

    `tenant` is bounded (a configured tenant's name, `local`, or `caller` for everyone who pays
    with their own credential), so it may be a metric label; `namespace` is where the state is
    kept (for a caller, a keyed hash of its credential), for logs only."""

    tool: str | None = None
    tenant: str | None = None
    namespace: str | None = None
    session: str | None = None
    run_id: str | None = None
    error: str | None = None
    """The kind of error the call ended with, noted where it was turned into a result."""


_current: ContextVar[Facts | None] = ContextVar("claude_mcp_facts", default=None)


def current() -> Facts | None:
    return _current.get()


@contextmanager
def facts(**values: Any) -> Iterator[Facts]:
    """New facts for the body: the current ones with `values` over them."""
    parent = _current.get()
    new = replace(parent, **values) if parent is not None else Facts(**values)
    token = _current.set(new)
    try:
        yield new
    finally:
        _current.reset(token)


def note(**values: Any) -> None:
    """Add to the current facts (nothing happens outside a call or run)."""
    if (known := _current.get()) is not None:
        for name, value in values.items():
            setattr(known, name, value)
