"""Stop a CLI process and everything it started (shells, MCP servers, sub-agents).

claude-agent-sdk's transport terminates only the `claude` process itself, and starts it in
our own process group, so its children would outlive a cancelled call. This module is the
smallest piece that closes that gap: snapshot the descendants, SIGTERM them all, give them
a grace period, SIGKILL what is left.
"""

from __future__ import annotations

import contextlib
import logging
import signal

import anyio
import psutil

logger = logging.getLogger(__name__)


def process_tree(pid: int) -> list[psutil.Process]:
    """The process and its descendants, or [] if it is gone."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def _alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _signal_all(processes: list[psutil.Process], sig: signal.Signals) -> None:
    for process in processes:
        with contextlib.suppress(psutil.Error):
            process.send_signal(sig)


async def terminate_tree(processes: list[psutil.Process], grace_s: float = 2.0) -> None:
    """SIGTERM every process, wait up to `grace_s`, then SIGKILL the survivors."""
    alive = [p for p in processes if _alive(p)]
    if not alive:
        return
    _signal_all(alive, signal.SIGTERM)
    with anyio.CancelScope(shield=True):
        with anyio.move_on_after(grace_s):
            while alive := [p for p in alive if _alive(p)]:
                await anyio.sleep(0.02)
        if alive:
            logger.warning("killing %d process(es) that ignored SIGTERM", len(alive))
            _signal_all(alive, signal.SIGKILL)
