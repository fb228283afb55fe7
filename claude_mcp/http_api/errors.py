"""The bridge's errors in the HTTP APIs' shapes: the status and error type an SDK maps onto its
own exception classes (`AuthenticationError`, `RateLimitError`, …)."""

from __future__ import annotations

from ..errors import APIError, ClaudeMCPError, QuotaExceeded
from .shapes import ApiError

_BY_KIND = {
    "invalid_arguments": (400, "invalid_request_error"),
    "policy": (400, "invalid_request_error"),
    "depth_exceeded": (400, "invalid_request_error"),
    "session_not_found": (404, "not_found_error"),
    "job_not_found": (404, "not_found_error"),
    "busy": (529, "overloaded_error"),
    "timeout": (504, "api_error"),
}
_BY_STATUS = {
    401: (401, "authentication_error"),
    403: (403, "permission_error"),
    429: (429, "rate_limit_error"),
    529: (529, "overloaded_error"),
}


def api_error_of(error: ClaudeMCPError) -> ApiError:
    """The API error a bridge failure means (its message is already safe to show)."""
    error = getattr(error, "cause", error)  # a run that ended with an error result
    if isinstance(error, QuotaExceeded):
        return ApiError(429, "rate_limit_error", str(error), retry_after_s=error.retry_after_s)
    if isinstance(error, APIError):
        status, kind = _BY_STATUS.get(error.status or 0, (502, "api_error"))
        return ApiError(status, kind, str(error), retry_after_s=30 if status in (429, 529) else None)  # type: ignore[arg-type]
    status, kind = _BY_KIND.get(error.kind, (500, "api_error"))
    return ApiError(status, kind, str(error), retry_after_s=5 if kind == "overloaded_error" else None)  # type: ignore[arg-type]
