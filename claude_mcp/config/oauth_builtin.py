"""`[oauth.builtin]`: the built-in authorization server (`[oauth] authorization_server = "builtin"`),
where the people who use a hosted server sign in with their own Anthropic key.

The key they enter is kept in the shared store, sealed with AES-256-GCM under the operator's key
ring (`secrets_key_env` or `secrets_key_file`: `KEY_ID:BASE64_KEY` entries, the first sealing, all
opening; see README "The built-in authorization server" for rotation).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field


class BuiltinSettings(BaseModel):
    """`[oauth.builtin]` in the config."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    secrets_key_env: str = Field(
        "CLAUDE_MCP_OAUTH_KEYS",
        description="Environment variable holding the key ring that seals callers' keys at rest "
        "(`KEY_ID:BASE64_KEY`, comma-separated, the first sealing; "
        '`echo "k1:$(openssl rand -base64 32)"` makes one).',
    )
    secrets_key_file: Path | None = Field(
        None, description="A file holding the key ring instead (one `KEY_ID:BASE64_KEY` a line), e.g. a mounted secret."
    )
    access_token_s: int = Field(3600, ge=60, le=86400, description="How long an access token is honoured.")
    refresh_token_s: int = Field(
        30 * 86400, ge=3600, description="How long a sign-in lasts unused: each refresh rotates the refresh token."
    )
    code_s: int = Field(120, ge=10, le=600, description="How long an authorization code may wait to be exchanged.")
    sign_in_s: int = Field(900, ge=60, le=3600, description="How long the sign-in page waits for the person.")
    dynamic_registration: bool = Field(True, description="Let older clients register themselves (RFC 7591).")
    unused_client_s: int = Field(
        3600,
        ge=600,
        description="A registered client not used for a sign-in within this long is forgotten (it registers again).",
    )
    most_unused_clients: int = Field(
        1000,
        ge=10,
        description="At most this many registered clients not yet used for a sign-in are kept; registering "
        "another is refused (HTTP 429) until some are used or forgotten.",
    )
    registrations_per_address: int = Field(
        30,
        ge=1,
        description="How many clients one client address may register per `sign_in_window_s` (counted in each "
        "replica's memory); beyond, registering is refused (HTTP 429).",
    )
    authorize_per_address: int = Field(
        60,
        ge=1,
        description="How many authorization requests (`/authorize`) one client address may make per "
        "`sign_in_window_s` (counted in each replica's memory); beyond, it is answered `temporarily_unavailable`.",
    )
    most_pending_sign_ins: int = Field(
        10_000,
        ge=1,
        description="At most this many sign-ins may wait on the sign-in page at once (in the shared store); "
        "beyond, an authorization request is answered `temporarily_unavailable` until some finish or expire.",
    )
    sign_in_attempts: int = Field(
        5, ge=1, le=50, description="How many keys one sign-in may try; then it is void and the person starts again."
    )
    sign_in_attempts_per_address: int = Field(
        20,
        ge=1,
        description="How many keys one client address may have checked per `sign_in_window_s` (counted in each "
        "replica's memory; behind a proxy, the address the server sees is the proxy's unless it forwards it).",
    )
    sign_in_window_s: int = Field(900, ge=60, description="The window the per-address limits count over.")
    client_metadata_documents: bool = Field(
        True, description="Accept an https URL as client_id and fetch the client's metadata document there."
    )
    client_document_fetches_per_address: int = Field(
        30,
        ge=1,
        description="How many client metadata documents this server fetches (cache misses) on behalf of one "
        "client address per `sign_in_window_s` (counted in each replica's memory); beyond, it fetches none for it.",
    )
    client_document_max_bytes: int = Field(
        5 * 1024, ge=512, le=64 * 1024, description="A client metadata document larger than this is refused."
    )
    client_document_timeout_s: float = Field(
        5.0, gt=0, le=30, description="How long fetching a client metadata document may take."
    )
    client_document_private_addresses: bool = Field(
        False,
        description="Fetch client metadata documents from loopback and private addresses too (tests and closed "
        "networks only: it lets anyone who can name a URL make this server fetch from your network).",
    )
    key_check_url: AnyHttpUrl | None = Field(
        None,
        description="Where a key entered at sign-in is checked (`GET …/v1/models`) before anything is issued; "
        "default: the CLI's ANTHROPIC_BASE_URL, else https://api.anthropic.com.",
    )
