"""Usage records the store could not take before the server stopped, kept until it can.

The meter queues a run's usage records in memory and its writer stores them within a second; while
the store is unreachable they wait there, retried. A server that stops in such an outage writes what
is still queued to a file in its own state directory (one per bridge: a namespace, or a caller of a
tenant), and the next start of that bridge on that directory stores it and removes the file. Storing
is idempotent (a run's record per model is written once), so records stored twice count once.

The directory is the server's own (`CLAUDE_MCP_STATE`), which no sandbox sees: a namespace's Claude
cannot write records into it. A record is taken back only for the namespace whose file it is in.
What a record holds: ids (run, session, job, chain), the namespace, the surface, model names, token
counts, cost and duration; no prompt, answer or credential. The file is readable by the server's user
only, and replaced whole (written beside it, then renamed).
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from .store import UsageRecord

logger = logging.getLogger(__name__)

SPOOL_DIR = "usage-unsent"


class UsageSpool:
    """One namespace's file of unsent usage records. Blocking file I/O: call it in a worker thread."""

    def __init__(self, state_dir: Path, namespace: str, bridge: str) -> None:
        """`bridge`: what tells this namespace's bridges apart over restarts (its Claude config dir: the callers of
        one tenant share its namespace, each with a bridge of its own)."""
        self.namespace = namespace
        # Hashed: a tenant's name or a config dir may be any text.
        digest = hashlib.sha256(f"{namespace}\0{bridge}".encode()).hexdigest()[:32]
        self.path = state_dir / SPOOL_DIR / f"{digest}.jsonl"

    def load(self) -> list[UsageRecord]:
        """The records kept (none if there is no file); a line that is not one of this namespace's records
        is skipped, and said."""
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        records: list[UsageRecord] = []
        for number, line in enumerate(lines, 1):
            try:
                record = UsageRecord.model_validate_json(line)
            except ValidationError:
                record = None
            if record is None or record.namespace != self.namespace:
                logger.warning("%s line %d is not a usage record of its namespace; skipped", self.path, number)
                continue
            records.append(record)
        return records

    def save(self, records: Sequence[UsageRecord]) -> None:
        """Keep exactly `records` (replacing what was kept)."""
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        partial = self.path.with_suffix(".partial")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.writelines(record.model_dump_json() + "\n" for record in records)
            file.flush()
            os.fsync(file.fileno())
        partial.replace(self.path)

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)
