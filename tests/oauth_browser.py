"""A person at the built-in sign-in page, as a browser would be: follow the redirect to the page,
read its form, submit it (with the page's cookie and this server's Origin), and see where the
answer sends them. Shared by the built-in authorization server's tests."""

from __future__ import annotations

import base64
import hashlib
import html
import re
import secrets
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import httpx2

_HIDDEN = re.compile(r'<input type="hidden" name="(\w+)" value="([^"]*)">')


@dataclass
class Pkce:
    verifier: str
    challenge: str

    @classmethod
    def new(cls) -> Pkce:
        verifier = secrets.token_urlsafe(64)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
        return cls(verifier, challenge)


def hidden_fields(page: str) -> dict[str, str]:
    return {name: html.unescape(value) for name, value in _HIDDEN.findall(page)}


def query_of(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


async def sign_in(
    browser: httpx2.AsyncClient, authorization_url: str, key: str, action: str = "allow"
) -> httpx2.Response:
    """Open `authorization_url` (the client's redirect), land on the sign-in page, enter `key` and
    press `action`; the server's answer to the form (a 303 back to the client, or the page again)."""
    response = await browser.get(authorization_url)
    while response.status_code in (302, 303):
        response = await browser.get(response.headers["location"])
    assert response.status_code == 200, response.text
    assert "text/html" in response.headers["content-type"]
    fields = hidden_fields(response.text)
    origin = f"{response.url.scheme}://{response.url.netloc.decode()}"
    return await browser.post(
        str(response.url.copy_with(query=None)),
        data={**fields, "api_key": key, "action": action},
        headers={"Origin": origin},
    )
