"""The built-in authorization server assembled: the `mcp` SDK's OAuth endpoints over `BuiltinProvider`
(`/.well-known/oauth-authorization-server`, `/authorize`, `/token`, `/register`, `/revoke`), the
sign-in page (`/oauth/sign-in`), and the `IdentityVerifier` of the tokens it issues.

The SDK's metadata is extended with what this server does beyond it: Client ID Metadata Documents
(`client_id_metadata_document_supported`) and the `iss` parameter on the redirect back (RFC 9207).
Its `/authorize` is bounded per client address and fronted by a check of a metadata-document client,
so a client whose document cannot be used is told why (the SDK alone would say only that the client
is unknown); the routes that may fetch a document name the client address it is fetched for.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs, urlsplit

from mcp.server.auth.handlers.metadata import MetadataHandler
from mcp.server.auth.routes import build_metadata, cors_middleware, create_auth_routes
from mcp.server.auth.settings import ClientRegistrationOptions, RevocationOptions
from mcp.shared.auth import InvalidRedirectUriError
from pydantic import AnyHttpUrl, AnyUrl, ConfigDict, TypeAdapter
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route, request_response
from starlette.types import Message, Receive, Scope, Send

from ...config.oauth import OAuthSettings
from ...config.oauth_builtin import BuiltinSettings
from ...state.oauth_grants import OAuthGrants
from ..identity import Identity
from .address_window import CLIENT_ADDRESS, AddressWindow
from .cimd import CimdBusy, CimdRefused, MetadataDocuments, is_metadata_url
from .keycheck import DEFAULT_API, KeyChecker
from .provider import FULL, BuiltinProvider, redirect_with
from .sealing import KeyRing
from .sign_in import PATH, SignIn

_ISSUER = TypeAdapter(AnyHttpUrl, config=ConfigDict(url_preserve_empty_path=True))
METADATA_PATH = "/.well-known/oauth-authorization-server"


class BuiltinAuthorizationServer:
    """The built-in authorization server of one replica (every replica with the same store and key
    ring is the same server to a client)."""

    def __init__(
        self,
        settings: BuiltinSettings,
        store: OAuthGrants,
        *,
        issuer: str,
        resources: tuple[str, ...],
        scopes: tuple[str, ...],
        namespace_key: bytes,
        allow_oauth_tokens: bool,
        cli_env: Mapping[str, str] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        """`issuer`: this server's origin (`https://host[:port]`). `resources`: the resource URLs a token
        may be issued for (the MCP endpoint first). `cli_env`: the CLI's environment in the policy (its
        `ANTHROPIC_BASE_URL` is where keys are checked, unless `key_check_url` says otherwise)."""
        environ = os.environ if environ is None else environ
        self.settings = settings
        self.issuer = str(_ISSUER.validate_python(issuer)).rstrip("/")
        self.ring = KeyRing.load(env=settings.secrets_key_env, file=settings.secrets_key_file, environ=environ)
        self.documents = MetadataDocuments(
            max_bytes=settings.client_document_max_bytes,
            timeout_s=settings.client_document_timeout_s,
            allow_private_addresses=settings.client_document_private_addresses,
            fetches=AddressWindow(settings.client_document_fetches_per_address, settings.sign_in_window_s),
        )
        self.provider = BuiltinProvider(
            settings,
            store,
            self.ring,
            self.documents,
            issuer=self.issuer,
            resources=resources,
            scopes=scopes,
            namespace_key=namespace_key,
        )
        base = str(settings.key_check_url or "") or (cli_env or {}).get("ANTHROPIC_BASE_URL") or DEFAULT_API
        self.checker = KeyChecker(base)
        ordered = [self.ring.keys[self.ring.current], *(k for i, k in self.ring.keys.items() if i != self.ring.current)]
        csrf_keys = [hmac.new(key, b"claude-mcp sign-in form", hashlib.sha256).digest() for key in ordered]
        self.registrations = AddressWindow(settings.registrations_per_address, settings.sign_in_window_s)
        self.authorizations = AddressWindow(settings.authorize_per_address, settings.sign_in_window_s)
        self.sign_in = SignIn(self.provider, self.checker, csrf_keys=csrf_keys, allow_oauth=allow_oauth_tokens)

    @classmethod
    def from_settings(
        cls,
        oauth: OAuthSettings,
        store: OAuthGrants,
        *,
        namespace_key: bytes,
        allow_oauth_tokens: bool,
        cli_env: Mapping[str, str],
        environ: Mapping[str, str] | None = None,
    ) -> BuiltinAuthorizationServer:
        """The server `[oauth]` (with `authorization_server = "builtin"`) describes: its issuer is the
        resource's origin, it issues tokens for the resource (and the server's other audiences)."""
        return cls(
            oauth.builtin,
            store,
            issuer=oauth.origin,
            resources=oauth.audiences,
            scopes=oauth.scopes_required,
            namespace_key=namespace_key,
            allow_oauth_tokens=allow_oauth_tokens,
            cli_env=cli_env,
            environ=environ,
        )

    async def identify(self, token: str) -> Identity | None:
        """`IdentityVerifier`: who one of this server's access tokens says is calling."""
        return await self.provider.identify(token)

    async def aclose(self) -> None:
        await self.documents.aclose()

    def routes(self) -> list[Route]:
        """The authorization server's routes, for the HTTP app."""
        issuer = _ISSUER.validate_python(self.issuer)
        scopes = list(self.provider.scopes) or None
        registration = ClientRegistrationOptions(
            enabled=self.settings.dynamic_registration, valid_scopes=scopes, default_scopes=scopes
        )
        revocation = RevocationOptions(enabled=True)
        metadata = build_metadata(issuer, None, registration, revocation)
        metadata.client_id_metadata_document_supported = self.settings.client_metadata_documents
        metadata.authorization_response_iss_parameter_supported = True
        routes: list[Route] = []
        for route in create_auth_routes(self.provider, issuer, None, registration, revocation):
            if route.path == METADATA_PATH:
                route = Route(
                    METADATA_PATH,
                    endpoint=cors_middleware(MetadataHandler(metadata).handle, ["GET", "OPTIONS"]),
                    methods=["GET", "OPTIONS"],
                )
            elif route.path == "/authorize":
                route = Route("/authorize", endpoint=_GuardedAuthorization(route.app, self), methods=["GET", "POST"])
            elif route.path == "/token":
                route = Route("/token", endpoint=_Addressed(route.app), methods=["POST", "OPTIONS"])
            elif route.path == "/revoke":
                route = Route("/revoke", endpoint=_Addressed(_PublicRevocation(route.app)), methods=["POST", "OPTIONS"])
            elif route.path == "/register":
                registering = _BoundedRegistration(route.app, self.registrations)
                route = Route("/register", endpoint=registering, methods=["POST", "OPTIONS"])
            routes.append(route)
        routes.append(Route(PATH, endpoint=_Addressed(request_response(self.sign_in.handle)), methods=["GET", "POST"]))
        return routes


def _address(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else ""


class _Addressed:
    """A route whose handler may fetch a client's metadata document: fetched on behalf of the request's
    client address (`CLIENT_ADDRESS`), which the fetches per address are counted by."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        token = CLIENT_ADDRESS.set(_address(scope))
        try:
            await self.app(scope, receive, send)
        finally:
            CLIENT_ADDRESS.reset(token)


class _GuardedAuthorization:
    """`/authorize`, so many per client address (`authorize_per_address`; beyond, answered
    `temporarily_unavailable`, nothing fetched or stored), and answering a client whose metadata
    document cannot be used with why (400; 429 if its address had too many documents fetched)."""

    def __init__(self, app: Any, server: BuiltinAuthorizationServer) -> None:
        self.app = _Addressed(app)
        self.server = server

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.server.authorizations.take(_address(scope)):
            await (await self._too_many(Request(scope)))(scope, receive, send)
            return
        client_id = Request(scope).query_params.get("client_id", "")
        if scope["method"] == "GET" and is_metadata_url(client_id):
            refusal: CimdRefused | None = None
            if not self.server.settings.client_metadata_documents:
                refusal = CimdRefused("this server does not accept client metadata documents; register the client")
            else:
                try:
                    await self.server.documents.client(client_id, address=_address(scope))
                except CimdRefused as refused:
                    refusal = refused
            if refusal is not None:
                busy = isinstance(refusal, CimdBusy)
                headers = {"Cache-Control": "no-store", **({"Retry-After": "60"} if busy else {})}
                body = {
                    "error": "temporarily_unavailable" if busy else "invalid_client",
                    "error_description": refusal.message,
                }
                await JSONResponse(body, status_code=429 if busy else 400, headers=headers)(scope, receive, send)
                return
        await self.app(scope, receive, _with_iss(send, self.server.issuer))

    async def _too_many(self, request: Request) -> Response:
        """RFC 6749 4.1.2.1: back to the client's redirect URI with `temporarily_unavailable` if the client
        is known (registered, or its document cached: nothing is fetched) and names one it may use;
        else a 429 to whoever sent the request (a POST's body is not read: it gets the 429)."""
        params = request.query_params if request.method == "GET" else {}
        client_id, redirect_uri, state = (params.get(k) for k in ("client_id", "redirect_uri", "state"))
        description = "too many authorization requests from this address; try again later"
        client = await self.server.provider.get_client(client_id, fetch=False) if isinstance(client_id, str) else None
        if client is not None:
            try:
                uri = client.validate_redirect_uri(AnyUrl(redirect_uri) if isinstance(redirect_uri, str) else None)
            except (ValueError, InvalidRedirectUriError):
                uri = None
            if uri is not None:
                back = redirect_with(
                    str(uri),
                    error="temporarily_unavailable",
                    error_description=description,
                    state=state if isinstance(state, str) else None,
                    iss=self.server.issuer,
                )
                return RedirectResponse(back, status_code=302, headers={"Cache-Control": "no-store"})
        body = {"error": "temporarily_unavailable", "error_description": description}
        return JSONResponse(body, status_code=429, headers={"Retry-After": "60", "Cache-Control": "no-store"})


def _with_iss(send: Send, issuer: str) -> Send:
    """`send`, adding `iss` (RFC 9207) to an error sent back to the client's redirect URI by the SDK's
    handler (its own redirects carry only `error`, `error_description` and `state`)."""

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start" and message["status"] == 302:
            headers = []
            for key, value in message["headers"]:
                if key == b"location":
                    query = parse_qs(urlsplit(value.decode("latin-1")).query)
                    if "error" in query and "iss" not in query:
                        value = redirect_with(value.decode("latin-1"), iss=issuer).encode("latin-1")
                headers.append((key, value))
            message = {**message, "headers": headers}
        await send(message)

    return sending


async def _bounded_body(receive: Receive, most: int) -> bytes | None:
    """A request's whole body, or None if it is over `most` bytes (or the client went away)."""
    body = b""
    more = True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            return None
        body += message.get("body", b"")
        more = message.get("more_body", False)
        if len(body) > most:
            return None
    return body


def _replaying(body: bytes, receive: Receive) -> Receive:
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if replayed:
            return await receive()
        replayed = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


def _with_length(scope: Scope, body: bytes) -> Scope:
    headers = [(k, v) for k, v in scope["headers"] if k != b"content-length"]
    headers.append((b"content-length", str(len(body)).encode()))
    return {**scope, "headers": headers}


def _too_many(description: str, status: int = 429) -> Response:
    headers = {"Retry-After": "60", "Cache-Control": "no-store"} if status == 429 else {"Cache-Control": "no-store"}
    return JSONResponse({"error": "invalid_client_metadata", "error_description": description}, status, headers)


class _BoundedRegistration:
    """`/register` (RFC 7591) with a bounded body (413 over `MOST_BYTES`), so many per client address
    (`registrations`), and a registration refused because too many clients were never used answered
    429 (with `Retry-After`) rather than the SDK's 400."""

    MOST_BYTES = 16 * 1024

    def __init__(self, app: Any, registrations: AddressWindow) -> None:
        self.app = app
        self.registrations = registrations

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        if not self.registrations.take(str(client[0]) if client else ""):
            await _too_many("too many registrations from this address; try again later")(scope, receive, send)
            return
        body = await _bounded_body(receive, self.MOST_BYTES)
        if body is None:
            await _too_many(f"the registration request is over {self.MOST_BYTES} bytes", 413)(scope, receive, send)
            return
        answer: list[Message] = []

        async def held(message: Message) -> None:
            answer.append(message)

        await self.app(_with_length(scope, body), _replaying(body, receive), held)
        if answer and answer[0]["type"] == "http.response.start" and answer[0]["status"] == 400:
            sent = b"".join(m.get("body", b"") for m in answer[1:])
            if FULL.encode() in sent:  # the provider's RegistrationsFull
                headers = [*answer[0]["headers"], (b"retry-after", b"60")]
                answer[0] = {**answer[0], "status": 429, "headers": headers}
        for message in answer:
            await send(message)


class _PublicRevocation:
    """`/revoke` for public clients too: RFC 7009 has them send only `client_id`, but the SDK's
    handler requires a `client_secret` field; an absent one is given as empty (which a public
    client's authentication ignores, and a confidential client's refuses)."""

    MOST_BYTES = 64 * 1024

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        body = await _bounded_body(receive, self.MOST_BYTES)
        if body is None:
            await JSONResponse({"error": "invalid_request"}, status_code=413)(scope, receive, send)
            return
        if b"client_secret=" not in body:
            body += b"&client_secret=" if body else b"client_secret="
        await self.app(_with_length(scope, body), _replaying(body, receive), send)
