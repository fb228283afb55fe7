"""The seam: a bearer token → who is calling.

Every kind of bearer token the HTTP server accepts is an `IdentityVerifier`: the tenants' static
tokens (`StaticTokens`), an external identity provider's JWTs or introspected tokens (`jwt.py`,
`introspection.py`), the built-in authorization server's tokens (`builtin/`). `Identities`
tries the kinds the operator accepts, in order, and is the `mcp` SDK's `TokenVerifier`: what it
answers is an `IdentifiedToken`, an `AccessToken` that also carries the `Identity`, which the
MCP tools and the HTTP APIs read to pick the tenant's (or caller's) bridge.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

from mcp.server.auth.provider import AccessToken
from pydantic import ConfigDict, Field, SkipValidation

from ..config.credentials import CallerCredential
from ..config.tenants import token_hash

TokenKind = Literal["static", "oauth", "builtin"]


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a bearer token says is calling.

    Attributes:
        tenant: the tenant whose namespace, policy and bridge serve the request. In caller mode
            without tenants (`credentials = "caller"` and no `[tenants]`) it is `""`: the caller's
            namespace then comes from `credential`.
        via: the kind of token it was (for logs and metrics; never the token).
        credential: in caller mode, the caller's own Claude credential when the token carries it
            (the built-in authorization server's tokens do: the key the person entered at sign-in).
            None: the credential comes from the `X-Claude-Credential` header (or, outside caller
            mode, is the tenant's configured one).
        scopes: the scopes granted (checked against `[oauth] scopes_required`).
        expires_at: when the token stops being honoured (Unix seconds, clock skew included), or None.
        subject: who the token was issued to (`sub`), unique per issuer; None for static tokens.
        issuer: who issued it (`iss`); None for static tokens.
        resource: the audience/resource (RFC 8707) the token was issued for, if it names one.
    """

    tenant: str
    via: TokenKind
    credential: CallerCredential | None = field(default=None, repr=False)
    scopes: tuple[str, ...] = ()
    expires_at: int | None = None
    subject: str | None = None
    issuer: str | None = None
    resource: str | None = None


class IdentityVerifier(Protocol):
    """One kind of bearer token.

    Implementations answer `identify(token)` with the `Identity` the token stands for, or None when
    the token is not one of theirs or is not (or no longer) valid: expired, revoked, for another
    audience, badly signed. They never raise for a bad token, and never log the token itself; an
    unreachable issuer is logged (at WARNING, without the token) and answered None. They must not
    block the event loop: any I/O is async (httpx) or on a worker thread, with a timeout.

    An implementation for opaque tokens (the built-in authorization server) looks the token up by
    a hash of it (never storing the token), checks its expiry and revocation, and answers the
    tenant it was issued for (`""` without tenants), `via="builtin"`, the granted scopes, its
    `expires_at`, the `subject` it identifies (e.g. the caller's namespace), the `issuer` (this
    server) and the `resource` it was issued for; in caller mode its `credential` is the caller's
    decrypted key. Two tokens of different kinds cannot be confused: a verifier answers None for a
    token that is not of its shape (a JWT has two dots; choose a prefix for opaque ones).
    """

    async def identify(self, token: str) -> Identity | None: ...


class StaticTokens:
    """The tenants' configured bearer tokens (`[tenants.NAME] token_sha256 / token_env`)."""

    def __init__(self, digests: Mapping[str, str], scopes: tuple[str, ...] = ()) -> None:
        """`digests`: tenant by SHA-256 of its token. `scopes`: what a static token is granted (all
        the scopes the server requires: a static token is full access to its tenant)."""
        self._digests = dict(digests)
        self._scopes = scopes

    def tenant_of(self, token: str) -> str | None:
        """The tenant whose token this is, compared in constant time against every one."""
        presented = token_hash(token)
        found = None
        for digest, name in self._digests.items():
            if hmac.compare_digest(digest, presented):
                found = name
        return found

    async def identify(self, token: str) -> Identity | None:
        tenant = self.tenant_of(token)
        return Identity(tenant, "static", scopes=self._scopes) if tenant is not None else None


class IdentifiedToken(AccessToken):
    """The SDK's `AccessToken`, carrying the `Identity` it was verified as (never serialised)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    identity: SkipValidation[Identity] = Field(exclude=True, repr=False)


def identity_of(token: AccessToken | None) -> Identity | None:
    """The identity a verified token stands for (None for a token verified by something else)."""
    return token.identity if isinstance(token, IdentifiedToken) else None


@runtime_checkable
class Closing(Protocol):
    """A verifier that holds something open (an HTTP client): closed when the server stops."""

    async def aclose(self) -> None: ...


class Identities:
    """The kinds of bearer token the operator accepts, tried in order: the `mcp` SDK's `TokenVerifier`."""

    def __init__(self, kinds: Sequence[IdentityVerifier]) -> None:
        self.kinds = tuple(kinds)

    async def aclose(self) -> None:
        """Close what the kinds hold open (each can open again if used after)."""
        for kind in self.kinds:
            if isinstance(kind, Closing):
                await kind.aclose()

    async def identify(self, token: str) -> Identity | None:
        for kind in self.kinds:
            identity = await kind.identify(token)
            if identity is not None:
                return identity
        return None

    async def verify_token(self, token: str) -> AccessToken | None:
        identity = await self.identify(token)
        if identity is None:
            return None
        return IdentifiedToken(
            token=token,
            client_id=identity.tenant,
            scopes=list(identity.scopes),
            expires_at=identity.expires_at,
            resource=identity.resource,
            subject=identity.subject,
            claims={"iss": identity.issuer} if identity.issuer is not None else None,
            identity=identity,
        )
