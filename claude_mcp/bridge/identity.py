"""Who a bridge is: how deep it sits in a chain of Claude delegations, the budget the CLI above it
was started with, the key its chain is found by, and its name among the replicas that share a store."""

from __future__ import annotations

import os
import socket
import uuid

from ..config.policy import Policy
from ..state.remote_chains import SOCKET_ENV, TOKEN_ENV
from .options import BUDGET_ENV, CHAIN_ENV, DEPTH_ENV


def inherited_budget() -> float | None:
    """The budget of the run that started this server, if Claude started it (a per-call ceiling)."""
    try:
        value = float(os.environ.get(BUDGET_ENV, ""))
    except ValueError:
        return None
    return value if value > 0 else None


def replica_id() -> str:
    """This server process's name among the replicas sharing a store."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def current_depth() -> int:
    """How many claude-mcp servers are above this one (0 when a person started it)."""
    try:
        return max(0, int(os.environ.get(DEPTH_ENV, "0")))
    except ValueError:
        return 0


def inherited_chain() -> str | None:
    """If Claude started this server: the chain key of the CLI process that started it, which the
    store points at the chain of that process's current turn (see `metering`)."""
    return os.environ.get(CHAIN_ENV) or None


def inherited_channel() -> dict[str, str]:
    """If a sandboxed CLI started this server: the chain channel of the server above it (the socket
    inside the sandbox and the capability), as the variables that name it; else nothing."""
    channel = {name: os.environ.get(name, "") for name in (SOCKET_ENV, TOKEN_ENV)}
    return channel if all(channel.values()) else {}


def policy_below(policy: Policy, channel: dict[str, str]) -> Policy:
    """The policy of a server started below a run: no call may cost more than that whole run may,
    and below a sandboxed run every CLI this server starts carries the chain channel on (`channel`)."""
    if (budget := inherited_budget()) is not None and (policy.max_budget_usd or budget) >= budget:
        policy = policy.model_copy(update={"max_budget_usd": budget})
    if channel:
        policy = policy.model_copy(update={"cli_env": {**policy.cli_env, **channel}})
    return policy
