"""The tools' argument models: a tool's `inputSchema` is exactly its model's JSON Schema.

The conversation tools extend `CallSettings`, so every per-call setting is a flat, optional
argument next to the tool's own (`prompt`, `session_id`, …).
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

import anyio.to_thread
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..config.call_settings import CallSettings
from ..config.limits import FewFields, InputLimits
from ..config.specs import ServerName
from ..config.types import JobId, PromptText, SessionId


class AskArgs(CallSettings):
    """Arguments of the `ask` tool: a prompt, an optional session to continue, and settings."""

    prompt: PromptText = Field(..., min_length=1, description="What to ask Claude.")
    session_id: SessionId | None = Field(
        None,
        description="Continue this conversation (a `session_id` from an earlier result). Omit to start a new one.",
    )


class ForkArgs(CallSettings):
    """Arguments of `fork_session`: the conversation to branch, and optionally a first prompt."""

    session_id: SessionId = Field(..., description="The conversation to branch; it stays untouched.")
    prompt: PromptText | None = Field(
        None, min_length=1, description="Ask the new branch this at once. Omit to only create the branch."
    )


MOST_OFFSET = 10**9
"""The most a page may skip: past any list a store holds, and within every store's integers (an offset
over SQLite's or PostgreSQL's 64 bits was an internal error, not a refusal)."""


class SessionArgs(FewFields):
    """Names one conversation."""

    model_config = ConfigDict(extra="forbid")

    session_id: SessionId = Field(..., description="The conversation's session_id.")


class ListSessionsArgs(FewFields):
    """A page of conversations, most recent first."""

    model_config = ConfigDict(extra="forbid")

    limit: int = Field(20, ge=1, le=200, description="How many to return.")
    offset: int = Field(0, ge=0, le=MOST_OFFSET, description="How many to skip.")


class GetSessionArgs(SessionArgs):
    """A page of one conversation's messages, oldest first."""

    limit: int = Field(50, ge=1, le=500, description="How many messages to return.")
    offset: int = Field(0, ge=0, le=MOST_OFFSET, description="How many messages to skip.")


class RunAgentArgs(CallSettings):
    """Arguments of `run_agent`: which agent, what to do, and how long to wait inline."""

    agent: ServerName = Field(..., description="A named agent (see `list_agents`) or one passed in `agents`.")
    prompt: PromptText = Field(..., min_length=1, description="The task for the agent.")
    session_id: SessionId | None = Field(None, description="Continue this conversation instead of starting one.")
    wait_s: float | None = Field(
        None,
        ge=0,
        le=600,
        description="Wait this long for the result before returning a job handle (default: the server's, ~25 s).",
    )


class JobArgs(FewFields):
    """Names one background job."""

    model_config = ConfigDict(extra="forbid")

    job_id: JobId = Field(..., description="The job_id that `run_agent` returned.")


class GetJobArgs(JobArgs):
    wait_s: float = Field(0, ge=0, le=600, description="Wait up to this long for the job to finish (long-poll).")
    permission_id: str | None = Field(None, max_length=100, description="Answer this pending permission request…")
    decision: Literal["allow_once", "allow_session", "deny"] | None = Field(None, description="…with this decision.")
    reason: str | None = Field(None, max_length=2000, description="Why (told to Claude on a denial).")

    @model_validator(mode="after")
    def _decision_with_id(self) -> GetJobArgs:
        if (self.permission_id is None) != (self.decision is None):
            raise ValueError("permission_id and decision go together")
        return self


class NoArgs(FewFields):
    model_config = ConfigDict(extra="forbid")


Args = TypeVar("Args", bound=BaseModel)


async def validated(model: type[Args], arguments: dict[str, Any], limits: InputLimits) -> Args:
    """A tool's arguments checked: first their sizes (`TooLarge`, at a cost bounded by the limits
    whatever was sent), then their validation (`ValidationError`), on a worker thread: a JSON
    Schema's check is pure Python, so the event loop keeps serving other calls meanwhile."""
    limits.arguments(arguments)
    return await anyio.to_thread.run_sync(model.model_validate, arguments)
