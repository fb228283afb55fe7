"""The built-in authorization server's flow over HTTP, in process (no CLI runs here; the end-to-end
tests through a real server and the real CLI are in test_oauth_builtin.py): a client registers,
sends the person to the sign-in page, the key they enter is checked with the (fake) model API
before anything is issued, the code is exchanged with PKCE, the access token names the caller
and carries the key; refresh tokens rotate and a reused one revokes the sign-in; revocation.
And what a hostile client or page gets: a wrong verifier, a reused code, an unregistered
redirect URI, a wrong key, a forged form, another resource."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest
from starlette.applications import Starlette

from claude_mcp.config.credentials import CallerCredential
from claude_mcp.config.oauth_builtin import BuiltinSettings
from claude_mcp.oauth.builtin import BuiltinAuthorizationServer, KeyRing, new_key_line
from claude_mcp.oauth.builtin.address_window import AddressWindow, address_key
from claude_mcp.state.sqlite import SqliteStore
from tests.conftest import FakeModel
from tests.https_documents import Documents, serving_documents
from tests.oauth_browser import Pkce, hidden_fields, query_of, sign_in

pytestmark = pytest.mark.anyio

ISSUER = "http://127.0.0.1:8765"
RESOURCE = f"{ISSUER}/mcp"
CALLBACK = "http://127.0.0.1:9/callback"
KEY = "sk-ant-api03-flow-person-key"
NAMESPACE_KEY = b"test namespace key"


@dataclass
class Served:
    server: BuiltinAuthorizationServer
    store: SqliteStore
    http: httpx2.AsyncClient


@asynccontextmanager
async def serving(
    tmp_path: Path, fake_model: FakeModel, settings: BuiltinSettings, *, allow_oauth_tokens: bool = False
) -> AsyncIterator[Served]:
    async with SqliteStore(tmp_path / "state.db") as store:
        server = BuiltinAuthorizationServer(
            settings,
            store,
            issuer=ISSUER,
            resources=(RESOURCE, ISSUER),
            scopes=("claude",),
            namespace_key=NAMESPACE_KEY,
            allow_oauth_tokens=allow_oauth_tokens,
            cli_env={"ANTHROPIC_BASE_URL": fake_model.url},
            environ={"KEYS": new_key_line("k1")},
        )
        app = Starlette(routes=server.routes())
        async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url=ISSUER) as http:
            yield Served(server, store, http)
        await server.aclose()


@pytest.fixture
async def served(tmp_path: Path, fake_model: FakeModel) -> AsyncIterator[Served]:
    async with serving(tmp_path, fake_model, BuiltinSettings(secrets_key_env="KEYS")) as served:
        yield served


async def register(http: httpx2.AsyncClient, redirect_uri: str = CALLBACK, **extra: Any) -> dict[str, Any]:
    metadata = {"redirect_uris": [redirect_uri], "client_name": "Flow Test", "token_endpoint_auth_method": "none"}
    response = await http.post("/register", json={**metadata, **extra})
    assert response.status_code == 201, response.text
    registered: dict[str, Any] = response.json()
    return registered


def authorization_url(client_id: str, pkce: Pkce, state: str = "st", redirect_uri: str = CALLBACK, **extra: str) -> str:
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "code_challenge": pkce.challenge,
        "code_challenge_method": "S256",
        "state": state,
        "resource": RESOURCE,
        **extra,
    }
    return str(httpx2.URL(f"{ISSUER}/authorize", params=params))


async def exchange(http: httpx2.AsyncClient, client_id: str, code: str, verifier: str) -> httpx2.Response:
    data = {
        "grant_type": "authorization_code",
        "client_id": client_id,
        "code": code,
        "code_verifier": verifier,
        "redirect_uri": CALLBACK,
        "resource": RESOURCE,
    }
    return await http.post("/token", data=data)


async def signed_in(served: Served, key: str = KEY) -> tuple[str, dict[str, Any]]:
    """A registered client, through the sign-in with `key`, holding its first tokens."""
    client_id = (await register(served.http))["client_id"]
    pkce = Pkce.new()
    answer = await sign_in(served.http, authorization_url(client_id, pkce), key)
    assert answer.status_code == 303, answer.text
    code = query_of(answer.headers["location"])["code"]
    tokens = await exchange(served.http, client_id, code, pkce.verifier)
    assert tokens.status_code == 200, tokens.text
    return client_id, tokens.json()


def key_checks(fake_model: FakeModel) -> list[str]:
    with urllib.request.urlopen(f"{fake_model.url}/_key_checks") as response:
        checks: list[str] = json.load(response)
        return checks


async def test_the_metadata_says_what_the_server_supports(served: Served) -> None:
    metadata = (await served.http.get("/.well-known/oauth-authorization-server")).json()
    assert metadata["issuer"] == ISSUER
    assert metadata["code_challenge_methods_supported"] == ["S256"]
    assert metadata["client_id_metadata_document_supported"] is True
    assert metadata["authorization_response_iss_parameter_supported"] is True
    assert {"registration_endpoint", "revocation_endpoint"} <= set(metadata)


async def test_a_person_signs_in_with_their_key_and_the_token_carries_it(served: Served, fake_model: FakeModel) -> None:
    client_id = (await register(served.http))["client_id"]
    pkce = Pkce.new()
    page = await served.http.get(authorization_url(client_id, pkce), follow_redirects=True)
    assert page.status_code == 200
    assert "Flow Test" in page.text and "127.0.0.1:9" in page.text  # the client's name, and where it sends you
    assert page.headers["x-frame-options"] == "DENY" and page.headers["cache-control"] == "no-store"
    answer = await sign_in(served.http, authorization_url(client_id, pkce, state="s-123"), KEY)
    assert answer.status_code == 303
    location = answer.headers["location"]
    assert location.startswith(CALLBACK + "?")
    back = query_of(location)
    assert back["state"] == "s-123" and back["iss"] == ISSUER and back["code"].startswith("cmcp_ac_")
    assert KEY in key_checks(fake_model)  # checked with the model API before anything was issued

    tokens = (await exchange(served.http, client_id, back["code"], pkce.verifier)).json()
    assert tokens["token_type"] == "Bearer" and tokens["expires_in"] == 3600
    identity = await served.server.identify(tokens["access_token"])
    assert identity is not None
    assert identity.credential == CallerCredential(KEY, "api_key")
    assert identity.subject == CallerCredential(KEY, "api_key").namespace(NAMESPACE_KEY)  # the header's namespace
    assert identity.tenant == "" and identity.via == "builtin" and identity.resource == RESOURCE
    assert identity.scopes == ("claude",) and identity.issuer == ISSUER
    assert await served.server.identify(tokens["refresh_token"]) is None  # a refresh token is no access token


async def test_refresh_tokens_rotate_and_a_reused_one_ends_the_sign_in(served: Served) -> None:
    client_id, first = await signed_in(served)
    refreshed = await served.http.post(
        "/token", data={"grant_type": "refresh_token", "client_id": client_id, "refresh_token": first["refresh_token"]}
    )
    assert refreshed.status_code == 200, refreshed.text
    second = refreshed.json()
    assert second["refresh_token"] != first["refresh_token"] and second["access_token"] != first["access_token"]
    assert await served.server.identify(second["access_token"]) is not None

    replay = await served.http.post(
        "/token", data={"grant_type": "refresh_token", "client_id": client_id, "refresh_token": first["refresh_token"]}
    )
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    # Whoever replayed it, the whole sign-in is now refused: its tokens and the newer refresh token.
    assert await served.server.identify(second["access_token"]) is None
    assert await served.server.identify(first["access_token"]) is None
    again = await served.http.post(
        "/token", data={"grant_type": "refresh_token", "client_id": client_id, "refresh_token": second["refresh_token"]}
    )
    assert again.status_code == 400


async def test_revoking_either_token_ends_the_sign_in_and_wipes_the_stored_key(served: Served) -> None:
    client_id, tokens = await signed_in(served)
    revoked = await served.http.post("/revoke", data={"client_id": client_id, "token": tokens["refresh_token"]})
    assert revoked.status_code == 200
    assert await served.server.identify(tokens["access_token"]) is None
    rows = await served.store._fetch("SELECT credential, revoked_at FROM oauth_grants")
    assert rows == [{"credential": "", "revoked_at": rows[0]["revoked_at"]}] and rows[0]["revoked_at"] is not None


async def test_the_stored_key_is_sealed_and_secrets_are_stored_only_as_hashes(served: Served, tmp_path: Path) -> None:
    _, tokens = await signed_in(served)
    stored = b"".join(path.read_bytes() for path in tmp_path.rglob("state.db*"))  # noqa: ASYNC240
    assert KEY.encode() not in stored
    assert tokens["access_token"].encode() not in stored and tokens["refresh_token"].encode() not in stored
    (grant,) = await served.store._fetch("SELECT credential FROM oauth_grants")
    assert grant["credential"].startswith("v1.k1.")


# What a hostile client or page gets.
async def test_a_wrong_pkce_verifier_gets_no_token(served: Served) -> None:
    client_id = (await register(served.http))["client_id"]
    pkce = Pkce.new()
    answer = await sign_in(served.http, authorization_url(client_id, pkce), KEY)
    code = query_of(answer.headers["location"])["code"]
    wrong = await exchange(served.http, client_id, code, Pkce.new().verifier)
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"


async def test_a_code_used_twice_gets_nothing_and_revokes_what_the_first_use_got(served: Served) -> None:
    client_id = (await register(served.http))["client_id"]
    pkce = Pkce.new()
    answer = await sign_in(served.http, authorization_url(client_id, pkce), KEY)
    code = query_of(answer.headers["location"])["code"]
    first = await exchange(served.http, client_id, code, pkce.verifier)
    assert first.status_code == 200
    second = await exchange(served.http, client_id, code, pkce.verifier)
    assert second.status_code == 400 and second.json()["error"] == "invalid_grant"
    assert await served.server.identify(first.json()["access_token"]) is None


async def test_another_clients_code_is_not_exchanged(served: Served) -> None:
    client_id = (await register(served.http))["client_id"]
    other = (await register(served.http))["client_id"]
    pkce = Pkce.new()
    answer = await sign_in(served.http, authorization_url(client_id, pkce), KEY)
    code = query_of(answer.headers["location"])["code"]
    stolen = await exchange(served.http, other, code, pkce.verifier)
    assert stolen.status_code == 400 and stolen.json()["error"] == "invalid_grant"


async def test_a_redirect_uri_not_registered_is_refused_without_redirecting(served: Served) -> None:
    client_id = (await register(served.http))["client_id"]
    url = authorization_url(client_id, Pkce.new(), redirect_uri="https://attacker.example/steal")
    response = await served.http.get(url)
    assert response.status_code == 400 and "location" not in response.headers
    assert response.json()["error"] == "invalid_request"
    bad = await served.http.post("/register", json={"redirect_uris": ["http://attacker.example/cb"]})
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_redirect_uri"  # http only on loopback
    bad = await served.http.post("/register", json={"redirect_uris": ["javascript:alert(1)"]})
    assert bad.status_code == 400


async def test_a_wrong_key_is_refused_on_the_page_and_nothing_is_issued(served: Served, fake_model: FakeModel) -> None:
    client_id = (await register(served.http))["client_id"]
    pkce = Pkce.new()
    wrong = "sk-ant-api03-revoked-by-anthropic"
    answer = await sign_in(served.http, authorization_url(client_id, pkce), wrong)
    assert answer.status_code == 400 and "location" not in answer.headers
    assert "rejected this key" in answer.text and wrong not in answer.text  # said so, never echoed
    assert wrong in key_checks(fake_model)
    not_a_key = await sign_in(served.http, authorization_url(client_id, pkce), "hunter2")
    assert not_a_key.status_code == 400 and "not an Anthropic API key" in not_a_key.text
    subscription = await sign_in(served.http, authorization_url(client_id, pkce), "sk-ant-oat01-subscription")
    assert subscription.status_code == 400 and "subscription" in subscription.text
    assert await served.store._fetch("SELECT grant_id FROM oauth_grants") == []
    assert await served.store._fetch("SELECT code_hash FROM oauth_codes") == []
    # The page is still good for another try, with the right key.
    answer = await sign_in(served.http, authorization_url(client_id, pkce), KEY)
    assert answer.status_code == 303


async def test_a_form_not_sent_from_the_page_is_refused(served: Served) -> None:
    client_id = (await register(served.http))["client_id"]
    page = await served.http.get(authorization_url(client_id, Pkce.new()), follow_redirects=True)
    fields = hidden_fields(page.text)
    form = {**fields, "api_key": KEY, "action": "allow"}
    cross_site = await served.http.post("/oauth/sign-in", data=form, headers={"Origin": "https://evil.example"})
    assert cross_site.status_code == 403
    served.http.cookies.clear()  # the page's cookie is missing: not this browser's page
    no_cookie = await served.http.post("/oauth/sign-in", data=form, headers={"Origin": ISSUER})
    assert no_cookie.status_code == 403
    forged = await served.http.post(
        "/oauth/sign-in",
        data={**form, "csrf": "0" * 64},
        headers={"Origin": ISSUER, "Cookie": "cmcp_sign_in=" + "0" * 64},
    )
    assert forged.status_code == 403
    assert await served.store._fetch("SELECT grant_id FROM oauth_grants") == []


async def test_a_person_who_denies_is_sent_back_with_access_denied(served: Served) -> None:
    client_id = (await register(served.http))["client_id"]
    answer = await sign_in(served.http, authorization_url(client_id, Pkce.new(), state="s9"), "", action="deny")
    assert answer.status_code == 303
    back = query_of(answer.headers["location"])
    assert back["error"] == "access_denied" and back["state"] == "s9" and "code" not in back


async def test_a_token_for_another_resource_is_not_issued(served: Served) -> None:
    client_id = (await register(served.http))["client_id"]
    url = authorization_url(client_id, Pkce.new(), resource="https://other.example/mcp")
    response = await served.http.get(url)
    assert response.status_code == 302
    back = query_of(response.headers["location"])
    assert back["error"] == "invalid_target" and back["iss"] == ISSUER  # RFC 9207 on an error too


async def test_an_expired_or_unknown_sign_in_link_says_so(served: Served) -> None:
    response = await served.http.get("/oauth/sign-in", params={"request": "nope"})
    assert response.status_code == 400 and "expired" in response.text


# Clients identified by a metadata document (CIMD).
DOCUMENT = "/app/oauth-client.json"


@pytest.fixture
def documents(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Documents]:
    with serving_documents(tmp_path, {}) as served:
        monkeypatch.setenv("SSL_CERT_FILE", str(served.ca_file))  # this server trusts the site's certificate
        url = served.url(DOCUMENT)
        document = {"client_id": url, "client_name": "Document Client", "redirect_uris": [CALLBACK]}
        served.served[DOCUMENT] = json.dumps(document).encode()
        yield served


async def test_a_client_known_by_its_metadata_document_signs_in_without_registering(
    tmp_path: Path, fake_model: FakeModel, documents: Documents
) -> None:
    settings = BuiltinSettings(secrets_key_env="KEYS", client_document_private_addresses=True)
    async with serving(tmp_path, fake_model, settings) as served:
        client_id, pkce = documents.url(DOCUMENT), Pkce.new()
        page = await served.http.get(authorization_url(client_id, pkce), follow_redirects=True)
        assert page.status_code == 200 and "Document Client" in page.text
        answer = await sign_in(served.http, authorization_url(client_id, pkce), KEY)
        assert answer.status_code == 303, answer.text
        code = query_of(answer.headers["location"])["code"]
        tokens = await exchange(served.http, client_id, code, pkce.verifier)
        assert tokens.status_code == 200, tokens.text
        identity = await served.server.identify(tokens.json()["access_token"])
        assert identity is not None and identity.credential == CallerCredential(KEY, "api_key")
        assert documents.fetched.count(DOCUMENT) == 1  # fetched once, then as its Cache-Control says

        wrong = authorization_url(client_id, pkce, redirect_uri="http://127.0.0.1:9/elsewhere")
        refused = await served.http.get(wrong)
        assert refused.status_code == 400 and "location" not in refused.headers  # not a redirect URI it lists


async def test_an_oversized_or_self_contradicting_document_is_refused_saying_why(
    tmp_path: Path, fake_model: FakeModel, documents: Documents
) -> None:
    big = documents.url("/big.json")
    padding = "x" * 6000
    documents.served["/big.json"] = json.dumps({"client_id": big, "redirect_uris": [CALLBACK], "p": padding}).encode()
    other = documents.url("/other.json")
    documents.served["/other.json"] = json.dumps({"client_id": big, "redirect_uris": [CALLBACK]}).encode()
    settings = BuiltinSettings(secrets_key_env="KEYS", client_document_private_addresses=True)
    async with serving(tmp_path, fake_model, settings) as served:
        for client_id, reason in ((big, "over 5120 bytes"), (other, "does not name its own URL")):
            response = await served.http.get(authorization_url(client_id, Pkce.new()))
            assert response.status_code == 400 and "location" not in response.headers
            assert response.json()["error"] == "invalid_client" and reason in response.json()["error_description"]


async def test_a_document_on_a_loopback_address_is_not_fetched_unless_the_operator_allows_it(
    served: Served, documents: Documents
) -> None:
    response = await served.http.get(authorization_url(documents.url(DOCUMENT), Pkce.new()))
    assert response.status_code == 400
    assert "does not fetch from" in response.json()["error_description"]
    assert documents.fetched == []  # refused before connecting


async def test_a_rotated_key_ring_reseals_a_sign_in_at_its_next_refresh(served: Served) -> None:
    client_id, tokens = await signed_in(served)
    old = served.server.ring
    new_line = new_key_line("k2")
    rotated = KeyRing.parse(new_line, source="test")
    both = KeyRing({**rotated.keys, **old.keys}, "k2")  # the new key first: it seals, the old one still opens
    served.server.provider.ring = both
    assert await served.server.identify(tokens["access_token"]) is not None
    refreshed = await served.http.post(
        "/token", data={"grant_type": "refresh_token", "client_id": client_id, "refresh_token": tokens["refresh_token"]}
    )
    assert refreshed.status_code == 200
    (grant,) = await served.store._fetch("SELECT credential FROM oauth_grants")
    assert grant["credential"].startswith("v1.k2.")  # re-sealed with the new key
    served.server.provider.ring = rotated  # the old key retired: the sign-in still works
    identity = await served.server.identify(refreshed.json()["access_token"])
    assert identity is not None and identity.credential == CallerCredential(KEY, "api_key")


async def test_malformed_sign_in_forms_get_a_page_saying_so_never_a_failure(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    client_id = (await register(served.http))["client_id"]
    page = await served.http.get(authorization_url(client_id, Pkce.new()), follow_redirects=True)
    fields = hidden_fields(page.text)
    origin = {"Origin": ISSUER}
    for form in (
        {},
        {"request": "x" * 100_000},
        {**fields, "csrf": "é" * 64, "api_key": KEY, "action": "allow"},
        {**fields, "api_key": "sk-ant-api03-" + "é" * 20, "action": "allow"},
        {**fields, "api_key": "\x00" * 600, "action": "allow"},
    ):
        response = await served.http.post("/oauth/sign-in", data=form, headers=origin)
        assert 400 <= response.status_code < 500, response.text
        assert "text/html" in response.headers["content-type"]
    bad_json = await served.http.post("/token", content=b"\xff\xfe", headers={"content-type": "application/json"})
    assert bad_json.status_code in (400, 401)
    assert not [r for r in caplog.records if r.levelno >= 30]  # nothing worth a warning, no traceback
    assert await served.store._fetch("SELECT grant_id FROM oauth_grants") == []


async def test_a_subscription_token_signs_in_only_where_the_operator_allows_them(
    tmp_path: Path, fake_model: FakeModel
) -> None:
    token = "sk-ant-oat01-the-owners-own-subscription"
    settings = BuiltinSettings(secrets_key_env="KEYS")
    async with serving(tmp_path, fake_model, settings, allow_oauth_tokens=True) as served:
        _, tokens = await signed_in(served, key=token)
        identity = await served.server.identify(tokens["access_token"])
        assert identity is not None and identity.credential == CallerCredential(token, "oauth_token")
    assert f"Bearer {token}" in key_checks(fake_model)  # checked as a subscription token is sent


# What an anonymous stranger can make the server keep or do.
async def test_a_registration_flood_is_refused_at_the_cap_and_a_client_that_signed_in_is_kept(
    tmp_path: Path, fake_model: FakeModel
) -> None:
    settings = BuiltinSettings(secrets_key_env="KEYS", most_unused_clients=10)
    async with serving(tmp_path, fake_model, settings) as served:
        used_id, tokens = await signed_in(served)
        for _ in range(10):
            await register(served.http)
        metadata = {"redirect_uris": [CALLBACK], "token_endpoint_auth_method": "none"}
        for _ in range(5):
            refused = await served.http.post("/register", json=metadata)
            assert refused.status_code == 429 and refused.headers["retry-after"]
            assert refused.json()["error"] == "invalid_client_metadata"
        assert len(await served.store._fetch("SELECT client_id FROM oauth_clients")) == 11
        # An hour on, the clients never used for a sign-in are forgotten; the one that was is kept.
        await served.store._execute("UPDATE oauth_clients SET created_at = created_at - 3601")
        await register(served.http)
        assert len(await served.store._fetch("SELECT client_id FROM oauth_clients")) == 2
        refreshed = await served.http.post(
            "/token",
            data={"grant_type": "refresh_token", "client_id": used_id, "refresh_token": tokens["refresh_token"]},
        )
        assert refreshed.status_code == 200, refreshed.text


async def test_one_address_may_register_only_so_many_clients_in_a_window(tmp_path: Path, fake_model: FakeModel) -> None:
    settings = BuiltinSettings(secrets_key_env="KEYS", registrations_per_address=3)
    async with serving(tmp_path, fake_model, settings) as served:
        for _ in range(3):
            await register(served.http)
        refused = await served.http.post("/register", json={"redirect_uris": [CALLBACK]})
        assert refused.status_code == 429 and "this address" in refused.json()["error_description"]
        elsewhere = httpx2.ASGITransport(app=Starlette(routes=served.server.routes()), client=("203.0.113.7", 1))
        async with httpx2.AsyncClient(transport=elsewhere, base_url=ISSUER) as other:
            await register(other)
        assert len(await served.store._fetch("SELECT client_id FROM oauth_clients")) == 4


async def test_a_registration_is_small(served: Served) -> None:
    many = [f"http://127.0.0.1:9/cb{n}" for n in range(11)]
    long_uri = "https://app.example/" + "a" * 2000
    for extra, error in (
        ({"redirect_uris": many}, "invalid_redirect_uri"),
        ({"redirect_uris": [long_uri]}, "invalid_redirect_uri"),
        ({"client_name": "n" * 201}, "invalid_client_metadata"),
        ({"client_uri": "https://app.example/" + "u" * 9000}, "invalid_client_metadata"),
    ):
        metadata = {"redirect_uris": [CALLBACK], "token_endpoint_auth_method": "none", **extra}
        response = await served.http.post("/register", json=metadata)
        assert response.status_code == 400 and response.json()["error"] == error, response.text
    huge = await served.http.post("/register", json={"redirect_uris": [CALLBACK], "x": "x" * 20_000})
    assert huge.status_code == 413 and huge.json()["error"] == "invalid_client_metadata"
    assert await served.store._fetch("SELECT client_id FROM oauth_clients") == []


async def test_a_sign_in_may_try_five_keys_then_it_is_void(served: Served, fake_model: FakeModel) -> None:
    client_id = (await register(served.http))["client_id"]
    page = await served.http.get(authorization_url(client_id, Pkce.new()), follow_redirects=True)
    fields = hidden_fields(page.text)
    origin = {"Origin": ISSUER}
    stolen = [f"sk-ant-api03-revoked-stolen-{n}" for n in range(6)]
    answers = [
        await served.http.post("/oauth/sign-in", data={**fields, "api_key": key, "action": "allow"}, headers=origin)
        for key in stolen
    ]
    assert [a.status_code for a in answers] == [400] * 5 + [429]
    assert "Too many keys were tried on this sign-in" in answers[5].text
    assert [k for k in key_checks(fake_model) if "-stolen-" in k] == stolen[:5]  # no 6th
    right = await served.http.post("/oauth/sign-in", data={**fields, "api_key": KEY, "action": "allow"}, headers=origin)
    assert right.status_code == 400 and "expired" in right.text  # void: the person connects again
    assert await served.store._fetch("SELECT grant_id FROM oauth_grants") == []


async def test_one_address_may_have_only_so_many_keys_checked_in_a_window(
    tmp_path: Path, fake_model: FakeModel
) -> None:
    settings = BuiltinSettings(secrets_key_env="KEYS", sign_in_attempts_per_address=3)
    async with serving(tmp_path, fake_model, settings) as served:
        client_id = (await register(served.http))["client_id"]
        tried = [f"sk-ant-api03-revoked-sprayed-{n}" for n in range(4)]
        answers = [await sign_in(served.http, authorization_url(client_id, Pkce.new()), key) for key in tried]
        assert [a.status_code for a in answers] == [400, 400, 400, 429]  # each on a fresh sign-in
        assert "from your network" in answers[3].text
        assert [k for k in key_checks(fake_model) if k.startswith("sk-ant-api03-revoked-sprayed-")] == tried[:3]
        elsewhere = httpx2.ASGITransport(app=Starlette(routes=served.server.routes()), client=("203.0.113.7", 1))
        async with httpx2.AsyncClient(transport=elsewhere, base_url=ISSUER) as other:
            answer = await sign_in(other, authorization_url(client_id, Pkce.new()), KEY)
            assert answer.status_code == 303  # another address is not held up


def test_an_address_window_counts_per_address_and_an_ipv6_subscriber_by_its_64() -> None:
    now = [0.0]
    window = AddressWindow(2, 60, most_addresses=3, clock=lambda: now[0])
    assert [window.take("198.51.100.1") for _ in range(3)] == [True, True, False]
    assert window.take("2001:db8:1:2::1") and window.take("2001:db8:1:2:ffff::9")
    assert not window.take("2001:db8:1:2::abcd")  # the same /64
    assert window.take("2001:db8:1:3::1")  # another /64
    now[0] = 60.0  # the window has passed
    assert window.take("198.51.100.1")
    assert address_key("::ffff:198.51.100.1") == "198.51.100.1"


def from_address(served: Served, address: str) -> httpx2.AsyncClient:
    """A client of the same server sending from another address."""
    transport = httpx2.ASGITransport(app=Starlette(routes=served.server.routes()), client=(address, 1))
    return httpx2.AsyncClient(transport=transport, base_url=ISSUER)


async def pending_sign_ins(served: Served) -> int:
    return len(await served.store._fetch("SELECT request_hash FROM oauth_requests"))


async def test_one_address_may_make_only_so_many_authorization_requests_in_a_window(
    tmp_path: Path, fake_model: FakeModel
) -> None:
    settings = BuiltinSettings(secrets_key_env="KEYS", authorize_per_address=3)
    async with serving(tmp_path, fake_model, settings) as served:
        client_id = (await register(served.http))["client_id"]
        answers = [await served.http.get(authorization_url(client_id, Pkce.new(), state=f"s{n}")) for n in range(4)]
        assert [a.status_code for a in answers] == [302] * 4
        assert all("/oauth/sign-in?" in a.headers["location"] for a in answers[:3])
        # The 4th goes back to the client (its redirect URI is registered) saying so, as RFC 6749 4.1.2.1 says.
        assert answers[3].headers["location"].startswith(CALLBACK)
        back = query_of(answers[3].headers["location"])
        assert back["error"] == "temporarily_unavailable" and back["state"] == "s3" and back["iss"] == ISSUER
        assert await pending_sign_ins(served) == 3  # nothing stored for it
        unknown = await served.http.get(authorization_url("no-such-client", Pkce.new()))
        assert unknown.status_code == 429 and unknown.headers["retry-after"]
        assert unknown.json()["error"] == "temporarily_unavailable" and "location" not in unknown.headers
        unlisted = await served.http.get(authorization_url(client_id, Pkce.new(), redirect_uri="https://evil.example/"))
        assert unlisted.status_code == 429 and "location" not in unlisted.headers  # never to a URI it did not list
        async with from_address(served, "203.0.113.7") as other:
            assert (await sign_in(other, authorization_url(client_id, Pkce.new()), KEY)).status_code == 303


async def test_pending_sign_ins_are_capped_for_everyone_and_a_finished_one_makes_room(
    tmp_path: Path, fake_model: FakeModel
) -> None:
    settings = BuiltinSettings(secrets_key_env="KEYS", most_pending_sign_ins=2)
    async with serving(tmp_path, fake_model, settings) as served:
        client_id = (await register(served.http))["client_id"]
        waiting = await served.http.get(authorization_url(client_id, Pkce.new()), follow_redirects=True)
        assert waiting.status_code == 200
        await served.http.get(authorization_url(client_id, Pkce.new()))
        async with from_address(served, "203.0.113.7") as other:
            refused = await other.get(authorization_url(client_id, Pkce.new(), state="full"))
            assert refused.status_code == 302 and refused.headers["location"].startswith(CALLBACK)
            back = query_of(refused.headers["location"])
            assert back["error"] == "temporarily_unavailable" and back["state"] == "full" and back["iss"] == ISSUER
            assert await pending_sign_ins(served) == 2
            fields = hidden_fields(waiting.text)  # the person waiting finishes their sign-in: room for another
            done = await served.http.post(
                "/oauth/sign-in", data={**fields, "api_key": KEY, "action": "allow"}, headers={"Origin": ISSUER}
            )
            assert done.status_code == 303, done.text
            assert (
                (await other.get(authorization_url(client_id, Pkce.new())))
                .headers["location"]
                .startswith(f"{ISSUER}/oauth/sign-in?")
            )


async def test_one_address_may_have_only_so_many_metadata_documents_fetched_in_a_window(
    tmp_path: Path, fake_model: FakeModel, documents: Documents
) -> None:
    urls = []
    for n in range(4):
        url = documents.url(f"/app{n}.json")
        documents.served[f"/app{n}.json"] = json.dumps({"client_id": url, "redirect_uris": [CALLBACK]}).encode()
        urls.append(url)
    settings = BuiltinSettings(
        secrets_key_env="KEYS", client_document_private_addresses=True, client_document_fetches_per_address=2
    )
    async with serving(tmp_path, fake_model, settings) as served:
        for url in urls[:2]:
            assert (await served.http.get(authorization_url(url, Pkce.new()))).status_code == 302
        refused = await served.http.get(authorization_url(urls[2], Pkce.new()))
        assert refused.status_code == 429 and refused.json()["error"] == "temporarily_unavailable"
        token = await served.http.post("/token", data={"grant_type": "refresh_token", "client_id": urls[3]})
        assert token.status_code == 401  # not through the token endpoint either
        assert (await served.http.get(authorization_url(urls[0], Pkce.new()))).status_code == 302  # cached
        assert documents.fetched == ["/app0.json", "/app1.json"]
        async with from_address(served, "203.0.113.7") as other:
            assert (await other.get(authorization_url(urls[2], Pkce.new()))).status_code == 302
        assert documents.fetched == ["/app0.json", "/app1.json", "/app2.json"]


async def test_a_document_fetched_for_the_sign_in_page_counts_for_the_persons_address(
    tmp_path: Path, fake_model: FakeModel, documents: Documents
) -> None:
    settings = BuiltinSettings(
        secrets_key_env="KEYS", client_document_private_addresses=True, client_document_fetches_per_address=2
    )
    async with serving(tmp_path, fake_model, settings) as served:
        client_id = documents.url(DOCUMENT)
        to_page = await served.http.get(authorization_url(client_id, Pkce.new()))
        assert to_page.status_code == 302  # one fetch: the route's check and the SDK's read share it
        served.server.documents._cache.clear()  # its cache time passed
        assert (await served.http.get(to_page.headers["location"])).status_code == 200  # the 2nd, for this address
        served.server.documents._cache.clear()
        refused = await served.http.get(authorization_url(client_id, Pkce.new()))
        assert refused.status_code == 429 and refused.json()["error"] == "temporarily_unavailable"
        assert documents.fetched == [DOCUMENT, DOCUMENT]
