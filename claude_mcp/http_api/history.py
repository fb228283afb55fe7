"""A resent history as a Claude Code conversation.

The Messages API resends the whole conversation each turn; Claude Code keeps it in a session.
After each turn the server records the digest of the conversation so far (every message's role
and text, the answer included) against its session, so the next request — whose history is
exactly that — continues the session (warm, when its process is alive) instead of replaying
the history. A history the server has never seen starts a new session whose first prompt
carries it as text. Pure functions.
"""

from __future__ import annotations

import hashlib
import json

Turn = tuple[str, str]
"""A message's role and text."""
CARRIED = (
    "The conversation (this server holds none with its history, so all of it would be carried into the first "
    "prompt of a new one)"
)
"""What a carried prompt over its size limit is called in the refusal."""


def digest(turns: list[Turn]) -> str:
    """What identifies a conversation so far (roles and texts, in order)."""
    return hashlib.sha256(json.dumps(turns, ensure_ascii=False, separators=(",", ":")).encode()).hexdigest()


def carried_prompt(history: list[Turn], prompt: str) -> str:
    """The first prompt of a new session for a history this server does not hold."""
    lines = ["Here is our conversation so far, for context:", "<conversation>"]
    lines += [f"<{role}>\n{text}\n</{role}>" for role, text in history]
    lines += ["</conversation>", "", prompt]
    return "\n".join(lines)
