"""A prompt that carries more than text: images and documents sent with it, in the same user
message, through the CLI's streaming input (as the Messages API's own content blocks)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class Prompt(str):
    """A prompt's text, with content blocks (`image`, `document`) that go before it in its user
    message. A `str` everywhere a prompt's text is measured, recorded or digested; the blocks reach
    the CLI only on the turn that sends it (`user_content`)."""

    blocks: tuple[dict[str, Any], ...]

    def __new__(cls, text: str, blocks: Sequence[dict[str, Any]] = ()) -> Prompt:
        prompt = super().__new__(cls, text)
        prompt.blocks = tuple(blocks)
        return prompt


def with_blocks_of(text: str, prompt: str) -> str:
    """`text` (e.g. `prompt` with a carried history before it) with `prompt`'s blocks, if it has any."""
    return Prompt(text, prompt.blocks) if isinstance(prompt, Prompt) and prompt.blocks else text


def user_content(prompt: str) -> str | list[dict[str, Any]]:
    """A user message's `content` for the CLI: the text alone, or the blocks followed by the text."""
    if not isinstance(prompt, Prompt) or not prompt.blocks:
        return str(prompt)
    text = [{"type": "text", "text": str(prompt)}] if prompt else []
    return [*prompt.blocks, *text]
