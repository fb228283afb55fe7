"""The chain channel, as the server above offers it: one namespace's chain accounts, reachable from
inside its sandboxes through one narrow Unix socket, per CLI process a capability.

A claude-mcp that a sandboxed CLI starts is the next hop of that CLI's chain, but sees nothing of
the server's store. So while a namespace's bridge runs behind a sandbox, it serves a Unix socket of
its own (`ChainChannel`, in a private directory of the server's temporary directory: mode 0700,
outside every sandbox's view) and its launcher binds that directory, read-only, at
`remote_chains.INSIDE_DIR` in each of the namespace's sandboxes (never another namespace's). Each
CLI process it starts is given a capability (`offer`): a random token in its environment, granting

- the chain of that process's key (`CHAIN_ENV`) as the server points it, turn after turn, and the
  chains it has pointed at so far (`Grant.chains`);
- the keys of the hops' own CLI processes, pointed only at those chains, and kept apart from every
  key the server itself gives (stored under a prefix of the grant's own: `Grant.hop_key`);
- usage records in those chains only, stored in the channel's namespace whatever they say, with
  figures finite and not negative, and no run id that is the chain's own (a hop cannot stand in for
  the run above it);

and nothing else: no other chain, key, namespace or record; never opening or funding an account.
The capability ends with its CLI process (when it closes, and every hop below it with it).

What a hostile sandbox can do with it: read its own chains' accounts, spend from them (as its own
runs would), add usage records of its own namespace to them (records only add: it can make its
chain and its namespace's quotas look more spent, never less), and point keys under its own
prefix, within bounds (`MAX_HOP_KEYS`, `MAX_HOP_RECORDS` per capability). It cannot reach another
namespace's socket, guess a live token (256 random bits), read or change another chain, open or
raise a budget, write another namespace's records, or repoint a key the server gave. A request is
one line of at most `MAX_LINE` bytes; a longer one closes its connection; at most
`MAX_CONNECTIONS` are open at once, each closed after `IDLE_S` of silence. Like every budget below
the top, the channel's is one the hops keep themselves: a sandbox whose Bash may run the CLI
itself can spend its own credential without asking anyone.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import secrets
import shutil
import socket
import tempfile
import time
import weakref
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import anyio
from anyio.abc import SocketAttribute, SocketStream
from anyio.streams.buffered import BufferedByteReceiveStream
from pydantic import ValidationError

from ..state.remote_chains import (
    INSIDE_DIR,
    INSIDE_SOCKET,
    MAX_LINE,
    REQUESTS,
    SOCKET_ENV,
    SOCKET_NAME,
    TOKEN_ENV,
    AddUsage,
    ChainAccountOf,
    CurrentChain,
    ErrorKind,
    PointChain,
    Reply,
    ReplyError,
    Request,
)
from ..state.store import ChainAccount, LedgerAccounts
from .launcher import Process
from .options import CHAIN_ENV

logger = logging.getLogger(__name__)

MAX_CONNECTIONS = 64
"""Connections open at once on one namespace's channel (a hop keeps one)."""
IDLE_S = 600.0
"""A connection silent this long is closed (a hop connects again)."""
MAX_CHAINS = 256
"""Chains one capability remembers (a warm CLI process's turns, the latest kept)."""
MAX_HOP_KEYS = 1_000
"""Keys the hops below one CLI process may point (each a row in the store until it is forgotten)."""
MAX_HOP_RECORDS = 10_000
"""Usage records the hops below one CLI process may store (a hop run stores one per model)."""
UNHELD_S = 60.0
"""A capability whose process was never made (its launch failed) lapses after this long."""


class Refusal(Exception):
    """A request outside the capability (its message says what was refused and why)."""


@dataclass(eq=False)
class Grant:
    """What one CLI process's capability grants: its own key, the chains the server pointed the key
    at, and the keys of the hops below it (under `scope`)."""

    key: str
    scope: str = field(default_factory=lambda: secrets.token_hex(8))
    chains: OrderedDict[str, None] = field(default_factory=OrderedDict)
    given_at: float = field(default_factory=time.monotonic)
    hop_keys: set[str] = field(default_factory=set)
    records: int = 0
    _process: weakref.ref[Process] | None = None

    def held_by(self, process: Process) -> None:
        """The grant lives as long as this process (until it is closed)."""
        self._process = weakref.ref(process)

    @property
    def live(self) -> bool:
        if self._process is None:
            return time.monotonic() - self.given_at < UNHELD_S
        process = self._process()
        return process is not None and not process.closed

    def knows(self, chain_id: str) -> bool:
        return chain_id in self.chains

    def learn(self, chain_id: str) -> None:
        self.chains[chain_id] = None
        self.chains.move_to_end(chain_id)
        while len(self.chains) > MAX_CHAINS:
            self.chains.popitem(last=False)

    def hop_key(self, key: str) -> str:
        """Where a hop's own key is kept: apart from every key the server gives, and every other grant's."""
        return f"hop/{self.scope}/{key}"


@dataclass(frozen=True, slots=True)
class Offer:
    """A capability for one CLI process about to start: the variables its environment gets, the
    directory to bind into its sandbox (host, inside), and its grant (held by the process)."""

    env: dict[str, str]
    bind: tuple[Path, Path]
    grant: Grant

    def hold(self, process: Process) -> None:
        self.grant.held_by(process)


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _reply_error(request_id: int | None, kind: ErrorKind, message: str) -> Reply:
    return Reply(id=request_id, ok=False, error=ReplyError(kind=kind, message=message))


def _id_of(line: bytes) -> int | None:
    """The id of a request that could not be read, where it can be found (for the error's reply)."""
    try:
        found = json.loads(line)
    except Exception:
        return None
    value = found.get("id") if isinstance(found, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _said(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first.get("loc", ()))
    return f"{where}: {first['msg']}" if where else str(first["msg"])


def _socket_dir() -> Path:
    """A private directory for one channel's socket (short enough for a socket's path)."""
    directory = Path(tempfile.mkdtemp(prefix="claude-mcp-chain-"))
    if len(str(directory / SOCKET_NAME)) > 100:  # sun_path holds 108 bytes
        directory.rmdir()
        directory = Path(tempfile.mkdtemp(prefix="claude-mcp-chain-", dir="/tmp"))
    return directory


class ChainChannel:
    """One namespace's chain channel: the socket its sandboxed CLI processes' hops reach, and the
    capabilities it gave them. Serves while `running`."""

    def __init__(
        self,
        ledger: LedgerAccounts,
        namespace: str,
        *,
        now: Callable[[], float] = time.time,
        max_connections: int = MAX_CONNECTIONS,
        idle_s: float = IDLE_S,
    ) -> None:
        self.ledger = ledger
        self.namespace = namespace
        self.now = now
        self.max_connections = max_connections
        self.idle_s = idle_s
        self.directory: Path | None = None
        """The socket's directory on the host, while the channel serves."""
        self._grants: dict[bytes, Grant] = {}
        self._streams: set[SocketStream] = set()

    @property
    def socket(self) -> Path | None:
        return self.directory / SOCKET_NAME if self.directory is not None else None

    def offer(self, env: Mapping[str, str]) -> Offer | None:
        """A capability for a CLI process about to start with this environment: its chain key's (None
        when it has none, or the channel is not serving)."""
        key = env.get(CHAIN_ENV)
        if key is None or self.directory is None:
            return None
        self._grants = {digest: grant for digest, grant in self._grants.items() if grant.live}
        token = secrets.token_urlsafe(32)
        grant = Grant(key)
        self._grants[_digest(token)] = grant
        return Offer({SOCKET_ENV: INSIDE_SOCKET, TOKEN_ENV: token}, (self.directory, Path(INSIDE_DIR)), grant)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Serve the socket for the block; on its end the socket, its directory and every capability go."""
        directory = await anyio.to_thread.run_sync(_socket_dir)
        try:
            listener = await anyio.create_unix_listener(directory / SOCKET_NAME)
            async with listener, anyio.create_task_group() as tasks:
                tasks.start_soon(listener.serve, self._connection)
                self.directory = directory
                try:
                    yield
                finally:
                    self.directory = None
                    self._grants.clear()
                    with anyio.CancelScope(shield=True):
                        await self._hang_up()
                    tasks.cancel_scope.cancel()
        finally:
            await anyio.to_thread.run_sync(lambda: shutil.rmtree(directory, ignore_errors=True))

    async def _hang_up(self) -> None:
        """End every connection by shutting its socket down (its reader sees the end and returns), for
        a second at most. Not by cancelling a pending read: anyio's asyncio backend may then resolve
        the read's cancelled future (`InvalidStateError`, agronholm/anyio#1267)."""
        for stream in self._streams:
            with contextlib.suppress(OSError):
                stream.extra(SocketAttribute.raw_socket).shutdown(socket.SHUT_RDWR)
        with anyio.move_on_after(1.0):
            while self._streams:
                await anyio.sleep(0.01)

    async def _connection(self, stream: SocketStream) -> None:
        async with stream:
            if len(self._streams) >= self.max_connections:
                with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                    said = f"{len(self._streams)} connections are open, the most allowed"
                    await stream.send(_reply_error(None, "refused", said).line())
                return
            self._streams.add(stream)
            try:
                await self._converse(stream)
            except (
                anyio.IncompleteRead,
                anyio.EndOfStream,
                anyio.BrokenResourceError,
                anyio.ClosedResourceError,
                OSError,
            ):
                pass  # the hop went away
            except Exception:  # never the channel's other connections, nor the bridge
                logger.warning("a chain channel connection failed", exc_info=True)
            finally:
                self._streams.discard(stream)

    async def _converse(self, stream: SocketStream) -> None:
        """Answer the connection's requests in order, until it closes, idles, or sends too long a line."""
        received = BufferedByteReceiveStream(stream)
        while True:
            line = None
            with anyio.move_on_after(self.idle_s):
                try:
                    line = await received.receive_until(b"\n", MAX_LINE)
                except anyio.DelimiterNotFound:
                    line = b"x" * MAX_LINE
            if line is None:
                return
            if len(line) >= MAX_LINE:  # (its newline may have come in the same read)
                too_long = f"a request line is at most {MAX_LINE} bytes; closing the connection"
                await stream.send(_reply_error(None, "too_large", too_long).line())
                return
            await stream.send((await self.answer(line)).line())

    async def answer(self, line: bytes) -> Reply:
        """The reply to one request line (without its newline)."""
        try:
            request = REQUESTS.validate_json(line)
        except ValidationError as exc:
            return _reply_error(_id_of(line), "malformed", _said(exc))
        grant = self._grants.get(_digest(request.token))
        if grant is None or not grant.live:
            return _reply_error(
                request.id, "refused", "the capability is not one this channel gave, or its CLI process has ended"
            )
        try:
            result = await self._perform(grant, request)
        except Refusal as exc:
            return _reply_error(request.id, "refused", str(exc))
        except Exception as exc:
            logger.warning("the chain channel could not answer %s", request.op, exc_info=True)
            return _reply_error(request.id, "unavailable", f"the store could not be reached ({type(exc).__name__})")
        return Reply(id=request.id, ok=True, result=result)

    async def _perform(self, grant: Grant, request: Request) -> ChainAccount | None:
        if isinstance(request, CurrentChain):
            return await self._current(grant, request.key)
        if isinstance(request, ChainAccountOf):
            _granted(grant, request.chain_id)
            return await self.ledger.chain_account(request.chain_id)
        if isinstance(request, PointChain):
            await self._point(grant, request)
            return None
        await self._add(grant, request)
        return None

    async def _current(self, grant: Grant, key: str) -> ChainAccount:
        """The chain the process's own key points at (learnt: it becomes the grant's); a hop's key,
        where it was pointed; or a granted chain's own id (the key of a hop's first process in it)."""
        if key == grant.key:
            account = await self.ledger.current_chain(key)
            grant.learn(account.chain_id)
            return account
        kept = grant.hop_key(key)
        pointed = await self.ledger.current_chain(kept)
        if pointed.chain_id != kept:
            return pointed
        if grant.knows(key):
            return await self.ledger.chain_account(key) or ChainAccount(chain_id=key, budget_usd=None)
        raise Refusal(
            f"the key {key!r} is not one this capability grants (its CLI process's own key, the chains it was "
            "pointed at, and the keys of the hops below it)"
        )

    async def _point(self, grant: Grant, request: PointChain) -> None:
        if request.budget_usd is not None:
            raise Refusal("a hop below the top of a chain cannot open or fund a chain's account")
        _granted(grant, request.chain_id)
        if request.key == grant.key:
            raise Refusal("the CLI process's own key is pointed by the server above, not by a hop below")
        if request.key == request.chain_id:
            return
        if request.key not in grant.hop_keys and len(grant.hop_keys) >= MAX_HOP_KEYS:
            raise Refusal(f"the hops below this CLI process have pointed {MAX_HOP_KEYS} keys, the most allowed")
        grant.hop_keys.add(request.key)
        await self.ledger.point_chain(grant.hop_key(request.key), request.chain_id, self.now())

    async def _add(self, grant: Grant, request: AddUsage) -> None:
        for hop in request.records:
            _granted(grant, hop.chain_id)
            if hop.run_id == grant.key or grant.knows(hop.run_id):
                raise Refusal(f"run {hop.run_id!r} is a chain's own run: a hop below records only its own runs")
        if grant.records + len(request.records) > MAX_HOP_RECORDS:
            raise Refusal(
                f"the hops below this CLI process have stored {grant.records} usage records, the most allowed"
            )
        grant.records += len(request.records)
        await self.ledger.add_usage([hop.record(self.namespace) for hop in request.records])


def _granted(grant: Grant, chain_id: str) -> None:
    if not grant.knows(chain_id):
        raise Refusal(f"the chain {chain_id!r} is not one this capability grants")
