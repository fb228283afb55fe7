"""The built-in authorization server's parts, each on its own: the key ring that seals callers'
keys (rotation included), its records in both stores (codes and refresh tokens good once, a
revoked grant's key wiped), and the guard on fetching a client's metadata document (https only,
no private addresses, size and time limits, the document must describe itself)."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from claude_mcp import Policy
from claude_mcp.bridge.tenancy import Tenancy
from claude_mcp.config.tenants import TenantSpec
from claude_mcp.errors import ConfigError
from claude_mcp.oauth.builtin import BuiltinAuthorizationServer
from claude_mcp.oauth.builtin.address_window import AddressWindow
from claude_mcp.oauth.builtin.cimd import (
    CimdBusy,
    CimdRefused,
    MetadataDocuments,
    address_allowed,
    check_url,
    parse_document,
)
from claude_mcp.oauth.builtin.sealing import KeyRing, SealBroken, new_key_line
from claude_mcp.state._sql import SqlStore
from claude_mcp.state.oauth_grants import CodeRecord, GrantRecord, PendingRequest, TokenRecord
from claude_mcp.state.postgres import PostgresStore
from claude_mcp.state.sqlite import SqliteStore
from tests.https_documents import serving_documents

pytestmark = pytest.mark.anyio
CB = "http://127.0.0.1:9/cb"


# The key ring.
def test_a_sealed_key_opens_only_with_its_ring_and_for_its_own_record() -> None:
    ring = KeyRing.parse(new_key_line("k1"), source="test")
    sealed = ring.seal("sk-ant-api03-secret", bound_to="grant-a")
    assert "sk-ant-api03-secret" not in sealed and sealed.startswith("v1.k1.")
    assert ring.open(sealed, bound_to="grant-a") == "sk-ant-api03-secret"
    with pytest.raises(SealBroken):
        ring.open(sealed, bound_to="grant-b")  # copied into another grant's record
    with pytest.raises(SealBroken):
        KeyRing.parse(new_key_line("k1"), source="test").open(sealed, bound_to="grant-a")  # another key, same id
    tampered = sealed[:-4] + ("AAAA" if not sealed.endswith("AAAA") else "BBBB")
    with pytest.raises(SealBroken):
        ring.open(tampered, bound_to="grant-a")


def test_a_rotated_ring_opens_what_the_old_key_sealed_and_seals_with_the_new_one() -> None:
    old_line, new_line = new_key_line("2026-01"), new_key_line("2026-12")
    old = KeyRing.parse(old_line, source="test")
    sealed_before = old.seal("sk-ant-api03-before", bound_to="g")
    rotated = KeyRing.parse(f"{new_line}\n{old_line}\n", source="test")
    assert rotated.current == "2026-12"
    assert rotated.open(sealed_before, bound_to="g") == "sk-ant-api03-before"
    assert not rotated.sealed_with_current(sealed_before)
    assert rotated.sealed_with_current(rotated.seal("x", bound_to="g"))
    retired = KeyRing.parse(new_line, source="test")  # the old key removed: what it sealed no longer opens
    with pytest.raises(SealBroken) as broken:
        retired.open(sealed_before, bound_to="g")
    assert broken.value.key_id == "2026-01"


def test_a_ring_comes_from_the_environment_or_a_key_file_and_bad_ones_are_refused(tmp_path: Path) -> None:
    line = new_key_line("env")
    assert KeyRing.load(env="KEYS", file=None, environ={"KEYS": line}).current == "env"
    key_file = tmp_path / "keys"
    key_file.write_text(f"# the first one seals\n{new_key_line('file')}\n")
    assert KeyRing.load(env="KEYS", file=key_file, environ={}).current == "file"
    for bad in ("", "k1", "k1:short", f"{line},{line}", "bad id:" + line.split(":")[1]):
        with pytest.raises(ConfigError):
            KeyRing.parse(bad, source="test")
    with pytest.raises(ConfigError, match="KEYS"):
        KeyRing.load(env="KEYS", file=None, environ={})


# The records, in both stores.
@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SqlStore]:
    opened: SqlStore
    if request.param == "sqlite":
        opened = SqliteStore(tmp_path / "state.db")
    else:
        opened = PostgresStore(request.getfixturevalue("postgres_database"))
    async with opened:
        yield opened


def _grant(grant_id: str, now: float) -> GrantRecord:
    return GrantRecord(
        grant_id=grant_id,
        client_id="client",
        namespace="caller-x",
        credential="v1.k.sealed",
        kind="api_key",
        scopes=["claude"],
        resource="https://mcp.example/mcp",
        created_at=now,
        expires_at=now + 60,
    )


def _code(grant_id: str, now: float) -> CodeRecord:
    return CodeRecord(
        code_hash=f"code-{grant_id}",
        grant_id=grant_id,
        client_id="client",
        redirect_uri="http://127.0.0.1:1/cb",
        redirect_uri_explicit=True,
        code_challenge="c",
        expires_at=now + 60,
    )


async def test_codes_and_refresh_tokens_are_good_once_and_a_revoked_grant_loses_its_key(store: SqlStore) -> None:
    now = time.time()
    assert await store.put_oauth_client("client", '{"client_id": "client"}', None, now, unused_since=0, most_unused=9)
    assert await store.get_oauth_client("client") == ('{"client_id": "client"}', None)
    pending = PendingRequest(request_hash="r", client_id="client", params="{}", expires_at=now + 60)
    assert await store.put_oauth_request(pending, now=now, most=9)
    assert await store.get_oauth_request("r", now) == pending
    assert await store.take_oauth_request("r", now) == pending
    assert await store.take_oauth_request("r", now) is None  # the same form sent twice: one wins

    await store.open_oauth_grant(_grant("g1", now), _code("g1", now))
    code = await store.get_oauth_code("code-g1")
    assert code is not None and code.redirect_uri_explicit is True and code.used_at is None
    assert await store.use_oauth_code("code-g1", now)
    assert not await store.use_oauth_code("code-g1", now)

    tokens = [
        TokenRecord(token_hash="at", grant_id="g1", kind="access", expires_at=now + 60),
        TokenRecord(token_hash="rt", grant_id="g1", kind="refresh", expires_at=now + 600),
    ]
    await store.add_oauth_tokens("g1", tokens, now + 600, credential="v1.k.resealed")
    found = await store.get_oauth_token("rt")
    assert found is not None
    token, grant = found
    assert token.kind == "refresh" and grant.credential == "v1.k.resealed" and grant.expires_at == now + 600
    assert grant.scopes == ["claude"]
    assert await store.use_oauth_token("rt", now)
    assert not await store.use_oauth_token("rt", now)

    await store.revoke_oauth_grant("g1", now)
    found = await store.get_oauth_token("at")
    assert found is not None and found[1].revoked_at == now and found[1].credential == ""


async def test_expired_records_are_forgotten(store: SqlStore) -> None:
    then = time.time() - 3600
    await store.open_oauth_grant(_grant("old", then), _code("old", then))
    await store.add_oauth_tokens(
        "old", [TokenRecord(token_hash="old-at", grant_id="old", kind="access", expires_at=then + 1)], then + 1
    )
    old = PendingRequest(request_hash="old-r", client_id="c", params="{}", expires_at=then)
    assert await store.put_oauth_request(old, now=then - 1, most=9)
    await store.forget_oauth(time.time())
    assert await store.get_oauth_grant("old") is None
    assert await store.get_oauth_code("code-old") is None
    assert await store.get_oauth_token("old-at") is None
    assert await store.get_oauth_request("old-r", then - 1) is None


async def test_unused_clients_are_capped_and_forgotten_and_a_signed_in_one_is_kept(store: SqlStore) -> None:
    now = time.time()
    for n in range(3):
        assert await store.put_oauth_client(f"c{n}", "{}", None, now - 7200, unused_since=0, most_unused=3)
    assert not await store.put_oauth_client("c3", "{}", None, now, unused_since=0, most_unused=3)  # the cap
    assert await store.get_oauth_client("c3") is None
    await store.open_oauth_grant(_grant("g", now).model_copy(update={"client_id": "c0"}), _code("g", now))
    assert await store.put_oauth_client("c3", "{}", None, now, unused_since=0, most_unused=3)  # c0 is used now
    # An hour on: the clients never used for a sign-in are forgotten, the one that was is kept.
    assert await store.put_oauth_client("c4", "{}", None, now, unused_since=now - 3600, most_unused=3)
    rows = await store._fetch("SELECT client_id FROM oauth_clients ORDER BY client_id")
    assert [row["client_id"] for row in rows] == ["c0", "c3", "c4"]


async def test_a_pending_sign_in_counts_the_keys_tried_on_it(store: SqlStore) -> None:
    now = time.time()
    pending = PendingRequest(request_hash="r", client_id="c", params="{}", expires_at=now + 60)
    assert await store.put_oauth_request(pending, now=now, most=9)
    assert [await store.try_oauth_request("r", now, 2) for _ in range(3)] == [True, True, False]
    pending = await store.get_oauth_request("r", now)
    assert pending is not None and pending.attempts == 2
    assert not await store.try_oauth_request("unknown", now, 2)


async def test_pending_sign_ins_are_capped_and_an_expired_one_makes_room(store: SqlStore) -> None:
    now = time.time()

    def pending(n: int, until: float) -> PendingRequest:
        return PendingRequest(request_hash=f"r{n}", client_id="c", params="{}", expires_at=until)

    assert await store.put_oauth_request(pending(0, now + 1), now=now, most=3)
    for n in (1, 2):
        assert await store.put_oauth_request(pending(n, now + 600), now=now, most=3)
    assert not await store.put_oauth_request(pending(3, now + 600), now=now, most=3)  # the cap
    assert await store.get_oauth_request("r3", now) is None
    assert await store.put_oauth_request(pending(3, now + 600), now=now + 2, most=3)  # r0 expired: room
    rows = await store._fetch("SELECT request_hash FROM oauth_requests ORDER BY request_hash")
    assert [row["request_hash"] for row in rows] == ["r1", "r2", "r3"]


async def test_requests_at_once_cannot_pass_the_pending_cap(store: SqlStore) -> None:
    now = time.time()
    stored: list[bool] = []

    async def put(n: int) -> None:
        request = PendingRequest(request_hash=f"r{n}", client_id="c", params="{}", expires_at=now + 600)
        stored.append(await store.put_oauth_request(request, now=now, most=5))

    async with anyio.create_task_group() as tasks:
        for n in range(20):
            tasks.start_soon(put, n)
    assert stored.count(True) == 5
    assert len(await store._fetch("SELECT request_hash FROM oauth_requests")) == 5


# Client metadata documents.
def test_a_client_id_url_must_be_https_with_a_path_and_nothing_hidden_in_it() -> None:
    check_url("https://app.example/oauth/client.json")
    for bad in (
        "http://app.example/client.json",
        "https://app.example",
        "https://app.example/",
        "https://user:pw@app.example/c.json",
        "https://app.example/c.json#x",
        "https://app.example/a/../c.json",
    ):
        with pytest.raises(CimdRefused):
            check_url(bad)


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "::1", "fe80::1", "fc00::1",
     "::ffff:127.0.0.1", "0.0.0.0", "100.64.0.1", "224.0.0.1"],
)  # fmt: skip
def test_no_private_loopback_link_local_or_reserved_address_is_fetched_from(address: str) -> None:
    assert not address_allowed(address)


def test_public_addresses_are_fetched_from() -> None:
    assert address_allowed("93.184.215.14") and address_allowed("2606:2800:21f:cb07:6820:80da:af6b:8b2c")


def test_a_document_must_describe_itself_as_a_public_client_with_redirect_uris() -> None:
    url = "https://app.example/client.json"
    good = b'{"client_id": "https://app.example/client.json", "client_name": "App", "redirect_uris": ["https://app.example/cb"]}'
    client = parse_document(url, good)
    assert client.client_name == "App" and client.token_endpoint_auth_method == "none"
    for bad in (
        b"not json",
        b"[]",
        b'{"client_id": "https://other.example/client.json", "redirect_uris": ["https://app.example/cb"]}',
        b'{"client_id": "https://app.example/client.json", "redirect_uris": []}',
        b'{"client_id": "https://app.example/client.json", "redirect_uris": ["https://a/cb"], "client_secret": "s"}',
        b'{"client_id": "https://app.example/client.json", "redirect_uris": ["https://a/cb"], '
        b'"token_endpoint_auth_method": "client_secret_post"}',
    ):
        with pytest.raises(CimdRefused):
            parse_document(url, bad)


async def test_a_document_on_a_host_that_resolves_to_loopback_is_not_fetched() -> None:
    documents = MetadataDocuments()
    try:
        for url in ("https://127.0.0.1/client.json", "https://localhost/client.json", "https://10.0.0.1/c.json"):
            with pytest.raises(CimdRefused, match="does not fetch from"):
                await documents.client(url)
    finally:
        await documents.aclose()


async def test_documents_named_again_and_again_are_fetched_once_a_while_and_so_many_per_address(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with serving_documents(tmp_path, {}) as site:
        monkeypatch.setenv("SSL_CERT_FILE", str(site.ca_file))
        site.headers["Cache-Control"] = "no-store"
        urls = [site.url(f"/c{n}.json") for n in range(4)]
        for url in urls:
            site.served[url.removeprefix(site.origin)] = json.dumps({"client_id": url, "redirect_uris": [CB]}).encode()
        documents = MetadataDocuments(allow_private_addresses=True, fetches=AddressWindow(3, 900))
        try:
            for _ in range(5):  # no-store, yet one fetch: it is reused for MIN_TTL_S
                assert (await documents.client(urls[0], address="198.51.100.1")).client_id == urls[0]
            assert site.fetched == ["/c0.json"]
            for url in urls[1:3]:
                await documents.client(url, address="198.51.100.1")
            with pytest.raises(CimdBusy, match="this address"):
                await documents.client(urls[3], address="198.51.100.1")
            assert site.fetched == ["/c0.json", "/c1.json", "/c2.json"]  # the 4th was not fetched
            assert (await documents.client(urls[3], address="203.0.113.7")).client_id == urls[3]
        finally:
            await documents.aclose()


# The configuration.
def test_the_builtin_server_serves_callers_who_pay_with_their_own_keys_and_needs_its_key_ring(
    tmp_path: Path, workdir: Path
) -> None:
    environ = {"CLAUDE_MCP_STATE": str(tmp_path / "state"), "RING": new_key_line("k1")}
    oauth = {"authorization_server": "builtin", "accept": ["oauth"], "resource": "https://mcp.example/mcp"}
    keyed = {**oauth, "builtin": {"secrets_key_env": "RING"}}
    with pytest.raises(ConfigError, match='credentials = "caller"'):
        Tenancy.from_policy(Policy(roots=(workdir,), oauth=keyed), {}, environ)
    with pytest.raises(ConfigError, match="not \\[tenants\\]"):
        alice = TenantSpec(token_sha256="0" * 64)
        Tenancy.from_policy(Policy(roots=(workdir,), credentials="caller", oauth=keyed), {"alice": alice}, environ)
    with pytest.raises(ConfigError, match="RING"):  # no key ring: refused at start, not at the first sign-in
        Tenancy.from_policy(Policy(roots=(workdir,), credentials="caller", oauth=keyed), {}, {**environ, "RING": ""})
    tenancy = Tenancy.from_policy(Policy(roots=(workdir,), credentials="caller", oauth=keyed), {}, environ)
    assert tenancy.identities is not None
    (server,) = tenancy.identities.kinds
    assert isinstance(server, BuiltinAuthorizationServer) and server.issuer == "https://mcp.example"


async def test_the_document_fetchers_connections_are_closed_when_the_server_stops(
    tmp_path: Path, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with serving_documents(tmp_path, {}) as site:
        monkeypatch.setenv("SSL_CERT_FILE", str(site.ca_file))
        url = site.url("/client.json")
        site.served["/client.json"] = json.dumps({"client_id": url, "redirect_uris": [CB]}).encode()
        environ = {"CLAUDE_MCP_STATE": str(tmp_path / "state"), "RING": new_key_line("k1")}
        builtin = {"secrets_key_env": "RING", "client_document_private_addresses": True}
        oauth = {"authorization_server": "builtin", "accept": ["oauth"], "resource": "https://mcp.example/mcp"}
        policy = Policy(roots=(workdir,), credentials="caller", oauth={**oauth, "builtin": builtin})
        tenancy = Tenancy.from_policy(policy, {}, environ)
        assert tenancy.identities is not None
        (server,) = tenancy.identities.kinds
        assert isinstance(server, BuiltinAuthorizationServer)
        async with tenancy:  # what the HTTP server's lifespan enters
            assert (await server.documents.client(url)).client_id == url
            assert server.documents.is_open
        assert not server.documents.is_open  # its client and connections closed with the server


async def test_the_fetch_connects_to_the_checked_address_but_checks_the_certificate_against_the_host_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The site's certificate is for 127.0.0.1 only. The fetch of https://localhost/… connects to the address
    # it checked (127.0.0.1), yet TLS is for the name in the URL: the certificate does not fit, nothing is read.
    with serving_documents(tmp_path, {}, names=("127.0.0.1",)) as site:
        monkeypatch.setenv("SSL_CERT_FILE", str(site.ca_file))
        by_name = site.url("/client.json")
        by_address = by_name.replace("localhost", "127.0.0.1")  # the name the certificate is for
        documents = MetadataDocuments(allow_private_addresses=True)
        try:
            site.served["/client.json"] = json.dumps({"client_id": by_name, "redirect_uris": [CB]}).encode()
            with pytest.raises(CimdRefused, match="could not be fetched"):
                await documents.client(by_name)
            assert site.fetched == []  # no request was sent over the connection
            site.served["/client.json"] = json.dumps({"client_id": by_address, "redirect_uris": [CB]}).encode()
            assert (await documents.client(by_address)).client_id == by_address
            assert site.fetched == ["/client.json"]
        finally:
            await documents.aclose()
