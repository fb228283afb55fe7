"""What every role's contracts share: fresh names, running a role's contracts, and records."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from claude_agent_sdk import SessionKey

from ..store import BatchRecord, JobRecord, JobStatus, SessionRecord, UsageRecord

R = TypeVar("R")
Contract = Callable[[R], Awaitable[None]]


class Names:
    """Names no other contract (or earlier run) uses: `n("ns")` is `ns-<this contract's tag>`."""

    def __init__(self) -> None:
        self.tag = uuid.uuid4().hex[:12]

    def __call__(self, name: str) -> str:
        return f"{name}-{self.tag}"


async def run_all(store: R, contracts: Sequence[Contract[R]]) -> None:
    """Run each contract in turn; a failure names the contract."""
    for contract in contracts:
        try:
            await contract(store)
        except AssertionError as failed:
            raise AssertionError(f"{contract.__name__}: {failed}") from failed


KEY: SessionKey = {"project_key": "proj", "session_id": "sess"}


def entry(n: int, uuid: str | None = None, **fields: Any) -> Any:
    return {"type": "user", "n": n, **({"uuid": uuid} if uuid else {}), **fields}


def session(namespace: str, session_id: str, updated_at: float = 100.0, **fields: Any) -> SessionRecord:
    return SessionRecord(namespace=namespace, session_id=session_id, created_at=1.0, updated_at=updated_at, **fields)


def job(namespace: str, job_id: str, created_at: float = 100.0, **fields: Any) -> JobRecord:
    return JobRecord(namespace=namespace, job_id=job_id, created_at=created_at, updated_at=created_at, **fields)


def queued(namespace: str, job_id: str, created_at: float, **fields: Any) -> JobRecord:
    return job(namespace, job_id, created_at, status="queued", request={"prompt": job_id}, **fields)


def asking(namespace: str, job_id: str, permission_id: str, **fields: Any) -> JobRecord:
    question = {"permission_id": permission_id, "tool": "Bash", "description": "run ls", "input": {"command": "ls"}}
    return job(namespace, job_id, pending_permission=question, **fields)


def batch(namespace: str, batch_id: str, created_at: float = 100.0, **fields: Any) -> BatchRecord:
    fields.setdefault("expires_at", created_at + 1000.0)
    return BatchRecord(namespace=namespace, batch_id=batch_id, created_at=created_at, request_count=3, **fields)


def of_batch(namespace: str, batch_id: str, custom_id: str, status: JobStatus = "queued", **fields: Any) -> JobRecord:
    job_id = f"{namespace}-{batch_id}-{custom_id}"
    return job(namespace, job_id, status=status, batch_id=batch_id, custom_id=custom_id, **fields)


def spent(namespace: str, run_id: str, model: str, at: float, tokens: int, usd: float, **fields: Any) -> UsageRecord:
    return UsageRecord(
        run_id=run_id,
        model=model,
        namespace=namespace,
        surface="ask",
        started_at=at,
        input_tokens=tokens,
        output_tokens=1,
        cache_write_tokens=2,
        cache_read_tokens=100,
        cost_usd=usd,
        chain_id=fields.pop("chain_id", run_id),
        **fields,
    )
