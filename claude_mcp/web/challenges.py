"""`WWW-Authenticate` on every refusal of a protected path, the way an OAuth client discovers the
server (RFC 6750 §3, RFC 9728 §5.1, the MCP specification's authorization).

The `mcp` SDK's bearer middleware refuses `/mcp` with a challenge of its own; the HTTP APIs refuse
in the Anthropic/OpenAI error shapes, without one. In front of both, each 401 gets the challenge
that names the resource's metadata and the scopes it needs (`error="invalid_token"` only when a
token was sent), and a 403 for missing scopes `error="insufficient_scope"`; the body is untouched.
"""

from __future__ import annotations

from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..oauth.resource import INSUFFICIENT_SCOPE, ProtectedResource

PROTECTED = ("/mcp", "/sse", "/messages/", "/v1/")
"""The resource's paths: the transports' and the HTTP APIs'. Others (`/healthz`, the metadata, the
built-in authorization server's endpoints, whose 401s challenge a client's own credentials) pass as they are."""


class Challenges:
    """ASGI middleware: the OAuth challenge on the protected paths' 401s and scope 403s."""

    def __init__(self, app: ASGIApp, resource: ProtectedResource) -> None:
        self.app = app
        self.resource = resource

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith(PROTECTED):
            await self.app(scope, receive, send)
            return
        presented = Headers(scope=scope).get("authorization", "").lower().startswith("bearer ")

        async def challenging(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] in (401, 403):
                headers = MutableHeaders(scope=message)
                given = headers.get("www-authenticate", "")
                if message["status"] == 401:  # a token refused, or none sent (or refused for another reason)
                    refused = presented and not isinstance(scope.get("user"), AuthenticatedUser)
                    error = "invalid_token" if refused else None
                    description = "The access token is invalid, expired, or not issued for this server"
                    headers["www-authenticate"] = self.resource.challenge(path, error=error, description=description)
                elif "insufficient_scope" in given or scope.get(INSUFFICIENT_SCOPE):
                    headers["www-authenticate"] = self.resource.challenge(
                        path, error="insufficient_scope", description="The access token lacks a required scope"
                    )
            await send(message)

        await self.app(scope, receive, challenging)
