"""The structured result of a run, and the judgement of a CLI result as success or failure.

Pure: `AskResult.from_message` shapes the SDK's `ResultMessage`; `failure_of` turns an
error result into the `ClaudeMCPError` whose message tells the caller what to do.
"""

from __future__ import annotations

from claude_agent_sdk import ResultMessage
from pydantic import BaseModel, ConfigDict, Field

from ..config.types import JsonObject, JsonValue
from ..errors import APIError, ClaudeMCPError, CLIFailed, SessionNotFound


class AskResult(BaseModel):
    """What `ask` returns: the answer and the facts of the run (the tool's `outputSchema`)."""

    model_config = ConfigDict(extra="forbid")

    result: str = Field(description="Claude's final answer (text).")
    session_id: str = Field(description="Pass back as `session_id` to continue this conversation.")
    is_error: bool = Field(description="True when the run ended in an error.")
    subtype: str = Field(description="`success`, `error_max_turns`, `error_max_budget_usd`, …")
    num_turns: int = Field(description="Agentic turns the run took.")
    duration_ms: int = Field(description="Wall time of the run in the CLI.")
    total_cost_usd: float | None = Field(None, description="Cost of the run in USD, as the CLI computes it.")
    usage: JsonObject | None = Field(None, description="Token usage reported by the API.")
    structured_output: JsonValue = Field(None, description="The answer as JSON, when `json_schema` was given.")
    permission_denials: list[JsonObject] = Field(
        default_factory=list, description="Tool uses that were denied (tool name, input)."
    )
    stop_reason: str | None = Field(None, description="Why the model stopped (`end_turn`, …).")
    terminal_reason: str | None = Field(None, description="Why the run ended (`completed`, `max_turns`, …).")
    errors: list[str] | None = Field(None, description="Error details from the CLI, if any.")
    chain_cost_usd: float | None = Field(
        None,
        description="At the top of a chain of delegations with a `max_budget_usd`: what the whole chain has "
        "cost so far (this run and every claude-mcp call below it that shares this server's store).",
    )
    job_id: str | None = Field(
        None,
        description="Set when the call returned before the run ended (it outlived the server's `detach_after_s`): "
        "the run goes on as this job; collect its answer with `get_job`.",
    )

    @classmethod
    def from_message(cls, message: ResultMessage, text: str = "") -> AskResult:
        """Shape a CLI result; `text` is the streamed answer, used when the result has none."""
        return cls(
            result=message.result if message.result is not None else text,
            session_id=message.session_id,
            is_error=message.is_error,
            subtype=message.subtype,
            num_turns=message.num_turns,
            duration_ms=message.duration_ms,
            total_cost_usd=message.total_cost_usd,
            usage=message.usage,
            structured_output=message.structured_output,
            permission_denials=[d if isinstance(d, dict) else {"detail": d} for d in message.permission_denials or []],
            stop_reason=message.stop_reason,
            terminal_reason=message.terminal_reason,
            errors=message.errors,
        )


_API_ADVICE = {
    401: "Claude rejected the credentials (HTTP 401). Check ANTHROPIC_API_KEY, or log in with "
    "`claude /login` (or set CLAUDE_CODE_OAUTH_TOKEN) for the account the server runs as.",
    403: "Claude refused the request (HTTP 403): the credential lacks permission for this model or feature.",
    429: "Claude's rate limit was hit (HTTP 429). Wait a minute and retry, or lower concurrency.",
    529: "Claude's API is overloaded (HTTP 529). Retry in a little while, or pass `fallback_model`.",
}

_SUBTYPE_ADVICE = {
    "error_max_turns": "The run stopped at its turn limit (max_turns); continue the session or raise max_turns.",
    "error_max_budget_usd": "The run stopped at its budget limit (max_budget_usd).",
    "error_max_structured_output_retries": "Claude did not produce output matching json_schema.",
}


def failure_of(result: AskResult, api_error_status: int | None) -> ClaudeMCPError | None:
    """The error an error result means, or None for a successful run."""
    if not result.is_error:
        return None
    detail = "; ".join(result.errors or []) or result.result
    if "No conversation found with session ID" in detail:
        return SessionNotFound()
    if api_error_status is not None or result.terminal_reason == "api_error":
        status = api_error_status
        advice = _API_ADVICE.get(status or 0)
        if advice is None:
            advice = f"The Claude API failed (HTTP {status}). Retry shortly." if status else "The Claude API failed."
        return APIError(f"{advice} Detail: {detail}" if detail else advice, status=status, session_id=result.session_id)
    if result.subtype in _SUBTYPE_ADVICE:
        return CLIFailed(_SUBTYPE_ADVICE[result.subtype], session_id=result.session_id)
    if "Not logged in" in detail or "Invalid API key" in detail:
        return APIError(_API_ADVICE[401] + f" Detail: {detail}", status=401, session_id=result.session_id)
    return CLIFailed(
        f"Claude ended with an error ({result.subtype}): {detail or 'no detail'}", session_id=result.session_id
    )


class RunFailed(ClaudeMCPError):
    """The CLI gave a result, but an error one; `result` holds it for the caller."""

    def __init__(self, error: ClaudeMCPError, result: AskResult) -> None:
        super().__init__(error.message, session_id=error.session_id)
        self.kind = error.kind
        self.cause = error
        self.result = result
        self.structured = result
