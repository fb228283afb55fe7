"""The HTTP APIs' routes, each behind the same Host/Origin checks as `/mcp` (a refusal in the API's error
shape)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from mcp.server.transport_security import TransportSecurityMiddleware, TransportSecuritySettings
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route

from ..bridge.tenancy import Tenancy
from .anthropic import MessagesApi, error_response
from .batches import BatchesApi
from .files import FilesApi
from .inputs import Bodies
from .openai import ChatCompletionsApi, openai_error
from .shapes import ApiError, ErrorType, api_id
from .usage import UsageApi

Endpoint = Callable[[Request], Awaitable[Response]]
REFUSALS: dict[int, tuple[ErrorType, str]] = {
    400: ("invalid_request_error", "Send the body as JSON, with the header Content-Type: application/json."),
    421: (
        "invalid_request_error",
        "This server does not answer to the Host this request names (DNS-rebinding protection): reach it by "
        "loopback or by a host name in its allowed_hosts setting.",
    ),
    403: (
        "permission_error",
        "Requests from this Origin are refused (DNS-rebinding protection): the origin's host must be loopback or "
        "in the server's allowed_hosts setting.",
    ),
}


def check_refusal(status: int) -> ApiError:
    """What the Host/Origin/Content-Type checks' refusal (plain text) means, as an API error."""
    kind, message = REFUSALS.get(status, ("invalid_request_error", "The request was refused; check its headers."))
    return ApiError(status, kind, message)


def anthropic_error(error: ApiError) -> Response:
    return error_response(error, api_id("req_"))


def api_routes(tenancy: Tenancy, *, heartbeat_s: float, security: TransportSecuritySettings) -> list[Route]:
    """`/v1/messages`, `/v1/messages/count_tokens`, `/v1/messages/batches…`, `/v1/models`, `/v1/models/{id}`,
    `/v1/chat/completions`, `/v1/files…`, `/v1/organizations/analytics/usage_report` and `…/cost_report`."""
    checks = TransportSecurityMiddleware(security)

    def guarded(endpoint: Endpoint, *, post: bool, shape: Callable[[ApiError], Response] = anthropic_error) -> Endpoint:
        async def checked(request: Request) -> Response:
            refused = await checks.validate_request(request, is_post=post)
            return shape(check_refusal(refused.status_code)) if refused is not None else await endpoint(request)

        return checked

    bodies = Bodies(tenancy.policy)  # one reader for every body, within the server's caps
    messages = MessagesApi(tenancy, heartbeat_s, bodies)
    chat = ChatCompletionsApi(tenancy, heartbeat_s, bodies)
    batches = BatchesApi(tenancy, bodies)
    batch = "/v1/messages/batches/{batch_id}"
    usage = UsageApi(tenancy)
    files, file = FilesApi(tenancy), "/v1/files/{file_id}"
    reports = "/v1/organizations/analytics"
    routes = [
        Route("/v1/chat/completions", guarded(chat.create, post=True, shape=openai_error), methods=["POST"]),
        Route("/v1/messages", guarded(messages.create, post=True), methods=["POST"]),
        Route("/v1/messages/count_tokens", guarded(messages.count_tokens, post=True), methods=["POST"]),
        Route("/v1/messages/batches", guarded(batches.create, post=True), methods=["POST"]),
        Route("/v1/messages/batches", guarded(batches.list, post=False), methods=["GET"]),
        Route(batch, guarded(batches.retrieve, post=False), methods=["GET"]),
        Route(batch, guarded(batches.delete, post=False), methods=["DELETE"]),
        Route(f"{batch}/cancel", guarded(batches.cancel, post=True), methods=["POST"]),
        Route(f"{batch}/results", guarded(batches.results, post=False), methods=["GET"]),
        Route("/v1/models", guarded(messages.list_models, post=False), methods=["GET"]),
        # An upload is multipart, not JSON: the Host/Origin checks apply, the JSON content type does not.
        Route("/v1/files", guarded(files.upload, post=False), methods=["POST"]),
        Route("/v1/files", guarded(files.list, post=False), methods=["GET"]),
        Route(file, guarded(files.retrieve, post=False), methods=["GET"]),
        Route(file, guarded(files.delete, post=False), methods=["DELETE"]),
        Route(f"{file}/content", guarded(files.content, post=False), methods=["GET"]),
        Route(f"{reports}/usage_report", guarded(usage.usage_report, post=False), methods=["GET"]),
        Route(f"{reports}/cost_report", guarded(usage.cost_report, post=False), methods=["GET"]),
        Route("/v1/models/{model_id:path}", guarded(messages.get_model, post=False), methods=["GET"]),
    ]
    return [*routes, Route("/v1/{rest:path}", guarded(unmatched(routes), post=False), methods=EVERY_METHOD)]


EVERY_METHOD = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def unmatched(routes: list[Route]) -> Endpoint:
    """What answers a `/v1/` request no route takes, in the API's error shape (OpenAI's under
    `/v1/chat/`): 405 where the path is an endpoint's but the method is not, else 404."""

    async def endpoint(request: Request) -> Response:
        shape = openai_error if request.url.path.startswith("/v1/chat/") else anthropic_error
        path = request.url.path if len(request.url.path) <= 100 else request.url.path[:100] + "…"
        allowed = sorted(
            {
                method
                for route in routes
                if route.matches(request.scope)[0] == Match.PARTIAL
                for method in route.methods or ()
            }
        )
        if allowed:
            message = f"{request.method} is not allowed on {path}; this server answers it to {', '.join(allowed)}."
            return shape(ApiError(405, "invalid_request_error", message))
        return shape(ApiError(404, "not_found_error", f"There is no endpoint {request.method} {path} on this server."))

    return endpoint
