"""Result models of the session, job and agent tools (`ask`'s is the bridge's `AskResult`)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from ..bridge.jobs import JobView
from ..bridge.results import AskResult
from ..state.conversations import SessionInfo


class ForkResult(BaseModel):
    """What `fork_session` returns: the new branch, and its first answer if a prompt was given."""

    session_id: str = Field(description="The new branch; continue it with `ask`.")
    forked_from: str = Field(description="The conversation it was copied from (untouched).")
    answer: AskResult | None = Field(None, description="The branch's answer to `prompt`, if one was given.")


class SessionList(BaseModel):
    sessions: list[SessionInfo]


class JobList(BaseModel):
    jobs: list[JobView] = Field(description="Your jobs, newest first.")


class AgentInfo(BaseModel):
    name: str
    description: str
    model: str | None = None
    tools: list[str] | None = Field(None, description="The tools it may use (unset: all).")


class AgentList(BaseModel):
    agents: list[AgentInfo]


class SessionChange(BaseModel):
    session_id: str
    changed: bool = Field(description="Whether anything was there to close or delete.")
