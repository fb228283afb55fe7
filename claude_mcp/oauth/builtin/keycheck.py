"""Checking a key entered at sign-in before anything is issued for it: one free, cheap request with
the key to the model API (`GET /v1/models?limit=1`), the same API its runs will use."""

from __future__ import annotations

import logging

import anyio
import httpx2

from ...config.credentials import CallerCredential
from ...errors import ClaudeMCPError

logger = logging.getLogger(__name__)

DEFAULT_API = "https://api.anthropic.com"


class KeyRejected(ClaudeMCPError):
    """The model API refused the key (401/403): nothing is issued."""

    kind = "credential"


class KeyCheckFailed(ClaudeMCPError):
    """The model API could not be asked (unreachable, or an error of its own): try again later."""

    kind = "unavailable"


class KeyChecker:
    """Asks the model API whether it accepts a credential."""

    def __init__(self, base_url: str, *, timeout_s: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s

    async def check(self, credential: CallerCredential) -> None:
        """Return if the API accepts `credential`; `KeyRejected` or `KeyCheckFailed` otherwise."""
        headers = {"anthropic-version": "2023-06-01", "accept": "application/json"}
        if credential.kind == "api_key":
            headers["x-api-key"] = credential.secret
        else:
            headers["authorization"] = f"Bearer {credential.secret}"
            headers["anthropic-beta"] = "oauth-2025-04-20"
        try:
            with anyio.fail_after(self.timeout_s):
                async with httpx2.AsyncClient(trust_env=False, follow_redirects=False) as http:
                    response = await http.get(f"{self.base_url}/v1/models", params={"limit": "1"}, headers=headers)
        except (TimeoutError, httpx2.HTTPError) as exc:
            logger.warning("checking a key at sign-in failed: the model API did not answer (%s)", type(exc).__name__)
            raise KeyCheckFailed(
                "Claude's API could not be reached to check your key. Try again in a minute."
            ) from None
        if response.status_code in (401, 403):
            raise KeyRejected(
                "Claude's API rejected this key (it is invalid, revoked or has no access). Nothing was kept; "
                "check the key in the Claude Console and enter it again."
            )
        if response.status_code >= 400 and response.status_code != 429:  # 429: the key is good, only busy
            logger.warning("checking a key at sign-in failed: the model API answered HTTP %d", response.status_code)
            raise KeyCheckFailed(
                f"Claude's API answered HTTP {response.status_code} while checking your key. Try again in a minute."
            )
