"""The facts of one run, handed down to telemetry and metering.

The runner knows who runs what; telemetry (`instrument`) and metering (`metering`) are told, once,
in a `RunFacts`, and read nothing of the bridge, a process or an observer to find out.
"""

from __future__ import annotations

from dataclasses import dataclass

from .jobs import Job


@dataclass(frozen=True, slots=True)
class RunFacts:
    """Who runs what: the bridge's tenant label (bounded: a tenant's name, `local`, or `caller`),
    its namespace (logs and usage records), the conversation the run continues (if any), the tool
    of the call it serves (None: no call, e.g. a job run in the background), and its job (if any)."""

    tenant: str
    namespace: str
    session: str | None
    tool: str | None = None
    job: Job | None = None

    @property
    def surface(self) -> str:
        """What usage records name as the run's surface: the call's tool, else its job's, else `none`."""
        return self.tool or (self.job.tool if self.job is not None else None) or "none"
