"""Mode 1 with opaque tokens: each token looked up at the issuer's introspection endpoint (RFC 7662),
this server authenticating as a client of the issuer; an active answer is kept for a short while
(never past the token's `exp`) so a client's burst of requests costs one look-up."""

from __future__ import annotations

import hashlib
import logging
import os
import time
from typing import Any

import httpx2

from ..config.oauth import OAuthSettings
from ..errors import ConfigError
from .identity import Identity
from .issuer import MOST_BYTES
from .jwt_tokens import scopes_of

logger = logging.getLogger(__name__)

CACHE_S = 30.0
MOST_CACHED = 10_000


class Introspection:
    """An `IdentityVerifier` that asks the issuer about each token (RFC 7662)."""

    def __init__(self, settings: OAuthSettings, tenants: frozenset[str]) -> None:
        assert settings.issuer is not None and settings.introspection_endpoint is not None
        client_id = os.environ.get(settings.introspection_client_id_env or "")
        secret = os.environ.get(settings.introspection_client_secret_env or "")
        if not client_id or not secret:
            raise ConfigError(
                f"[oauth] introspection: set {settings.introspection_client_id_env} and "
                f"{settings.introspection_client_secret_env} (this server's client id and secret at the issuer)"
            )
        self.settings = settings
        self.issuer = str(settings.issuer)
        self.tenants = tenants
        self._endpoint = str(settings.introspection_endpoint)
        self._auth = httpx2.BasicAuth(client_id, secret)
        self._cache: dict[bytes, tuple[float, Identity]] = {}

    async def identify(self, token: str) -> Identity | None:
        if not token or len(token) > 4096:
            return None
        digest = hashlib.sha256(token.encode()).digest()  # never the token itself as a key
        now = time.time()
        cached = self._cache.get(digest)
        if cached is not None and cached[0] > now:
            return cached[1]
        answer = await self._ask(token)
        identity = self._identity(answer, now) if answer is not None else None
        if identity is not None:
            if len(self._cache) >= MOST_CACHED:
                self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
            until = min(now + CACHE_S, identity.expires_at or now + CACHE_S)
            if len(self._cache) < MOST_CACHED:
                self._cache[digest] = (until, identity)
        return identity

    async def _ask(self, token: str) -> dict[str, Any] | None:
        try:
            async with httpx2.AsyncClient(timeout=self.settings.http_timeout_s, follow_redirects=False) as client:
                response = await client.post(
                    self._endpoint,
                    data={"token": token, "token_type_hint": "access_token"},
                    auth=self._auth,
                    headers={"accept": "application/json"},
                )
        except (httpx2.HTTPError, httpx2.InvalidURL) as exc:
            logger.warning("could not reach the introspection endpoint %s: %s", self._endpoint, type(exc).__name__)
            return None
        if response.status_code != 200 or len(response.content) > MOST_BYTES:
            logger.warning("the introspection endpoint %s answered HTTP %s", self._endpoint, response.status_code)
            return None
        try:
            answer = response.json()
        except ValueError:
            return None
        return answer if isinstance(answer, dict) else None

    def _identity(self, answer: dict[str, Any], now: float) -> Identity | None:
        skew = self.settings.clock_skew_s
        if answer.get("active") is not True:
            return None
        if answer.get("iss", self.issuer) != self.issuer:
            return None
        exp = answer.get("exp")
        if not isinstance(exp, int | float) or exp + skew < now:
            return None
        if isinstance(nbf := answer.get("nbf"), int | float) and nbf - skew > now:
            return None
        aud = answer.get("aud")
        audiences = aud if isinstance(aud, list) else [aud]
        resource = next((a for a in audiences if isinstance(a, str) and a in self.settings.audiences), None)
        if resource is None:
            return None  # RFC 8707: only a token issued for this server
        tenant = self.settings.tenant_mapped(answer, self.tenants)
        if tenant is None:
            return None
        return Identity(
            tenant,
            "oauth",
            scopes=scopes_of(answer),
            expires_at=int(exp + skew),
            subject=str(answer["sub"]) if "sub" in answer else None,
            issuer=self.issuer,
            resource=resource,
        )
