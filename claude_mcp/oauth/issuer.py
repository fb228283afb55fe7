"""Talking to the external authorization server: its metadata (OpenID Connect Discovery or RFC 8414)
and its signing keys (JWKS), fetched with httpx under a timeout, never on a blocked event loop."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

import httpx2

logger = logging.getLogger(__name__)

MOST_BYTES = 512 * 1024
"""An issuer's metadata or key set larger than this is refused (a real one is a few KB)."""


class IssuerUnavailable(Exception):
    """The issuer could not be reached, or answered something that is not what was asked for."""


def metadata_urls(issuer: str) -> tuple[str, ...]:
    """Where an issuer's metadata may be: OpenID Connect Discovery's, then RFC 8414's (with the
    issuer's path after the well-known part) and the OpenID form with the path after it."""
    parts = urlsplit(issuer)
    origin, path = f"{parts.scheme}://{parts.netloc}", parts.path.rstrip("/")
    return tuple(
        dict.fromkeys(
            (
                f"{issuer.rstrip('/')}/.well-known/openid-configuration",
                f"{origin}/.well-known/oauth-authorization-server{path}",
                f"{origin}/.well-known/openid-configuration{path}",
            )
        )
    )


async def get_json(client: httpx2.AsyncClient, url: str) -> dict[str, Any]:
    """A JSON object from `url`, or `IssuerUnavailable` saying why not."""
    try:
        response = await client.get(url, headers={"accept": "application/json"})
    except (httpx2.HTTPError, httpx2.InvalidURL) as exc:  # a URL from the issuer's metadata may be anything
        raise IssuerUnavailable(f"{url}: {type(exc).__name__}: {exc}") from None
    if response.status_code != 200:
        raise IssuerUnavailable(f"{url}: HTTP {response.status_code}")
    if len(response.content) > MOST_BYTES:
        raise IssuerUnavailable(f"{url}: larger than {MOST_BYTES} bytes")
    try:
        document = response.json()
    except ValueError:
        raise IssuerUnavailable(f"{url}: not JSON") from None
    if not isinstance(document, dict):
        raise IssuerUnavailable(f"{url}: not a JSON object")
    return document


async def discover(client: httpx2.AsyncClient, issuer: str) -> dict[str, Any]:
    """The issuer's metadata, from the first place that has it; its `issuer` must be `issuer` exactly."""
    failures = []
    for url in metadata_urls(issuer):
        try:
            document = await get_json(client, url)
        except IssuerUnavailable as exc:
            failures.append(str(exc))
            continue
        if document.get("issuer") != issuer:
            raise IssuerUnavailable(f"{url} names the issuer {document.get('issuer')!r}, not {issuer!r}")
        return document
    raise IssuerUnavailable("no metadata found: " + "; ".join(failures))
