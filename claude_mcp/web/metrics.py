"""`/metrics`: the Prometheus metrics, on the server's own port, behind the same kind of bearer
token as the rest of the HTTP surface.

Who may read them (`MetricsAccess`): with `metrics_token_env` set, whoever sends that variable's
value as `Authorization: Bearer …` (and nobody else); otherwise, where tenants are configured,
any tenant's token; otherwise anyone, if the server listens on loopback only. A server open
beyond loopback without either (caller-credential mode) refuses `/metrics` with 403, since a
caller's credential is no right to see everyone's numbers.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from starlette.datastructures import Headers
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from ..bridge.tenancy import Tenancy
from ..telemetry import context, metrics
from .app import LOOPBACK

PATH = "/metrics"
API_TOOLS = {"/v1/messages": "messages", "/v1/chat/completions": "chat_completions"}
"""The HTTP APIs' requests, as the `tool` of their runs in metrics, spans and logs."""


@dataclass(frozen=True)
class Refusal:
    status: int
    reason: str


class MetricsAccess:
    """Decides who may read `/metrics`."""

    def __init__(self, tenancy: Tenancy, *, host: str, operator_token: str | None) -> None:
        self._tenancy = tenancy
        self._loopback = host in LOOPBACK
        self._operator_token = operator_token

    def refusal(self, authorization: str | None) -> Refusal | None:
        """Why a request with this `Authorization` header may not read the metrics; None if it may."""
        scheme, _, token = (authorization or "").partition(" ")
        token = token.strip() if scheme.lower() == "bearer" else ""
        if self._operator_token is not None:
            if token and hmac.compare_digest(token.encode(), self._operator_token.encode()):
                return None
            return Refusal(401, "Send the operator's metrics token (metrics_token_env) as `Authorization: Bearer …`.")
        if self._tenancy.requires_auth:
            if token and self._tenancy.tenant_of_token(token) is not None:
                return None
            return Refusal(401, "Send a tenant's token as `Authorization: Bearer …`.")
        if self._loopback:
            return None
        return Refusal(
            403,
            "/metrics is closed on a server that listens beyond loopback without tenant tokens: set "
            "metrics_token_env to the name of an environment variable holding an operator token.",
        )


def with_metrics(app: ASGIApp, access: MetricsAccess) -> ASGIApp:
    """`app`, with `GET /metrics` answered in front of it, and the HTTP APIs' runs labelled."""

    async def serve(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] not in ("GET", "HEAD"):
            if (tool := API_TOOLS.get(scope.get("path", ""))) is not None:
                with context.facts(tool=tool):  # the API's runs are counted and logged under its name
                    await app(scope, receive, send)
            else:
                await app(scope, receive, send)
            return
        refused = access.refusal(Headers(scope=scope).get("authorization"))
        if refused is not None:
            body = {
                "error": "unauthorized" if refused.status == 401 else "forbidden",
                "error_description": refused.reason,
            }
            headers = {"WWW-Authenticate": "Bearer"} if refused.status == 401 else None
            response: Response = JSONResponse(body, status_code=refused.status, headers=headers)
        else:
            response = Response(metrics.exposition(), media_type=metrics.CONTENT_TYPE)
        await response(scope, receive, send)

    return serve
