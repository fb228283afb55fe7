"""How many times each client address did something costly within a window (the keys it had checked
at sign-in): counted in this replica's memory, so each replica counts on its own and a restart
forgets. IPv6 addresses count by their /64 (what one subscriber is usually given)."""

from __future__ import annotations

import ipaddress
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from contextvars import ContextVar

CLIENT_ADDRESS: ContextVar[str] = ContextVar("client_address", default="")
"""The client address of the request being answered (set by the server's routes, read where the
`mcp` SDK's handlers stand between a route and what it calls: a metadata document's fetch)."""


def address_key(address: str) -> str:
    """What an address counts as: itself, or its /64 for IPv6 (an IPv4-mapped one as the IPv4 address)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address[:64]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class AddressWindow:
    """At most `most` takes per address in any `window_s`; at most `most_addresses` addresses are
    remembered (the one seen least recently is forgotten first)."""

    def __init__(
        self,
        most: int,
        window_s: float,
        *,
        most_addresses: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.most = most
        self.window_s = window_s
        self._most_addresses = most_addresses
        self._clock = clock
        self._seen: OrderedDict[str, deque[float]] = OrderedDict()

    def take(self, address: str) -> bool:
        """Count one for `address`; False (nothing counted) if it has had `most` within the window."""
        key = address_key(address)
        now = self._clock()
        times = self._seen.pop(key, None) or deque()
        while times and times[0] <= now - self.window_s:
            times.popleft()
        self._seen[key] = times
        while len(self._seen) > self._most_addresses:
            self._seen.popitem(last=False)
        if len(times) >= self.most:
            return False
        times.append(now)
        return True
