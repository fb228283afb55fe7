"""The HTTP APIs' routes, each behind the same Host/Origin checks as `/mcp`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from mcp.server.transport_security import TransportSecurityMiddleware, TransportSecuritySettings
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..bridge.tenancy import Tenancy
from .anthropic import MessagesApi
from .openai import ChatCompletionsApi

Endpoint = Callable[[Request], Awaitable[Response]]


def api_routes(tenancy: Tenancy, *, heartbeat_s: float, security: TransportSecuritySettings) -> list[Route]:
    """`/v1/messages`, `/v1/messages/count_tokens`, `/v1/models`, `/v1/models/{id}`, `/v1/chat/completions`."""
    checks = TransportSecurityMiddleware(security)

    def guarded(endpoint: Endpoint, *, post: bool) -> Endpoint:
        async def checked(request: Request) -> Response:
            refused = await checks.validate_request(request, is_post=post)
            return refused if refused is not None else await endpoint(request)

        return checked

    messages = MessagesApi(tenancy, heartbeat_s)
    chat = ChatCompletionsApi(tenancy, heartbeat_s)
    return [
        Route("/v1/chat/completions", guarded(chat.create, post=True), methods=["POST"]),
        Route("/v1/messages", guarded(messages.create, post=True), methods=["POST"]),
        Route("/v1/messages/count_tokens", guarded(messages.count_tokens, post=True), methods=["POST"]),
        Route("/v1/models", guarded(messages.list_models, post=False), methods=["GET"]),
        Route("/v1/models/{model_id:path}", guarded(messages.get_model, post=False), methods=["GET"]),
    ]
