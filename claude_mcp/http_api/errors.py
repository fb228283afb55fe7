"""The bridge's errors in the HTTP APIs' shapes: the status and error type an SDK maps onto its
own exception classes (`AuthenticationError`, `RateLimitError`, …), and retries or not.

What a retry cannot fix is never answered with a status the SDKs retry (408, 409, 429, 5xx): a
namespace at its `max_conversations` / `max_jobs` / `max_batches` is a 400 (as the API answers a
workspace at its spend limit), an input over its size limit a 413, and the model API's own 400
and 413 pass through as they are. Whose key a 401 from the model API blames depends on whose
credential the run used: the caller's (caller mode: 401, as the API would answer it) or the
server's (a 502 `api_error` saying so — a 401 would make the client's SDK blame its own key)."""

from __future__ import annotations

from ..bridge.results import RunFailed
from ..bridge.run_end import RunEnd, RunEndKind, api_kind
from ..errors import APIError, ClaudeMCPError, QuotaExceeded
from .shapes import ApiError, ErrorType

_BY_KIND: dict[str, tuple[int, ErrorType]] = {
    "invalid_arguments": (400, "invalid_request_error"),
    "policy": (400, "invalid_request_error"),
    "depth_exceeded": (400, "invalid_request_error"),
    "too_large": (413, "request_too_large"),
    "limit_reached": (400, "invalid_request_error"),
    "session_not_found": (404, "not_found_error"),
    "job_not_found": (404, "not_found_error"),
    "busy": (529, "overloaded_error"),
    "store_unavailable": (503, "api_error"),
    "timeout": (504, "api_error"),
    "quota_exceeded": (429, "rate_limit_error"),
}
_BY_END: dict[RunEndKind, tuple[int, ErrorType]] = {
    "session_not_found": (404, "not_found_error"),
    "api_401": (401, "authentication_error"),
    "not_logged_in": (401, "authentication_error"),
    "api_403": (403, "permission_error"),
    "api_429": (429, "rate_limit_error"),
    "api_529": (529, "overloaded_error"),
    "api_other": (502, "api_error"),
}
"""A run that ended with an error result: the model API's refusals as that API answers them, a
gateway error for its other failures; the CLI's own ends (its limits, other errors) are 500."""
_UPSTREAM_AS_IS: dict[int, tuple[int, ErrorType]] = {
    400: (400, "invalid_request_error"),
    413: (413, "request_too_large"),
}
"""The model API's refusals of the request itself, which a retry would only repeat."""
SERVER_CREDENTIAL_REFUSED = (
    "Claude's API rejected this server's own credential (HTTP 401): the server's operator must fix it (its "
    "ANTHROPIC_API_KEY or login). Your API key is not at fault."
)


def _of_end(kind: RunEndKind, api_status: int | None, caller_credentials: bool) -> tuple[int, ErrorType]:
    if kind == "api_other" and api_status in _UPSTREAM_AS_IS:
        return _UPSTREAM_AS_IS[api_status]
    if kind in ("api_401", "not_logged_in") and not caller_credentials:
        return 502, "api_error"
    return _BY_END.get(kind, (500, "api_error"))


def run_end_status(end: RunEnd, *, caller_credentials: bool = False) -> tuple[int, ErrorType]:
    """The HTTP status and error type of a run that ended as `end` (`caller_credentials`: the run
    used the caller's own credential, not the server's)."""
    return _of_end(end.kind, end.api_status, caller_credentials)


def status_and_type(
    kind: str, api_status: int | None = None, *, caller_credentials: bool = False
) -> tuple[int, ErrorType]:
    """The HTTP status and error type of a failure of `kind` (`ClaudeMCPError.kind`, as a job
    record keeps it); where the model's API refused the run, of its status (`api_status`)."""
    if kind == APIError.kind:
        return _of_end(api_kind(api_status), api_status, caller_credentials)
    return _BY_KIND.get(kind, (500, "api_error"))


def api_error_of(error: ClaudeMCPError, *, caller_credentials: bool = False) -> ApiError:
    """The API error a bridge failure means (its message is already safe to show)."""
    if isinstance(error, RunFailed):  # a run that ended with an error result
        status, kind = run_end_status(error.end, caller_credentials=caller_credentials)
        error = error.cause
    else:
        api_status = error.status if isinstance(error, APIError) else None
        status, kind = status_and_type(error.kind, api_status, caller_credentials=caller_credentials)
    message = str(error)
    if isinstance(error, APIError) and error.status == 401 and not caller_credentials:
        message = SERVER_CREDENTIAL_REFUSED
    retry_after_s: int | None
    if isinstance(error, QuotaExceeded):
        retry_after_s = error.retry_after_s
    elif isinstance(error, APIError):
        retry_after_s = 30 if status in (429, 529) else None
    else:
        retry_after_s = 5 if kind == "overloaded_error" else None
    return ApiError(status, kind, message, retry_after_s=retry_after_s)
