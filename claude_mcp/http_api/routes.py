"""The HTTP APIs' routes, each behind the same Host/Origin checks as `/mcp`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from mcp.server.transport_security import TransportSecurityMiddleware, TransportSecuritySettings
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..bridge.tenancy import Tenancy
from .anthropic import MessagesApi
from .batches import BatchesApi
from .openai import ChatCompletionsApi
from .usage import UsageApi

Endpoint = Callable[[Request], Awaitable[Response]]


def api_routes(tenancy: Tenancy, *, heartbeat_s: float, security: TransportSecuritySettings) -> list[Route]:
    """`/v1/messages`, `/v1/messages/count_tokens`, `/v1/messages/batches…`, `/v1/models`, `/v1/models/{id}`,
    `/v1/chat/completions`, `/v1/organizations/analytics/usage_report` and `…/cost_report`."""
    checks = TransportSecurityMiddleware(security)

    def guarded(endpoint: Endpoint, *, post: bool) -> Endpoint:
        async def checked(request: Request) -> Response:
            refused = await checks.validate_request(request, is_post=post)
            return refused if refused is not None else await endpoint(request)

        return checked

    messages = MessagesApi(tenancy, heartbeat_s)
    chat = ChatCompletionsApi(tenancy, heartbeat_s)
    batches = BatchesApi(tenancy)
    batch = "/v1/messages/batches/{batch_id}"
    usage = UsageApi(tenancy)
    reports = "/v1/organizations/analytics"
    return [
        Route("/v1/chat/completions", guarded(chat.create, post=True), methods=["POST"]),
        Route("/v1/messages", guarded(messages.create, post=True), methods=["POST"]),
        Route("/v1/messages/count_tokens", guarded(messages.count_tokens, post=True), methods=["POST"]),
        Route("/v1/messages/batches", guarded(batches.create, post=True), methods=["POST"]),
        Route("/v1/messages/batches", guarded(batches.list, post=False), methods=["GET"]),
        Route(batch, guarded(batches.retrieve, post=False), methods=["GET"]),
        Route(batch, guarded(batches.delete, post=False), methods=["DELETE"]),
        Route(f"{batch}/cancel", guarded(batches.cancel, post=True), methods=["POST"]),
        Route(f"{batch}/results", guarded(batches.results, post=False), methods=["GET"]),
        Route("/v1/models", guarded(messages.list_models, post=False), methods=["GET"]),
        Route(f"{reports}/usage_report", guarded(usage.usage_report, post=False), methods=["GET"]),
        Route(f"{reports}/cost_report", guarded(usage.cost_report, post=False), methods=["GET"]),
        Route("/v1/models/{model_id:path}", guarded(messages.get_model, post=False), methods=["GET"]),
    ]
