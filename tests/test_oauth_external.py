"""The server as an OAuth protected resource with an external identity provider (#28, Mode 1): a
real OpenID provider (`oidc-provider`, tests/oidc_provider.py) issues JWT access tokens for tenants;
one `claude-mcp serve --transport http` subprocess checks them against the provider's published keys
and serves `/mcp` (the `mcp` SDK's client) and `/v1/*` (the `anthropic` and `openai` SDKs)."""

from __future__ import annotations

import base64
import json
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import anthropic
import httpx2
import jwt
import openai
import pytest
from mcp import Client
from mcp.client.auth.extensions.client_credentials import ClientCredentialsOAuthProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import OAuthClientInformationFull, OAuthToken

from claude_mcp.bridge.tenancy import Tenancy
from claude_mcp.config.oauth import OAuthSettings
from claude_mcp.config.tenants import TenantSpec, token_hash
from claude_mcp.errors import ConfigError
from claude_mcp.oauth.identity import StaticTokens
from claude_mcp.oauth.introspection import Introspection
from claude_mcp.oauth.jwt_tokens import JwtVerifier, parse_jwks
from claude_mcp.oauth.verifiers import accepted
from claude_mcp.setup.doctor import diagnose
from claude_mcp.state.store import Store
from tests.conftest import FakeModel, call, cli_env_for, text_of
from tests.oidc_provider import SECRET, Idp, free_port, new_key, running_idp, ts_client
from tests.test_http import BOB, RunningServer, connect, serving

pytestmark = [pytest.mark.anyio, pytest.mark.xdist_group("oauth-external")]

INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
}
MCP_HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
NO_STORE = cast(Store, None)
"""Where the built-in authorization server keeps its grants: the external provider's verifiers need none."""
CLIENTS = {
    "alice-app": "alice",
    "bob-app": "bob",
    "carol-app": "carol",
    "stranger-app": "nobody",
    "resource-server": "nobody",
}


@dataclass
class World:
    idp: Idp
    server: RunningServer
    root: Path
    cli_env: dict[str, str]

    @property
    def resource(self) -> str:
        return self.server.url

    @property
    def origin(self) -> str:
        return self.server.base

    def claims(self, **more: object) -> dict[str, object]:
        """Claims of a token the provider could have issued for alice: forge them to change one."""
        return {"sub": "alice-app", "aud": self.resource, "tenant": "alice", "scope": "mcp", **more}


def oauth_config(path: Path, workdir: Path, cli_env: dict[str, str], issuer: str, resource: str) -> Path:
    """alice is reached only through the identity provider, on her own credential; carol too, on the
    server's; bob by his static token too."""
    env_lines = "\n".join(f"{key} = {json.dumps(value)}" for key, value in cli_env.items())
    path.write_text(
        f"roots = [{json.dumps(str(workdir))}]\napi_retries = 0\nmax_concurrent = 8\ndrain_grace_s = 2\n"
        f"[cli_env]\n{env_lines}\n"
        '[tenants.alice]\napi_key_env = "ALICE_KEY"\n'
        '[tenants.carol]\ncredential = "server"\n'
        f'[tenants.bob]\ntoken_sha256 = "{token_hash(BOB)}"\napi_key_env = "BOB_KEY"\n'
        f'[oauth]\naccept = ["static", "oauth"]\nissuer = "{issuer}"\nresource = "{resource}"\n'
        'tenant_claim = "tenant"\nscopes_required = ["mcp"]\njwks_refetch_min_s = 0\nclock_skew_s = 60\n'
    )
    return path


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, fake_model: FakeModel) -> Iterator[World]:
    root = tmp_path_factory.mktemp("oauth-external")
    (workdir := root / "work").mkdir()
    (home := root / "home").mkdir()
    cli_env = cli_env_for(fake_model.url, home)
    with running_idp(root, CLIENTS) as idp:
        port = free_port()
        config = oauth_config(root / "oauth.toml", workdir, cli_env, idp.issuer, f"http://127.0.0.1:{port}/mcp")
        with serving(root, config, "http", "--port", str(port), name="oauth-external") as server:
            yield World(idp, server, root, cli_env)


def tampered(token: str, **claims: object) -> str:
    """`token` with its payload changed and its signature kept."""
    header, payload, signature = token.split(".")
    body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    changed = base64.urlsafe_b64encode(json.dumps({**body, **claims}).encode()).rstrip(b"=").decode()
    return f"{header}.{changed}.{signature}"


async def test_a_token_from_the_identity_provider_reaches_its_tenant_over_mcp_and_the_apis(world: World) -> None:
    token = world.idp.token("alice-app", world.resource)
    async with connect(world.server, token) as alice:
        seen = json.loads((await call(alice, "ask", prompt="[[report]]"))["result"])
    assert seen["api_key"] == "sk-alice"  # alice's own credential, from her tenant's configuration
    async with connect(world.server, world.idp.token("carol-app", world.resource)) as carol:
        seen = json.loads((await call(carol, "ask", prompt="[[report]]"))["result"])
    assert seen["api_key"] == world.cli_env["ANTHROPIC_API_KEY"]  # carol's tenant runs on the server's credential
    api_token = world.idp.token("alice-app", world.origin)  # the resource of /v1/*, the server's origin
    async with anthropic.AsyncAnthropic(
        base_url=world.origin, api_key=None, auth_token=api_token, max_retries=0, timeout=60
    ) as claude:
        created = await claude.messages.create(
            model="sonnet", max_tokens=10, messages=[{"role": "user", "content": "[[say:hi alice]]"}]
        )
    assert created.content[0].text == "hi alice"  # type: ignore[union-attr]
    async with openai.AsyncOpenAI(base_url=f"{world.origin}/v1", api_key=api_token, max_retries=0) as chat:
        completion = await chat.chat.completions.create(
            model="sonnet", messages=[{"role": "user", "content": "[[say:hi from chat]]"}]
        )
    assert completion.choices[0].message.content == "hi from chat"


async def test_refused_tokens_get_a_401_that_points_at_the_resource_metadata(world: World) -> None:
    idp, now = world.idp, int(time.time())
    genuine = idp.token("alice-app", world.resource)
    stranger_key, _ = new_key("stranger")
    refused: dict[str, str | None] = {
        "no token": None,
        "issued for another resource": idp.token("alice-app", "https://elsewhere.example/mcp"),
        "from another issuer": idp.forge(world.claims(iss="http://127.0.0.1:1/another-issuer")),
        "expired": idp.forge(world.claims(iat=now - 3600, exp=now - 600)),
        "not valid yet": idp.forge(world.claims(nbf=now + 600)),
        "tampered (claims another tenant)": tampered(genuine, tenant="bob"),
        "signed by a key the issuer never published": idp.forge(world.claims(), key=stranger_key, kid="stranger"),
        "unsigned": jwt.encode(world.claims(iss=idp.issuer, exp=now + 600), None, algorithm="none"),
        "for a tenant this server does not have": idp.token("stranger-app", world.resource),
        "not a JWT": "not-a-token",
    }
    mcp_metadata = f'resource_metadata="{world.origin}/.well-known/oauth-protected-resource/mcp"'
    api_metadata = f'resource_metadata="{world.origin}/.well-known/oauth-protected-resource"'
    async with httpx2.AsyncClient(timeout=30) as http:
        for case, token in refused.items():
            auth = {"authorization": f"Bearer {token}"} if token else {}
            answer = await http.post(world.resource, json=INITIALIZE, headers={**MCP_HEADERS, **auth})
            assert answer.status_code == 401, case
            challenge = answer.headers["www-authenticate"]
            assert challenge.startswith("Bearer ") and mcp_metadata in challenge and 'scope="mcp"' in challenge, case
            assert ('error="invalid_token"' in challenge) == (token is not None), case
            messages = await http.post(
                f"{world.origin}/v1/messages",
                json={"model": "sonnet", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]},
                headers=auth,
            )
            assert messages.status_code == 401, case
            assert messages.json()["error"]["type"] == "authentication_error", case
            assert api_metadata in messages.headers["www-authenticate"], case
    async with anthropic.AsyncAnthropic(
        base_url=world.origin, api_key=None, auth_token=refused["expired"], max_retries=0
    ) as claude:
        with pytest.raises(anthropic.AuthenticationError) as refusal:
            await claude.models.list()
    assert api_metadata in refusal.value.response.headers["www-authenticate"]


async def test_a_token_without_the_required_scope_is_refused_as_insufficient_scope(world: World) -> None:
    token = world.idp.forge(world.claims(scope="profile"))
    async with httpx2.AsyncClient(timeout=30) as http:
        answer = await http.post(
            world.resource, json=INITIALIZE, headers={**MCP_HEADERS, "authorization": f"Bearer {token}"}
        )
        assert answer.status_code == 403
        assert 'error="insufficient_scope"' in answer.headers["www-authenticate"]
        assert 'scope="mcp"' in answer.headers["www-authenticate"]
        api_token = world.idp.forge(world.claims(scope="profile", aud=world.origin))
        models = await http.get(f"{world.origin}/v1/models", headers={"authorization": f"Bearer {api_token}"})
        assert models.status_code == 403
        assert models.json()["error"]["type"] == "permission_error"
        assert 'error="insufficient_scope"' in models.headers["www-authenticate"]


async def test_the_resource_metadata_is_discovered_from_the_401_and_names_the_identity_provider(world: World) -> None:
    async with httpx2.AsyncClient(timeout=30) as http:
        refused = await http.post(world.resource, json=INITIALIZE, headers=MCP_HEADERS)
        url = refused.headers["www-authenticate"].split('resource_metadata="', 1)[1].split('"', 1)[0]
        metadata = (await http.get(url)).json()
        assert metadata["resource"] == world.resource
        assert metadata["authorization_servers"] == [world.idp.issuer]
        assert metadata["scopes_supported"] == ["mcp"]
        assert metadata["bearer_methods_supported"] == ["header"]
        root = (await http.get(f"{world.origin}/.well-known/oauth-protected-resource")).json()
        assert root["resource"] == world.origin and root["authorization_servers"] == [world.idp.issuer]
        issuer = (await http.get(f"{world.idp.issuer}/.well-known/openid-configuration")).json()
        assert issuer["issuer"] == world.idp.issuer and "jwks_uri" in issuer


async def test_one_tenants_token_never_reaches_another_tenants_conversations(world: World) -> None:
    alice_token = world.idp.token("alice-app", world.resource)
    async with connect(world.server, alice_token) as alice, connect(world.server, BOB) as bob:
        session = (await call(alice, "ask", prompt="remember oauthword"))["session_id"]
        assert (await call(bob, "list_sessions"))["sessions"] == []  # bob's static token still works
        theirs = await bob.call_tool("get_session", {"session_id": session})
        unknown = await bob.call_tool("get_session", {"session_id": "00000000-0000-4000-8000-000000000000"})
        assert theirs.is_error and text_of(theirs) == text_of(unknown)
        assert session in [s["session_id"] for s in (await call(alice, "list_sessions"))["sessions"]]


async def test_a_rotated_signing_key_is_picked_up_without_a_restart(world: World) -> None:
    before = world.idp.token("alice-app", world.resource)
    async with connect(world.server, before) as alice:
        assert (await alice.list_tools()).tools
    world.idp.rotate()
    after = world.idp.token("alice-app", world.resource)
    assert jwt.get_unverified_header(after)["kid"] != jwt.get_unverified_header(before)["kid"]
    async with connect(world.server, after) as alice:
        assert (await alice.list_tools()).tools
    async with httpx2.AsyncClient(timeout=30) as http:  # the old key is gone from the issuer's key set
        stale = await http.post(
            world.resource, json=INITIALIZE, headers={**MCP_HEADERS, "authorization": f"Bearer {before}"}
        )
    assert stale.status_code == 401


async def test_an_unknown_key_id_refetches_the_keys_at_most_once_per_interval(world: World) -> None:
    def verifier(refetch_s: float) -> JwtVerifier:
        settings = OAuthSettings(
            issuer=world.idp.issuer, resource=world.resource, tenant_claim="tenant", jwks_refetch_min_s=refetch_s
        )
        return JwtVerifier(settings, frozenset({"alice"}))

    stranger_key, _ = new_key("stranger")
    unknown = world.idp.forge(world.claims(), key=stranger_key, kid="stranger")
    patient, eager = verifier(3600), verifier(0)
    for checking in (patient, eager):
        identity = await checking.identify(world.idp.token("alice-app", world.resource))
        assert identity is not None and identity.tenant == "alice" and identity.scopes == ("mcp",)
        for _ in range(3):
            assert await checking.identify(unknown) is None
    assert patient.fetches == 1  # the keys, once: unknown key ids within the interval ask nobody
    assert eager.fetches == 4  # once, then once per unknown key id


async def test_opaque_tokens_are_checked_by_introspection(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IDP_CLIENT_ID", "resource-server")
    monkeypatch.setenv("IDP_CLIENT_SECRET", SECRET)
    resource = f"{world.origin}/opaque"
    settings = OAuthSettings(
        issuer=world.idp.issuer,
        resource=resource,
        introspection_endpoint=f"{world.idp.issuer}/token/introspection",
        introspection_client_id_env="IDP_CLIENT_ID",
        introspection_client_secret_env="IDP_CLIENT_SECRET",
        tenant_claim="tenant",
    )
    introspection = Introspection(settings, frozenset({"alice"}))
    token = world.idp.token("alice-app", resource)
    assert token.count(".") != 2  # opaque: only the provider knows what it stands for
    identity = await introspection.identify(token)
    assert identity is not None and identity.tenant == "alice" and identity.scopes == ("mcp",)
    assert identity.resource == resource and identity.issuer == world.idp.issuer
    assert await introspection.identify(world.idp.token("alice-app", f"{world.origin}/elsewhere/opaque")) is None
    assert await introspection.identify(world.idp.token("stranger-app", resource)) is None
    assert await introspection.identify("made-up-token") is None
    monkeypatch.setenv("IDP_CLIENT_ID", "alice-app")  # a client the provider does not let introspect
    assert await Introspection(settings, frozenset({"alice"})).identify(token) is None


def test_claims_map_to_tenants_by_a_claim_or_by_value() -> None:
    settings = OAuthSettings(
        issuer="https://idp.example",
        resource="https://mcp.example/mcp",
        tenant_claim="tenant",
        claim_tenants={"groups=eng": "engineering", "sub=carol": "research"},
        default_tenant="guests",
    )
    tenants = frozenset({"alice", "engineering", "research", "guests"})
    assert settings.tenant_mapped({"tenant": "alice"}, tenants) == "alice"
    assert settings.tenant_mapped({"tenant": "mallory", "groups": ["ops", "eng"]}, tenants) == "engineering"
    assert settings.tenant_mapped({"sub": "carol"}, tenants) == "research"
    assert settings.tenant_mapped({"sub": "dave"}, tenants) == "guests"
    assert (
        OAuthSettings(issuer="https://idp.example", resource="https://mcp.example/mcp").tenant_mapped(
            {"sub": "dave"}, tenants
        )
        is None
    )
    assert str(settings.issuer) == "https://idp.example"  # compared as written: no trailing slash added
    assert set(settings.audiences) >= {"https://mcp.example/mcp", "https://mcp.example"}


@pytest.mark.parametrize(
    ("fields", "complaint"),
    [
        ({"resource": "https://mcp.example/mcp"}, "needs `issuer`"),
        ({"resource": "http://mcp.example/mcp", "issuer": "https://idp.example"}, "https"),
        ({"resource": "https://mcp.example/mcp", "issuer": "http://idp.example"}, "https"),
        ({"resource": "https://mcp.example/mcp", "issuer": "https://idp.example", "accept": ["magic"]}, "accept"),
        (
            {"resource": "https://mcp.example/mcp", "issuer": "https://i.example", "claim_tenants": {"x": "a"}},
            "claim=value",
        ),
        ({"resource": "https://mcp.example/mcp", "issuer": "https://i.example", "algorithms": ["HS256"]}, "algorithms"),
    ],
)
def test_oauth_settings_refuse_what_would_be_unsafe_or_incomplete(fields: dict[str, object], complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        OAuthSettings.model_validate(fields)


async def test_the_sse_transport_is_the_same_protected_resource(world: World) -> None:
    port = free_port()
    resource = f"http://127.0.0.1:{port}/sse"
    config = oauth_config(world.root / "oauth-sse.toml", world.root / "work", world.cli_env, world.idp.issuer, resource)
    with serving(world.root, config, "sse", "--port", str(port), name="oauth-sse") as server:
        async with connect(server, world.idp.token("alice-app", resource)) as alice:
            assert "ask" in {tool.name for tool in (await alice.list_tools()).tools}
        async with httpx2.AsyncClient(timeout=30) as http:
            for refused in (await http.get(resource), await http.post(f"{server.base}/messages/?session_id=x")):
                assert refused.status_code == 401
                challenge = refused.headers["www-authenticate"]
                assert f'resource_metadata="{server.base}/.well-known/oauth-protected-resource/sse"' in challenge
            metadata = (await http.get(f"{server.base}/.well-known/oauth-protected-resource/sse")).json()
            assert metadata["resource"] == resource and metadata["authorization_servers"] == [world.idp.issuer]
            elsewhere = world.idp.token("alice-app", world.resource)  # issued for the other server's /mcp
            assert (await http.get(resource, headers={"authorization": f"Bearer {elsewhere}"})).status_code == 401


async def test_the_typescript_sdk_client_discovers_the_provider_from_the_401_and_calls_ask(world: World) -> None:
    seen = await ts_client(world.resource, world.idp.issuer, "alice-app", "[[report]]")
    assert "ask" in seen["tools"]
    assert json.loads(seen["answer"]["result"])["api_key"] == "sk-alice"
    assert seen["audience"] == world.resource  # it asked for a token for the resource the metadata names


def test_a_tenant_runs_on_its_own_credential_or_on_the_servers() -> None:
    assert TenantSpec(credential="server").credentials("carol", {}) == {}
    assert TenantSpec(api_key_env="K").credentials("alice", {"K": "sk-alice"}) == {"ANTHROPIC_API_KEY": "sk-alice"}
    with pytest.raises(ConfigError, match='credential = "server" takes no api_key_env'):
        TenantSpec(credential="server", api_key_env="K").credentials("carol", {"K": "sk-carol"})
    with pytest.raises(ConfigError, match="give api_key_env or oauth_token_env"):
        TenantSpec().credentials("dave", {})


async def test_an_mcp_session_answers_only_the_principal_that_opened_it(world: World) -> None:
    alice, carol = (world.idp.token(client, world.resource) for client in ("alice-app", "carol-app"))
    listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
    async with httpx2.AsyncClient(timeout=30) as http:
        opened = await http.post(
            world.resource, json=INITIALIZE, headers={**MCP_HEADERS, "authorization": f"Bearer {alice}"}
        )
        assert opened.status_code == 200
        session = {"mcp-session-id": opened.headers["mcp-session-id"], "mcp-protocol-version": "2025-11-25"}
        for stranger in (carol, BOB):  # another tenant's OAuth token, a static token
            borrowed = await http.post(
                world.resource, json=listing, headers={**MCP_HEADERS, **session, "authorization": f"Bearer {stranger}"}
            )
            assert borrowed.status_code in (403, 404), borrowed.text
            assert "ask" not in borrowed.text
        own = await http.post(
            world.resource, json=listing, headers={**MCP_HEADERS, **session, "authorization": f"Bearer {alice}"}
        )
        assert own.status_code == 200 and '"ask"' in own.text  # the session itself works, for alice


def test_claims_mapped_to_a_tenant_that_does_not_exist_are_refused_at_start() -> None:
    oauth = {"issuer": "https://idp.example", "resource": "https://mcp.example/mcp"}
    for mapping in ({"claim_tenants": {"groups=eng": "engineering"}}, {"default_tenant": "guests"}):
        with pytest.raises(ConfigError, match="not a tenant"):
            accepted(OAuthSettings.model_validate(oauth | mapping), {}, tenants=frozenset({"alice"}), store=NO_STORE)
    with pytest.raises(ConfigError, match=r"configure \[tenants.NAME\]"):
        accepted(OAuthSettings.model_validate(oauth), {}, tenants=frozenset(), store=NO_STORE)
    settings, bob = OAuthSettings.model_validate(oauth), {token_hash(BOB): "bob"}
    identities = accepted(settings, bob, tenants=frozenset({"bob"}), store=NO_STORE)
    assert identities is not None and [type(kind) for kind in identities.kinds] == [StaticTokens, JwtVerifier]


def test_the_readmes_identity_provider_example_is_a_config_that_maps_its_claims() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    section = readme.split("### OAuth: the protected resource, and your identity provider\n", 1)[1].split("\n### ")[0]
    example = tomllib.loads(section.split("```toml\n", 1)[1].split("```", 1)[0])
    settings = OAuthSettings.model_validate(example["oauth"])
    tenants = {name: TenantSpec.model_validate(spec) for name, spec in example["tenants"].items()}
    assert settings.tenant_mapped({"groups": ["staff", "research"]}, frozenset(tenants)) == "research"
    assert tenants["alice"].credentials("alice", {}) == {}  # the server pays for alice


def test_an_operator_who_accepts_only_oauth_turns_the_static_tokens_off() -> None:
    oauth = {"issuer": "https://idp.example", "resource": "https://mcp.example/mcp", "accept": ["oauth"]}
    digests = {token_hash(BOB): "bob"}
    identities = accepted(OAuthSettings.model_validate(oauth), digests, tenants=frozenset({"bob"}), store=NO_STORE)
    assert identities is not None and [type(kind) for kind in identities.kinds] == [JwtVerifier]
    tenancy = Tenancy({}, digests, identities=identities)
    assert tenancy.requires_auth and tenancy.tenant_of_token(BOB) is None  # not as x-api-key on /v1/* either
    assert Tenancy({}, digests).tenant_of_token(BOB) == "bob"  # without [oauth]: the static tokens, as before


@dataclass
class Kept:
    """What an MCP client keeps between runs: its tokens (its registration is given)."""

    tokens: OAuthToken | None = None
    client_info: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client_info = client_info


async def test_the_python_sdks_oauth_client_finds_the_provider_from_the_401(world: World) -> None:
    kept = Kept()
    auth = ClientCredentialsOAuthProvider(
        world.resource, kept, "alice-app", SECRET, scope="mcp", issuer=world.idp.issuer
    )
    async with (
        httpx2.AsyncClient(auth=auth, timeout=60) as http,
        Client(streamable_http_client(world.resource, http_client=http)) as alice,
    ):
        assert "ask" in {tool.name for tool in (await alice.list_tools()).tools}
    assert kept.tokens is not None  # it was refused, read the metadata, and got a token from the provider
    assert jwt.decode(kept.tokens.access_token, options={"verify_signature": False})["aud"] == world.resource


def test_doctor_fetches_the_providers_keys_and_says_when_it_cannot(world: World) -> None:
    config = world.root / "oauth.toml"
    findings = [str(finding) for finding in diagnose(config) if finding.what.startswith("[oauth]")]
    assert findings == [f"[ok ] [oauth] issuer {world.idp.issuer}: 1 signing keys"], findings
    unreachable = world.root / "unreachable.toml"
    unreachable.write_text(config.read_text().replace(world.idp.issuer, f"http://127.0.0.1:{free_port()}"))
    (refused,) = [finding for finding in diagnose(unreachable) if finding.what.startswith("[oauth]")]
    assert not refused.ok and "no metadata found" in refused.what and refused.fix is not None


async def test_clocks_may_differ_by_the_configured_skew(world: World) -> None:
    now = int(time.time())  # the server allows 60 s (clock_skew_s) either way
    within = {
        "expired 20 s ago": world.idp.forge(world.claims(iat=now - 600, exp=now - 20)),
        "issued 20 s ahead": world.idp.forge(world.claims(iat=now + 20, nbf=now + 20)),
    }
    async with httpx2.AsyncClient(timeout=30) as http:
        for case, token in within.items():
            answer = await http.post(
                world.resource, json=INITIALIZE, headers={**MCP_HEADERS, "authorization": f"Bearer {token}"}
            )
            assert answer.status_code == 200, case


async def test_an_issuer_whose_key_set_url_is_not_a_url_refuses_tokens_without_raising(world: World) -> None:
    settings = OAuthSettings(issuer=world.idp.issuer, resource=world.resource, tenant_claim="tenant")
    verifier = JwtVerifier(settings, frozenset({"alice"}))
    verifier._jwks_uri = "http://[::1"  # as if the issuer's metadata named it
    assert await verifier.identify(world.idp.token("alice-app", world.resource)) is None
    assert verifier.fetches == 0


def test_malformed_keys_in_a_key_set_are_skipped() -> None:
    _, good = new_key("good")
    keys = parse_jwks({"keys": [{"kty": "oct"}, {"kty": "RSA", "n": "!!"}, "not a key", {**good, "use": "enc"}, good]})
    assert list(keys) == ["good"]
