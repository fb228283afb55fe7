"""Tenants: who is calling over HTTP, and the separate Claude world each of them gets.

Each bearer token maps to one tenant. A tenant has its own Claude credential (from an
environment variable named in the config), its own Claude config directory (so transcripts
are physically apart), its own policy overrides (roots, limits, its share of the concurrency
cap) and therefore its own `ClaudeBridge`: its own warm processes, and its own namespace in the
store that all tenants' bridges share (sessions, settings, jobs). Nothing one tenant can name
reaches another's bridge or namespace. stdio serves one local tenant with the user's own login.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Mapping
from contextlib import AsyncExitStack
from pathlib import Path
from types import TracebackType
from typing import Self

from mcp.server.auth.provider import AccessToken

from ..config.policy import Policy
from ..config.tenants import TenantSpec, token_hash
from ..errors import ConfigError
from ..state.open import store_for
from ..state.store import Store
from .claude import ClaudeBridge
from .identity import replica_id
from .slots import RunSlots

LOCAL = "local"


class Tenancy:
    """Maps requests to tenants, and tenants to their bridges. Also the SDK's `TokenVerifier`."""

    def __init__(
        self, bridges: dict[str, ClaudeBridge], digests: dict[str, str] | None = None, store: Store | None = None
    ) -> None:
        """`store`: the store the bridges share, opened while the tenancy is entered."""
        self.bridges = bridges
        self._digests = digests or {}
        self._store = store
        self._users = 0
        self._stack: AsyncExitStack | None = None

    async def __aenter__(self) -> Self:
        """Open the shared store and enter every bridge. Re-entrant (each connection enters it)."""
        self._users += 1
        if self._stack is None:
            stack = AsyncExitStack()
            try:
                if self._store is not None:
                    await self._store.open()
                    stack.push_async_callback(self._store.close)
                for bridge in self.bridges.values():
                    await stack.enter_async_context(bridge)
            except BaseException:
                self._users -= 1
                await stack.aclose()
                raise
            self._stack = stack
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._users -= 1
        if self._users == 0 and self._stack is not None:
            stack, self._stack = self._stack, None
            await stack.aclose()

    @property
    def requires_auth(self) -> bool:
        return bool(self._digests)

    @classmethod
    def single(cls, bridge: ClaudeBridge) -> Tenancy:
        """One local tenant (stdio, or HTTP on loopback without tokens)."""
        return cls({LOCAL: bridge})

    @classmethod
    def from_policy(
        cls, base: Policy, specs: Mapping[str, TenantSpec], environ: Mapping[str, str] | None = None
    ) -> Tenancy:
        environ = os.environ if environ is None else environ
        state = Path(environ.get("CLAUDE_MCP_STATE", Path.home() / ".claude-mcp"))
        bridges, digests = {}, {}
        shared = RunSlots(base.max_concurrent, base.max_queued)  # the whole server's cap
        store = store_for(base.state_url, base.state_dir or state)
        replica = replica_id()
        for name, spec in specs.items():
            config_dir = spec.config_dir or state / "tenants" / name
            fields = {k: v for k, v in base.model_dump().items() if k != "tenants"}
            fields.update(spec.policy)
            fields["cli_env"] = {
                **base.cli_env,
                **spec.policy.get("cli_env", {}),
                **spec.credentials(name, environ),
                "CLAUDE_CONFIG_DIR": str(config_dir),
            }
            try:
                policy = Policy.model_validate(fields)
            except ValueError as exc:
                raise ConfigError(f"tenant {name!r}: invalid policy: {exc}") from None
            bridges[name] = ClaudeBridge(policy, shared_slots=shared, store=store, namespace=name, replica=replica)
            digests[spec.digest(name, environ)] = name
        if len(digests) != len(specs):
            raise ConfigError("two tenants share a token; give each its own")
        return cls(bridges, digests, store)

    def tenant_of_token(self, token: str) -> str | None:
        presented = token_hash(token)
        found = None
        for digest, name in self._digests.items():
            if hmac.compare_digest(digest, presented):  # constant time, whichever matches
                found = name
        return found

    async def verify_token(self, token: str) -> AccessToken | None:
        tenant = self.tenant_of_token(token)
        return AccessToken(token=token, client_id=tenant, scopes=[]) if tenant is not None else None
