"""`[oauth]` in the config: which bearer tokens the HTTP server accepts, and from whom.

The server is an OAuth 2.1 protected resource (the MCP specification's authorization, RFC 9728
metadata, RFC 8707 audiences) when `[oauth]` is present. `accept` says which kinds of bearer
token are honoured, tried in that order: `static` (the tenants' configured tokens) and `oauth`
(access tokens from an authorization server). `authorization_server` says which one issues them:
`external` (an identity provider the operator runs — Okta, Entra, Keycloak, … — whose JWTs are
checked against its published keys, or looked up at its introspection endpoint) or `builtin`
(the server's own, where callers sign in with their own Anthropic key; see `oauth/builtin/`).
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, field_validator, model_validator

from .oauth_builtin import BuiltinSettings

AcceptedToken = Literal["static", "oauth"]
AuthorizationServerKind = Literal["external", "builtin"]
SigningAlgorithm = Literal["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"]
"""Asymmetric algorithms only: a shared-secret (HS*) or unsigned (`none`) token is never accepted."""

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]", "::1")


def _https_or_loopback(url: AnyHttpUrl, what: str) -> AnyHttpUrl:
    if url.scheme != "https" and url.host not in LOOPBACK_HOSTS:
        raise ValueError(f"{what} must be an https URL (http only on loopback, for tests)")
    return url


class OAuthSettings(BaseModel):
    """`[oauth]` in the config."""

    # An issuer is compared as a string (RFC 8414): `https://idp.example` must not become `https://idp.example/`.
    model_config = ConfigDict(extra="forbid", frozen=True, url_preserve_empty_path=True)

    accept: tuple[AcceptedToken, ...] = Field(
        ("static", "oauth"),
        min_length=1,
        description='Which bearer tokens are honoured, tried in this order: "static" (the tenants\' tokens) and '
        '"oauth" (access tokens from the authorization server).',
    )
    authorization_server: AuthorizationServerKind = Field(
        "external",
        description='Who issues the access tokens: "external" (your identity provider, at `issuer`) or "builtin" '
        "(this server, where callers sign in with their own Anthropic key).",
    )
    resource: AnyHttpUrl = Field(
        ...,
        description="This server's public MCP URL (e.g. https://mcp.example.com/mcp): the resource clients ask "
        "tokens for (RFC 8707) and the audience a token must name.",
    )
    audience: tuple[str, ...] = Field(
        (),
        description="More audiences a token may name instead of `resource` (e.g. the API identifier your IdP "
        "puts in `aud`). The server's own origin is always accepted too.",
    )
    issuer: AnyHttpUrl | None = Field(
        None, description="The external authorization server's issuer URL, exactly as it appears in its tokens."
    )
    jwks_uri: AnyHttpUrl | None = Field(
        None, description="Where the issuer's signing keys are (unset: discovered from the issuer's metadata)."
    )
    introspection_endpoint: AnyHttpUrl | None = Field(
        None,
        description="Check tokens by asking the issuer (RFC 7662) instead of verifying them as JWTs (for opaque "
        "tokens). Needs `introspection_client_id_env` and `introspection_client_secret_env`.",
    )
    introspection_client_id_env: str | None = Field(
        None, description="Environment variable with this server's client id at the issuer."
    )
    introspection_client_secret_env: str | None = Field(
        None, description="Environment variable with this server's client secret at the issuer."
    )
    algorithms: tuple[SigningAlgorithm, ...] = Field(
        ("RS256", "PS256", "ES256", "EdDSA"), min_length=1, description="Signature algorithms accepted."
    )
    scopes_required: tuple[str, ...] = Field(
        (), description="Scopes every access token must carry (advertised in the metadata and in 401s)."
    )
    tenant_claim: str | None = Field(
        None,
        description="A claim whose value (a string or a list of them) names the tenant, e.g. `tenant` or `groups` "
        "with groups named after tenants.",
    )
    claim_tenants: dict[str, str] = Field(
        default_factory=dict,
        description='Tenants by claim value, tried in order: `"sub=alice" = "research"`, `"groups=eng" = "eng"` '
        "(a list-valued claim matches when it holds the value).",
    )
    default_tenant: str | None = Field(
        None, description="The tenant of a valid token that no `tenant_claim` or `claim_tenants` entry maps."
    )
    jwks_cache_s: float = Field(
        300, gt=0, description="How long the issuer's keys are used before fetching them again."
    )
    jwks_refetch_min_s: float = Field(
        30,
        ge=0,
        description="A token signed with a key id not yet known makes the keys be fetched again (a rotation), at "
        "most this often.",
    )
    clock_skew_s: float = Field(
        60, ge=0, le=600, description="Leeway for `exp`, `nbf` and `iat` between this server's clock and the issuer's."
    )
    http_timeout_s: float = Field(5, gt=0, le=60, description="Timeout of each request to the issuer.")
    builtin: BuiltinSettings = Field(
        default_factory=BuiltinSettings,
        description='`[oauth.builtin]`: the built-in authorization server (`authorization_server = "builtin"`).',
    )

    @field_validator("resource")
    @classmethod
    def _resource(cls, url: AnyHttpUrl) -> AnyHttpUrl:
        _https_or_loopback(url, "resource")
        if url.fragment or url.query:
            raise ValueError("resource must not have a query or fragment (RFC 8707)")
        return url

    @field_validator("issuer", "jwks_uri", "introspection_endpoint")
    @classmethod
    def _issuer_urls(cls, url: AnyHttpUrl | None) -> AnyHttpUrl | None:
        return None if url is None else _https_or_loopback(url, "the issuer's URLs")

    @field_validator("claim_tenants")
    @classmethod
    def _claim_tenants(cls, mapping: dict[str, str]) -> dict[str, str]:
        for key in mapping:
            claim, sep, value = key.partition("=")
            if not sep or not claim or not value:
                raise ValueError(f"claim_tenants key {key!r} is not of the form 'claim=value'")
        return mapping

    @model_validator(mode="after")
    def _consistent(self) -> OAuthSettings:
        if "oauth" in self.accept and self.authorization_server == "external":
            if self.issuer is None:
                raise ValueError('authorization_server = "external" needs `issuer`')
            if self.introspection_endpoint is not None and not (
                self.introspection_client_id_env and self.introspection_client_secret_env
            ):
                raise ValueError(
                    "introspection_endpoint needs introspection_client_id_env and introspection_client_secret_env"
                )
        return self

    @property
    def accepts_oauth(self) -> bool:
        return "oauth" in self.accept

    @property
    def accepts_static(self) -> bool:
        return "static" in self.accept

    @property
    def origin(self) -> str:
        """The server's origin (`https://host[:port]`), the resource of the API under `/v1/`."""
        parts = urlsplit(str(self.resource))
        return f"{parts.scheme}://{parts.netloc}"

    @property
    def audiences(self) -> tuple[str, ...]:
        """Every audience a token may name: the MCP resource, the server's origin, and `audience`."""
        resource = str(self.resource)
        return tuple(dict.fromkeys((resource, resource.rstrip("/"), self.origin, self.origin + "/", *self.audience)))

    def tenant_mapped(self, claims: dict[str, object], tenants: frozenset[str]) -> str | None:
        """The tenant a token's claims map to (one of `tenants`), or None."""
        if self.tenant_claim is not None:
            for value in _values(claims.get(self.tenant_claim)):
                if value in tenants:
                    return value
        for key, tenant in self.claim_tenants.items():
            claim, _, wanted = key.partition("=")
            if wanted in _values(claims.get(claim)) and tenant in tenants:
                return tenant
        return self.default_tenant if self.default_tenant in tenants else None


def _values(claim: object) -> tuple[str, ...]:
    if isinstance(claim, str):
        return (claim,)
    if isinstance(claim, list | tuple):
        return tuple(v for v in claim if isinstance(v, str))
    return ()
