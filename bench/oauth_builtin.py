"""What the built-in authorization server's tokens cost a request (#28): looking an access token up
in the shared store (SQLite, and PostgreSQL on loopback) and opening the key it carries, against
looking up a tenant's static token; and `tools/list` over Streamable HTTP with a built-in token
against the `X-Claude-Credential` header it replaces, side by side.

    .venv/bin/python -m bench.oauth_builtin [--rounds N] [--calls M]

Token checks: the median over N rounds of 10 × M checks each, per check, in one process. `tools/list`:
two servers alike but for `[oauth]` (caller mode: one takes the built-in token, the other the
header), N interleaved rounds of M calls each, the order turned each round; the median of the rounds'
means per call, and the ratio built-in / header.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.server.auth.provider import AuthorizationParams
from pydantic import AnyUrl

from claude_mcp.config.credentials import CallerCredential
from claude_mcp.config.oauth_builtin import BuiltinSettings
from claude_mcp.config.tenants import token_hash
from claude_mcp.oauth.builtin import BuiltinAuthorizationServer, new_key_line
from claude_mcp.oauth.builtin.provider import hashed
from claude_mcp.oauth.identity import StaticTokens
from claude_mcp.state._sql import SqlStore
from claude_mcp.state.oauth_grants import PendingRequest
from claude_mcp.state.postgres import PostgresStore
from claude_mcp.state.sqlite import SqliteStore
from tests.conftest import FakeModel
from tests.fake_model import running_fake_model
from tests.oauth_browser import query_of
from tests.pg_server import fresh_database, running_postgres
from tests.test_http import RunningServer, serving
from tests.test_oauth_builtin import Person, free_port

from .run import cli_env

KEY = "sk-ant-api03-bench-builtin"
ISSUER = "http://127.0.0.1:1"


async def per_check_us(check: Callable[[str], Awaitable[object]], token: str, calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        assert await check(token) is not None
    return (time.perf_counter() - started) / calls * 1e6


async def issued(server: BuiltinAuthorizationServer, store: SqlStore) -> str:
    """An access token, issued as a sign-in would (without the page)."""
    params = AuthorizationParams(
        state=None,
        scopes=None,
        code_challenge="-",
        redirect_uri=AnyUrl("http://127.0.0.1:9/cb"),
        redirect_uri_provided_explicitly=True,
    )
    pending = PendingRequest(request_hash="-", client_id="bench", params=params.model_dump_json(), expires_at=2e9)
    code = query_of(await server.provider.grant(pending, CallerCredential(KEY, "api_key")))["code"]
    record = await store.get_oauth_code(hashed(code))
    assert record is not None
    return (await server.provider._issue(record.grant_id, [], time.time())).access_token


async def checks(store: SqlStore, rounds: int, calls: int) -> dict[str, float]:
    async with store:
        server = BuiltinAuthorizationServer(
            BuiltinSettings(secrets_key_env="RING"),
            store,
            issuer=ISSUER,
            resources=(f"{ISSUER}/mcp",),
            scopes=(),
            namespace_key=b"bench",
            allow_oauth_tokens=False,
            environ={"RING": new_key_line("bench")},
        )
        token = await issued(server, store)
        static = StaticTokens({token_hash("static-bench-token"): "alice"})
        samples: dict[str, list[float]] = {"builtin": [], "static": []}
        for _ in range(rounds):
            samples["builtin"].append(await per_check_us(server.identify, token, calls))
            samples["static"].append(await per_check_us(static.identify, "static-bench-token", calls))
        await server.aclose()
    return {name: statistics.median(values) for name, values in samples.items()}


def config(path: Path, fake: FakeModel, root: Path, extra: str) -> Path:
    env_lines = "\n".join(f"{k} = {json.dumps(v)}" for k, v in cli_env(fake, root / "home").items() if k != "HOME")
    path.write_text(f'credentials = "caller"\nroots = ["{root}"]\n{extra}\n[cli_env]\n{env_lines}\n')
    return path


async def listing(builtin: RunningServer, header: RunningServer, rounds: int, calls: int) -> dict[str, float]:
    person = Person(KEY)
    async with (
        httpx2.AsyncClient(auth=person.oauth(builtin.url), timeout=60) as signing_in,
        Client(streamable_http_client(builtin.url, http_client=signing_in)) as first,
    ):
        await first.list_tools()  # the sign-in, through the page
    assert person.storage.tokens is not None
    headers = {"builtin": {"Authorization": f"Bearer {person.storage.tokens.access_token}"}, "header": {}}
    headers["header"] = {"X-Claude-Credential": KEY}
    servers = {"builtin": builtin, "header": header}
    samples: dict[str, list[float]] = {"builtin": [], "header": []}
    async with (
        httpx2.AsyncClient(headers=headers["builtin"], timeout=60) as a,
        httpx2.AsyncClient(headers=headers["header"], timeout=60) as b,
        Client(streamable_http_client(servers["builtin"].url, http_client=a)) as with_token,
        Client(streamable_http_client(servers["header"].url, http_client=b)) as with_header,
    ):
        clients = {"builtin": with_token, "header": with_header}
        for client in clients.values():
            for _ in range(20):
                await client.list_tools()
        for round_ in range(rounds):
            for name in ("builtin", "header") if round_ % 2 == 0 else ("header", "builtin"):
                started = time.perf_counter()
                for _ in range(calls):
                    await clients[name].list_tools()
                samples[name].append((time.perf_counter() - started) / calls * 1e3)
    return {name: statistics.median(values) for name, values in samples.items()}


async def measure(fake: FakeModel, root: Path, rounds: int, calls: int) -> None:
    on_sqlite = await checks(SqliteStore(root / "bench.db"), rounds, calls * 10)
    with running_postgres() as url, fresh_database(url) as database:
        on_postgres = await checks(PostgresStore(database), rounds, calls * 10)
    (root / "ring").write_text(new_key_line("bench") + "\n")
    port = free_port()
    oauth = (
        f'[oauth]\nauthorization_server = "builtin"\naccept = ["oauth"]\nresource = "http://127.0.0.1:{port}/mcp"\n'
        f'[oauth.builtin]\nsecrets_key_file = "{root / "ring"}"'
    )
    builtin_config = config(root / "builtin.toml", fake, root, oauth)
    header_config = config(root / "header.toml", fake, root, "")
    with (
        serving(root, builtin_config, "http", "--port", str(port), name="bench-builtin") as builtin,
        serving(root, header_config, "http", name="bench-header") as header,
    ):
        listed = await listing(builtin, header, rounds, calls)
    print(f"token check (median of {rounds} rounds × {calls * 10}), per check:")
    print(f"  a built-in token, SQLite store           {on_sqlite['builtin']:8.1f} µs")
    print(f"  a built-in token, PostgreSQL (loopback)  {on_postgres['builtin']:8.1f} µs")
    print(f"  a static tenant token                    {on_sqlite['static']:8.1f} µs")
    print(f"tools/list over Streamable HTTP (median of {rounds} interleaved rounds × {calls}), per call:")
    print(f"  with a built-in access token             {listed['builtin']:8.3f} ms")
    print(f"  with X-Claude-Credential                 {listed['header']:8.3f} ms")
    print(f"  ratio built-in / header                  {listed['builtin'] / listed['header']:8.3f}")


def main(rounds: int, calls: int) -> None:
    with running_fake_model() as url, tempfile.TemporaryDirectory(prefix="bench-oauth-builtin-") as tmp:
        anyio.run(measure, FakeModel(url), Path(tmp), rounds, calls)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--calls", type=int, default=50)
    arguments = parser.parse_args()
    main(arguments.rounds, arguments.calls)
