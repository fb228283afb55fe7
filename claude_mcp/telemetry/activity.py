"""The calls and runs in flight in this process, so that a drain can wait for them to finish
and then stop the rest.

Each MCP tool call, each Claude run and each HTTP request that may carry a call is tracked while
it lasts, in a cancel scope of its own.
`stop("run")` cancels the runs (each then ends with `ShuttingDown`, carrying its session_id, so
its caller gets a clear error instead of a dropped connection); `stop("call")` then ends what is
left. One instance per process (`ACTIVITY`): the server drains as a whole.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import anyio

Kind = Literal["call", "run", "request"]
"""A tool call; a Claude run (jobs' too); an HTTP request that may be a call (an MCP POST, an API request)."""


class Activity:
    """What is in flight, by kind, and the means to wait for it or stop it."""

    def __init__(self) -> None:
        self._scopes: dict[anyio.CancelScope, Kind] = {}
        self._changed: anyio.Event | None = None
        self._stopped: set[Kind] = set()
        self.draining = False
        """Set when the drain begins: this process takes no new work (queued jobs stay for other replicas)."""

    @contextmanager
    def tracking(self, kind: Kind) -> Iterator[anyio.CancelScope]:
        """Track the body as a call or a run. Its scope's `cancelled_caught` tells, afterwards,
        whether `stop` ended it (the body then ends early, without an exception)."""
        scope = anyio.CancelScope()
        if kind in self._stopped:
            scope.cancel()  # it began after the stop: it ends at once
        self._scopes[scope] = kind
        try:
            with scope:
                yield scope
        finally:
            del self._scopes[scope]
            if self._changed is not None:
                self._changed.set()

    def count(self, kind: Kind | None = None) -> int:
        return sum(1 for k in self._scopes.values() if kind is None or k == kind)

    async def wait_idle(self, kind: Kind | None = None) -> None:
        """Return once nothing of `kind` (default: anything) is in flight."""
        while self.count(kind):
            if self._changed is None or self._changed.is_set():
                self._changed = anyio.Event()
            await self._changed.wait()

    def stopped(self, kind: Kind) -> bool:
        """Whether `stop(kind)` was called: what of `kind` ends now ends because of it."""
        return kind in self._stopped

    def stop(self, kind: Kind) -> int:
        """Cancel everything of `kind` in flight, and whatever of it starts later; how many."""
        self._stopped.add(kind)
        stopping = [scope for scope, k in self._scopes.items() if k == kind]
        for scope in stopping:
            scope.cancel()
        return len(stopping)


ACTIVITY = Activity()
