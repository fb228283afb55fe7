"""The chain channel (#27): a claude-mcp started by a sandboxed CLI finds its chain's account, spends
from it and stores its records through a Unix socket bound into the sandbox, under a capability
per CLI process; end to end through the real CLI in bubblewrap, and the protocol line by line."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import anyio
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream
from claude_agent_sdk import ClaudeAgentOptions

from claude_mcp import ClaudeBridge, Policy
from claude_mcp.bridge import chain_channel, wall_exec
from claude_mcp.bridge.chain_channel import ChainChannel
from claude_mcp.bridge.options import CHAIN_ENV
from claude_mcp.bridge.walls import Walls, sandbox_problem, write_wrapper
from claude_mcp.state.remote_chains import (
    INSIDE_DIR,
    INSIDE_SOCKET,
    MAX_LINE,
    SOCKET_ENV,
    TOKEN_ENV,
    ChannelRefused,
    HopLedger,
    RemoteChains,
)
from claude_mcp.state.sqlite import SqliteStore
from claude_mcp.state.store import ChainAccount, UsageRecord
from tests.conftest import MORE_WAITS, tool_prompt
from tests.test_stdio import write_config
from tests.test_usage import delegation, records

pytestmark = [pytest.mark.anyio, MORE_WAITS]

needs_bwrap = pytest.mark.skipif(sandbox_problem() is not None, reason="bubblewrap cannot make a sandbox here")


# End to end: the top bridge's CLIs run in the sandbox, the hops below them cannot see its store.


def sandboxed_top(policy: Policy, tmp_path: Path, workdir: Path, **update: Any) -> ClaudeBridge:
    """A top bridge of namespace `alice` whose CLIs run in bubblewrap, its store in a state dir no
    sandbox sees (the hops below keep a store of their own in the namespace's config dir)."""
    state = tmp_path / "state"
    walls = Walls("sandbox", write_wrapper(state / "walls"), hidden=(state,))
    sandboxed = policy.model_copy(update={"state_dir": state, **update})
    return ClaudeBridge(sandboxed, depth=0, namespace="alice", launcher=walls.launcher([workdir]))


def inner_servers(workdir: Path, cli_env: dict[str, str]) -> dict[str, Any]:
    """This server as the MCP server the sandboxed CLI starts, its config in the workspace (readable
    inside); its own state (default: in the Claude config dir) is not the top's."""
    config = write_config(workdir / "inner.toml", workdir, cli_env, "max_depth = 3\nspare_process = false")
    return {"claude": {"command": sys.executable, "args": ["-m", "claude_mcp", "serve", "--config", str(config)]}}


async def hop_records(cli_env: dict[str, str]) -> list[UsageRecord]:
    """The records the hops kept in their own store (inside the sandbox's view)."""
    async with SqliteStore(Path(cli_env["CLAUDE_CONFIG_DIR"]) / "claude-mcp" / "state.sqlite3") as store:
        rows = await store._fetch("SELECT * FROM usage ORDER BY started_at")
    return [UsageRecord.model_validate({k: v for k, v in row.items() if k != "started_minute"}) for row in rows]


@needs_bwrap
async def test_a_sandboxed_three_hop_chain_stops_when_its_total_reaches_the_top_calls_budget(
    policy: Policy, tmp_path: Path, workdir: Path, cli_env: dict[str, str]
) -> None:
    # As tests/test_usage.py's unsandboxed chain: the third hop (opus) spends the budget; its first run
    # fits, its second is clipped and stopped by its CLI's budget, its third is refused, typed.
    servers = inner_servers(workdir, cli_env)
    chained: dict[str, Any] = {"mcp_servers": servers, "allowed_tools": ["mcp__claude__ask"]}
    third = [delegation(f"[[say:third hop {n}]]", model="opus") for n in range(3)]
    second = delegation("".join(third), model="haiku", **chained)
    async with sandboxed_top(policy, tmp_path, workdir, max_depth=3) as bridge:
        await bridge.ask("[[say:price]]", model="opus")
        opus = (await records(bridge))[0].cost_usd
        budget = round(1.5 * opus, 6)
        top = await bridge.ask(second, model="haiku", max_budget_usd=budget, **chained)
        found = (await records(bridge))[1:]  # the price's record aside
    chain = [r for r in found if r.chain_id == found[0].run_id]
    assert chain == found  # every hop's records reached the top's store, in the top run's chain
    assert [r.depth for r in chain] == [0, 1, 2, 2]  # the third hop's third run was refused: no record
    assert {r.namespace for r in chain} == {"alice"}  # stamped by the channel (the hops call themselves `local`)
    hops = [r for r in chain if r.depth == 2]
    assert [r.outcome for r in hops] == ["ok", "error_max_budget_usd"]
    assert sum(r.cost_usd for r in chain if r.depth) >= budget
    assert "Chain budget exceeded" in (top.result or "") and f"max_budget_usd={budget:g}" in (top.result or "")
    assert top.chain_cost_usd == round(sum(r.cost_usd for r in chain), 6)
    kept_below = await hop_records(cli_env)  # the hops' own store has their records too, as their own
    assert sorted((r.run_id, r.namespace) for r in kept_below) == sorted((r.run_id, "local") for r in chain if r.depth)


@needs_bwrap
async def test_a_sandboxed_warm_follow_ups_delegations_spend_from_its_own_turns_account(
    policy: Policy, tmp_path: Path, workdir: Path, cli_env: dict[str, str]
) -> None:
    # The capability is the CLI process's: each turn the server points its key at that turn's chain,
    # and the hop below (the same warm server) spends from the new turn's account.
    chained: dict[str, Any] = {
        "mcp_servers": inner_servers(workdir, cli_env),
        "allowed_tools": ["mcp__claude__ask"],
        "model": "haiku",
    }
    async with sandboxed_top(policy, tmp_path, workdir) as bridge:
        await bridge.ask("[[say:price]]", model="opus")
        budget = round(1.5 * (await records(bridge))[0].cost_usd, 6)
        spend = delegation("[[say:spend]]", model="opus")
        first = await bridge.ask(spend + spend, max_budget_usd=budget, **chained)  # spends its whole account
        assert first.session_id in bridge.pool.warm.live_ids()
        second = await bridge.ask(spend, session_id=first.session_id, max_budget_usd=budget, **chained)
        found = await records(bridge)
    tops = [r for r in found if r.depth == 0 and r.session_id == first.session_id]
    turns = [[r for r in found if r.chain_id == top.run_id] for top in tops]
    assert [[(r.depth, r.outcome) for r in turn] for turn in turns] == [
        [(0, "ok"), (1, "ok"), (1, "error_max_budget_usd")],
        [(0, "ok"), (1, "ok")],
    ]
    assert "Chain budget exceeded" not in (second.result or "")
    assert second.chain_cost_usd == round(sum(r.cost_usd for r in turns[1]), 6)


PROBE = """
import json, os, socket
s = socket.socket(socket.AF_UNIX)
s.connect(os.environ["CLAUDE_MCP_CHAIN_SOCKET"])
token = os.environ["CLAUDE_MCP_CHAIN_TOKEN"]
asked = ({"op": "current_chain", "key": "another-process"}, {"op": "chain_account", "chain_id": "another-chain"})
for request in asked:
    s.sendall(json.dumps({"id": 1, "token": token, **request}).encode() + b"\\n")
    print("REPLY", s.makefile().readline().strip())
""".strip()


@needs_bwrap
async def test_a_sandboxed_cli_sees_the_channel_and_not_the_store_and_its_capability_reaches_no_other_chain(
    policy: Policy, tmp_path: Path, workdir: Path
) -> None:
    (workdir / "probe.py").write_text(PROBE)
    command = f"ls {INSIDE_DIR}; ls {tmp_path / 'state'} || echo NO-STORE; {sys.executable} probe.py"
    async with sandboxed_top(policy, tmp_path, workdir) as bridge:
        done = await bridge.ask(tool_prompt("Bash", command=command), allowed_tools=["Bash"])
    said = done.result or ""
    assert "chain.sock" in said and "NO-STORE" in said
    replies = [json.loads(line.removeprefix("REPLY ")) for line in said.splitlines() if line.startswith("REPLY ")]
    assert [(r["ok"], r["error"]["kind"]) for r in replies] == [(False, "refused"), (False, "refused")]
    assert "is not one this capability grants" in replies[0]["error"]["message"]


# The protocol, line by line, against a channel on a store of its own.


class FakeProcess:
    """What a capability is held by: a CLI process, alive until closed."""

    closed = False


def hop_record(chain_id: str, run_id: str = "hop-run", cost_usd: float = 0.25, **fields: Any) -> UsageRecord:
    values: dict[str, Any] = {"model": "m", "namespace": "whatever-the-hop-says", "surface": "ask", "started_at": 1.0}
    return UsageRecord(run_id=run_id, chain_id=chain_id, cost_usd=cost_usd, depth=1, **(values | fields))


class Served:
    """A namespace's channel, serving, and the capability it gave one CLI process (key `process-key`)."""

    def __init__(self, channel: ChainChannel, process: FakeProcess, token: str) -> None:
        self.channel = channel
        self.process = process
        self.token = token

    @property
    def socket(self) -> Path:
        assert self.channel.socket is not None
        return self.channel.socket

    def remote(self) -> RemoteChains:
        return RemoteChains(str(self.socket), self.token)


async def serve(store: SqliteStore, namespace: str, key: str = "process-key", **options: Any) -> AsyncIterator[Served]:
    channel = ChainChannel(store, namespace, **options)
    async with channel.running():
        offer = channel.offer({CHAIN_ENV: key})
        assert offer is not None and offer.env[SOCKET_ENV] == INSIDE_SOCKET and offer.bind[1] == Path(INSIDE_DIR)
        process = FakeProcess()
        offer.hold(process)  # type: ignore[arg-type]
        yield Served(channel, process, offer.env[TOKEN_ENV])


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    async with SqliteStore(tmp_path / "top.db") as opened:
        await opened.point_chain("process-key", "turn-1", now=1.0, budget_usd=1.0)  # as the top's turn does
        yield opened


@pytest.fixture
async def served(store: SqliteStore) -> AsyncIterator[Served]:
    async for serving in serve(store, "alice"):
        yield serving


async def exchange(socket: Path, *lines: bytes) -> list[dict[str, Any] | None]:
    """Send raw lines on one connection; each reply (None once the server closed it)."""
    replies: list[dict[str, Any] | None] = []
    async with await anyio.connect_unix(socket) as stream:
        received = BufferedByteReceiveStream(stream)
        for line in lines:
            try:
                await stream.send(line)
                replies.append(json.loads(await received.receive_until(b"\n", 1 << 20)))
            except (anyio.IncompleteRead, anyio.BrokenResourceError, OSError):
                replies.append(None)
    return replies


def request(token: str, op: str, request_id: int = 7, **args: Any) -> bytes:
    return json.dumps({"id": request_id, "token": token, "op": op, **args}).encode() + b"\n"


async def test_a_hop_reads_spends_from_and_points_into_its_processs_chain(served: Served, store: SqliteStore) -> None:
    remote = served.remote()
    try:
        assert await remote.current_chain("process-key") == ChainAccount(chain_id="turn-1", budget_usd=1.0)
        await remote.add_usage([hop_record("turn-1")])
        account = await remote.current_chain("process-key")
        assert (account.spent_usd, account.runs) == (0.25, 1)  # the hop's record counts in the chain
        await remote.point_chain("hop-process", "turn-1", now=0.0)  # a hop's own CLI process, in the chain
        assert (await remote.current_chain("hop-process")).chain_id == "turn-1"
        assert (await remote.current_chain("turn-1")).chain_id == "turn-1"  # a hop's first process: the chain's id
        assert await remote.chain_account("turn-1") == account
    finally:
        await remote.aclose()
    stored = await store._fetch("SELECT run_id, namespace, chain_id, depth FROM usage")
    assert [dict(row) for row in stored] == [
        {"run_id": "hop-run", "namespace": "alice", "chain_id": "turn-1", "depth": 1}
    ]
    assert (await store.current_chain("hop-process")).chain_id == "hop-process"  # not a key the server gave


async def test_the_capability_is_refused_for_any_other_key_or_chain_and_for_opening_an_account(
    served: Served, store: SqliteStore
) -> None:
    await store.point_chain("another-process", "another-turn", now=1.0, budget_usd=5.0)
    remote = served.remote()
    try:
        await remote.current_chain("process-key")
        with pytest.raises(ChannelRefused, match="the key 'another-process' is not one this capability grants"):
            await remote.current_chain("another-process")
        with pytest.raises(ChannelRefused, match="the chain 'another-turn' is not one this capability grants"):
            await remote.chain_account("another-turn")
        with pytest.raises(ChannelRefused, match="the chain 'another-turn' is not one"):
            await remote.point_chain("hop-process", "another-turn", now=0.0)
        with pytest.raises(ChannelRefused, match="pointed by the server above"):
            await remote.point_chain("process-key", "turn-1", now=0.0)
        await remote.add_usage([hop_record("another-turn")])  # refused: said in the log, dropped
        await remote.add_usage([hop_record("turn-1", run_id="turn-1")])  # the top run's own id: refused
    finally:
        await remote.aclose()
    funded, negative, not_finite = await exchange(
        served.socket,
        request(served.token, "point_chain", key="hop-process", chain_id="turn-1", budget_usd=100.0),
        request(
            served.token,
            "add_usage",
            records=[{**hop_record("turn-1").model_dump(exclude={"namespace"}), "cost_usd": -1}],
        ),
        request(
            served.token,
            "add_usage",
            records=[{**hop_record("turn-1").model_dump(exclude={"namespace"}), "cost_usd": 1e999}],
        ),
    )
    assert funded is not None and (funded["id"], funded["ok"], funded["error"]["kind"]) == (7, False, "refused")
    assert "cannot open or fund" in funded["error"]["message"]
    assert (
        negative is not None
        and negative["error"]["kind"] == "malformed"
        and "greater than or equal to 0" in negative["error"]["message"]
    )
    assert not_finite is not None and not_finite["error"]["kind"] == "malformed"
    assert await store._fetch("SELECT run_id FROM usage") == []
    account = await store.current_chain("another-process")
    assert (account.chain_id, account.budget_usd, account.spent_usd) == ("another-turn", 5.0, 0.0)


async def test_a_capability_bounds_the_keys_and_records_of_the_hops_below_it(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(chain_channel, "MAX_HOP_KEYS", 1)
    monkeypatch.setattr(chain_channel, "MAX_HOP_RECORDS", 2)
    record = hop_record("turn-1").model_dump(exclude={"namespace"})
    replies = await exchange(
        served.socket,
        request(served.token, "current_chain", key="process-key"),
        request(served.token, "point_chain", key="hop-a", chain_id="turn-1"),
        request(served.token, "point_chain", key="hop-a", chain_id="turn-1"),  # the same key again
        request(served.token, "point_chain", key="hop-b", chain_id="turn-1"),
        request(served.token, "add_usage", records=[record, {**record, "run_id": "hop-run-2"}]),
        request(served.token, "add_usage", records=[{**record, "run_id": "hop-run-3"}]),
    )
    assert [r["ok"] if r is not None else None for r in replies] == [True, True, True, False, True, False]
    assert "pointed 1 keys, the most allowed" in replies[3]["error"]["message"]  # type: ignore[index]
    assert "stored 2 usage records, the most allowed" in replies[5]["error"]["message"]  # type: ignore[index]


async def test_another_namespaces_capability_reaches_nothing_on_this_channel_nor_its_chains(
    store: SqliteStore, served: Served
) -> None:
    await store.point_chain("bob-process", "bob-turn", now=1.0, budget_usd=1.0)
    async for bob in serve(store, "bob", key="bob-process"):
        assert bob.socket != served.socket  # a socket per namespace: bob's sandboxes see only bob's
        on_alices, bobs_chain_by_alice = await exchange(
            served.socket,
            request(bob.token, "current_chain", key="bob-process"),
            request(served.token, "current_chain", key="bob-process"),
        )
        assert on_alices is not None and on_alices["error"]["kind"] == "refused"
        assert "not one this channel gave" in on_alices["error"]["message"]
        assert bobs_chain_by_alice is not None and bobs_chain_by_alice["error"]["kind"] == "refused"
        [own] = await exchange(bob.socket, request(bob.token, "current_chain", key="bob-process"))
        assert own is not None and own["ok"] and own["result"]["chain_id"] == "bob-turn"


async def test_a_capability_ends_with_its_cli_process(served: Served) -> None:
    [alive] = await exchange(served.socket, request(served.token, "current_chain", key="process-key"))
    served.process.closed = True
    [ended] = await exchange(served.socket, request(served.token, "current_chain", key="process-key"))
    assert alive is not None and alive["ok"]
    assert ended is not None and ended["error"]["kind"] == "refused" and "has ended" in ended["error"]["message"]


async def test_malformed_lines_are_answered_as_such_and_the_connection_goes_on(served: Served) -> None:
    token = served.token
    replies = await exchange(
        served.socket,
        b"not json\n",
        b"[1, 2]\n",
        b'{"id": 3, "token": "t", "op": "drop_tables"}\n',
        b'{"id": 4, "op": "current_chain", "key": "process-key"}\n',
        request(token, "current_chain", request_id=5, key="process-key", extra=1),
        request(token, "current_chain", request_id=6, key=""),
        request(
            token, "add_usage", request_id=8, records=[hop_record("turn-1").model_dump(exclude={"namespace"})] * 101
        ),
        b'{"id": 9, "token": "' + token.encode() + b'", "op": "current_chain", "key": "process-key", "id": NaN}\n',
        request(token, "current_chain", request_id=10, key="process-key"),
    )
    kinds = [(r["id"], r["ok"], r.get("error", {}).get("kind")) for r in replies if r is not None]
    assert kinds == [
        (None, False, "malformed"),
        (None, False, "malformed"),
        (3, False, "malformed"),  # no such operation
        (4, False, "malformed"),  # no token
        (5, False, "malformed"),  # a field the operation does not take
        (6, False, "malformed"),
        (8, False, "malformed"),  # more records than a request may carry
        (None, False, "malformed"),
        (10, True, None),  # the connection still answers
    ]


async def test_a_line_longer_than_the_limit_is_refused_and_its_connection_closed(served: Served) -> None:
    too_long, after = await exchange(
        served.socket, b"x" * (MAX_LINE + 10) + b"\n", request(served.token, "current_chain", key="process-key")
    )
    assert too_long is not None and too_long["error"]["kind"] == "too_large"
    assert after is None


async def test_connections_beyond_the_limit_are_refused(store: SqliteStore) -> None:
    async for served in serve(store, "alice", max_connections=1):
        async with await anyio.connect_unix(served.socket) as first:
            await first.send(request(served.token, "current_chain", key="process-key"))
            assert json.loads(await BufferedByteReceiveStream(first).receive_until(b"\n", 1 << 16))["ok"]
            [second] = await exchange(served.socket, request(served.token, "current_chain", key="process-key"))
        assert (
            second is not None
            and second["error"]["kind"] == "refused"
            and "connections are open" in second["error"]["message"]
        )


async def test_without_the_socket_a_hop_runs_on_its_inherited_budget_and_says_so_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="claude_mcp.state.remote_chains")
    remote = RemoteChains(str(tmp_path / "absent.sock"), "token")
    async with SqliteStore(tmp_path / "hop.db") as own:
        ledger = HopLedger(own, remote)
        assert await ledger.current_chain("process-key") == ChainAccount(chain_id="process-key", budget_usd=None)
        await ledger.point_chain("hop-process", "process-key", now=1.0)
        await ledger.add_usage([hop_record("process-key")])  # kept in the hop's own store all the same
        assert await ledger.chain_account("process-key") is None
        assert (await ledger.usage_totals("whatever-the-hop-says", [0.0]))[0].runs == 1
    warned = [r for r in caplog.records if "inherited depth and per-call budget" in r.getMessage()]
    assert len(warned) == 1 and "absent.sock" in warned[0].getMessage()


async def test_a_sandboxed_launcher_gives_each_cli_process_its_capability_and_binds_the_channel(
    store: SqliteStore, tmp_path: Path
) -> None:
    launcher = Walls("sandbox", write_wrapper(tmp_path / "walls")).launcher([tmp_path / "work"])
    channel = ChainChannel(store, "alice")
    async with channel.running():
        launcher.chains = channel
        first = launcher.launch(ClaudeAgentOptions(env={CHAIN_ENV: "process-key"}))
        second = launcher.launch(ClaudeAgentOptions(env={CHAIN_ENV: "process-key"}))
        unkeyed = launcher.launch(ClaudeAgentOptions(env={}))
        wall = wall_exec.decode(first.options.env[wall_exec.WALL_ENV])
        assert first.options.env[SOCKET_ENV] == INSIDE_SOCKET
        assert first.options.env[TOKEN_ENV] != second.options.env[TOKEN_ENV]  # a capability per process
        assert TOKEN_ENV not in unkeyed.options.env  # no chain key, no capability
        assert {SOCKET_ENV, TOKEN_ENV} <= set(cast(list[str], wall["keep"]))  # the allowlist keeps them
        args, directory = cast(list[str], wall["bwrap"]), str(channel.directory)
        assert args[args.index(directory) - 1 : args.index(directory) + 2] == ["--ro-bind", directory, INSIDE_DIR]
        assert first.options.env[TOKEN_ENV] not in first.options.env[wall_exec.WALL_ENV]  # never in argv
    assert channel.directory is None and not await anyio.Path(directory).exists()  # gone with the channel
