"""JSON with comments (the settings files of VS Code and Zed), read and added to without losing them.

No maintained Python library both reads JSONC and writes it back with its comments, so this is
a careful minimal approach: a scanner that knows strings, `//` and `/* */` comments and
trailing commas, used two ways. `loads` blanks the comments and drops trailing commas, then
parses with `json`. `insert_member` adds one member at the start of a top-level object or array
member (or adds that member to the document), leaving every other byte of the file as it was.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

_TRAILING_COMMA = re.compile(r",(\s*[}\]])")


def _tokens(text: str) -> Iterator[tuple[int, str]]:
    """(offset, token) for every string, punctuation mark and bare word outside comments."""
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            yield i, text[i : j + 1]
            i = j + 1
        elif text.startswith("//", i):
            end = text.find("\n", i)
            i = n if end < 0 else end
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            i = n if end < 0 else end + 2
        elif c.isspace():
            i += 1
        elif c in "{}[]:,":
            yield i, c
            i += 1
        else:
            j = i
            while j < n and not text[j].isspace() and text[j] not in '{}[]:,"/':
                j += 1
            yield i, text[i : max(j, i + 1)]
            i = max(j, i + 1)


def loads(text: str) -> Any:
    """The document, comments and trailing commas allowed (`json.JSONDecodeError` otherwise)."""
    plain = [" "] * len(text)
    for offset, token in _tokens(text):
        plain[offset : offset + len(token)] = token
    return json.loads(_TRAILING_COMMA.sub(r"\1", "".join(plain)) or "{}")


def _opening(text: str, key: str) -> tuple[int, bool] | None:
    """Where the value of the top-level member `key` opens (`{` or `[`), and whether it is empty."""
    depth, previous, wanted = 0, "", False
    tokens = list(_tokens(text))
    for index, (offset, token) in enumerate(tokens):
        if token in ("{", "["):
            if wanted and depth == 1:
                following = tokens[index + 1][1] if index + 1 < len(tokens) else ""
                return offset, following in ("}", "]")
            depth += 1
        elif token in ("}", "]"):
            depth -= 1
        elif token == ":" and depth == 1 and previous.startswith('"'):
            wanted = previous == json.dumps(key)
            previous = token
            continue
        wanted = wanted and token == ":"
        previous = token
    return None


def _block(value: Any, indent: str) -> str:
    return json.dumps(value, indent=2).replace("\n", "\n" + indent)


def insert_member(text: str, key: str, member: tuple[str, Any] | Any) -> str:
    """`text` with `member` added first in the top-level `key`: a (name, value) pair into an
    object, or a value into an array; `key` is added (as an object or array) if it is missing."""
    inner = "    "
    if isinstance(member, tuple):
        entry = f"{json.dumps(member[0])}: {_block(member[1], inner)}"
        empty_value: str = "{}"
    else:
        entry = _block(member, inner)
        empty_value = "[]"
    found = _opening(text, key)
    if found is None:
        top = next((offset for offset, token in _tokens(text) if token == "{"), None)
        if top is None:  # an empty file
            return insert_member("{}\n", key, member)
        has_members = next((t for o, t in _tokens(text) if o > top), "}") != "}"
        value = f"{empty_value[0]}\n{inner}{entry}\n  {empty_value[1]}"
        addition = f"\n  {json.dumps(key)}: {value}" + (",\n  " if has_members else "\n")
        return text[: top + 1] + addition + text[top + 1 :]
    offset, empty = found
    addition = f"\n{inner}{entry}" + ("\n  " if empty else ",")
    return text[: offset + 1] + addition + text[offset + 1 :]
