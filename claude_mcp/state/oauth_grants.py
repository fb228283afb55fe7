"""What the built-in OAuth authorization server keeps in the shared store, so that any replica
can carry on a sign-in another began and honour (or refuse) a token another issued.

Only hashes of the secrets handed out (authorization codes, access and refresh tokens, the
sign-in page's request ids) are stored, never the secrets; a caller's Claude credential is stored
only sealed (`oauth.builtin.sealing`), bound to its grant. A grant is one sign-in: the caller,
its sealed credential, the client it was given to and every token issued under it; revoking the
grant kills them all. Codes and refresh tokens are single-use: the first `use_*` wins.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, Literal, Protocol

from pydantic import BaseModel

MIGRATION = [
    """CREATE TABLE oauth_clients (
        client_id TEXT PRIMARY KEY, info TEXT NOT NULL, secret TEXT, created_at DOUBLE PRECISION NOT NULL)""",
    """CREATE TABLE oauth_requests (
        request_hash TEXT PRIMARY KEY, client_id TEXT NOT NULL, params TEXT NOT NULL,
        expires_at DOUBLE PRECISION NOT NULL)""",
    """CREATE TABLE oauth_grants (
        grant_id TEXT PRIMARY KEY, client_id TEXT NOT NULL, namespace TEXT NOT NULL, credential TEXT NOT NULL,
        kind TEXT NOT NULL, scopes TEXT NOT NULL, resource TEXT, created_at DOUBLE PRECISION NOT NULL,
        expires_at DOUBLE PRECISION NOT NULL, revoked_at DOUBLE PRECISION)""",
    """CREATE TABLE oauth_codes (
        code_hash TEXT PRIMARY KEY, grant_id TEXT NOT NULL, client_id TEXT NOT NULL, redirect_uri TEXT NOT NULL,
        redirect_uri_explicit BOOLEAN NOT NULL, code_challenge TEXT NOT NULL, expires_at DOUBLE PRECISION NOT NULL,
        used_at DOUBLE PRECISION)""",
    """CREATE TABLE oauth_tokens (
        token_hash TEXT PRIMARY KEY, grant_id TEXT NOT NULL, kind TEXT NOT NULL,
        expires_at DOUBLE PRECISION NOT NULL, used_at DOUBLE PRECISION)""",
    "CREATE INDEX oauth_tokens_grant ON oauth_tokens (grant_id)",
    "CREATE INDEX oauth_grants_age ON oauth_grants (expires_at)",
]
LIMITS_MIGRATION = [
    # When a registered client was last used for a sign-in (NULL: never; such a client is forgotten after a while).
    "ALTER TABLE oauth_clients ADD COLUMN signed_in_at DOUBLE PRECISION",
    "CREATE INDEX oauth_clients_unused ON oauth_clients (created_at) WHERE signed_in_at IS NULL",
    # How many keys were tried on a pending sign-in.
    "ALTER TABLE oauth_requests ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0",
]

TokenKind = Literal["access", "refresh"]


class GrantRecord(BaseModel):
    """One sign-in: who (the caller's namespace and sealed credential), for which client, until when."""

    grant_id: str
    client_id: str
    namespace: str
    credential: str
    """The caller's Claude credential, sealed and bound to `grant_id`."""
    kind: str
    """What the credential is (`api_key` or `oauth_token`)."""
    scopes: list[str]
    resource: str | None
    created_at: float
    expires_at: float
    revoked_at: float | None = None


class CodeRecord(BaseModel):
    code_hash: str
    grant_id: str
    client_id: str
    redirect_uri: str
    redirect_uri_explicit: bool
    code_challenge: str
    expires_at: float
    used_at: float | None = None


class TokenRecord(BaseModel):
    token_hash: str
    grant_id: str
    kind: TokenKind
    expires_at: float
    used_at: float | None = None


class PendingRequest(BaseModel):
    """An authorization request waiting on the person at the sign-in page."""

    request_hash: str
    client_id: str
    params: str
    """The SDK's `AuthorizationParams`, as JSON."""
    expires_at: float
    attempts: int = 0
    """How many keys were tried on it."""


class OAuthGrants(Protocol):
    """The built-in authorization server's records (`Store` backends implement it)."""

    async def put_oauth_client(
        self, client_id: str, info: str, secret: str | None, now: float, *, unused_since: float, most_unused: int
    ) -> bool:
        """Register a client (its metadata as JSON; its secret sealed, if it has one), first forgetting
        the clients registered before `unused_since` that were never used for a sign-in. False (and
        nothing stored) if `most_unused` clients not yet used for a sign-in are stored already."""

    async def get_oauth_client(self, client_id: str) -> tuple[str, str | None] | None:
        """A registered client's metadata (JSON) and sealed secret."""

    async def put_oauth_request(self, request: PendingRequest, *, now: float, most: int) -> bool:
        """Store a pending request, first deleting those expired by `now`. False (and nothing stored)
        if `most` pending requests are stored already."""

    async def get_oauth_request(self, request_hash: str, now: float) -> PendingRequest | None:
        """A pending request that has not expired."""

    async def take_oauth_request(self, request_hash: str, now: float) -> PendingRequest | None:
        """Remove a pending request and return it, once (the first taker wins)."""

    async def try_oauth_request(self, request_hash: str, now: float, most: int) -> bool:
        """Count one key tried on a pending request; False (nothing counted) if `most` were tried already."""

    async def open_oauth_grant(self, grant: GrantRecord, code: CodeRecord) -> None:
        """Store a new grant and the authorization code that will start it, together (and mark its
        client as used for a sign-in)."""

    async def get_oauth_code(self, code_hash: str) -> CodeRecord | None: ...

    async def use_oauth_code(self, code_hash: str, now: float) -> bool:
        """Mark a code used; False if it was used already or has expired."""

    async def get_oauth_grant(self, grant_id: str) -> GrantRecord | None: ...

    async def add_oauth_tokens(
        self, grant_id: str, tokens: Sequence[TokenRecord], expires_at: float, credential: str | None = None
    ) -> None:
        """Issue tokens under a grant, extend it to `expires_at` (and re-seal its credential, if given)."""

    async def get_oauth_token(self, token_hash: str) -> tuple[TokenRecord, GrantRecord] | None:
        """A token and its grant (whatever their state: the caller judges expiry, use and revocation)."""

    async def use_oauth_token(self, token_hash: str, now: float) -> bool:
        """Mark a refresh token used; False if it was used already."""

    async def revoke_oauth_grant(self, grant_id: str, now: float) -> None:
        """Revoke a grant: every token issued under it is refused from now on."""

    async def forget_oauth(self, now: float) -> None:
        """Delete expired requests, codes, tokens and grants."""


_GRANT_COLUMNS = list(GrantRecord.model_fields)
_CODE_COLUMNS = list(CodeRecord.model_fields)
_TOKEN_COLUMNS = list(TokenRecord.model_fields)
_REQUEST_COLUMNS = list(PendingRequest.model_fields)


def _insert(table: str, columns: list[str]) -> str:
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"


def _grant(row: dict[str, Any], prefix: str = "") -> GrantRecord:
    values = {c: row[prefix + c] for c in _GRANT_COLUMNS}
    values["scopes"] = values["scopes"].split()
    return GrantRecord.model_validate(values)


def _grant_params(grant: GrantRecord) -> list[Any]:
    values = grant.model_dump()
    values["scopes"] = " ".join(grant.scopes)
    return [values[c] for c in _GRANT_COLUMNS]


class OAuthGrantQueries(ABC):
    """`OAuthGrants` in SQL that reads the same in both dialects (mixed into `SqlStore`)."""

    @abstractmethod
    async def _fetch(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]: ...

    @abstractmethod
    async def _execute(self, sql: str, params: Sequence[Any] = ()) -> int: ...

    @abstractmethod
    async def _transaction(self, statements: list[tuple[str, Sequence[Any]]]) -> None: ...

    @abstractmethod
    async def _serialized(self, key: str, statements: list[tuple[str, Sequence[Any]]]) -> int: ...

    async def put_oauth_client(
        self, client_id: str, info: str, secret: str | None, now: float, *, unused_since: float, most_unused: int
    ) -> bool:
        insert = (
            "INSERT INTO oauth_clients (client_id, info, secret, created_at) SELECT ?, ?, ?, ? "
            "WHERE (SELECT count(*) FROM oauth_clients WHERE signed_in_at IS NULL) < ?"
        )
        statements: list[tuple[str, Sequence[Any]]] = [
            ("DELETE FROM oauth_clients WHERE signed_in_at IS NULL AND created_at < ?", (unused_since,)),
            (insert, (client_id, info, secret, now, most_unused)),
        ]
        return await self._serialized("oauth_clients", statements) == 1  # registrations at once: one at a time

    async def get_oauth_client(self, client_id: str) -> tuple[str, str | None] | None:
        rows = await self._fetch("SELECT info, secret FROM oauth_clients WHERE client_id = ?", (client_id,))
        return (rows[0]["info"], rows[0]["secret"]) if rows else None

    async def put_oauth_request(self, request: PendingRequest, *, now: float, most: int) -> bool:
        values = request.model_dump()
        columns = ", ".join(_REQUEST_COLUMNS)
        insert = (
            f"INSERT INTO oauth_requests ({columns}) SELECT {', '.join('?' * len(_REQUEST_COLUMNS))} "
            "WHERE (SELECT count(*) FROM oauth_requests) < ?"
        )
        statements: list[tuple[str, Sequence[Any]]] = [
            ("DELETE FROM oauth_requests WHERE expires_at < ?", (now,)),
            (insert, [*(values[c] for c in _REQUEST_COLUMNS), most]),
        ]
        return await self._serialized("oauth_requests", statements) == 1  # requests at once: one at a time

    async def get_oauth_request(self, request_hash: str, now: float) -> PendingRequest | None:
        sql = "SELECT * FROM oauth_requests WHERE request_hash = ? AND expires_at > ?"
        rows = await self._fetch(sql, (request_hash, now))
        return PendingRequest.model_validate(rows[0]) if rows else None

    async def take_oauth_request(self, request_hash: str, now: float) -> PendingRequest | None:
        sql = "DELETE FROM oauth_requests WHERE request_hash = ? AND expires_at > ? RETURNING *"
        rows = await self._fetch(sql, (request_hash, now))
        return PendingRequest.model_validate(rows[0]) if rows else None

    async def try_oauth_request(self, request_hash: str, now: float, most: int) -> bool:
        sql = (
            "UPDATE oauth_requests SET attempts = attempts + 1 "
            "WHERE request_hash = ? AND expires_at > ? AND attempts < ?"
        )
        return await self._execute(sql, (request_hash, now, most)) == 1

    async def open_oauth_grant(self, grant: GrantRecord, code: CodeRecord) -> None:
        code_values = code.model_dump()
        await self._transaction(
            [
                (_insert("oauth_grants", _GRANT_COLUMNS), _grant_params(grant)),
                (_insert("oauth_codes", _CODE_COLUMNS), [code_values[c] for c in _CODE_COLUMNS]),
                ("UPDATE oauth_clients SET signed_in_at = ? WHERE client_id = ?", (grant.created_at, grant.client_id)),
            ]
        )

    async def get_oauth_code(self, code_hash: str) -> CodeRecord | None:
        rows = await self._fetch("SELECT * FROM oauth_codes WHERE code_hash = ?", (code_hash,))
        return (
            CodeRecord.model_validate({**rows[0], "redirect_uri_explicit": bool(rows[0]["redirect_uri_explicit"])})
            if rows
            else None
        )

    async def use_oauth_code(self, code_hash: str, now: float) -> bool:
        sql = "UPDATE oauth_codes SET used_at = ? WHERE code_hash = ? AND used_at IS NULL AND expires_at > ?"
        return await self._execute(sql, (now, code_hash, now)) == 1

    async def get_oauth_grant(self, grant_id: str) -> GrantRecord | None:
        rows = await self._fetch("SELECT * FROM oauth_grants WHERE grant_id = ?", (grant_id,))
        return _grant(rows[0]) if rows else None

    async def add_oauth_tokens(
        self, grant_id: str, tokens: Sequence[TokenRecord], expires_at: float, credential: str | None = None
    ) -> None:
        statements: list[tuple[str, Sequence[Any]]] = [
            (_insert("oauth_tokens", _TOKEN_COLUMNS), [t.model_dump()[c] for c in _TOKEN_COLUMNS]) for t in tokens
        ]
        sql = "UPDATE oauth_grants SET expires_at = ?, credential = coalesce(?, credential) WHERE grant_id = ?"
        statements.append((sql, (expires_at, credential, grant_id)))
        await self._transaction(statements)

    async def get_oauth_token(self, token_hash: str) -> tuple[TokenRecord, GrantRecord] | None:
        grant_columns = ", ".join(f"g.{c} AS g_{c}" for c in _GRANT_COLUMNS)
        sql = (
            f"SELECT t.token_hash, t.grant_id, t.kind AS t_kind, t.expires_at AS t_expires_at, t.used_at, "
            f"{grant_columns} FROM oauth_tokens t JOIN oauth_grants g ON g.grant_id = t.grant_id WHERE t.token_hash = ?"
        )
        rows = await self._fetch(sql, (token_hash,))
        if not rows:
            return None
        row = rows[0]
        token = TokenRecord(
            token_hash=row["token_hash"],
            grant_id=row["grant_id"],
            kind=row["t_kind"],
            expires_at=row["t_expires_at"],
            used_at=row["used_at"],
        )
        return token, _grant(row, "g_")

    async def use_oauth_token(self, token_hash: str, now: float) -> bool:
        sql = "UPDATE oauth_tokens SET used_at = ? WHERE token_hash = ? AND used_at IS NULL"
        return await self._execute(sql, (now, token_hash)) == 1

    async def revoke_oauth_grant(self, grant_id: str, now: float) -> None:
        sql = "UPDATE oauth_grants SET revoked_at = coalesce(revoked_at, ?), credential = '' WHERE grant_id = ?"
        await self._execute(sql, (now, grant_id))

    async def forget_oauth(self, now: float) -> None:
        await self._transaction(
            [
                ("DELETE FROM oauth_requests WHERE expires_at < ?", (now,)),
                ("DELETE FROM oauth_codes WHERE expires_at < ?", (now,)),
                ("DELETE FROM oauth_tokens WHERE expires_at < ?", (now,)),
                ("DELETE FROM oauth_grants WHERE expires_at < ?", (now,)),
            ]
        )
