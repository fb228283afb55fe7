"""Callers' own Claude credentials (`credentials = "caller"`): which are accepted, what
namespace each maps to, and what reaches the CLI.

Anthropic does not allow third-party products to offer claude.ai (subscription) login or
subscription rate limits to other people without its approval; a service that serves others
runs on API keys. So API keys (`sk-ant-api…`) are accepted, and subscription OAuth tokens
(`sk-ant-oat…`, from `claude setup-token`) only where the operator says the deployment serves
its owner's own apps (`caller_oauth_tokens = true`). A credential lives only in memory and in
its CLI's environment; what names its namespace is a keyed hash of it.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from typing import Literal

from ..errors import ClaudeMCPError

CREDENTIAL_HEADER = "X-Claude-Credential"
TERMS_URL = "https://www.anthropic.com/legal/consumer-terms"

CredentialKind = Literal["api_key", "oauth_token"]

SERVER_CREDENTIAL_ENV = (
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_AUTH_TOKEN",
    "CLAUDE_CODE_OAUTH_TOKEN",
    "CLAUDE_CODE_USE_BEDROCK",
    "CLAUDE_CODE_USE_VERTEX",
    "CLAUDE_CODE_USE_FOUNDRY",
    "AWS_BEARER_TOKEN_BEDROCK",
    "ANTHROPIC_FOUNDRY_API_KEY",
)
"""What could make the CLI use the server's own login: blanked for a caller's runs."""


class CredentialRefused(ClaudeMCPError):
    """A caller's credential is missing, malformed or not allowed; `status` is the HTTP status."""

    kind = "credential"

    def __init__(self, message: str, *, status: int = 401) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class CallerCredential:
    """One caller's Claude credential (never shown by `repr`)."""

    secret: str = field(repr=False)
    kind: CredentialKind

    def cli_env(self) -> dict[str, str]:
        """The CLI's environment for this caller: its credential, and none of the server's."""
        env = dict.fromkeys(SERVER_CREDENTIAL_ENV, "")
        env["ANTHROPIC_API_KEY" if self.kind == "api_key" else "CLAUDE_CODE_OAUTH_TOKEN"] = self.secret
        return env

    def namespace(self, key: bytes) -> str:
        """The caller's namespace: a keyed hash of the credential, never the credential."""
        return "caller-" + hmac.new(key, self.secret.encode(), hashlib.sha256).hexdigest()[:32]


MISSING = (
    f"This server runs on its callers' own Claude credentials: send your Anthropic API key in the "
    f"`{CREDENTIAL_HEADER}` header (e.g. `{CREDENTIAL_HEADER}: sk-ant-api03-…`)."
)
NOT_A_CREDENTIAL = (
    f"The `{CREDENTIAL_HEADER}` header does not hold an Anthropic API key (they start with `sk-ant-api`). "
    "Create one in the Claude Console and send it."
)
OAUTH_REFUSED = (
    f"Claude subscription tokens (`sk-ant-oat…`) are not accepted by this server: Anthropic's terms ({TERMS_URL}) "
    "do not allow a third-party service to use claude.ai subscription login or rate limits for other people "
    f"without Anthropic's approval. Send an Anthropic API key (`sk-ant-api…`) in `{CREDENTIAL_HEADER}` instead."
)

CALLER_REJECTED = (
    f"Claude rejected the credential you sent in `{CREDENTIAL_HEADER}` (HTTP 401): it is invalid, revoked or "
    "expired. Send a valid Anthropic API key; nothing of this attempt was kept."
)


def parse_credential(value: str | None, *, allow_oauth: bool) -> CallerCredential:
    """The caller's credential from the header's value, or `CredentialRefused` saying what to send."""
    secret = (value or "").strip()
    if not secret:
        raise CredentialRefused(MISSING)
    if len(secret) > 512 or any(ord(c) < 33 or ord(c) > 126 for c in secret):
        raise CredentialRefused(NOT_A_CREDENTIAL)
    if secret.startswith("sk-ant-api"):
        return CallerCredential(secret, "api_key")
    if secret.startswith("sk-ant-oat"):
        if not allow_oauth:
            raise CredentialRefused(OAUTH_REFUSED, status=403)
        return CallerCredential(secret, "oauth_token")
    raise CredentialRefused(NOT_A_CREDENTIAL)
