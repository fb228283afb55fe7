"""Errors with messages a person can act on. Each maps to one `isError` tool result.

The tree (`kind` in brackets: the tool result's, the job record's and the HTTP mapping's key)::

    ClaudeMCPError [error]
    ├── ConfigError [config]                    the server's own configuration
    ├── InvalidArguments [invalid_arguments]    the call's arguments
    │   └── UnfitText [invalid_arguments]       a text a run cannot carry (`config.limits`)
    ├── PolicyViolation [policy]                a setting outside the server policy
    ├── TooLarge [too_large]                    an input over its size limit (`config.limits`)
    ├── DepthExceeded [depth_exceeded]          too deep a chain of delegations
    ├── QuotaExceeded [quota_exceeded]          a tenant's or caller's quota is used up
    ├── ChainBudgetExceeded [chain_budget_exceeded]
    ├── Busy [busy]                             no slot for the run
    │   └── LimitReached [limit_reached]        the namespace keeps as much as it may (conversations, jobs, batches)
    ├── StoreUnavailable [store_unavailable]    the shared store cannot be reached
    ├── RunTimeout [timeout]
    ├── ShuttingDown [shutting_down]            stopped by the server's drain
    ├── CLINotFound [cli_not_found]
    ├── CLIFailed [cli_failed]                  the CLI died, gave no result, or an error result
    │   └── StreamStalled [stalled]
    ├── SessionNotFound [session_not_found]
    ├── APIError [api_error]                    the model's API refused the run (`status`)
    ├── config.credentials.CredentialRefused [credential]
    ├── bridge.jobs.JobNotFound [job_not_found]
    ├── state.remote_chains.ChannelRefused [chain_channel_refused]  a hop's request outside its capability
    └── bridge.results.RunFailed [its cause's]  a run whose result is an error: `cause` is one of
                                                SessionNotFound, APIError, CLIFailed; `end`, the
                                                `bridge.run_end.RunEnd` they were classified from

An error result of the CLI is classified once, in `bridge.run_end`.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

from pydantic import BaseModel, Field


class ClaudeMCPError(Exception):
    """Base class. `str(error)` is safe to show to the MCP client; `structured`, if set, is the
    machine-readable detail (a result model) returned with it."""

    kind = "error"

    def __init__(self, message: str, *, session_id: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.session_id = session_id
        self.structured: BaseModel | None = None

    def __str__(self) -> str:
        if self.session_id:
            return f"{self.message} (session_id: {self.session_id})"
        return self.message


def unexpected(exc: BaseException) -> bool:
    """Whether `exc` is one no part of the server classified: its traceback is worth a log line (a bug, or a
    failure nobody named). A `ClaudeMCPError` already says what happened (the store being unreachable, for
    one, which a background loop meets on every try until it is back): a line of its own is enough."""
    return not isinstance(exc, ClaudeMCPError)


class ConfigError(ClaudeMCPError):
    """The server's own configuration is wrong (reported at start-up)."""

    kind = "config"


class InvalidArguments(ClaudeMCPError):
    """The call's arguments are malformed."""

    kind = "invalid_arguments"


class UnfitText(InvalidArguments):
    """A text a run cannot carry (a NUL where the CLI's command line takes it, a lone surrogate
    anywhere): refused before any run starts, naming the field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class PolicyViolation(ClaudeMCPError):
    """A setting is outside what the server policy permits."""

    kind = "policy"

    def __init__(self, setting: str, message: str) -> None:
        super().__init__(message)
        self.setting = setting


class TooLarge(ClaudeMCPError):
    """An input is larger than the server accepts (`config.limits`): refused before any run starts."""

    kind = "too_large"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class DepthExceeded(ClaudeMCPError):
    kind = "depth_exceeded"


class CLINotFound(ClaudeMCPError):
    kind = "cli_not_found"


class SessionNotFound(ClaudeMCPError):
    kind = "session_not_found"

    def __init__(self) -> None:
        # The same words whether the id never existed or belongs to someone else.
        super().__init__(
            "No conversation with that session_id exists on this server; start a new one by omitting session_id."
        )


class APIError(ClaudeMCPError):
    """The Anthropic API refused the request (after the CLI's own bounded retries)."""

    kind = "api_error"

    def __init__(self, message: str, *, status: int | None, session_id: str | None = None) -> None:
        super().__init__(message, session_id=session_id)
        self.status = status


class CLIFailed(ClaudeMCPError):
    """The CLI exited abnormally, died mid-stream, or produced no result."""

    kind = "cli_failed"


class StreamStalled(CLIFailed):
    """The model stream went silent for `stall_timeout_s`."""

    kind = "stalled"


class RunTimeout(ClaudeMCPError):
    kind = "timeout"


class Busy(ClaudeMCPError):
    kind = "busy"


class LimitReached(Busy):
    """The namespace already keeps as many conversations, jobs or batches as the policy allows: not
    an overload that passes by itself (HTTP answers it with 400, which no SDK retries, not 529)."""

    kind = "limit_reached"


class StoreUnavailable(ClaudeMCPError):
    """The store (PostgreSQL) cannot be reached: refused within seconds, never waited on for minutes."""

    kind = "store_unavailable"

    def __init__(self) -> None:
        super().__init__(
            "The server's store cannot be reached right now, so nothing was started; retry in a little while."
        )


class QuotaRefusal(BaseModel):
    """The structured detail of a `quota_exceeded` error."""

    kind: str = "quota_exceeded"
    quota: str = Field(description="The quota exceeded: `quota_usd_per_day`, `quota_runs_per_minute`, …")
    limit: float
    used: float
    resets_at: str = Field(description="When the quota's window ends (RFC 3339, UTC).")
    retry_after_s: int


class QuotaExceeded(ClaudeMCPError):
    """A tenant's or caller's quota (USD, runs or tokens per window) is used up until its window ends."""

    kind = "quota_exceeded"

    def __init__(self, quota: str, *, limit: float, used: float, resets_at: float, now: float) -> None:
        self.quota, self.limit, self.used, self.resets_at = quota, limit, used, resets_at
        self.retry_after_s = max(1, math.ceil(resets_at - now))
        when = datetime.fromtimestamp(resets_at, tz=UTC).isoformat().replace("+00:00", "Z")
        super().__init__(
            f"Quota exceeded: {quota} is {limit:g} and {used:g} is used; it resets at {when} "
            f"(in {self.retry_after_s} s). Wait until then, or ask the operator to raise it."
        )
        self.structured = QuotaRefusal(
            quota=quota, limit=limit, used=used, resets_at=when, retry_after_s=self.retry_after_s
        )


class ChainBudgetRefusal(BaseModel):
    """The structured detail of a `chain_budget_exceeded` error."""

    kind: str = "chain_budget_exceeded"
    chain_id: str = Field(description="The chain of delegations: the id of the run at its top.")
    budget_usd: float = Field(description="The `max_budget_usd` of the run at the top of the chain.")
    spent_usd: float = Field(description="What the chain's runs have cost so far.")


class ChainBudgetExceeded(ClaudeMCPError):
    """A run below the top of a chain of delegations, refused because the chain has spent the top
    call's `max_budget_usd` (each top call's turn has an account of its own, which never resets)."""

    kind = "chain_budget_exceeded"

    def __init__(self, chain_id: str, *, budget_usd: float, spent_usd: float) -> None:
        self.chain_id, self.budget_usd, self.spent_usd = chain_id, budget_usd, spent_usd
        super().__init__(
            f"Chain budget exceeded: the call at the top of this chain of delegations has max_budget_usd="
            f"{budget_usd:g} and the chain has spent {spent_usd:g}. Do the rest of the work directly, without "
            "delegating further."
        )
        self.structured = ChainBudgetRefusal(chain_id=chain_id, budget_usd=budget_usd, spent_usd=spent_usd)


class ShuttingDown(ClaudeMCPError):
    """The server stopped the call because it is shutting down (its drain's grace period ran out)."""

    kind = "shutting_down"

    def __init__(self, *, session_id: str | None = None, what: str = "run") -> None:
        resume = (
            "Continue the conversation with its session_id to pick up where it left off"
            if session_id
            else "Retry the call"
        )
        super().__init__(
            f"The server is shutting down and stopped this {what} before it finished. {resume} (another replica, "
            "or this one once it is back, will take it).",
            session_id=session_id,
        )
