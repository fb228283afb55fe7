"""The HTTP application: Streamable HTTP at `/mcp`, or legacy HTTP+SSE, and `/healthz`.

Requests carry `Authorization: Bearer <token>` when tenants or `[oauth]` are configured (the SDK's
bearer-auth middleware, with `Tenancy` as its token verifier); with `[oauth]` the server is an OAuth
protected resource (`oauth.resource`: its metadata, and `challenges` on its refusals). The
Host/Origin checks against DNS rebinding are always on. `/healthz` says only that the server is up.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from mcp.server.auth.middleware.auth_context import AuthContextMiddleware
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser, BearerAuthBackend, RequireAuthMiddleware
from mcp.server.auth.routes import build_resource_metadata_url
from mcp.server.auth.settings import AuthSettings
from mcp.server.lowlevel.server import Server
from mcp.server.sse import SseServerTransport
from mcp.server.transport_security import TransportSecurityMiddleware, TransportSecuritySettings
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from ..bridge.tenancy import Tenancy
from ..config.credentials import CREDENTIAL_HEADER, CredentialRefused, parse_credential
from ..errors import ConfigError
from ..http_api.routes import api_routes
from ..oauth.builtin import BuiltinAuthorizationServer
from ..oauth.identity import identity_of
from ..oauth.resource import ProtectedResource
from .challenges import Challenges
from .jsonrpc_guard import JsonRpcGuard

Transport = Literal["stdio", "http", "sse"]
TRANSPORTS: tuple[Transport, ...] = ("stdio", "http", "sse")
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def check_binding(host: str, tenancy: Tenancy) -> None:
    """Refuse to listen beyond loopback without authentication (unless every caller pays with
    its own credential, so nobody can spend the server's)."""
    if host not in LOOPBACK and not tenancy.requires_auth and not tenancy.takes_caller_credentials:
        raise ConfigError(
            f"Refusing to listen on {host} without authentication: anyone who can reach it could run Claude "
            "with your credentials. Configure [tenants.NAME] with a token (see README), let every caller bring their "
            "own Anthropic key (--credentials caller), or bind to 127.0.0.1."
        )


def security_settings(host: str, allowed_hosts: tuple[str, ...]) -> TransportSecuritySettings:
    """DNS-rebinding protection: only loopback names and the configured hosts are answered."""
    hosts = ["127.0.0.1:*", "localhost:*", "[::1]:*", *allowed_hosts]
    if host not in (*LOOPBACK, "0.0.0.0", "::"):
        hosts.append(f"{host}:*")
    origins = [f"{scheme}://{h}" for h in hosts for scheme in ("http", "https")]
    return TransportSecuritySettings(enable_dns_rebinding_protection=True, allowed_hosts=hosts, allowed_origins=origins)


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


class RequireCallerCredential:
    """In caller-credential mode, refuse a request without an acceptable `X-Claude-Credential`
    with a clear 401 (or 403), before any MCP processing. The credential is never echoed."""

    def __init__(self, app: Any, *, allow_oauth: bool, open_paths: tuple[str, ...] = ("/healthz",)) -> None:
        self.app = app
        self.allow_oauth = allow_oauth
        self.open_paths = open_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # The HTTP APIs read the credential the way their SDKs send it, and refuse in their own shapes.
        path = scope.get("path", "")
        if scope["type"] == "http" and path not in self.open_paths and not path.startswith(("/v1/", "/.well-known/")):
            if _carries_credential(scope):  # the bearer token carries the caller's own credential
                await self.app(scope, receive, send)
                return
            header = Headers(scope=scope).get(CREDENTIAL_HEADER)
            try:
                parse_credential(header, allow_oauth=self.allow_oauth)
            except CredentialRefused as refused:
                body = {"error": "invalid_credential", "error_description": refused.message}
                await JSONResponse(body, status_code=refused.status)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _carries_credential(scope: Scope) -> bool:
    user = scope.get("user")
    identity = identity_of(user.access_token) if isinstance(user, AuthenticatedUser) else None
    return identity is not None and identity.credential is not None


@dataclass(frozen=True, slots=True)
class McpSessions:
    """How many Streamable HTTP sessions may be open at once, and how long an unused one lives."""

    most: int = 1000
    idle_s: float = 1800


def http_app(
    server: Server[Any],
    tenancy: Tenancy,
    transport: Transport,
    host: str,
    allowed_hosts: tuple[str, ...],
    *,
    api_heartbeat_s: float | None = None,
    sessions: McpSessions | None = None,
) -> Starlette:
    """The ASGI app for `http` (Streamable HTTP at /mcp) or `sse` (GET /sse, POST /messages/), with
    the Anthropic and OpenAI APIs under `/v1/` unless `api_heartbeat_s` is None (the API is off)."""
    security = security_settings(host, allowed_hosts)
    routes = [Route("/healthz", healthz, methods=["GET"])]
    if api_heartbeat_s is not None:
        routes += api_routes(tenancy, heartbeat_s=api_heartbeat_s, security=security)
    oauth = tenancy.policy.oauth if tenancy.policy is not None and tenancy.requires_auth else None
    signing_in = _authorization_server_routes(tenancy)
    resource = ProtectedResource(oauth) if oauth is not None else None
    auth = None
    if resource is not None:  # an OAuth protected resource: its metadata, and challenges that point at it
        routes += resource.metadata_routes(include_resource=transport != "http")
        auth = resource.auth_settings()
        routes += signing_in
    elif tenancy.requires_auth:
        auth = AuthSettings(issuer_url="http://localhost", resource_server_url=None)
    verifier = tenancy if tenancy.requires_auth else None
    app = _mcp_app(server, transport, security, host, routes, auth, verifier, sessions or McpSessions())
    if tenancy.takes_caller_credentials:  # inside the bearer middleware: a token may carry the credential
        open_paths = ("/healthz", *(route.path for route in signing_in))
        app.user_middleware.append(
            Middleware(RequireCallerCredential, allow_oauth=tenancy.accepts_oauth_tokens, open_paths=open_paths)
        )
    if resource is not None:
        app.add_middleware(Challenges, resource=resource)
    if transport == "http":  # outermost: the transport's plain-text refusals, whoever made them
        app.add_middleware(JsonRpcGuard, path="/mcp")
    return app


def _authorization_server_routes(tenancy: Tenancy) -> list[Route]:
    """The built-in authorization server's endpoints and sign-in page, where its tokens are accepted."""
    kinds = tenancy.identities.kinds if tenancy.identities is not None else ()
    return [route for kind in kinds if isinstance(kind, BuiltinAuthorizationServer) for route in kind.routes()]


def _mcp_app(
    server: Server[Any],
    transport: Transport,
    security: TransportSecuritySettings,
    host: str,
    routes: list[Route],
    auth: AuthSettings | None,
    verifier: Tenancy | None,
    sessions: McpSessions,
) -> Starlette:
    if transport == "http":
        return server.streamable_http_app(
            streamable_http_path="/mcp",
            max_sessions=sessions.most,
            session_idle_timeout=sessions.idle_s,
            transport_security=security,
            host=host,
            auth=auth,
            token_verifier=verifier,
            custom_starlette_routes=routes,
        )
    sse = SseServerTransport("/messages/", security_settings=security)

    async def handle_sse(scope: Scope, receive: Receive, send: Send) -> None:
        connection = sse.connect_sse(scope, receive, send)
        try:
            read_stream, write_stream = await connection.__aenter__()
        except ValueError:  # a rejected Host/Origin: the transport has already answered 4xx
            return
        try:
            await server.run(read_stream, write_stream, server.create_initialization_options())
        except BaseException as exc:
            if not await connection.__aexit__(type(exc), exc, exc.__traceback__):
                raise
        else:
            await connection.__aexit__(None, None, None)

    def guarded(app: Any) -> Any:
        if verifier is None:
            return app
        scopes = (auth.required_scopes or []) if auth is not None else []
        resource = auth.resource_server_url if auth is not None else None
        return RequireAuthMiddleware(app, scopes, build_resource_metadata_url(resource) if resource else None)

    middleware = (
        [Middleware(AuthenticationMiddleware, backend=BearerAuthBackend(verifier)), Middleware(AuthContextMiddleware)]
        if verifier is not None
        else []
    )
    return Starlette(
        routes=[
            *routes,
            Route("/sse", endpoint=_AsgiEndpoint(guarded(handle_sse)), methods=["GET"]),
            Mount("/messages/", app=guarded(sse.handle_post_message)),
        ],
        middleware=middleware,
    )


class _AsgiEndpoint:
    """Lets Starlette route to a raw ASGI callable (its Route would wrap a function as a request handler)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
"""Answered in front of the transports (which check Host and Origin themselves)."""


def with_host_checks(app: ASGIApp, security: TransportSecuritySettings) -> ASGIApp:
    """`app`, whose open paths answer only to the allowed Host and Origin too: a page that rebinds
    its DNS name to this loopback server must not read `/metrics` (a JSON 421 or 403 otherwise)."""
    checks = TransportSecurityMiddleware(security)

    async def checked(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("path") in OPEN_PATHS:
            refused = await checks.validate_request(Request(scope), is_post=False)
            if refused is not None:
                reason = bytes(refused.body).decode(errors="replace")
                await JSONResponse({"error": "forbidden", "error_description": reason}, refused.status_code)(
                    scope, receive, send
                )
                return
        await app(scope, receive, send)

    return checked
