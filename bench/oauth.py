"""What OAuth costs a request (#28): checking an access token from an external identity provider
(a JWT, RS256, against the provider's cached keys) against looking up a tenant's static token, and
`tools/list` over Streamable HTTP with each, side by side on one server.

A real OpenID provider (tests/oidc_provider.py: oidc-provider, installed into .cache/ on first use)
issues the tokens; the server runs as a subprocess on loopback with `[oauth]` and a static tenant.

    .venv/bin/python -m bench.oauth [--rounds N] [--calls M]

Token checks: the median over N rounds of 10 × M checks each, per check, in one process (the keys
fetched once before): a JWT's signature and claims checked, the same token again (remembered by its
hash, as every request after a client's first is), and a static token. `tools/list`: N interleaved
rounds of M calls through the `mcp` SDK's client, one session per kind of token, the order turned
each round; the median of the rounds' means per call, and the ratio OAuth / static (the goal: at
most 1.02).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path

import anyio
import psutil

from claude_mcp.config.oauth import OAuthSettings
from claude_mcp.config.tenants import token_hash
from claude_mcp.oauth.identity import Identities, StaticTokens
from claude_mcp.oauth.jwt_tokens import JwtVerifier
from tests.conftest import FakeModel
from tests.fake_model import running_fake_model
from tests.oidc_provider import Idp, free_port, running_idp
from tests.test_http import BOB, RunningServer, connect, serving
from tests.test_oauth_external import CLIENTS, oauth_config

from .run import cli_env


async def per_check_us(check: Callable[[str], Awaitable[object]], token: str, calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        assert await check(token) is not None
    return (time.perf_counter() - started) / calls * 1e6


async def checks(idp: Idp, resource: str, rounds: int, calls: int) -> dict[str, float]:
    settings = OAuthSettings(issuer=idp.issuer, resource=resource, tenant_claim="tenant", scopes_required=("mcp",))
    jwt_verifier = JwtVerifier(settings, frozenset({"alice"}))
    static = StaticTokens({token_hash(BOB): "bob"}, settings.scopes_required)
    server = Identities([static, jwt_verifier])  # the server's TokenVerifier, as `accept = ["static", "oauth"]`
    token = idp.token("alice-app", resource)
    await jwt_verifier.identify(token)  # the keys, fetched once

    kinds: dict[str, tuple[Callable[[str], Awaitable[object]], str]] = {
        "jwt": (jwt_verifier.verify, token),
        "jwt_seen": (jwt_verifier.identify, token),
        "static": (static.identify, BOB),
        "server_jwt": (server.verify_token, token),
        "server_static": (server.verify_token, BOB),
    }
    samples: dict[str, list[float]] = {name: [] for name in kinds}
    for _ in range(rounds):
        for name, (check, presented) in kinds.items():
            samples[name].append(await per_check_us(check, presented, calls))
    assert jwt_verifier.fetches == 1
    return {name: statistics.median(values) for name, values in samples.items()}


async def listing(server: RunningServer, oauth_token: str, rounds: int, calls: int) -> dict[str, float]:
    """`tools/list` per call, by kind of token: the client's wall-clock time, and the server process's
    CPU time (user + system), which other processes on a busy machine disturb far less. `control` is
    a second static session (the noise between two sessions that differ in nothing)."""
    tokens = {"oauth": oauth_token, "static": BOB, "control": BOB}
    samples: dict[str, list[float]] = {name: [] for name in tokens}
    cpu: dict[str, list[float]] = {name: [] for name in tokens}
    process = psutil.Process(server.process.pid)
    async with AsyncExitStack() as stack:
        clients = {name: await stack.enter_async_context(connect(server, token)) for name, token in tokens.items()}
        for client in clients.values():
            for _ in range(20):  # warm every session
                await client.list_tools()
        names = list(tokens)
        for round_ in range(rounds):
            for name in names[round_ % 3 :] + names[: round_ % 3]:  # the order turned each round
                started, used = time.perf_counter(), _cpu_s(process)
                for _ in range(calls):
                    await clients[name].list_tools()
                samples[name].append((time.perf_counter() - started) / calls * 1e3)
                cpu[name].append((_cpu_s(process) - used) / calls * 1e3)
    medians = {name: statistics.median(values) for name, values in samples.items()}
    return medians | {f"{name}_cpu": statistics.median(values) for name, values in cpu.items()}


def _cpu_s(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


async def measure(fake: FakeModel, root: Path, rounds: int, calls: int) -> None:
    (work := root / "work").mkdir()
    (home := root / "home").mkdir()
    with running_idp(root, CLIENTS) as idp:
        port = free_port()
        resource = f"http://127.0.0.1:{port}/mcp"
        checked = await checks(idp, resource, rounds, calls * 10)
        config = oauth_config(root / "oauth.toml", work, cli_env(fake, home), idp.issuer, resource)
        with serving(root, config, "http", "--port", str(port), name="bench-oauth") as server:
            listed = await listing(server, idp.token("alice-app", resource), rounds, calls)
    print(f"token check, cached keys (median of {rounds} rounds × {calls * 10}), per check:")
    print(f"  a JWT (RS256, PyJWT), its signature and claims checked  {checked['jwt']:8.1f} µs")
    print(f"  the same JWT seen before (remembered by its hash)        {checked['jwt_seen']:8.1f} µs")
    print(f"  a static tenant token (its hash against each tenant's)   {checked['static']:8.1f} µs")
    print(f"  the server's TokenVerifier, a JWT seen before            {checked['server_jwt']:8.1f} µs")
    print(f"  the server's TokenVerifier, a static token               {checked['server_static']:8.1f} µs")
    print(f"tools/list over Streamable HTTP (median of {rounds} interleaved rounds × {calls}), per call:")
    print(f"  with an OAuth access token           {listed['oauth']:8.3f} ms")
    print(f"  with a static bearer token           {listed['static']:8.3f} ms")
    print(f"  static again, a second session       {listed['control']:8.3f} ms  (the noise between sessions)")
    print(f"  ratio OAuth / static                 {listed['oauth'] / listed['static']:8.3f}")
    print(f"  ratio second static / static         {listed['control'] / listed['static']:8.3f}")
    print("the server process's CPU time per tools/list (the same rounds):")
    print(f"  with an OAuth access token           {listed['oauth_cpu']:8.3f} ms")
    print(f"  with a static bearer token           {listed['static_cpu']:8.3f} ms")
    print(f"  static again, a second session       {listed['control_cpu']:8.3f} ms")
    print(f"  ratio OAuth / static                 {listed['oauth_cpu'] / listed['static_cpu']:8.3f}")
    print(f"  ratio second static / static         {listed['control_cpu'] / listed['static_cpu']:8.3f}")


def main(rounds: int, calls: int) -> None:
    with running_fake_model() as url, tempfile.TemporaryDirectory(prefix="bench-oauth-") as tmp:
        anyio.run(measure, FakeModel(url), Path(tmp), rounds, calls)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--calls", type=int, default=50)
    arguments = parser.parse_args()
    main(arguments.rounds, arguments.calls)
