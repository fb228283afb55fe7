"""How a run ended, classified once.

`classify` reads the CLI's result (the SDK's `ResultMessage`, or an `AskResult` shaped from
one) and `classify_exit` the SDK's exception when the CLI exited instead (`ResultError` carries
the error result it reported first). Both give a `RunEnd`, which everything downstream reads:
the caller's error (`RunEnd.error`, through `results.failure_of`), the metric label
(`metric_kind`, through `instrument.error_kind`), the usage record's outcome (`usage_outcome`,
through `metering.outcome_of`) and the HTTP status and error type (`http_api.errors`).

The CLI's structured fields decide wherever it has them (`is_error`, `subtype`,
`terminal_reason`, `api_error_status`). Its prose is read in one place, `cli_prose_says`, for
the two ends it reports only in words. Pure: no I/O, no state.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, Protocol

from claude_agent_sdk import ProcessError, ResultError, ResultMessage

from ..errors import APIError, ClaudeMCPError, CLIFailed, SessionNotFound

RunEndKind = Literal[
    "ok",
    "session_not_found",  # `--resume` named a conversation the CLI has no transcript of
    "api_401",  # the model's API refused the run (after the CLI's own retries), by status
    "api_403",
    "api_429",
    "api_529",
    "api_other",  # … with another status, or none reported
    "max_turns",  # a limit of the run: `max_turns`, `max_budget_usd`, `json_schema` retries
    "max_budget",
    "structured_output",
    "not_logged_in",  # no (valid) credential, said only in words (no API status, no `api_error`)
    "cli_error",  # any other error result
]

API_KINDS: dict[int, RunEndKind] = {401: "api_401", 403: "api_403", 429: "api_429", 529: "api_529"}
"""The API statuses that are ends of their own (each tells the caller something different)."""

_LIMIT_KINDS: dict[str, RunEndKind] = {
    "error_max_turns": "max_turns",
    "error_max_budget_usd": "max_budget",
    "error_max_structured_output_retries": "structured_output",
}

METRIC_API_STATUSES = frozenset({400, 401, 403, 404, 413, 429, 500, 502, 503, 529})
"""The API statuses a metric label names (`api_<status>`); any other is `api_other`."""

_NOT_LOGGED_IN = (
    "Claude has no valid credential where the server runs (HTTP 401): set ANTHROPIC_API_KEY (or "
    "CLAUDE_CODE_OAUTH_TOKEN) in the server's environment, or log in once with `claude /login` as the user it runs "
    "as. An MCP client starts its servers with a bare environment, so a key exported only in your shell does not "
    "reach it: `claude-mcp config CLIENT --write`, run where the key is set, carries it; `claude-mcp doctor "
    "--client CLIENT` checks."
)
_API_ADVICE = {
    400: "Claude's API refused the request as invalid (HTTP 400); sending it again unchanged fails the same way.",
    413: "Claude's API refused the request as too large (HTTP 413): send a shorter prompt, or start a new "
    "conversation.",
    401: "Claude rejected the credentials (HTTP 401). Check ANTHROPIC_API_KEY, or log in with "
    "`claude /login` (or set CLAUDE_CODE_OAUTH_TOKEN) for the account the server runs as.",
    403: "Claude refused the request (HTTP 403): the credential lacks permission for this model or feature.",
    429: "Claude's rate limit was hit (HTTP 429). Wait a minute and retry, or lower concurrency.",
    529: "Claude's API is overloaded (HTTP 529). Retry in a little while, or pass `fallback_model`.",
}

_LIMIT_ADVICE: dict[RunEndKind, str] = {
    "max_turns": "The run stopped at its turn limit (max_turns); continue the session or raise max_turns.",
    "max_budget": "The run stopped at its budget limit (max_budget_usd).",
    "structured_output": "Claude did not produce output matching json_schema.",
}


def api_kind(status: int | None) -> RunEndKind:
    """The end a refusal by the model's API with this status (None: not reported) is."""
    return API_KINDS.get(status or 0, "api_other")


def api_label(status: int | None) -> str:
    """The metric label of a refusal by the model's API: `api_<status>` for a known status."""
    return f"api_{status}" if status in METRIC_API_STATUSES else "api_other"


@dataclass(frozen=True, slots=True)
class RunEnd:
    """How one run ended: its `kind`, and the facts the kind's readers need (the CLI's
    `subtype`, the API's status, the conversation, and the CLI's own words in `detail`)."""

    kind: RunEndKind
    subtype: str = "success"
    api_status: int | None = None
    session_id: str | None = None
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.kind == "ok"

    @property
    def refused_by_api(self) -> bool:
        """The model's API refused the run (as the CLI reports it: a status or `api_error`)."""
        return self.kind.startswith("api_")

    @property
    def metric_kind(self) -> str:
        """The bounded `kind` label of the run-error metric (and the run's log line)."""
        if self.refused_by_api:
            return api_label(self.api_status)
        if self.kind == "not_logged_in":
            return api_label(401)
        if self.kind == "cli_error":
            return CLIFailed.kind
        return self.kind

    @property
    def usage_outcome(self) -> str:
        """The `outcome` of the run's usage records: `ok`, `api_<status>` (`api_error` when the
        API's status was not reported), or the CLI's error subtype (`error` for none)."""
        if self.ok:
            return "ok"
        if self.refused_by_api:
            return f"api_{self.api_status or 'error'}"
        return self.subtype if self.subtype != "success" else "error"

    def error(self) -> ClaudeMCPError | None:
        """The error this end means to the caller, worded so they can act on it (None: no error)."""
        detail, session_id = self.detail, self.session_id
        if self.ok:
            return None
        if self.kind == "session_not_found":
            return SessionNotFound()
        if self.refused_by_api:
            advice = _API_ADVICE.get(self.api_status or 0) or _api_failed(self.api_status)
            detailed = f"{advice} Detail: {detail}" if detail else advice
            return APIError(detailed, status=self.api_status, session_id=session_id)
        if self.kind in _LIMIT_ADVICE:
            return CLIFailed(_LIMIT_ADVICE[self.kind], session_id=session_id)
        if self.kind == "not_logged_in":
            return APIError(f"{_NOT_LOGGED_IN} Detail: {detail}", status=401, session_id=session_id)
        return CLIFailed(f"Claude ended with an error ({self.subtype}): {detail or 'no detail'}", session_id=session_id)


def _api_failed(status: int | None) -> str:
    return f"The Claude API failed (HTTP {status}). Retry shortly." if status else "The Claude API failed."


class ResultFields(Protocol):
    """What `classify` reads of a result: the SDK's `ResultMessage`, or an `AskResult`."""

    @property
    def is_error(self) -> bool: ...
    @property
    def subtype(self) -> str: ...
    @property
    def result(self) -> str | None: ...
    @property
    def errors(self) -> list[str] | None: ...
    @property
    def session_id(self) -> str: ...
    @property
    def terminal_reason(self) -> str | None: ...


def classify(result: ResultFields, api_error_status: int | None = None) -> RunEnd:
    """How a run ended, from the CLI's result. `api_error_status`: the API's status where the
    result does not carry it (an `AskResult`); a `ResultMessage`'s own is read otherwise."""
    if api_error_status is None and isinstance(result, ResultMessage):
        api_error_status = result.api_error_status
    return _end(
        is_error=result.is_error,
        subtype=result.subtype,
        detail="; ".join(result.errors or []) or (result.result or ""),
        terminal_reason=result.terminal_reason,
        api_status=api_error_status,
        session_id=result.session_id,
    )


def classify_exit(exc: ProcessError, stderr: Iterable[str] = ()) -> RunEnd:
    """How a run ended whose CLI exited with an error: from the error result it reported first
    (the SDK's `ResultError` carries it), otherwise from its exit's words and its `stderr`."""
    if isinstance(exc, ResultError):
        return _end(
            is_error=True,
            subtype=exc.subtype or "error",
            detail="; ".join(exc.errors) or (exc.result or ""),
            terminal_reason=exc.terminal_reason,
            api_status=exc.api_error_status,
            session_id=exc.session_id,
        )
    detail = "\n".join([str(exc), *stderr])
    return RunEnd(cli_prose_says(detail) or "cli_error", subtype="error", detail=detail)


def _end(
    *,
    is_error: bool,
    subtype: str,
    detail: str,
    terminal_reason: str | None,
    api_status: int | None,
    session_id: str | None,
) -> RunEnd:
    if not is_error:
        return RunEnd("ok", subtype, session_id=session_id)
    said = cli_prose_says(detail)
    kind: RunEndKind
    if said == "session_not_found":
        kind = "session_not_found"
    elif said == "not_logged_in" and api_status in (None, 401):
        kind = "not_logged_in"
    elif api_status is not None or terminal_reason == "api_error":
        kind = api_kind(api_status)
    elif subtype in _LIMIT_KINDS:
        kind = _LIMIT_KINDS[subtype]
    else:
        kind = "cli_error"
    return RunEnd(kind, subtype, api_status, session_id, detail)


def cli_prose_says(text: str) -> Literal["session_not_found", "not_logged_in"] | None:
    """The ends the CLI reports only in words, read from its words: the one place that matches text.

    - `--resume` with an id it has no transcript of: an error result (`subtype:
      error_during_execution`, no `terminal_reason`) whose `errors` are ["No conversation found
      with session ID: <id>"]; the CLI then exits 1 (the SDK raises `ResultError`; an older SDK, a
      `ProcessError` with the words in its message or the CLI's stderr).
    - No credential, or a malformed one: a result whose text is "Not logged in · Please run
      /login" or "Invalid API key · …". Today's CLI also sets `terminal_reason: api_error` on
      it (without `api_error_status`); the words decide over that (the caller gets the 401
      advice: log in or set a key), but not over another API status.
    """
    if "No conversation found with session ID" in text:
        return "session_not_found"
    if "Not logged in" in text or "Invalid API key" in text:
        return "not_logged_in"
    return None
