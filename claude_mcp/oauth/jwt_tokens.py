"""Mode 1: access tokens from an external identity provider, verified as JWTs (RFC 9068) with PyJWT
against the issuer's published keys.

The keys are discovered from the issuer's metadata, kept `jwks_cache_s`, and fetched again when a
token names a key id not yet seen (the issuer rotated its keys), at most every `jwks_refetch_min_s`
so a stream of made-up key ids cannot make the server hammer the issuer. A token is honoured when
its signature (an asymmetric algorithm the operator allows), `iss`, `aud` (this server: RFC 8707),
`exp`, `nbf` and `iat` (within `clock_skew_s`) hold and its claims map to a tenant. A token once
verified is remembered by its hash until its `exp` or the next fetch of the keys, so a client's
later requests cost a hash, not a signature check.
"""

from __future__ import annotations

import hashlib
import logging
import time
from typing import Any

import anyio
import httpx2
import jwt

from ..config.oauth import OAuthSettings
from .identity import Identity
from .issuer import IssuerUnavailable, discover, get_json

logger = logging.getLogger(__name__)

MOST_TOKEN_CHARS = 16 * 1024
MOST_VERIFIED = 10_000


class JwtVerifier:
    """An `IdentityVerifier` for the issuer's JWT access tokens."""

    def __init__(self, settings: OAuthSettings, tenants: frozenset[str]) -> None:
        assert settings.issuer is not None  # checked by OAuthSettings
        self.settings = settings
        self.issuer = str(settings.issuer)
        self.tenants = tenants
        self._keys: dict[str | None, jwt.PyJWK] = {}
        self._fetched_at: float | None = None
        """When the keys were last fetched (monotonic): they are used `jwks_cache_s` from then."""
        self._tried_at: float | None = None
        """When they were last asked for, whatever came of it: not again within `jwks_refetch_min_s`."""
        self._jwks_uri = str(settings.jwks_uri) if settings.jwks_uri is not None else None
        self._lock = anyio.Lock()
        self._verified: dict[bytes, Identity] = {}
        """Tokens verified since the keys were last fetched, by SHA-256: a JWT is immutable, so until
        its `exp` (checked on each use) or the next fetch of the keys, it need not be checked again."""
        self.fetches = 0
        """How many times the key set was fetched (for tests and metrics)."""

    async def identify(self, token: str) -> Identity | None:
        if token.count(".") != 2 or len(token) > MOST_TOKEN_CHARS:
            return None
        digest = hashlib.sha256(token.encode()).digest()  # never the token itself as a key
        known = self._verified.get(digest)
        if known is not None and known.expires_at is not None and known.expires_at > time.time():
            return known
        identity = await self.verify(token)
        if identity is not None:
            if len(self._verified) >= MOST_VERIFIED:
                self._verified.clear()
            self._verified[digest] = identity
        return identity

    async def verify(self, token: str) -> Identity | None:
        """`identify` without the memory of tokens already verified: the signature checked, and the claims."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            return None
        algorithm, kid = header.get("alg"), header.get("kid")
        if algorithm not in self.settings.algorithms or not (kid is None or isinstance(kid, str)):
            logger.debug("refused a JWT: algorithm %r is not accepted", algorithm)
            return None
        key = await self._key(kid)
        if key is None:
            return None
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=self.settings.audiences,
                issuer=self.issuer,
                leeway=self.settings.clock_skew_s,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.PyJWTError as exc:
            logger.debug("refused a JWT: %s", exc)
            return None
        return self._identity(claims)

    def _identity(self, claims: dict[str, Any]) -> Identity | None:
        tenant = self.settings.tenant_mapped(claims, self.tenants)
        if tenant is None:
            logger.info(
                "refused a token of %r: its claims map to no tenant (see [oauth] tenant_claim)", claims.get("sub")
            )
            return None
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        return Identity(
            tenant,
            "oauth",
            scopes=scopes_of(claims),
            expires_at=int(claims["exp"] + self.settings.clock_skew_s),
            subject=str(claims["sub"]) if "sub" in claims else None,
            issuer=self.issuer,
            resource=next((a for a in audiences if a in self.settings.audiences), None),
        )

    async def _key(self, kid: str | None) -> jwt.PyJWK | None:
        """The issuer's key `kid`: from the cache while it is fresh, else fetched again (and on an
        unknown `kid`, at most every `jwks_refetch_min_s`)."""
        if self._wanted(kid):
            async with self._lock:
                if self._wanted(kid):
                    await self._refresh()
        if kid is None and len(self._keys) == 1:
            return next(iter(self._keys.values()))  # a token without `kid` from an issuer with one key
        return self._keys.get(kid)

    def _wanted(self, kid: str | None) -> bool:
        """Whether the keys are to be fetched now: they are stale, or `kid` is new to them (a rotation),
        and they were not asked for within `jwks_refetch_min_s`."""
        now = time.monotonic()
        if self._tried_at is not None and now - self._tried_at < self.settings.jwks_refetch_min_s:
            return False
        stale = self._fetched_at is None or now - self._fetched_at >= self.settings.jwks_cache_s
        return stale or (kid is not None and kid not in self._keys)

    async def fetch_keys(self) -> dict[str | None, jwt.PyJWK]:
        """The issuer's signing keys, fetched now (its metadata first, once); `IssuerUnavailable` if not."""
        async with httpx2.AsyncClient(timeout=self.settings.http_timeout_s, follow_redirects=False) as client:
            if self._jwks_uri is None:
                metadata = await discover(client, self.issuer)
                if not isinstance(jwks_uri := metadata.get("jwks_uri"), str):
                    raise IssuerUnavailable("its metadata has no jwks_uri")
                self._jwks_uri = jwks_uri
            return parse_jwks(await get_json(client, self._jwks_uri))

    async def _refresh(self) -> None:
        self._tried_at = time.monotonic()
        try:
            keys = await self.fetch_keys()
        except IssuerUnavailable as exc:
            # Keep the keys we had: an issuer down for a while does not log everyone out.
            logger.warning("could not fetch the signing keys of the issuer %s: %s", self.issuer, exc)
            return
        self.fetches += 1
        self._keys, self._fetched_at = keys, time.monotonic()
        self._verified.clear()  # a key withdrawn from the set withdraws the tokens it signed


def parse_jwks(document: dict[str, Any]) -> dict[str | None, jwt.PyJWK]:
    """The signing keys of a JWKS by key id (a key without `kid` under None); others are skipped."""
    keys: dict[str | None, jwt.PyJWK] = {}
    entries = document.get("keys")
    if not isinstance(entries, list):
        raise IssuerUnavailable("its key set has no `keys` list")
    for entry in entries:
        if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
            continue
        try:
            key = jwt.PyJWK(entry)
        except (jwt.PyJWTError, KeyError, TypeError, ValueError):
            continue  # a malformed key, or one PyJWT cannot use: none to verify with
        kid = entry.get("kid")
        keys[kid if isinstance(kid, str) else None] = key
    return keys


def scopes_of(claims: dict[str, Any]) -> tuple[str, ...]:
    """The scopes of a token: `scope` (space-separated, RFC 9068) or `scp` (a list, as Entra and Okta send)."""
    scope = claims.get("scope")
    if isinstance(scope, str):
        return tuple(scope.split())
    scp = claims.get("scp")
    if isinstance(scp, list):
        return tuple(s for s in scp if isinstance(s, str))
    if isinstance(scp, str):
        return tuple(scp.split())
    return ()
