"""Client ID Metadata Documents: a client whose `client_id` is an https URL publishes its metadata
there (draft-ietf-oauth-client-id-metadata-document), and the authorization server fetches it.

That fetch is a request the server makes to a URL anyone can name, so it is held tight: https only,
no credentials, fragment or dot segments in the URL; the host resolved and **every** address it
resolves to checked before connecting (no loopback, private, link-local, multicast or reserved
address: the connection then goes to the address that was checked, so a DNS answer that changes in
between cannot redirect it); no redirects followed; at most `max_bytes` read and `timeout_s` spent.
The document must name itself as `client_id`, list its redirect URIs, and be a public client (no
secret). Documents are cached as their `Cache-Control` says (at least `MIN_TTL_S`; bounded), per
replica, and each client address may have only so many fetched (cache misses) per window
(`fetches`), so one stranger cannot make the server fetch many different URLs quickly.

`allow_private_addresses` is an operator switch for tests and closed networks only.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re
import ssl
import time
from collections import OrderedDict
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit

import anyio
import httpcore2
import httpx2
from mcp.shared.auth import OAuthClientInformationFull
from pydantic import ValidationError

from ...errors import ClaudeMCPError
from .address_window import AddressWindow

logger = logging.getLogger(__name__)

DEFAULT_TTL_S = 300.0
MIN_TTL_S = 10.0
"""A document is reused this long whatever its `Cache-Control` says (one sign-in reads it several
times; naming a `no-store` document again and again makes no more than one fetch in this long)."""
MAX_TTL_S = 86400.0
_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*(\d+)", re.IGNORECASE)


class CimdRefused(ClaudeMCPError):
    """A client's metadata document could not be used; the message says why (shown to the client)."""

    kind = "invalid_client"


class CimdBusy(CimdRefused):
    """No document is fetched for this client address for now: it had this server fetch too many."""

    kind = "temporarily_unavailable"


def is_metadata_url(client_id: str) -> bool:
    """Whether a `client_id` names a metadata document (rather than a registered client)."""
    return client_id.startswith("https://")


def check_url(url: str) -> None:
    """Refuse a `client_id` URL the draft does not allow."""
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise CimdRefused("a client_id URL must be https with a host")
    if parts.username or parts.password or parts.fragment or "#" in url:
        raise CimdRefused("a client_id URL must not hold credentials or a fragment")
    segments = parts.path.split("/")
    if parts.path in ("", "/") or "." in segments or ".." in segments:
        raise CimdRefused("a client_id URL must have a path, without . or .. segments")


def address_allowed(address: str) -> bool:
    """Whether a resolved address is one a server may fetch a client's document from: a public one."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


class _CheckedBackend(httpcore2.AnyIOBackend):
    """Connects only to addresses `address_allowed` accepts (every address of the host is checked),
    and to the address checked, not to a second resolution of the name. TLS still verifies the name."""

    def __init__(self, allow_private: bool) -> None:
        self._allow_private = allow_private

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109  (httpcore's signature)
        local_address: str | None = None,
        socket_options: Iterable[httpcore2.SOCKET_OPTION] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        try:
            infos = await anyio.getaddrinfo(host, port, type=2)  # SOCK_DGRAM: one entry per address
        except OSError:
            raise CimdRefused(f"the client's host {host} does not resolve") from None
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        refused = [a for a in addresses if not address_allowed(a)]
        if not addresses or (refused and not self._allow_private):
            raise CimdRefused(
                f"the client's host {host} resolves to an address this server does not fetch from "
                f"({', '.join(refused) or 'none'}: loopback, private, link-local or reserved)"
            )
        return await super().connect_tcp(addresses[0], port, timeout, local_address, socket_options)


@contextmanager
def _as_httpx_errors() -> Iterator[None]:
    """httpcore's errors as httpx's (what a client of an httpx transport expects)."""
    try:
        yield
    except httpcore2.TimeoutException as exc:
        raise httpx2.TimeoutException(str(exc)) from exc
    except (
        httpcore2.NetworkError,
        httpcore2.ProtocolError,
        httpcore2.UnsupportedProtocol,
        httpcore2.ProxyError,
        httpcore2.ConnectionNotAvailable,
    ) as exc:
        raise httpx2.TransportError(str(exc)) from exc


class _Body(httpx2.AsyncByteStream):
    def __init__(self, stream: AsyncIterable[bytes]) -> None:
        self._stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _as_httpx_errors():
            async for chunk in self._stream:
                yield chunk

    async def aclose(self) -> None:
        closing = getattr(self._stream, "aclose", None)
        if closing is not None:
            await closing()


class _CheckedTransport(httpx2.AsyncBaseTransport):
    """An httpx transport over httpcore's connection pool with `_CheckedBackend` as its network backend
    (both public interfaces: httpx's `AsyncBaseTransport`, httpcore's `network_backend`). The pool
    connects to the checked address and starts TLS with the URL's host name, so SNI and the
    certificate check are the host's."""

    def __init__(self, *, verify: ssl.SSLContext | bool, allow_private: bool) -> None:
        self._pool = httpcore2.AsyncConnectionPool(
            ssl_context=httpx2.create_ssl_context(verify=verify),
            max_connections=20,
            network_backend=_CheckedBackend(allow_private),
        )

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        assert isinstance(request.stream, httpx2.AsyncByteStream)
        core_request = httpcore2.Request(
            method=request.method,
            url=httpcore2.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with _as_httpx_errors():
            answer = await self._pool.handle_async_request(core_request)
        assert isinstance(answer.stream, AsyncIterable)
        return httpx2.Response(
            status_code=answer.status, headers=answer.headers, stream=_Body(answer.stream), extensions=answer.extensions
        )

    async def aclose(self) -> None:
        await self._pool.aclose()


@dataclass(frozen=True, slots=True)
class _Cached:
    client: OAuthClientInformationFull
    until: float


def _ttl(cache_control: str | None) -> float:
    if cache_control is None:
        return DEFAULT_TTL_S
    lowered = cache_control.lower()
    if "no-store" in lowered or "no-cache" in lowered:
        return 0.0
    found = _MAX_AGE.search(lowered)
    return min(float(found.group(1)), MAX_TTL_S) if found else DEFAULT_TTL_S


def parse_document(url: str, body: bytes) -> OAuthClientInformationFull:
    """The client a metadata document describes; `CimdRefused` if it is not one this server accepts."""
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise CimdRefused("the client's metadata document is not JSON") from None
    if not isinstance(document, dict):
        raise CimdRefused("the client's metadata document is not a JSON object")
    if document.get("client_id") != url:
        raise CimdRefused("the client's metadata document does not name its own URL as client_id")
    if "client_secret" in document or "client_secret_expires_at" in document:
        raise CimdRefused("a client's metadata document must not hold a client secret")
    method = document.get("token_endpoint_auth_method", "none")
    if method != "none":
        raise CimdRefused(f"token_endpoint_auth_method {method!r} is not supported for a metadata document (none)")
    if not document.get("redirect_uris"):
        raise CimdRefused("the client's metadata document lists no redirect_uris")
    try:
        return OAuthClientInformationFull.model_validate({**document, "token_endpoint_auth_method": "none"})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise CimdRefused(f"the client's metadata document is invalid at {where}: {first['msg']}") from None


class MetadataDocuments:
    """Fetches, checks and caches clients' metadata documents."""

    def __init__(
        self,
        *,
        max_bytes: int = 5 * 1024,
        timeout_s: float = 5.0,
        allow_private_addresses: bool = False,
        cache_size: int = 1000,
        verify: ssl.SSLContext | bool = True,
        fetches: AddressWindow | None = None,
    ) -> None:
        """`fetches`: how many documents may be fetched on behalf of one client address (None: no bound)."""
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s
        self._cache: OrderedDict[str, _Cached] = OrderedDict()
        self._cache_size = cache_size
        self._verify = verify
        self._allow_private = allow_private_addresses
        self._http: httpx2.AsyncClient | None = None
        self._fetches = fetches

    def _client(self) -> httpx2.AsyncClient:
        """The HTTP client, opened at the first fetch (and again after `aclose`)."""
        if self._http is None:
            transport = _CheckedTransport(verify=self._verify, allow_private=self._allow_private)
            self._http = httpx2.AsyncClient(transport=transport, follow_redirects=False, trust_env=False)
        return self._http

    @property
    def is_open(self) -> bool:
        """Whether an HTTP client (and its connections) is open."""
        return self._http is not None and not self._http.is_closed

    async def aclose(self) -> None:
        """Close the HTTP client and its connections (the server's lifespan does, at its end)."""
        http, self._http = self._http, None
        if http is not None:
            await http.aclose()

    def cached(self, url: str) -> OAuthClientInformationFull | None:
        """The client `url` describes if its document is in the cache (nothing is fetched)."""
        cached = self._cache.get(url)
        if cached is None or cached.until <= time.monotonic():
            return None
        self._cache.move_to_end(url)
        return cached.client

    async def client(self, url: str, *, address: str = "") -> OAuthClientInformationFull:
        """The client `url` describes (cached; else fetched on behalf of client `address`); `CimdRefused`
        saying why not (`CimdBusy` if `address` had too many fetched)."""
        cached = self.cached(url)
        if cached is not None:
            return cached
        check_url(url)
        if self._fetches is not None and not self._fetches.take(address):
            raise CimdBusy("too many client metadata documents were fetched for this address; try again later")
        body, cache_control = await self._fetch(url)
        client = parse_document(url, body)
        self._cache[url] = _Cached(client, time.monotonic() + max(_ttl(cache_control), MIN_TTL_S))
        self._cache.move_to_end(url)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return client

    async def _fetch(self, url: str) -> tuple[bytes, str | None]:
        try:
            with anyio.fail_after(self.timeout_s):
                async with self._client().stream("GET", url, headers={"Accept": "application/json"}) as response:
                    if response.status_code != 200:
                        raise CimdRefused(f"the client's metadata document answered HTTP {response.status_code}")
                    declared = response.headers.get("content-length")
                    if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
                        raise CimdRefused(f"the client's metadata document is over {self.max_bytes} bytes")
                    body = bytearray()
                    async for chunk in response.aiter_bytes():
                        body += chunk
                        if len(body) > self.max_bytes:
                            raise CimdRefused(f"the client's metadata document is over {self.max_bytes} bytes")
                    return bytes(body), response.headers.get("cache-control")
        except TimeoutError:
            raise CimdRefused(f"the client's metadata document did not arrive within {self.timeout_s:g} s") from None
        except httpx2.HTTPError as exc:
            cause = exc.__cause__ or exc.__context__
            if isinstance(cause, CimdRefused):
                raise cause from None
            logger.info("fetching a client's metadata document failed: %s", type(exc).__name__)
            raise CimdRefused("the client's metadata document could not be fetched") from None
