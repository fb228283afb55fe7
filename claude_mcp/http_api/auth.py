"""Who is calling the HTTP APIs, read the way the Anthropic and OpenAI SDKs send it.

An unmodified SDK sends its key as `x-api-key` (Anthropic) or `Authorization: Bearer`
(OpenAI). That key is the tenant token where tenants are configured; in caller-credential mode
without tenants it is the caller's own Claude credential (with tenants, the token goes in
`Authorization: Bearer` and the credential in `x-api-key` or `X-Claude-Credential`). With
neither (loopback, the server's own login), any key is accepted.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.datastructures import Headers

from ..bridge.tenancy import LOCAL, Tenancy
from ..config.credentials import CREDENTIAL_HEADER, CallerCredential, CredentialRefused, parse_credential
from .shapes import ApiError, ErrorType


@dataclass(frozen=True, slots=True)
class ApiCaller:
    tenant: str
    credential: CallerCredential | None


def _bearer(headers: Headers) -> str | None:
    scheme, _, token = (headers.get("authorization") or "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def caller_of(headers: Headers, tenancy: Tenancy) -> ApiCaller:
    """The tenant and (in caller mode) the credential of a request; `ApiError` 401/403 if refused."""
    api_key = headers.get("x-api-key") or None
    bearer = _bearer(headers)
    tenant = LOCAL
    if tenancy.requires_auth:
        token = bearer if tenancy.takes_caller_credentials else (api_key or bearer)
        found = tenancy.tenant_of_token(token) if token else None
        if found is None:
            where = "`Authorization: Bearer`" if tenancy.takes_caller_credentials else "`x-api-key`"
            raise ApiError(401, "authentication_error", f"Not authenticated: send your tenant token as {where}.")
        tenant = found
    if not tenancy.takes_caller_credentials:
        return ApiCaller(tenant, None)
    presented = headers.get(CREDENTIAL_HEADER) or api_key or (None if tenancy.requires_auth else bearer)
    try:
        credential = parse_credential(presented, allow_oauth=tenancy.accepts_oauth_tokens)
    except CredentialRefused as refused:
        kind: ErrorType = "authentication_error" if refused.status == 401 else "permission_error"
        raise ApiError(refused.status, kind, refused.message) from None
    return ApiCaller(tenant, credential)
