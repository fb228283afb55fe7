"""The chain channel, as a hop below sees it: chain accounts over a Unix socket, for a claude-mcp
that a sandboxed CLI started and that cannot see its parent server's store.

A sandbox (`bridge.walls`) shows a CLI nothing of the server's state; yet a claude-mcp server that
CLI starts is the next hop of its chain, and must find the chain's account, spend from it and
store its records where the run above counts them. The server above offers each sandboxed CLI
process a narrow channel (`bridge.chain_channel`): a Unix socket bound into the sandbox at
`INSIDE_SOCKET`, and a capability (`TOKEN_ENV`, a random token per CLI process) that grants only
that process's chains, in only its namespace. Both travel in the CLI's environment, so every
claude-mcp below it, and the CLIs those start, carry them on.

The protocol: JSON lines (UTF-8, one object per line, at most `MAX_LINE` bytes with its newline).
A request names its `id`, the `token` and an `op`:

    {"id": 1, "token": "…", "op": "current_chain", "key": "<a process's chain key>"}
    {"id": 2, "token": "…", "op": "chain_account", "chain_id": "<a chain>"}
    {"id": 3, "token": "…", "op": "point_chain", "key": "<a key>", "chain_id": "<a chain>"}
    {"id": 4, "token": "…", "op": "add_usage", "records": [<HopUsage>, … at most MAX_RECORDS]}

and each gets one reply line, in order: `{"id": 1, "ok": true, "result": <ChainAccount | null>}`
or `{"id": 1, "ok": false, "error": {"kind": "malformed" | "too_large" | "refused" | "unavailable",
"message": "…"}}`. After a `too_large` line the server closes the connection.

`RemoteChains` is the client (the `ChainAccounts` operations a hop uses, and `add_usage`);
`HopLedger` composes it with the hop's own store: chain accounts over the channel, usage records
in both (the channel's copy is the one the chain counts), everything else local. Where the socket
is missing or the server above does not answer, a hop runs with only its inherited depth and
per-call budget, and says so once.
"""

from __future__ import annotations

import json
import logging
from typing import Annotated, Any, Literal

import anyio
from anyio.streams.buffered import BufferedByteReceiveStream
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter, ValidationError

from ..errors import ClaudeMCPError
from .store import ChainAccount, LedgerAccounts, UsageGroup, UsageRecord, UsageRow, UsageTotals

logger = logging.getLogger(__name__)

SOCKET_ENV = "CLAUDE_MCP_CHAIN_SOCKET"
"""Where a hop below finds the channel (the socket's path inside the sandbox)."""
TOKEN_ENV = "CLAUDE_MCP_CHAIN_TOKEN"
"""The capability a hop below presents on the channel."""
INSIDE_DIR = "/run/claude-mcp"
"""Where the directory holding the socket is bound inside every sandbox (read-only)."""
SOCKET_NAME = "chain.sock"
INSIDE_SOCKET = f"{INSIDE_DIR}/{SOCKET_NAME}"

MAX_LINE = 256 * 1024
"""The longest request line (with its newline), in bytes."""
MAX_REPLY = 64 * 1024
MAX_RECORDS = 100
"""Usage records per `add_usage` request (the client sends more in several)."""
TIMEOUT_S = 30.0
"""How long a hop waits for the server above to answer before it runs without the channel."""

Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Label = Annotated[str, StringConstraints(max_length=200)]


class ChannelRefused(ClaudeMCPError):
    """The server above refused a request on the chain channel (outside its capability, or malformed)."""

    kind = "chain_channel_refused"


class ChannelUnavailable(Exception):
    """The chain channel cannot be reached (no socket here, or the server above does not answer): the
    hop goes on without it (never raised out of `RemoteChains`)."""


class HopUsage(BaseModel):
    """A usage record as a hop sends it: a `UsageRecord` without its namespace (the channel's own
    is stamped on it), its figures finite and not negative, and below the top (`depth` ≥ 1)."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, allow_inf_nan=False)

    run_id: Name
    model: Label
    surface: Label
    started_at: float = Field(ge=0)
    duration_ms: int = Field(default=0, ge=0)
    input_tokens: int = Field(default=0, ge=0)
    output_tokens: int = Field(default=0, ge=0)
    cache_read_tokens: int = Field(default=0, ge=0)
    cache_write_tokens: int = Field(default=0, ge=0)
    cost_usd: float = Field(default=0.0, ge=0)
    outcome: Label = "ok"
    session_id: Label | None = None
    job_id: Label | None = None
    chain_id: Name
    depth: int = Field(ge=1, le=1000)

    @classmethod
    def of(cls, record: UsageRecord) -> HopUsage:
        return cls.model_validate(record.model_dump(exclude={"namespace"}))

    def record(self, namespace: str) -> UsageRecord:
        return UsageRecord(namespace=namespace, **self.model_dump())


class _Request(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    id: int
    token: Name


class CurrentChain(_Request):
    """The chain a key points at, with its account (`ChainAccounts.current_chain`)."""

    op: Literal["current_chain"]
    key: Name


class ChainAccountOf(_Request):
    """A chain's account (`ChainAccounts.chain_account`)."""

    op: Literal["chain_account"]
    chain_id: Name


class PointChain(_Request):
    """Point a key of a hop's own CLI process at a chain (`ChainAccounts.point_chain`, never opening
    an account: only the top of a chain has a budget to open one with)."""

    op: Literal["point_chain"]
    key: Name
    chain_id: Name
    budget_usd: float | None = None


class AddUsage(_Request):
    """Store a hop's usage records (`UsageLedger.add_usage`), in the channel's namespace."""

    op: Literal["add_usage"]
    records: list[HopUsage] = Field(max_length=MAX_RECORDS)


Request = Annotated[CurrentChain | ChainAccountOf | PointChain | AddUsage, Field(discriminator="op")]
REQUESTS: TypeAdapter[Request] = TypeAdapter(Request)

ErrorKind = Literal["malformed", "too_large", "refused", "unavailable"]


class ReplyError(BaseModel):
    kind: ErrorKind
    message: str


class Reply(BaseModel):
    """One reply line: the request's id (None when it could not be read), and its result or error."""

    id: int | None
    ok: bool
    result: ChainAccount | None = None
    error: ReplyError | None = None

    def line(self) -> bytes:
        return self.model_dump_json(exclude={"error"} if self.ok else {"result"}).encode() + b"\n"


class RemoteChains:
    """The chain operations of a hop below, over the channel of the server above (one connection,
    one request at a time; connected on first use, again once if it breaks)."""

    def __init__(self, socket: str, token: str, *, timeout_s: float = TIMEOUT_S) -> None:
        self.socket = socket
        self._token = token
        self._timeout_s = timeout_s
        self._next_id = 0
        self._stream: anyio.abc.SocketStream | None = None
        self._received: BufferedByteReceiveStream | None = None
        self._lock: anyio.Lock | None = None
        self._warned = False

    async def current_chain(self, key: str) -> ChainAccount:
        """The chain `key` points at; where the channel cannot be reached, the key as a chain of its
        own without a budget (the hop keeps its inherited per-call budget)."""
        try:
            account = await self._call({"op": "current_chain", "key": key})
        except ChannelUnavailable as exc:
            self._warn(exc)
            return ChainAccount(chain_id=key, budget_usd=None)
        return account if account is not None else ChainAccount(chain_id=key, budget_usd=None)

    async def chain_account(self, chain_id: str) -> ChainAccount | None:
        try:
            return await self._call({"op": "chain_account", "chain_id": chain_id})
        except ChannelUnavailable as exc:
            self._warn(exc)
            return None

    async def point_chain(self, key: str | None, chain_id: str, now: float, *, budget_usd: float | None = None) -> None:
        if budget_usd is not None:
            raise ChannelRefused("A hop below the top of a chain cannot open a chain's account.")
        if key is None or key == chain_id:
            return
        try:
            await self._call({"op": "point_chain", "key": key, "chain_id": chain_id})
        except ChannelUnavailable as exc:
            self._warn(exc)

    async def add_usage(self, records: list[UsageRecord]) -> None:
        """Send the records, `MAX_RECORDS` a request. Records the channel refuses are dropped, said
        in the log (sending them again would be refused again)."""
        sent = []
        for record in records:
            try:
                sent.append(HopUsage.of(record).model_dump())
            except ValidationError as exc:
                logger.warning("a usage record cannot go over the chain channel: %s", exc.errors()[0]["msg"])
        for start in range(0, len(sent), MAX_RECORDS):
            try:
                await self._call({"op": "add_usage", "records": sent[start : start + MAX_RECORDS]})
            except ChannelUnavailable as exc:
                self._warn(exc)
                return
            except ChannelRefused as exc:
                batch = len(sent[start : start + MAX_RECORDS])
                logger.warning("the chain channel refused %d usage records: %s", batch, exc)

    async def aclose(self) -> None:
        await self._drop()

    def _warn(self, exc: ChannelUnavailable) -> None:
        if not self._warned:
            self._warned = True
            logger.warning(
                "%s: this hop runs with only its inherited depth and per-call budget (the chain's account "
                "is not counted here).",
                exc,
            )

    async def _call(self, request: dict[str, Any]) -> ChainAccount | None:
        if self._lock is None:
            self._lock = anyio.Lock()
        async with self._lock:
            self._next_id += 1
            payload = {"id": self._next_id, "token": self._token, **request}
            reply = await self._exchange(payload)
        if reply.id != payload["id"]:
            await self._drop()
            raise ChannelUnavailable("The chain channel answered out of order.")
        if reply.error is not None:
            if reply.error.kind == "unavailable":
                raise ChannelUnavailable(
                    f"The server above could not answer on the chain channel: {reply.error.message}"
                )
            raise ChannelRefused(f"The chain channel refused {request['op']}: {reply.error.message}")
        return reply.result

    async def _exchange(self, payload: dict[str, Any]) -> Reply:
        """Send one request and read its reply, on a new connection if the kept one broke."""
        data = json.dumps(payload, separators=(",", ":")).encode() + b"\n"
        if len(data) > MAX_LINE:
            raise ChannelRefused(f"A request of {len(data)} bytes is longer than the channel's {MAX_LINE}.")
        for attempt in (1, 2):
            try:
                with anyio.fail_after(self._timeout_s):
                    stream, received = await self._connected()
                    await stream.send(data)
                    answer = await received.receive_until(b"\n", MAX_REPLY)
                if len(answer) >= MAX_REPLY:
                    raise anyio.DelimiterNotFound(MAX_REPLY)
                return Reply.model_validate_json(answer)
            except (OSError, TimeoutError, anyio.EndOfStream, anyio.IncompleteRead, anyio.BrokenResourceError) as exc:
                await self._drop()
                if attempt == 2 or isinstance(exc, TimeoutError | FileNotFoundError | ConnectionRefusedError):
                    raise ChannelUnavailable(
                        f"The chain channel at {self.socket} cannot be reached ({exc!r})"
                    ) from None
            except (anyio.DelimiterNotFound, ValidationError) as exc:
                await self._drop()
                raise ChannelUnavailable(
                    f"The chain channel at {self.socket} gave an unreadable reply ({exc!r})"
                ) from None
        raise AssertionError("unreachable")

    async def _connected(self) -> tuple[anyio.abc.SocketStream, BufferedByteReceiveStream]:
        if self._stream is None or self._received is None:
            self._stream = await anyio.connect_unix(self.socket)
            self._received = BufferedByteReceiveStream(self._stream)
        return self._stream, self._received

    async def _drop(self) -> None:
        stream, self._stream, self._received = self._stream, None, None
        if stream is not None:
            with anyio.CancelScope(shield=True):
                await stream.aclose()


class HopLedger:
    """A hop's ledger and chain accounts: the chains over the channel (`remote`), usage records in
    the hop's own store and over the channel, quotas and reports from its own store."""

    def __init__(self, local: LedgerAccounts, remote: RemoteChains) -> None:
        self.local = local
        self.remote = remote

    async def add_usage(self, records: list[UsageRecord]) -> None:
        """In the hop's own store (for its own quotas), then over the channel (for the chain). A record
        stored twice is left as it is, so a retry after a failure is safe."""
        await self.local.add_usage(records)
        await self.remote.add_usage(records)

    async def usage_totals(self, namespace: str, since: list[float]) -> list[UsageTotals]:
        return await self.local.usage_totals(namespace, since)

    async def usage_report(
        self,
        *,
        since: float,
        until: float,
        namespace: str | None = None,
        bucket_minutes: int | None = None,
        by: tuple[UsageGroup, ...] = (),
    ) -> list[UsageRow]:
        return await self.local.usage_report(
            since=since, until=until, namespace=namespace, bucket_minutes=bucket_minutes, by=by
        )

    async def open_chain(self, chain_id: str, budget_usd: float, now: float) -> None:
        raise ChannelRefused("A hop below the top of a chain cannot open a chain's account.")

    async def chain_account(self, chain_id: str) -> ChainAccount | None:
        return await self.remote.chain_account(chain_id)

    async def point_chain(self, key: str | None, chain_id: str, now: float, *, budget_usd: float | None = None) -> None:
        await self.remote.point_chain(key, chain_id, now, budget_usd=budget_usd)

    async def forget_chains(self, before: float) -> None:
        """The hop's own (the server above forgets the chains it keeps)."""
        await self.local.forget_chains(before)

    async def current_chain(self, key: str) -> ChainAccount:
        return await self.remote.current_chain(key)
