"""The structured result of a run, and the judgement of a CLI result as success or failure.

Pure: `AskResult.from_message` shapes the SDK's `ResultMessage`; `failure_of` turns an
error result into the `ClaudeMCPError` whose message tells the caller what to do (the
classification is `run_end`'s); `RunFailed` carries both, and the run's end, up the stack.
"""

from __future__ import annotations

from claude_agent_sdk import ResultMessage
from pydantic import BaseModel, ConfigDict, Field

from ..config.types import JsonObject, JsonValue
from ..errors import APIError, ClaudeMCPError
from .run_end import RunEnd, classify


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


def failure_of(result: AskResult, api_error_status: int | None) -> ClaudeMCPError | None:
    """The error an error result means, or None for a successful run (`RunEnd.error`)."""
    return classify(result, api_error_status).error()


class RunFailed(ClaudeMCPError):
    """The CLI gave a result, but an error one. `cause` is the error it means (its message is
    this error's, and a job keeps its kind); `end`, how the run ended (what the metrics and the
    HTTP APIs read); `result`, the result, for the caller. Without an `end`, the result is
    classified (with the API's status that an `APIError` cause carries)."""

    def __init__(self, error: ClaudeMCPError, result: AskResult, end: RunEnd | None = None) -> None:
        super().__init__(error.message, session_id=error.session_id)
        self.kind = error.kind
        self.cause: ClaudeMCPError = error
        self.end: RunEnd = (
            end if end is not None else classify(result, error.status if isinstance(error, APIError) else None)
        )
        self.result = result
        self.structured = result
