"""The server as an OAuth protected resource (RFC 9728, the MCP specification's authorization): the
metadata documents it publishes and the `WWW-Authenticate` challenges that point clients at them.

`/mcp` (the `resource` of `[oauth]`) has its metadata at `/.well-known/oauth-protected-resource/mcp`;
the server's origin, the resource of the HTTP APIs under `/v1/`, at `/.well-known/oauth-protected-
resource`. Both name the same authorization server: the identity provider (`external`) or this
server (`builtin`)."""

from __future__ import annotations

from dataclasses import dataclass

from mcp.server.auth.routes import build_resource_metadata_url, create_protected_resource_routes
from mcp.server.auth.settings import AuthSettings
from pydantic import AnyHttpUrl, ConfigDict, TypeAdapter
from starlette.routing import Route

from ..config.oauth import OAuthSettings

_URL = TypeAdapter(AnyHttpUrl, config=ConfigDict(url_preserve_empty_path=True))
"""URLs as written: the origin `https://host`, not `https://host/` (a resource is compared as a string)."""
RESOURCE_NAME = "claude-mcp"
API_PREFIX = "/v1/"
INSUFFICIENT_SCOPE = "claude_mcp.insufficient_scope"
"""Set in a request's ASGI scope by an endpoint that refuses it for missing scopes (with a 403)."""


@dataclass(frozen=True, slots=True)
class ProtectedResource:
    """What `[oauth]` makes of the server as a protected resource."""

    settings: OAuthSettings

    @property
    def resource(self) -> AnyHttpUrl:
        return self.settings.resource

    @property
    def origin(self) -> AnyHttpUrl:
        return _URL.validate_python(self.settings.origin)

    @property
    def authorization_server(self) -> AnyHttpUrl:
        issuer = self.settings.issuer if self.settings.authorization_server == "external" else None
        return issuer if issuer is not None else self.origin

    @property
    def scopes(self) -> tuple[str, ...]:
        return self.settings.scopes_required

    def auth_settings(self) -> AuthSettings:
        """The `mcp` SDK's settings for `/mcp`: its bearer middleware, the scopes it requires, and the
        resource metadata it serves. Tokens' audiences are checked by the verifiers (`audience`
        may name more than the resource), so not again by the SDK."""
        return AuthSettings(
            issuer_url=self.authorization_server,
            resource_server_url=self.resource,
            required_scopes=list(self.scopes) or None,
            validate_token_resource=False,
        )

    def metadata_routes(self, *, include_resource: bool) -> list[Route]:
        """The metadata documents: the origin's (for `/v1/`), and the resource's unless the SDK serves it
        (`include_resource=False`, as `streamable_http_app` does) or it is the origin's."""
        resources = [self.origin]
        if include_resource and self.metadata_url(self.resource) != self.metadata_url(self.origin):
            resources.append(self.resource)
        return [
            route
            for resource in resources
            for route in create_protected_resource_routes(
                resource_url=resource,
                authorization_servers=[self.authorization_server],
                scopes_supported=list(self.scopes) or None,
                resource_name=RESOURCE_NAME,
            )
        ]

    @staticmethod
    def metadata_url(resource: AnyHttpUrl) -> str:
        return str(build_resource_metadata_url(resource))

    def challenge(self, path: str, *, error: str | None = None, description: str | None = None) -> str:
        """A `WWW-Authenticate` value for a refusal at `path` (RFC 6750 §3, RFC 9728 §5.1): where the
        resource's metadata is, the scopes it needs, and the error (none when no token was sent)."""
        resource = self.origin if path.startswith(API_PREFIX) else self.resource
        parts = []
        if error is not None:
            parts.append(f'error="{error}"')
            if description:
                parts.append(f'error_description="{_quoted(description)}"')
        parts.append(f'resource_metadata="{self.metadata_url(resource)}"')
        if self.scopes:
            parts.append(f'scope="{" ".join(self.scopes)}"')
        return "Bearer " + ", ".join(parts)


def _quoted(text: str) -> str:
    """Text fit for a quoted-string: printable ASCII without `"` or `\\` (RFC 6750 §3)."""
    return "".join(c for c in text if 32 <= ord(c) < 127 and c not in '"\\')
