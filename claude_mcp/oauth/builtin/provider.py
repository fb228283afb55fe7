"""The built-in authorization server: the `mcp` SDK's `OAuthAuthorizationServerProvider` over the
shared store, and the `IdentityVerifier` of the tokens it issues.

Its tokens are opaque (`cmcp_at_…`, `cmcp_rt_…`; codes `cmcp_ac_…`), stored only as SHA-256 hashes,
so any replica with the store validates them and a database reader learns nothing usable. A grant
(one sign-in) holds the caller's credential, sealed (`sealing.py`) and bound to the grant's id.
Refresh tokens rotate: each is good once; presenting a used one again (a stolen copy, or the
client's after the thief's) revokes the whole grant. A code presented twice does the same.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from urllib.parse import urlencode, urlsplit

from mcp.server.auth.provider import (
    AccessToken,
    AuthorizationCode,
    AuthorizationParams,
    AuthorizeError,
    IdentityAssertionParams,
    RefreshToken,
    RegistrationError,
    TokenError,
)
from mcp.shared.auth import OAuthClientInformationFull, OAuthToken
from pydantic import AnyUrl

from ...config.credentials import CallerCredential
from ...config.oauth_builtin import BuiltinSettings
from ...state.oauth_grants import CodeRecord, GrantRecord, OAuthGrants, PendingRequest, TokenRecord
from ..identity import Identity
from .address_window import CLIENT_ADDRESS
from .cimd import CimdRefused, MetadataDocuments, is_metadata_url
from .sealing import KeyRing, SealBroken

logger = logging.getLogger(__name__)

ACCESS_PREFIX = "cmcp_at_"
REFRESH_PREFIX = "cmcp_rt_"
CODE_PREFIX = "cmcp_ac_"
_UNSAFE_SCHEMES = frozenset({"javascript", "data", "file", "vbscript", "blob", "about"})
_LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})
MOST_REDIRECT_URIS = 10
MOST_URI_CHARS = 2000
MOST_NAME_CHARS = 200
MOST_METADATA_CHARS = 8 * 1024
FULL = "this server holds too many clients not yet used for a sign-in; try again later"
BUSY = "too many sign-ins are waiting on this server; try again later"


class RegistrationsFull(RegistrationError):
    """Registering is refused for now: too many registered clients were never used for a sign-in."""

    def __init__(self) -> None:
        super().__init__("invalid_client_metadata", FULL)


def hashed(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(32)


class BuiltinCode(AuthorizationCode):
    grant_id: str


class BuiltinRefresh(RefreshToken):
    grant_id: str
    token_hash: str


class BuiltinAccess(AccessToken):
    grant_id: str


def check_redirect_uris(uris: list[str]) -> None:
    """Redirect URIs a client may register: https, http only on loopback, or an app's own scheme."""
    for uri in uris:
        parts = urlsplit(uri)
        scheme = parts.scheme.lower()
        if parts.fragment or scheme in _UNSAFE_SCHEMES or not scheme:
            raise RegistrationError("invalid_redirect_uri", f"redirect URI {uri[:200]!r} is not allowed")
        if scheme == "http" and (parts.hostname or "") not in _LOOPBACK:
            raise RegistrationError("invalid_redirect_uri", "an http redirect URI must be on loopback; use https")


def check_metadata_size(client: OAuthClientInformationFull) -> None:
    """A registration's metadata is small: a few redirect URIs, short names and URIs, a few KiB in all."""
    uris = [str(uri) for uri in client.redirect_uris or []]
    if len(uris) > MOST_REDIRECT_URIS:
        raise RegistrationError("invalid_redirect_uri", f"at most {MOST_REDIRECT_URIS} redirect URIs")
    if any(len(uri) > MOST_URI_CHARS for uri in uris):
        raise RegistrationError("invalid_redirect_uri", f"a redirect URI is at most {MOST_URI_CHARS} characters")
    if len(client.client_name or "") > MOST_NAME_CHARS:
        raise RegistrationError("invalid_client_metadata", f"client_name is at most {MOST_NAME_CHARS} characters")
    if len(client.model_dump_json(exclude_none=True)) > MOST_METADATA_CHARS:
        raise RegistrationError("invalid_client_metadata", f"the client's metadata is over {MOST_METADATA_CHARS} bytes")


class BuiltinProvider:
    """`OAuthAuthorizationServerProvider[BuiltinCode, BuiltinRefresh, BuiltinAccess]` and `IdentityVerifier`."""

    def __init__(
        self,
        settings: BuiltinSettings,
        store: OAuthGrants,
        ring: KeyRing,
        documents: MetadataDocuments,
        *,
        issuer: str,
        resources: tuple[str, ...],
        scopes: tuple[str, ...],
        namespace_key: bytes,
    ) -> None:
        """`issuer`: this server's origin. `resources`: what a client may name as `resource` (the first is
        the one a token is issued for when it names none). `scopes`: every scope this server grants."""
        self.settings = settings
        self.store = store
        self.ring = ring
        self.documents = documents
        self.issuer = issuer
        self.resources = resources
        self.scopes = scopes
        self._namespace_key = namespace_key

    # Clients.
    async def get_client(self, client_id: str, *, fetch: bool = True) -> OAuthClientInformationFull | None:
        """A registered client, or one its metadata document describes (`fetch`: else only if cached;
        fetched on behalf of the address in `CLIENT_ADDRESS`)."""
        if is_metadata_url(client_id):
            if not self.settings.client_metadata_documents:
                return None
            try:
                if fetch:
                    client: OAuthClientInformationFull | None = await self.documents.client(
                        client_id, address=CLIENT_ADDRESS.get()
                    )
                else:
                    client = self.documents.cached(client_id)
            except CimdRefused as refused:
                logger.info("a client's metadata document was refused: %s", refused.message)
                return None
            if client is None:
                return None
            return client if client.scope is not None else client.model_copy(update={"scope": " ".join(self.scopes)})
        found = await self.store.get_oauth_client(client_id)
        if found is None:
            return None
        info, sealed = found
        client = OAuthClientInformationFull.model_validate_json(info)
        if sealed:
            try:
                client.client_secret = self.ring.open(sealed, bound_to=client_id)
            except SealBroken as broken:
                logger.warning("a registered client's secret does not open: %s", broken)
                return None
        return client

    async def register_client(self, client_info: OAuthClientInformationFull) -> None:
        check_metadata_size(client_info)
        check_redirect_uris([str(uri) for uri in client_info.redirect_uris or []])
        secret = client_info.client_secret
        public = client_info.model_copy(update={"client_secret": None})
        sealed = self.ring.seal(secret, bound_to=client_info.client_id) if secret else None
        now = time.time()
        stored = await self.store.put_oauth_client(
            client_info.client_id,
            public.model_dump_json(),
            sealed,
            now,
            unused_since=now - self.settings.unused_client_s,
            most_unused=self.settings.most_unused_clients,
        )
        if not stored:
            logger.info("a client registration was refused: %d clients not yet used", self.settings.most_unused_clients)
            raise RegistrationsFull()

    # The authorization request: on to the sign-in page.
    async def authorize(self, client: OAuthClientInformationFull, params: AuthorizationParams) -> str:
        if params.resource is not None and params.resource.rstrip("/") not in {r.rstrip("/") for r in self.resources}:
            raise AuthorizeError("invalid_target", f"this server issues tokens only for {self.resources[0]}")
        request_id = secrets.token_urlsafe(32)
        now = time.time()
        await self.store.forget_oauth(now)
        pending = PendingRequest(
            request_hash=hashed(request_id),
            client_id=client.client_id,
            params=params.model_dump_json(),
            expires_at=now + self.settings.sign_in_s,
        )
        if not await self.store.put_oauth_request(pending, now=now, most=self.settings.most_pending_sign_ins):
            logger.info(
                "an authorization request was refused: %d sign-ins pending", self.settings.most_pending_sign_ins
            )
            raise AuthorizeError("temporarily_unavailable", BUSY)
        return f"{self.issuer}/oauth/sign-in?{urlencode({'request': request_id})}"

    async def grant(self, pending: PendingRequest, credential: CallerCredential) -> str:
        """After the person signed in with an accepted key: the grant and its code; the client's redirect URL."""
        params = AuthorizationParams.model_validate_json(pending.params)
        now = time.time()
        grant_id = secrets.token_urlsafe(24)
        code = new_secret(CODE_PREFIX)
        resource = params.resource or self.resources[0]
        grant = GrantRecord(
            grant_id=grant_id,
            client_id=pending.client_id,
            namespace=credential.namespace(self._namespace_key),
            credential=self.ring.seal(credential.secret, bound_to=grant_id),
            kind=credential.kind,
            scopes=list(params.scopes) if params.scopes is not None else list(self.scopes),
            resource=resource,
            created_at=now,
            expires_at=now + self.settings.code_s,
        )
        record = CodeRecord(
            code_hash=hashed(code),
            grant_id=grant_id,
            client_id=pending.client_id,
            redirect_uri=str(params.redirect_uri),
            redirect_uri_explicit=params.redirect_uri_provided_explicitly,
            code_challenge=params.code_challenge,
            expires_at=now + self.settings.code_s,
        )
        await self.store.open_oauth_grant(grant, record)
        return redirect_with(str(params.redirect_uri), code=code, state=params.state, iss=self.issuer)

    # Codes.
    async def load_authorization_code(
        self, client: OAuthClientInformationFull, authorization_code: str
    ) -> BuiltinCode | None:
        record = await self.store.get_oauth_code(hashed(authorization_code))
        if record is None or record.client_id != client.client_id:
            return None
        grant = await self.store.get_oauth_grant(record.grant_id)
        if grant is None or grant.revoked_at is not None:
            return None
        if record.used_at is not None:  # a code presented twice: whoever has it, the grant is no longer trusted
            logger.info("an authorization code was presented again: its grant is revoked")
            await self.store.revoke_oauth_grant(record.grant_id, time.time())
            return None
        return BuiltinCode(
            code=authorization_code,
            scopes=grant.scopes,
            expires_at=record.expires_at,
            client_id=record.client_id,
            code_challenge=record.code_challenge,
            redirect_uri=AnyUrl(record.redirect_uri),
            redirect_uri_provided_explicitly=record.redirect_uri_explicit,
            resource=grant.resource,
            subject=grant.namespace,
            grant_id=grant.grant_id,
        )

    async def exchange_authorization_code(
        self, client: OAuthClientInformationFull, authorization_code: BuiltinCode
    ) -> OAuthToken:
        now = time.time()
        if not await self.store.use_oauth_code(hashed(authorization_code.code), now):
            await self.store.revoke_oauth_grant(authorization_code.grant_id, now)
            raise TokenError("invalid_grant", "authorization code was already used or has expired")
        return await self._issue(authorization_code.grant_id, authorization_code.scopes, now)

    # Refresh tokens.
    async def load_refresh_token(self, client: OAuthClientInformationFull, refresh_token: str) -> BuiltinRefresh | None:
        if not refresh_token.startswith(REFRESH_PREFIX):
            return None
        found = await self.store.get_oauth_token(hashed(refresh_token))
        if found is None:
            return None
        token, grant = found
        if token.kind != "refresh" or grant.client_id != client.client_id or grant.revoked_at is not None:
            return None
        now = time.time()
        if token.used_at is not None:
            logger.info("a used refresh token was presented again: its grant is revoked")
            await self.store.revoke_oauth_grant(grant.grant_id, now)
            return None
        if token.expires_at <= now:
            return None
        return BuiltinRefresh(
            token=refresh_token,
            client_id=grant.client_id,
            scopes=grant.scopes,
            expires_at=int(token.expires_at),
            resource=grant.resource,
            subject=grant.namespace,
            grant_id=grant.grant_id,
            token_hash=token.token_hash,
        )

    async def exchange_refresh_token(
        self, client: OAuthClientInformationFull, refresh_token: BuiltinRefresh, scopes: list[str]
    ) -> OAuthToken:
        now = time.time()
        if not await self.store.use_oauth_token(refresh_token.token_hash, now):
            await self.store.revoke_oauth_grant(refresh_token.grant_id, now)
            raise TokenError("invalid_grant", "refresh token was already used")
        return await self._issue(refresh_token.grant_id, scopes, now)

    async def _issue(self, grant_id: str, scopes: list[str], now: float) -> OAuthToken:
        grant = await self.store.get_oauth_grant(grant_id)
        if grant is None or grant.revoked_at is not None:
            raise TokenError("invalid_grant", "the sign-in was revoked")
        resealed = None
        if not self.ring.sealed_with_current(grant.credential):  # a rotated key ring: re-seal with the new key
            try:
                resealed = self.ring.seal(self.ring.open(grant.credential, bound_to=grant_id), bound_to=grant_id)
            except SealBroken:
                raise TokenError("invalid_grant", "the sign-in can no longer be used; sign in again") from None
        access, refresh = new_secret(ACCESS_PREFIX), new_secret(REFRESH_PREFIX)
        access_until = now + self.settings.access_token_s
        refresh_until = now + self.settings.refresh_token_s
        tokens = [
            TokenRecord(token_hash=hashed(access), grant_id=grant_id, kind="access", expires_at=access_until),
            TokenRecord(token_hash=hashed(refresh), grant_id=grant_id, kind="refresh", expires_at=refresh_until),
        ]
        await self.store.add_oauth_tokens(grant_id, tokens, refresh_until, resealed)
        return OAuthToken(
            access_token=access,
            token_type="Bearer",
            expires_in=self.settings.access_token_s,
            refresh_token=refresh,
            scope=" ".join(scopes) if scopes else None,
        )

    # Access tokens.
    async def load_access_token(self, token: str) -> BuiltinAccess | None:
        found = await self._access(token)
        if found is None:
            return None
        record, grant = found
        return BuiltinAccess(
            token=token,
            client_id=grant.client_id,
            scopes=grant.scopes,
            expires_at=int(record.expires_at),
            resource=grant.resource,
            subject=grant.namespace,
            grant_id=grant.grant_id,
        )

    async def _access(self, token: str) -> tuple[TokenRecord, GrantRecord] | None:
        if not token.startswith(ACCESS_PREFIX) or len(token) > 128:
            return None
        found = await self.store.get_oauth_token(hashed(token))
        if found is None:
            return None
        record, grant = found
        now = time.time()
        if record.kind != "access" or record.expires_at <= now or grant.revoked_at is not None:
            return None
        return record, grant

    async def identify(self, token: str) -> Identity | None:
        """Who an access token of this server says is calling: the caller, with the key entered at sign-in."""
        found = await self._access(token)
        if found is None:
            return None
        record, grant = found
        try:
            secret = self.ring.open(grant.credential, bound_to=grant.grant_id)
        except SealBroken as broken:
            logger.warning("a sign-in's key does not open (%s): its tokens are refused", broken)
            return None
        return Identity(
            tenant="",
            via="builtin",
            credential=CallerCredential(secret, "oauth_token" if grant.kind == "oauth_token" else "api_key"),
            scopes=tuple(grant.scopes),
            expires_at=int(record.expires_at),
            subject=grant.namespace,
            issuer=self.issuer,
            resource=grant.resource,
        )

    async def revoke_token(self, token: BuiltinAccess | BuiltinRefresh) -> None:
        await self.store.revoke_oauth_grant(token.grant_id, time.time())

    async def exchange_identity_assertion(
        self, client: OAuthClientInformationFull, params: IdentityAssertionParams
    ) -> OAuthToken:
        raise TokenError("unsupported_grant_type", "this server issues tokens only after its own sign-in")


def redirect_with(redirect_uri: str, **params: str | None) -> str:
    """`redirect_uri` with `params` added to its query (those that are not None)."""
    parts = urlsplit(redirect_uri)
    extra = urlencode({k: v for k, v in params.items() if v is not None})
    query = f"{parts.query}&{extra}" if parts.query else extra
    return parts._replace(query=query).geturl()
