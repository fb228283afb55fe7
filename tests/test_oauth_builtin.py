"""The built-in authorization server end to end: people sign in with their own Anthropic key and
the MCP client they use runs Claude on it. Two `claude-mcp serve` replicas on one PostgreSQL (one
configuration, as behind one public name; one serves Streamable HTTP, the other the legacy SSE),
the `mcp` SDK's own OAuth client (`OAuthClientProvider`) driving discovery from the 401,
registration (dynamic, and by a Client ID Metadata Document served over https), PKCE and the token
exchange; the sign-in form submitted as a browser would; the real CLI against the fake model,
which sees the key the person entered. Refresh, revocation, and the stored key never readable: not
in the database, not on disk."""

from __future__ import annotations

import json
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import openai
import psycopg
import pytest
from mcp import Client
from mcp.client.auth import OAuthClientProvider
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientInformationFull, OAuthClientMetadata, OAuthToken

from claude_mcp.oauth.builtin import new_key_line
from tests.conftest import QUIET_CLI, FakeModel, call, text_of
from tests.https_documents import Documents, serving_documents
from tests.oauth_browser import query_of, sign_in
from tests.pg_server import fresh_database
from tests.test_http import RunningServer, serving

pytestmark = [pytest.mark.anyio, pytest.mark.xdist_group("oauth_builtin")]

CALLBACK = "http://127.0.0.1:9/oauth/callback"
DOCUMENT = "/claude-connector/client.json"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class World:
    a: RunningServer
    b: RunningServer
    database: str
    root: Path
    documents: Documents
    key_file: Path

    @property
    def resource(self) -> str:
        return self.a.url


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, fake_model: FakeModel, postgres_url: str) -> Iterator[World]:
    root = tmp_path_factory.mktemp("oauth-builtin")
    workdir = root / "work"
    workdir.mkdir()
    key_file = root / "oauth-keys"
    key_file.write_text(new_key_line("2026-12") + "\n")
    key_file.chmod(0o600)
    port = free_port()
    cli_env = {
        "ANTHROPIC_BASE_URL": fake_model.url,
        "ANTHROPIC_API_KEY": "sk-ant-api03-the-servers-own-never-for-callers",
        **QUIET_CLI,
    }
    env_lines = "\n".join(f"{k} = {json.dumps(v)}" for k, v in cli_env.items())
    config = root / "oauth.toml"
    config.write_text(
        f'credentials = "caller"\nroots = [{json.dumps(str(workdir))}]\napi_retries = 0\nmax_concurrent = 8\n'
        f'workspace_root = "{root / "workspaces"}"\n'
        f'[oauth]\nauthorization_server = "builtin"\naccept = ["oauth"]\nresource = "http://127.0.0.1:{port}/mcp"\n'
        f'[oauth.builtin]\nsecrets_key_file = "{key_file}"\nclient_document_private_addresses = true\n'
        f"[cli_env]\n{env_lines}\n"
    )
    with ExitStack() as stack:
        documents = stack.enter_context(serving_documents(root, {}))
        patch = stack.enter_context(pytest.MonkeyPatch.context())
        patch.setenv("SSL_CERT_FILE", str(documents.ca_file))  # the servers trust the client site's certificate
        database = stack.enter_context(fresh_database(postgres_url))
        flags = ("--state-url", database)
        a = stack.enter_context(serving(root, config, "http", *flags, "--port", str(port), name="replica-a"))
        # The second replica serves the legacy HTTP+SSE transport: the same tokens work on both transports.
        b = stack.enter_context(serving(root, config, "sse", *flags, "--port", str(free_port()), name="replica-b"))
        yield World(a, b, database, root, documents, key_file)


def files_holding(root: Path, needle: bytes, but: Path | None = None) -> tuple[list[Path], list[Path]]:
    """Every file under `root` (but one), and those holding `needle`."""
    written = [path for path in root.rglob("*") if path.is_file() and path != but]
    return written, [path for path in written if needle in path.read_bytes()]


def api_key(who: str) -> str:
    return f"sk-ant-api03-{who}-{time.time_ns()}"


@dataclass
class MemoryStorage:
    """What an MCP client keeps between runs: its registration and its tokens."""

    tokens: OAuthToken | None = None
    client_info: OAuthClientInformationFull | None = None
    history: list[OAuthToken] = field(default_factory=list)

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens
        self.history.append(tokens)

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client_info = client_info


class SignInRefused(Exception):
    """The sign-in page did not send the person back to the client."""


@dataclass
class Person:
    """Someone who connects an MCP client and signs in with `key` when it sends them to the page."""

    key: str
    storage: MemoryStorage = field(default_factory=MemoryStorage)
    sent_to: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    """The pages the sign-in answered with instead of sending the person back."""

    def oauth(self, server_url: str, *, document_url: str | None = None) -> OAuthClientProvider:
        metadata = OAuthClientMetadata(
            client_name="Headless Test Client",
            redirect_uris=[CALLBACK],  # type: ignore[list-item]
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
            token_endpoint_auth_method="none",
        )

        async def redirect(url: str) -> None:
            self.sent_to.append(url)

        async def callback() -> AuthorizationCodeResult:
            async with httpx2.AsyncClient(timeout=30) as browser:
                answer = await sign_in(browser, self.sent_to[-1], self.key)
            if answer.status_code != 303:
                self.refused.append(answer.text)
                raise SignInRefused(answer.status_code)
            back = query_of(answer.headers["location"])
            assert answer.headers["location"].startswith(CALLBACK)
            return AuthorizationCodeResult(code=back["code"], state=back.get("state"), iss=back.get("iss"))

        return OAuthClientProvider(
            server_url, metadata, self.storage, redirect, callback, client_metadata_url=document_url
        )


@asynccontextmanager
async def connected(
    server: RunningServer, auth: httpx2.Auth | None = None, token: str | None = None
) -> AsyncIterator[Client]:
    headers = {"Authorization": f"Bearer {token}"} if token else None
    async with httpx2.AsyncClient(auth=auth, headers=headers, timeout=60) as http:
        if server.url.endswith("/sse"):
            transport: Any = sse_client(server.url, headers=headers, timeout=60, auth=auth)
        else:
            transport = streamable_http_client(server.url, http_client=http)
        async with Client(transport) as client:
            yield client


def models_keys(fake: FakeModel, word: str) -> set[str | None]:
    return {r["api_key"] for r in fake.requests() if word in r["prompt"]}


async def test_a_person_connects_a_client_signs_in_with_their_key_and_claude_runs_on_it(
    world: World, fake_model: FakeModel
) -> None:
    person = Person(api_key("dcr"))
    async with connected(world.a, person.oauth(world.resource)) as client:
        answer = await call(client, "ask", prompt="[[say:hello from the signed-in person]] dcr-run")
    assert answer["result"] == "hello from the signed-in person"
    assert models_keys(fake_model, "dcr-run") == {person.key}  # the key entered at sign-in, never the server's
    assert len(person.sent_to) == 1 and "/authorize?" in person.sent_to[0]
    assert person.storage.client_info is not None and not person.storage.client_info.client_id.startswith("https:")


async def test_a_client_known_by_its_metadata_document_connects_without_registering(
    world: World, fake_model: FakeModel
) -> None:
    url = world.documents.url(DOCUMENT)
    document = {"client_id": url, "client_name": "Connector By Document", "redirect_uris": [CALLBACK]}
    world.documents.served[DOCUMENT] = json.dumps(document).encode()
    person = Person(api_key("cimd"))
    async with connected(world.a, person.oauth(world.resource, document_url=url)) as client:
        answer = await call(client, "ask", prompt="cimd-run")
    assert answer["result"] == "Echo: cimd-run"
    assert models_keys(fake_model, "cimd-run") == {person.key}
    assert person.storage.client_info is not None and person.storage.client_info.client_id == url
    assert DOCUMENT in world.documents.fetched


async def test_a_token_from_one_replica_works_on_the_other_refreshes_and_is_revoked_on_both(
    world: World, fake_model: FakeModel
) -> None:
    person = Person(api_key("replicas"))
    oauth = person.oauth(world.resource)
    async with connected(world.a, oauth) as client:
        await call(client, "ask", prompt="replicas-first")
    assert person.storage.tokens is not None
    first = person.storage.tokens
    async with connected(world.b, token=first.access_token) as client:  # issued by A, honoured by B
        answer = await call(client, "ask", prompt="replicas-on-b")
    assert models_keys(fake_model, "replicas-on-b") == {person.key} and answer["result"] == "Echo: replicas-on-b"
    # The same token on the HTTP APIs, as the OpenAI SDK sends its key (`Authorization: Bearer`).
    async with openai.AsyncOpenAI(base_url=f"{world.b.base}/v1", api_key=first.access_token, max_retries=0) as api:
        chat = await api.chat.completions.create(model="sonnet", messages=[{"role": "user", "content": "replicas-api"}])
    assert chat.choices[0].message.content == "Echo: replicas-api"
    assert models_keys(fake_model, "replicas-api") == {person.key}

    oauth.context.token_expiry_time = time.time() - 1  # the access token has run out: the client refreshes
    async with connected(world.b, oauth) as client:
        await call(client, "ask", prompt="replicas-refreshed")
    second = person.storage.tokens
    assert second is not None and second.access_token != first.access_token
    assert second.refresh_token != first.refresh_token and len(person.sent_to) == 1  # no second sign-in
    async with httpx2.AsyncClient() as http:
        client_id = person.storage.client_info.client_id if person.storage.client_info else ""
        revoked = await http.post(f"{world.b.base}/revoke", data={"client_id": client_id, "token": second.access_token})
        assert revoked.status_code == 200
        bearer = {"Authorization": f"Bearer {second.access_token}", "Accept": "application/json, text/event-stream"}
        ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
        for refused in (
            await http.post(world.a.url, json=ping, headers=bearer),  # Streamable HTTP
            await http.get(world.b.url, headers=bearer),  # the SSE stream
            await http.post(f"{world.a.base}/v1/chat/completions", json={}, headers=bearer),  # the HTTP APIs
        ):
            assert refused.status_code == 401, refused.text
            assert "resource_metadata=" in refused.headers["www-authenticate"]


async def test_another_callers_token_does_not_reach_this_callers_conversations(world: World) -> None:
    alice, mallory = Person(api_key("alice")), Person(api_key("mallory"))
    async with connected(world.a, alice.oauth(world.resource)) as client:
        session = (await call(client, "ask", prompt="alice-private"))["session_id"]
    async with connected(world.b, mallory.oauth(world.resource)) as client:
        result = await client.call_tool("ask", {"prompt": "let me in", "session_id": session})
        unknown = await client.call_tool("ask", {"prompt": "let me in", "session_id": str(uuid.uuid4())})
        assert result.is_error and text_of(result) == text_of(unknown)  # the same as an id that does not exist
        assert "no conversation with that session_id" in text_of(result).lower()
        listed = await call(client, "list_sessions")
        assert session not in json.dumps(listed)


async def test_a_wrong_key_at_sign_in_gets_nothing_and_makes_no_namespace(world: World) -> None:
    def callers_dirs() -> set[Path]:
        return {p for p in world.root.rglob("*") if p.is_dir() and "callers" in p.parts}

    before = callers_dirs()
    person = Person("sk-ant-api03-revoked-wrong-key")
    with pytest.raises(Exception):  # noqa: B017  the client's flow stops: the page refused the key
        async with connected(world.a, person.oauth(world.resource)) as client:
            await client.list_tools()
    assert len(person.refused) == 1 and "rejected this key" in person.refused[0]
    assert person.key not in person.refused[0]
    assert person.storage.tokens is None
    assert person.storage.client_info is not None
    with psycopg.connect(world.database) as conn:
        sql = "SELECT count(*) FROM oauth_grants WHERE client_id = %s"
        assert conn.execute(sql, (person.storage.client_info.client_id,)).fetchone() == (0,)
    assert callers_dirs() == before


async def test_the_keys_people_entered_are_not_readable_in_the_database_or_on_disk(world: World) -> None:
    person = Person(api_key("at-rest"))
    async with connected(world.a, person.oauth(world.resource)) as client:
        await call(client, "ask", prompt="at-rest-run")
    assert person.storage.tokens is not None
    secrets = [person.key, person.storage.tokens.access_token, person.storage.tokens.refresh_token or ""]
    with psycopg.connect(world.database) as conn:
        tables = [row[0] for row in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
        for table in tables:
            dump = "".join(str(row) for row in conn.execute(f'SELECT t::text FROM "{table}" t'))
            for secret in secrets:
                assert secret not in dump, table
        sealed = conn.execute("SELECT credential FROM oauth_grants WHERE credential LIKE 'v1.2026-12.%%'").fetchall()
        assert sealed  # sealed under the key ring's key
        conn.execute("CHECKPOINT")  # what the database holds is on its disk too, WAL and tables
        data_directory = Path(str(conn.execute("SHOW data_directory").fetchone()[0]))  # type: ignore[index]
    assert files_holding(data_directory, sealed[-1][0].encode())[1]  # the sealed form is what is there
    for place in (world.root, data_directory):  # the servers' state, logs and config dirs; the database's files
        written, holding = files_holding(place, person.key.encode(), but=world.key_file)
        assert written and holding == []
