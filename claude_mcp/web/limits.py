"""What one connection may hold: a deadline for a request's headers, and a cap on connections.

uvicorn holds a connection for as long as its client trickles the headers of a request (its
keep-alive timer restarts on every byte), so a few thousand slow clients would hold as many
file descriptors without ever making a request. `BoundedH11` (uvicorn's h11 protocol) closes a
connection whose request headers are not all there `HEADER_TIMEOUT_S` after it opened (or after
its previous response); `limit_concurrency` answers requests past the cap with 503. Slow bodies
are bounded by each reader (the HTTP APIs' body reader, the MCP transports' own limits); a front
proxy's timeouts (README) bound them as well.
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.h11_impl import H11Protocol

HEADER_TIMEOUT_S = 10.0
"""How long a connection may take to send the headers of its next request."""


class BoundedH11(H11Protocol):
    """uvicorn's h11 protocol with a deadline for each request's headers."""

    header_timeout_s = HEADER_TIMEOUT_S
    _deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def handle_events(self) -> None:
        super().handle_events()
        if self.cycle is not None and not self.cycle.response_complete:
            self._disarm()  # a request's headers arrived: its body and response are the app's to bound

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm()  # the next request on this connection gets a deadline of its own

    def _arm(self) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(self.header_timeout_s, self._too_slow)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        if self.cycle is None or self.cycle.response_complete:
            self.transport.close()
