"""The error classifier, pure (no CLI): each end of a run from the SDK's `ResultMessage` (and its
`ResultError`), and what each reader makes of it: the caller's error, the metric label, the usage
record's outcome and the HTTP status and error type."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from claude_agent_sdk import ProcessError, ResultError, ResultMessage

from claude_mcp.bridge.instrument import error_kind
from claude_mcp.bridge.metering import outcome_of
from claude_mcp.bridge.results import AskResult, RunFailed, failure_of
from claude_mcp.bridge.run_end import RunEnd, RunEndKind, classify, classify_exit, cli_prose_says
from claude_mcp.config.credentials import CALLER_REJECTED
from claude_mcp.errors import APIError, ClaudeMCPError, CLIFailed, QuotaExceeded, SessionNotFound, ShuttingDown
from claude_mcp.http_api.errors import api_error_of, run_end_status, status_and_type

UNKNOWN = "No conversation found with session ID: 0b0e3a2e-5f4e-4c1a-9d43-1c1d7c3f0e11"


def message(**overrides: Any) -> ResultMessage:
    """A result as the CLI gives it (a success unless told otherwise)."""
    fields: dict[str, Any] = {
        "subtype": "success",
        "duration_ms": 5,
        "duration_api_ms": 4,
        "is_error": False,
        "num_turns": 1,
        "session_id": "s-1",
        "result": "fine",
        "terminal_reason": "completed",
    }
    fields.update(overrides)
    return ResultMessage(**fields)


def api_error(status: int | None, text: str = "API Error: refused") -> ResultMessage:
    """How the CLI reports the model's API refusing a run: `success`, but `is_error`."""
    return message(is_error=True, result=text, terminal_reason="api_error", api_error_status=status)


@dataclass(frozen=True)
class Case:
    name: str
    result: ResultMessage
    kind: RunEndKind
    metric: str
    usage: str
    http: tuple[int, str] | None
    error: type[ClaudeMCPError] | None


CASES = [
    Case("success", message(), "ok", "ok", "ok", None, None),
    Case("api 401", api_error(401), "api_401", "api_401", "api_401", (401, "authentication_error"), APIError),
    Case("api 403", api_error(403), "api_403", "api_403", "api_403", (403, "permission_error"), APIError),
    Case("api 429", api_error(429), "api_429", "api_429", "api_429", (429, "rate_limit_error"), APIError),
    Case("api 529", api_error(529), "api_529", "api_529", "api_529", (529, "overloaded_error"), APIError),
    Case("api 500", api_error(500), "api_other", "api_500", "api_500", (502, "api_error"), APIError),
    Case("api 418", api_error(418), "api_other", "api_other", "api_418", (502, "api_error"), APIError),
    # The API's refusals of the request itself pass through: a retry would only repeat them.
    Case("api 400", api_error(400), "api_other", "api_400", "api_400", (400, "invalid_request_error"), APIError),
    Case("api 413", api_error(413), "api_other", "api_413", "api_413", (413, "request_too_large"), APIError),
    Case(
        "api status only",
        message(is_error=True, result="API Error", terminal_reason=None, api_error_status=429),
        "api_429",
        "api_429",
        "api_429",
        (429, "rate_limit_error"),
        APIError,
    ),
    # Today's CLI without a credential: `api_error`, no status; its words decide (the 401 advice).
    Case(
        "not logged in, as today's CLI says it",
        api_error(None, "Not logged in · Please run /login"),
        "not_logged_in",
        "api_401",
        "error",
        (401, "authentication_error"),
        APIError,
    ),
    Case(
        "not logged in, in words only",
        message(is_error=True, result="Not logged in · Please run /login", terminal_reason=None),
        "not_logged_in",
        "api_401",
        "error",
        (401, "authentication_error"),
        APIError,
    ),
    Case(
        "invalid API key, in words only",
        message(is_error=True, result="Invalid API key · Fix external API key", terminal_reason=None),
        "not_logged_in",
        "api_401",
        "error",
        (401, "authentication_error"),
        APIError,
    ),
    Case(
        "turn limit",
        message(is_error=True, subtype="error_max_turns", result=None, terminal_reason="max_turns"),
        "max_turns",
        "max_turns",
        "error_max_turns",
        (500, "api_error"),
        CLIFailed,
    ),
    Case(
        "budget limit",
        message(is_error=True, subtype="error_max_budget_usd", result=None),
        "max_budget",
        "max_budget",
        "error_max_budget_usd",
        (500, "api_error"),
        CLIFailed,
    ),
    Case(
        "structured output retries",
        message(is_error=True, subtype="error_max_structured_output_retries", result=None),
        "structured_output",
        "structured_output",
        "error_max_structured_output_retries",
        (500, "api_error"),
        CLIFailed,
    ),
    Case(
        "unknown session",
        message(is_error=True, subtype="error_during_execution", result=None, errors=[UNKNOWN], terminal_reason=None),
        "session_not_found",
        "session_not_found",
        "error_during_execution",
        (404, "not_found_error"),
        SessionNotFound,
    ),
    Case(
        "interrupted",
        message(is_error=True, subtype="error_during_execution", result=None, terminal_reason="aborted_streaming"),
        "cli_error",
        "cli_failed",
        "error_during_execution",
        (500, "api_error"),
        CLIFailed,
    ),
    Case(
        "an error with no subtype of its own",
        message(is_error=True, result="something broke", terminal_reason=None),
        "cli_error",
        "cli_failed",
        "error",
        (500, "api_error"),
        CLIFailed,
    ),
]
FAILURES = [case for case in CASES if case.error is not None]


def ids(cases: list[Case]) -> list[str]:
    return [case.name for case in cases]


def failed(case: Case) -> RunFailed:
    """The exception the runner raises for the case's result."""
    result = AskResult.from_message(case.result)
    error = failure_of(result, case.result.api_error_status)
    assert error is not None
    return RunFailed(error, result)


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_each_end_is_classified_from_the_results_fields(case: Case) -> None:
    end = classify(case.result)
    assert end.kind == case.kind
    assert end.session_id == "s-1"
    assert end.api_status == case.result.api_error_status


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_an_ask_result_with_the_outcomes_status_classifies_as_its_message(case: Case) -> None:
    shaped = AskResult.from_message(case.result)
    assert classify(shaped, case.result.api_error_status) == classify(case.result)


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_the_caller_is_given_the_error_the_end_means(case: Case) -> None:
    error = failure_of(AskResult.from_message(case.result), case.result.api_error_status)
    if case.error is None:
        assert error is None
        return
    assert type(error) is case.error
    if isinstance(error, APIError):
        assert error.status == (case.result.api_error_status or (401 if case.kind == "not_logged_in" else None))
    if not isinstance(error, SessionNotFound):
        assert "(session_id: s-1)" in str(error)


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_the_metric_label_of_each_end(case: Case) -> None:
    assert classify(case.result).metric_kind == case.metric
    if case.error is not None:
        assert error_kind(failed(case)) == case.metric


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_the_usage_outcome_of_each_end(case: Case) -> None:
    assert classify(case.result).usage_outcome == case.usage
    assert outcome_of(case.result) == case.usage


SERVER_CREDENTIAL_ENDS = ("api_401", "not_logged_in")
"""Ends that blame the credential the run used: the caller's own (caller mode), or the server's."""


@pytest.mark.parametrize("case", FAILURES, ids=ids(FAILURES))
def test_the_http_status_and_error_type_of_each_end(case: Case) -> None:
    """`case.http` with the caller's own credential; with the server's, a rejected credential is a
    502 `api_error` (a 401 would make the client's SDK blame the client's key)."""
    end = classify(case.result)
    error = end.error()
    assert error is not None
    for own in (True, False):
        expected = case.http if own or end.kind not in SERVER_CREDENTIAL_ENDS else (502, "api_error")
        assert run_end_status(end, caller_credentials=own) == expected
        answer = api_error_of(failed(case), caller_credentials=own)
        assert (answer.status, answer.type) == expected
        # A job keeps its failure's kind and status; the batch results map those the same way.
        status = error.status if isinstance(error, APIError) else None
        assert status_and_type(error.kind, status, caller_credentials=own) == expected
        if expected == (502, "api_error") and case.http == (401, "authentication_error"):
            assert "this server's own credential" in answer.message and "Your API key is not at fault" in answer.message


@pytest.mark.parametrize(
    ("text", "said"),
    [
        (UNKNOWN, "session_not_found"),
        ("Not logged in · Please run /login", "not_logged_in"),
        ("Invalid API key · Fix external API key", "not_logged_in"),
        ("API Error: 500 internal", None),
        ("", None),
    ],
)
def test_the_one_place_that_reads_the_clis_words(text: str, said: str | None) -> None:
    assert cli_prose_says(text) == said


def test_a_refused_resume_is_read_from_the_sdks_result_error() -> None:
    data = {"type": "result", "subtype": "error_during_execution", "is_error": True, "errors": [UNKNOWN]}
    exc = ResultError(f"Claude Code returned an error result: {UNKNOWN}", data={**data, "session_id": "s-1"})
    end = classify_exit(exc)
    assert (end.kind, end.subtype, end.session_id) == ("session_not_found", "error_during_execution", "s-1")


def test_an_api_error_the_cli_exited_on_keeps_its_status() -> None:
    data = {"subtype": "success", "is_error": True, "result": "API Error", "api_error_status": 429}
    end = classify_exit(ResultError("Claude Code returned an error result: API Error", data={**data}))
    assert (end.kind, end.api_status, end.metric_kind) == ("api_429", 429, "api_429")


def test_a_bare_process_error_is_read_from_its_words_and_stderr() -> None:
    assert classify_exit(ProcessError("Command failed", exit_code=1), [UNKNOWN]).kind == "session_not_found"
    end = classify_exit(ProcessError("Command failed", exit_code=137), ["killed"])
    assert (end.kind, end.metric_kind, end.usage_outcome) == ("cli_error", "cli_failed", "error")


def test_advice_tells_the_caller_what_to_do() -> None:
    advice = {
        401: "credentials",
        403: "lacks permission",
        429: "rate limit",
        529: "overloaded",
        500: "HTTP 500). Retry",
        400: "refused the request as invalid (HTTP 400)",
        413: "refused the request as too large (HTTP 413)",
        None: "The Claude API failed.",
    }
    for status, words in advice.items():
        error = classify(api_error(status, "API Error: x")).error()
        assert isinstance(error, APIError) and words in str(error) and "Detail: API Error: x" in str(error)
    limit = classify(message(is_error=True, subtype="error_max_turns", result=None)).error()
    assert limit is not None and "raise max_turns" in str(limit)
    other = classify(message(is_error=True, subtype="error_during_execution", result="", errors=None)).error()
    assert other is not None and str(other).startswith("Claude ended with an error (error_during_execution): no detail")


def test_a_rejected_callers_credential_counts_as_the_apis_401() -> None:
    result = AskResult.from_message(api_error(401))
    exc = RunFailed(APIError(CALLER_REJECTED, status=401, session_id=None), result)
    assert exc.cause.kind == "api_error" and exc.end.kind == "api_401"
    assert error_kind(exc) == "api_401"
    answer = api_error_of(exc, caller_credentials=True)
    assert (answer.status, answer.type, answer.retry_after_s) == (401, "authentication_error", None)
    assert str(CALLER_REJECTED) in str(answer)


def test_a_run_failed_given_its_end_keeps_it() -> None:
    end = RunEnd("api_529", api_status=529, session_id="s-1", detail="overloaded")
    error = end.error()
    assert error is not None
    exc = RunFailed(error, AskResult.from_message(api_error(529)), end)
    assert exc.end is end and exc.kind == "api_error" and str(exc) == str(error)
    answer = api_error_of(exc)
    assert (answer.status, answer.type, answer.retry_after_s) == (529, "overloaded_error", 30)


def test_errors_that_are_not_ends_of_a_run_keep_their_kinds() -> None:
    quota = QuotaExceeded("quota_runs_per_minute", limit=1, used=1, resets_at=100.0, now=40.0)
    assert error_kind(quota) == "quota_exceeded"
    assert error_kind(ShuttingDown()) == "shutting_down"
    assert error_kind(APIError("x", status=503)) == "api_503"
    assert error_kind(APIError("x", status=None)) == "api_other"
    assert error_kind(ValueError("boom")) == "internal"
    answer = api_error_of(quota)
    assert (answer.status, answer.type, answer.retry_after_s) == (429, "rate_limit_error", 60)
