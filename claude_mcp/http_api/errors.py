"""The bridge's errors in the HTTP APIs' shapes: the status and error type an SDK maps onto its
own exception classes (`AuthenticationError`, `RateLimitError`, …)."""

from __future__ import annotations

from ..errors import APIError, ClaudeMCPError, QuotaExceeded
from .shapes import ApiError, ErrorType

_BY_KIND: dict[str, tuple[int, ErrorType]] = {
    "invalid_arguments": (400, "invalid_request_error"),
    "policy": (400, "invalid_request_error"),
    "depth_exceeded": (400, "invalid_request_error"),
    "session_not_found": (404, "not_found_error"),
    "job_not_found": (404, "not_found_error"),
    "busy": (529, "overloaded_error"),
    "timeout": (504, "api_error"),
    "quota_exceeded": (429, "rate_limit_error"),
}
_BY_STATUS: dict[int, tuple[int, ErrorType]] = {
    401: (401, "authentication_error"),
    403: (403, "permission_error"),
    429: (429, "rate_limit_error"),
    529: (529, "overloaded_error"),
}


def status_and_type(kind: str, api_status: int | None = None) -> tuple[int, ErrorType]:
    """The HTTP status and error type of a failure of `kind` (`ClaudeMCPError.kind`); where the
    model's API refused the run, of its status (`api_status`)."""
    if kind == APIError.kind:
        return _BY_STATUS.get(api_status or 0, (502, "api_error"))
    return _BY_KIND.get(kind, (500, "api_error"))


def api_error_of(error: ClaudeMCPError) -> ApiError:
    """The API error a bridge failure means (its message is already safe to show)."""
    error = getattr(error, "cause", error)  # a run that ended with an error result
    status, kind = status_and_type(error.kind, getattr(error, "status", None))
    retry_after_s: int | None
    if isinstance(error, QuotaExceeded):
        retry_after_s = error.retry_after_s
    elif isinstance(error, APIError):
        retry_after_s = 30 if status in (429, 529) else None
    else:
        retry_after_s = 5 if kind == "overloaded_error" else None
    return ApiError(status, kind, str(error), retry_after_s=retry_after_s)
