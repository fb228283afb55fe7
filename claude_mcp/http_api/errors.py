"""The bridge's errors in the HTTP APIs' shapes: the status and error type an SDK maps onto its
own exception classes (`AuthenticationError`, `RateLimitError`, …)."""

from __future__ import annotations

from ..bridge.results import RunFailed
from ..bridge.run_end import RunEnd, RunEndKind, api_kind
from ..errors import APIError, ClaudeMCPError, QuotaExceeded
from .shapes import ApiError, ErrorType

_BY_KIND: dict[str, tuple[int, ErrorType]] = {
    "invalid_arguments": (400, "invalid_request_error"),
    "policy": (400, "invalid_request_error"),
    "depth_exceeded": (400, "invalid_request_error"),
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


def run_end_status(end: RunEnd) -> tuple[int, ErrorType]:
    """The HTTP status and error type of a run that ended as `end`."""
    return _BY_END.get(end.kind, (500, "api_error"))


def status_and_type(kind: str, api_status: int | None = None) -> tuple[int, ErrorType]:
    """The HTTP status and error type of a failure of `kind` (`ClaudeMCPError.kind`, as a job
    record keeps it); where the model's API refused the run, of its status (`api_status`)."""
    if kind == APIError.kind:
        return _BY_END[api_kind(api_status)]
    return _BY_KIND.get(kind, (500, "api_error"))


def api_error_of(error: ClaudeMCPError) -> ApiError:
    """The API error a bridge failure means (its message is already safe to show)."""
    if isinstance(error, RunFailed):  # a run that ended with an error result
        status, kind = run_end_status(error.end)
        error = error.cause
    else:
        status, kind = status_and_type(error.kind, error.status if isinstance(error, APIError) else None)
    retry_after_s: int | None
    if isinstance(error, QuotaExceeded):
        retry_after_s = error.retry_after_s
    elif isinstance(error, APIError):
        retry_after_s = 30 if status in (429, 529) else None
    else:
        retry_after_s = 5 if kind == "overloaded_error" else None
    return ApiError(status, kind, str(error), retry_after_s=retry_after_s)
