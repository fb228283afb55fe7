"""Tenants: who is calling over HTTP, and the separate Claude world each of them gets.

Each bearer token maps to one tenant. A tenant has its own Claude credential (from an
environment variable named in the config), its own Claude config directory (so transcripts
are physically apart), its own policy overrides (roots, limits, its share of the concurrency
cap) and therefore its own `ClaudeBridge`: its own warm processes, and its own namespace in the
store that all tenants' bridges share (sessions, settings, jobs). Nothing one tenant can name
reaches another's bridge or namespace. stdio serves one local tenant with the user's own login.

With `credentials = "caller"`, every HTTP request brings its own Claude credential, and its
bridge comes from the `CallerPool` (one per caller, or per tenant and caller when tenant tokens
are configured).
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from mcp.server.auth.provider import AccessToken

from ..config.credentials import MISSING, CallerCredential, CredentialRefused
from ..config.policy import Policy
from ..config.tenants import TenantSpec
from ..errors import ConfigError
from ..oauth.identity import Identities, StaticTokens
from ..oauth.verifiers import accepted
from ..state.open import store_for
from ..state.store import Store
from ..telemetry import metrics
from .callers import CallerPool
from .claude import ClaudeBridge
from .identity import replica_id
from .slots import RunSlots
from .walls import Walls, choose_isolation, namespace_dirs, walls_for

logger = logging.getLogger(__name__)

LOCAL = "local"
DEFAULT_NAMESPACE_KEY = b"claude-mcp caller namespaces v1"


class Tenancy:
    """Maps requests to tenants, and tenants to their bridges. Also the SDK's `TokenVerifier`."""

    def __init__(
        self,
        bridges: dict[str, ClaudeBridge],
        digests: dict[str, str] | None = None,
        store: Store | None = None,
        callers: CallerPool | None = None,
        *,
        accepts_oauth: bool = False,
        shared_slots: RunSlots | None = None,
        identities: Identities | None = None,
        tenants: frozenset[str] | None = None,
    ) -> None:
        """`store`: the store the bridges share, opened while the tenancy is entered. `callers`:
        in caller-credential mode, where each request's bridge comes from (`bridges` is then empty).
        `identities`: the bearer tokens accepted (default: the tenants' static tokens, if any);
        `tenants`: every tenant's name (default: those of `bridges` and `digests`)."""
        self.bridges = bridges
        self._digests = digests or {}
        if identities is None and self._digests:
            identities = Identities([StaticTokens(self._digests)])
        self.identities = identities
        kinds = identities.kinds if identities is not None else ()
        self._static = next((kind for kind in kinds if isinstance(kind, StaticTokens)), None)
        self.tenants = tenants if tenants is not None else frozenset(bridges) | frozenset(self._digests.values())
        self._store = store
        self.callers = callers
        self._accepts_oauth = accepts_oauth
        self._shared_slots = shared_slots
        self._users = 0
        self._stack: AsyncExitStack | None = None
        self.policy: Policy | None = next(iter(bridges.values())).policy if bridges else None
        """The server's policy (before tenants' overrides), where it is known."""

    @property
    def store(self) -> Store:
        """The store every bridge of this tenancy keeps its state in."""
        return self._store if self._store is not None else next(iter(self.bridges.values())).store

    @property
    def takes_caller_credentials(self) -> bool:
        return self.callers is not None

    @property
    def accepts_oauth_tokens(self) -> bool:
        return self._accepts_oauth

    def knows(self, tenant: str) -> bool:
        return tenant in self.tenants or (tenant == "" and self.callers is not None and not self.tenants)

    @asynccontextmanager
    async def bridge_for(self, tenant: str, credential: CallerCredential | None) -> AsyncIterator[ClaudeBridge]:
        """The bridge that serves one request of this tenant (with this caller's credential)."""
        if self.callers is None:
            yield self.bridges[tenant]
            return
        if credential is None:
            raise CredentialRefused(MISSING)
        async with self.callers.serving(tenant if self.tenants else "", credential) as bridge:
            yield bridge

    async def __aenter__(self) -> Self:
        """Open the shared store and enter every bridge. Re-entrant (each connection enters it)."""
        self._users += 1
        if self._stack is None:
            stack = AsyncExitStack()
            try:
                if self._store is not None:
                    await self._store.open()
                    stack.push_async_callback(self._store.close)
                if self.identities is not None:  # the built-in authorization server's HTTP client, say
                    stack.push_async_callback(self.identities.aclose)
                metrics.add_live_source(self._live)
                stack.callback(metrics.remove_live_source, self._live)
                for bridge in self.bridges.values():
                    await stack.enter_async_context(bridge)
                if self.callers is not None:
                    await stack.enter_async_context(self.callers)
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

    def _live(self) -> metrics.Live:
        """The server-wide cap's waiters, for the live gauges (each bridge counts its own cap's)."""
        return metrics.Live(queued=self._shared_slots.queued if self._shared_slots is not None else 0)

    @property
    def requires_auth(self) -> bool:
        """Whether every HTTP request must carry an accepted bearer token."""
        return self.identities is not None

    @classmethod
    def single(cls, bridge: ClaudeBridge) -> Tenancy:
        """One local tenant (stdio, or HTTP on loopback without tokens)."""
        return cls({LOCAL: bridge})

    @classmethod
    def from_policy(
        cls,
        base: Policy,
        specs: Mapping[str, TenantSpec],
        environ: Mapping[str, str] | None = None,
        *,
        hidden: tuple[Path, ...] = (),
    ) -> Tenancy:
        """The tenants of the config, each with its bridge; or, in caller-credential mode, the pool
        that makes a bridge for each caller (per tenant, if tenants are configured). Each namespace
        runs behind its own wall (`walls`), in a workspace of its own unless its policy names roots;
        `hidden`: more private paths no sandbox may see (the server's config file)."""
        environ = os.environ if environ is None else environ
        state = Path(environ.get("CLAUDE_MCP_STATE", Path.home() / ".claude-mcp"))
        workspaces = base.workspace_root or state / "workspaces"
        base = _walled(base)
        _check_auth(base, specs)
        walls = walls_for(
            base, state, isolation=base.isolation or "sandbox", person=False, hidden=(workspaces, *hidden)
        )
        callers_pay = base.credentials == "caller"
        shared = RunSlots(base.max_concurrent, base.max_queued)  # the whole server's cap
        store = store_for(base.state_url, base.state_dir or state)
        replica = replica_id()
        policies = {name: _tenant_policy(base, name, spec, environ) for name, spec in specs.items()}
        digests = _digests(specs, environ)
        names = frozenset(specs)
        namespace_key = _namespace_key(base, environ) if callers_pay else b""
        identities = accepted(
            base.oauth,
            digests,
            tenants=names,
            store=store,
            namespace_key=namespace_key,
            allow_oauth_tokens=base.caller_oauth_tokens,
            cli_env=base.cli_env,
            environ=environ,
        )
        common = _Common(state, workspaces, walls, shared, store, replica)
        if not callers_pay:
            bridges = {name: common.bridge(name, spec, policies[name]) for name, spec in specs.items()}
            tenancy = cls(bridges, digests, store, shared_slots=shared, identities=identities, tenants=names)
        else:
            pool = common.callers(base, policies, namespace_key)
            tenancy = cls(
                {},
                digests,
                store,
                pool,
                accepts_oauth=base.caller_oauth_tokens,
                shared_slots=shared,
                identities=identities,
                tenants=names,
            )
        tenancy.policy = base
        return tenancy

    def tenant_of_token(self, token: str) -> str | None:
        """The tenant whose static token this is (constant time); None if static tokens are not accepted."""
        return self._static.tenant_of(token) if self._static is not None else None

    async def verify_token(self, token: str) -> AccessToken | None:
        """The SDK's `TokenVerifier`: the token as the accepted kinds identify it (see `oauth.identity`)."""
        return await self.identities.verify_token(token) if self.identities is not None else None


def _walled(base: Policy) -> Policy:
    """The policy with the isolation a server for several users runs with (see `choose_isolation`);
    without walls, a caller's stdio MCP server would be any command run as this server's user."""
    isolation = choose_isolation(base, several_users=True)
    base = base.model_copy(update={"isolation": isolation})
    if isolation == "none" and "mcp_server_types" not in base.model_fields_set:
        base = base.model_copy(update={"mcp_server_types": tuple(t for t in base.mcp_server_types if t != "stdio")})
    return base


def _tenant_policy(base: Policy, name: str, spec: TenantSpec, environ: Mapping[str, str]) -> Policy:
    """A tenant's policy: the server's, with the tenant's own settings and credential over it."""
    fields: dict[str, Any] = {k: v for k, v in base.model_dump().items() if k != "tenants"}
    fields.update(spec.policy)
    credential = spec.credentials(name, environ, required=base.credentials != "caller")
    fields["cli_env"] = {**base.cli_env, **spec.policy.get("cli_env", {}), **credential}
    try:
        return Policy.model_validate(fields)
    except ValueError as exc:
        raise ConfigError(f"tenant {name!r}: invalid policy: {exc}") from None


def _namespace_key(base: Policy, environ: Mapping[str, str]) -> bytes:
    """The secret that keys callers' namespaces (a built-in one, with a warning, if it is not set)."""
    key = environ.get(base.namespace_key_env, "").encode()
    if not key:
        logger.warning(
            "%s is not set: callers' namespaces are keyed with a built-in key. Set it to a long random secret, "
            "the same on every replica.",
            base.namespace_key_env,
        )
    return key or DEFAULT_NAMESPACE_KEY


def _check_auth(base: Policy, specs: Mapping[str, TenantSpec]) -> None:
    """Refuse a config whose tenants cannot be told apart or whose sign-in cannot serve them."""
    if base.oauth is None and (untokened := [name for name, spec in specs.items() if not spec.has_token]):
        raise ConfigError(
            f"tenant {untokened[0]!r} has no token: give it token_sha256 or token_env (or configure [oauth])"
        )
    if (
        base.oauth is not None
        and base.oauth.authorization_server == "builtin"
        and (base.credentials != "caller" or specs)
    ):
        raise ConfigError(
            'authorization_server = "builtin" signs people in with their own Anthropic key: it needs '
            'credentials = "caller", and serves callers, not [tenants]'
        )


def _digests(specs: Mapping[str, TenantSpec], environ: Mapping[str, str]) -> dict[str, str]:
    """The tenants by the digests of their static tokens; no two may share one."""
    digests = {}
    for name, spec in specs.items():
        if (digest := spec.digest(name, environ)) is not None:
            digests[digest] = name
    if len(digests) != sum(spec.has_token for spec in specs.values()):
        raise ConfigError("two tenants share a token; give each its own")
    return digests


@dataclass(frozen=True)
class _Common:
    """What every namespace of a server shares: where state and workspaces live, the walls, the
    server's run slots, the store and this replica's id."""

    state: Path
    workspaces: Path
    walls: Walls
    slots: RunSlots
    store: Store
    replica: str

    def bridge(self, name: str, spec: TenantSpec, policy: Policy) -> ClaudeBridge:
        """A tenant's bridge, behind its wall, in its own config dir and workspace (or its own roots)."""
        own_roots = policy.roots if "roots" in spec.policy else None
        dirs = namespace_dirs(spec.config_dir or self.state / "tenants" / name, self.workspaces, name, own_roots)
        return ClaudeBridge(
            dirs.policy(policy, policy.cli_env),
            shared_slots=self.slots,
            store=self.store,
            namespace=name,
            replica=self.replica,
            launcher=self.walls.launcher(dirs.writable),
            server_dir=self.state,
        )

    def callers(self, base: Policy, policies: dict[str, Policy], namespace_key: bytes) -> CallerPool:
        """The pool that makes a bridge for each caller (per tenant, where tenants are configured)."""
        return CallerPool(
            policies or {"": base.model_copy(update={"tenants": {}})},
            store=self.store,
            replica=self.replica,
            shared_slots=self.slots,
            walls=self.walls,
            workspaces=self.workspaces,
            namespace_key=namespace_key,
            state_root=self.state,
            max_callers=base.max_callers,
            idle_s=base.caller_idle_s,
        )
