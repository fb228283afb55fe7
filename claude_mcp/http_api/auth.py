"""Who is calling the HTTP APIs, read the way the Anthropic and OpenAI SDKs send it.

An unmodified SDK sends its key as `x-api-key` (Anthropic) or `Authorization: Bearer`
(OpenAI). That key is the tenant token where tenants are configured; in caller-credential mode
without tenants it is the caller's own Claude credential (with tenants, the token goes in
`Authorization: Bearer` and the credential in `x-api-key` or `X-Claude-Credential`). With
neither (loopback, the server's own login), any key is accepted.

A bearer token has already been verified by the web layer's bearer middleware (the same
`TokenVerifier` as `/mcp`'s: static tenant tokens and, with `[oauth]`, access tokens), which
leaves what it found in the request's `user`; a tenant token sent as `x-api-key` is looked up here.
"""

from __future__ import annotations

from dataclasses import dataclass

from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from starlette.datastructures import Headers
from starlette.requests import HTTPConnection

from ..bridge.tenancy import LOCAL, Tenancy
from ..config.credentials import CREDENTIAL_HEADER, CallerCredential, CredentialRefused, parse_credential
from ..oauth.identity import Identity, identity_of
from ..oauth.resource import INSUFFICIENT_SCOPE
from .shapes import ApiError, ErrorType


@dataclass(frozen=True, slots=True)
class ApiCaller:
    tenant: str
    credential: CallerCredential | None


def _bearer(headers: Headers) -> str | None:
    scheme, _, token = (headers.get("authorization") or "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def _verified(request: HTTPConnection) -> Identity | None:
    """The identity the bearer middleware verified this request's `Authorization: Bearer` as."""
    user = request.scope.get("user")
    return identity_of(user.access_token) if isinstance(user, AuthenticatedUser) else None


def _identity(request: HTTPConnection, tenancy: Tenancy, api_key: str | None) -> Identity | None:
    if api_key and not tenancy.takes_caller_credentials:  # the Anthropic SDK's key: a tenant token
        tenant = tenancy.tenant_of_token(api_key)
        if tenant is not None:
            return Identity(tenant, "static")
    return _verified(request)


def _check_scopes(request: HTTPConnection, tenancy: Tenancy, identity: Identity) -> None:
    """An access token must carry `[oauth] scopes_required` here too (as on `/mcp`): else a 403."""
    oauth = tenancy.policy.oauth if tenancy.policy is not None else None
    if identity.via == "static" or oauth is None:
        return
    missing = [scope for scope in oauth.scopes_required if scope not in identity.scopes]
    if missing:
        request.scope[INSUFFICIENT_SCOPE] = True  # the web layer's challenge says so too
        raise ApiError(403, "permission_error", f"The access token lacks the scope {missing[0]!r} this API needs.")


def caller_of(request: HTTPConnection, tenancy: Tenancy) -> ApiCaller:
    """The tenant and (in caller mode) the credential of a request; `ApiError` 401/403 if refused."""
    headers = request.headers
    api_key = headers.get("x-api-key") or None
    bearer = _bearer(headers)
    tenant = LOCAL
    identity = None
    if tenancy.requires_auth:
        identity = _identity(request, tenancy, api_key)
        if identity is None or not tenancy.knows(identity.tenant):
            where = "`Authorization: Bearer`" if tenancy.takes_caller_credentials else "`x-api-key`"
            raise ApiError(401, "authentication_error", f"Not authenticated: send your tenant token as {where}.")
        tenant = identity.tenant
        _check_scopes(request, tenancy, identity)
    if not tenancy.takes_caller_credentials:
        return ApiCaller(tenant, None)
    if identity is not None and identity.credential is not None:  # the token carries the caller's own key
        return ApiCaller(tenant, identity.credential)
    presented = headers.get(CREDENTIAL_HEADER) or api_key or (None if tenancy.requires_auth else bearer)
    try:
        credential = parse_credential(presented, allow_oauth=tenancy.accepts_oauth_tokens)
    except CredentialRefused as refused:
        kind: ErrorType = "authentication_error" if refused.status == 401 else "permission_error"
        raise ApiError(refused.status, kind, refused.message) from None
    return ApiCaller(tenant, credential)
