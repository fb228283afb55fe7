"""The sign-in and consent page: where the person lets a client use this server, paying with their
own Anthropic key. A plain HTML form (no script): it names the client and where the person will
be sent back to, takes the key, has it checked with Anthropic, and only then issues a code.

The form is protected against cross-site submission twice over: its `csrf` field is a MAC of the
pending request (only the browser that was sent to this page knows the request id), and it must
equal a `SameSite=Strict` cookie the page set. The key is never echoed, logged or kept unsealed.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import logging
import time
from importlib import resources
from string import Template
from urllib.parse import urlsplit

from mcp.server.auth.provider import AuthorizationParams
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from ...config.credentials import CredentialRefused, parse_credential
from ...state.oauth_grants import PendingRequest
from .address_window import AddressWindow
from .cimd import is_metadata_url
from .keycheck import KeyChecker, KeyCheckFailed, KeyRejected
from .provider import BuiltinProvider, hashed, redirect_with

logger = logging.getLogger(__name__)

PATH = "/oauth/sign-in"
COOKIE = "cmcp_sign_in"
_TEMPLATE = Template(resources.files(__package__).joinpath("sign_in.html").read_text(encoding="utf-8"))
_HEADERS = {
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'",
}
NOT_A_KEY = "That is not an Anthropic API key (they start with sk-ant-api). Create one in the Claude Console."
SUBSCRIPTION_REFUSED = (
    "This server does not accept Claude subscription tokens (sk-ant-oat…): Anthropic's terms do not allow a "
    "third-party service to use claude.ai subscription login for other people. Enter an Anthropic API key."
)
EXPIRED = "This sign-in link has expired or was already used. Go back to your app and connect again."
TOO_MANY_HERE = "Too many keys were tried on this sign-in. Go back to your app and connect again."
TOO_MANY_FROM = "Too many keys were checked from your network recently. Wait a few minutes and try again."


def _notice(status: int, message: str) -> HTMLResponse:
    body = (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Sign-in</title></head>"
        f"<body><main><p>{html.escape(message)}</p></main></body></html>"
    )
    return HTMLResponse(body, status_code=status, headers=_HEADERS)


class SignIn:
    """`GET` shows the page for a pending request; `POST` takes the person's answer."""

    def __init__(
        self, provider: BuiltinProvider, checker: KeyChecker, *, csrf_keys: list[bytes], allow_oauth: bool
    ) -> None:
        """`csrf_keys`: the first makes the form's MAC, any of them checks one (so a key ring rotated on one
        replica before another does not break a sign-in that spans both)."""
        self.provider = provider
        self.checker = checker
        self._csrf_keys = csrf_keys
        self._allow_oauth = allow_oauth
        self._secure = provider.issuer.startswith("https://")
        settings = provider.settings
        self.checks = AddressWindow(settings.sign_in_attempts_per_address, settings.sign_in_window_s)

    def _csrf(self, request_hash: str, key: bytes | None = None) -> str:
        return hmac.new(key or self._csrf_keys[0], request_hash.encode(), hashlib.sha256).hexdigest()

    def _csrf_holds(self, request_hash: str, form: str, cookie: str) -> bool:
        """Whether the form's field and the page's cookie both carry this request's MAC (under any key)."""
        for key in self._csrf_keys:
            expected = self._csrf(request_hash, key).encode()
            if hmac.compare_digest(form.encode(), expected) and hmac.compare_digest(cookie.encode(), expected):
                return True
        return False

    async def handle(self, request: Request) -> Response:
        try:
            if request.method == "POST":
                return await self._submit(request)
            return await self._show(request)
        except Exception as exc:  # the store unreachable, say: a page saying so, the details at debug level
            logger.error("the sign-in page failed: %s", type(exc).__name__)
            logger.debug("the sign-in page failed", exc_info=True)
            return _notice(500, "Something went wrong on this server. Go back to your app and try again.")

    async def _pending(self, request_id: str) -> PendingRequest | None:
        if not request_id or len(request_id) > 128:
            return None
        return await self.provider.store.get_oauth_request(hashed(request_id), _now())

    async def _show(self, request: Request) -> Response:
        request_id = request.query_params.get("request", "")
        pending = await self._pending(request_id)
        if pending is None:
            return _notice(400, EXPIRED)
        return await self._page(request_id, pending, None, 200)

    async def _page(self, request_id: str, pending: PendingRequest, error: str | None, status: int) -> Response:
        client = await self.provider.get_client(pending.client_id)
        if client is None:
            return _notice(400, "The app that sent you here is no longer known to this server. Connect again.")
        params = AuthorizationParams.model_validate_json(pending.params)
        target = urlsplit(str(params.redirect_uri))
        redirect_host = target.netloc or f"{target.scheme}:"
        name = (client.client_name or client.client_id)[:100]
        if is_metadata_url(client.client_id):  # a name anyone could claim: say whose document it is
            name = f"{name} ({urlsplit(client.client_id).netloc})"
        csrf = self._csrf(pending.request_hash)
        body = _TEMPLATE.substitute(
            client_name=html.escape(name),
            server=html.escape(urlsplit(self.provider.issuer).netloc),
            redirect_host=html.escape(redirect_host[:200]),
            request=html.escape(request_id),
            csrf=csrf,
            error=f'<p class="error" role="alert">{html.escape(error)}</p>' if error else "",
        )
        response = HTMLResponse(body, status_code=status, headers=_HEADERS)
        response.set_cookie(
            COOKIE,
            csrf,
            max_age=self.provider.settings.sign_in_s,
            path=PATH,
            secure=self._secure,
            httponly=True,
            samesite="strict",
        )
        return response

    async def _submit(self, request: Request) -> Response:
        origin = request.headers.get("origin")
        if origin is not None and origin != self.provider.issuer:
            return _notice(403, "This form can only be sent from this server's own sign-in page.")
        form = await request.form(max_files=0, max_fields=10)
        request_id, csrf, action, key = (str(form.get(name) or "") for name in ("request", "csrf", "action", "api_key"))
        pending = await self._pending(request_id)
        if pending is None:
            return _notice(400, EXPIRED)
        if not self._csrf_holds(pending.request_hash, csrf, request.cookies.get(COOKIE, "")):
            return _notice(403, "This form could not be verified (it was not sent from this page). Connect again.")
        if action == "deny":
            return await self._deny(pending)
        most = self.provider.settings.sign_in_attempts
        if not await self.provider.store.try_oauth_request(pending.request_hash, _now(), most):
            await self.provider.store.take_oauth_request(pending.request_hash, _now())  # void: start again
            logger.info("a sign-in was void after %d keys were tried on it", most)
            return _notice(429, TOO_MANY_HERE)
        try:
            credential = parse_credential(key, allow_oauth=self._allow_oauth)
        except CredentialRefused as refused:
            message = SUBSCRIPTION_REFUSED if refused.status == 403 else NOT_A_KEY
            return await self._page(request_id, pending, message, 400)
        if not self.checks.take(request.client.host if request.client is not None else ""):
            logger.info("a key check at sign-in was refused: too many from one address")
            return _notice(429, TOO_MANY_FROM)
        try:
            await self.checker.check(credential)
        except KeyRejected as rejected:
            return await self._page(request_id, pending, rejected.message, 400)
        except KeyCheckFailed as failed:
            return await self._page(request_id, pending, failed.message, 503)
        taken = await self.provider.store.take_oauth_request(pending.request_hash, _now())
        if taken is None:  # the same form sent twice: the first one won
            return _notice(400, EXPIRED)
        location = await self.provider.grant(taken, credential)
        return RedirectResponse(location, status_code=303, headers={"Cache-Control": "no-store"})

    async def _deny(self, pending: PendingRequest) -> Response:
        taken = await self.provider.store.take_oauth_request(pending.request_hash, _now())
        if taken is None:
            return _notice(400, EXPIRED)
        params = AuthorizationParams.model_validate_json(taken.params)
        location = redirect_with(
            str(params.redirect_uri),
            error="access_denied",
            error_description="The person declined.",
            state=params.state,
            iss=self.provider.issuer,
        )
        return RedirectResponse(location, status_code=303, headers={"Cache-Control": "no-store"})


def _now() -> float:
    return time.time()
