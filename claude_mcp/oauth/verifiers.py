"""The verifiers `[oauth]` asks for, in the order the operator accepts them."""

from __future__ import annotations

from collections.abc import Mapping

from ..config.oauth import OAuthSettings
from ..errors import ConfigError
from ..state.store import Store
from .identity import Identities, IdentityVerifier, StaticTokens
from .introspection import Introspection
from .jwt_tokens import JwtVerifier


def accepted(
    settings: OAuthSettings | None,
    digests: Mapping[str, str],
    *,
    tenants: frozenset[str],
    store: Store,
    namespace_key: bytes = b"",
    allow_oauth_tokens: bool = False,
    cli_env: Mapping[str, str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Identities | None:
    """The kinds of bearer token the server honours (None: no authentication, the local user).

    Without `[oauth]`, the tenants' static tokens if there are any. With it, the kinds in
    `accept`, in that order: the static tokens, and the authorization server's (`external`: the
    identity provider's, mapped to `tenants` by their claims; `builtin`: this server's own)."""
    if settings is None:
        return Identities([StaticTokens(digests)]) if digests else None
    kinds: list[IdentityVerifier] = []
    for kind in settings.accept:
        if kind == "static" and digests:
            kinds.append(StaticTokens(digests, settings.scopes_required))
        elif kind == "oauth":
            if settings.authorization_server == "builtin":
                kinds.append(_builtin(settings, store, namespace_key, allow_oauth_tokens, cli_env or {}, environ))
            else:
                kinds.append(_external(settings, tenants))
    if not kinds:
        raise ConfigError(
            '[oauth] accept = ["static"] but no tenant has a token: give tenants tokens, or accept "oauth"'
        )
    return Identities(kinds)


def _external(settings: OAuthSettings, tenants: frozenset[str]) -> IdentityVerifier:
    """The identity provider's tokens: checked at its introspection endpoint, or as JWTs against its keys."""
    if not tenants:
        raise ConfigError(
            'authorization_server = "external" maps tokens to tenants: configure [tenants.NAME] (a tenant reached '
            "only through [oauth] needs no token) and tenant_claim, claim_tenants or default_tenant"
        )
    named = [*settings.claim_tenants.values(), *([settings.default_tenant] if settings.default_tenant else [])]
    if unknown := sorted(set(named) - tenants):
        raise ConfigError(f"[oauth] maps tokens to {unknown[0]!r}, which is not a tenant: add [tenants.{unknown[0]}]")
    if settings.introspection_endpoint is not None:
        return Introspection(settings, tenants)
    return JwtVerifier(settings, tenants)


def _builtin(
    settings: OAuthSettings,
    store: Store,
    namespace_key: bytes,
    allow_oauth_tokens: bool,
    cli_env: Mapping[str, str],
    environ: Mapping[str, str] | None,
) -> IdentityVerifier:
    """The built-in authorization server (`oauth/builtin/`): its tokens carry the key the person signed in with."""
    from ..state.oauth_grants import OAuthGrantQueries
    from .builtin import BuiltinAuthorizationServer

    if not isinstance(store, OAuthGrantQueries):
        raise ConfigError('authorization_server = "builtin" needs a SQLite or PostgreSQL store')
    return BuiltinAuthorizationServer.from_settings(
        settings,
        store,
        namespace_key=namespace_key,
        allow_oauth_tokens=allow_oauth_tokens,
        cli_env=cli_env,
        environ=environ,
    )
