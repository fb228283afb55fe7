"""The README's tool reference, generated from the same pydantic models as the tool schemas.

`python -m claude_mcp.docs` prints it; a test keeps README.md in step.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from .progress import STATUS_PREFIX
from .results import AskResult
from .settings import AskArgs


def _type_of(schema: dict[str, Any]) -> str:
    options = schema.get("anyOf", [schema])
    names = []
    for option in options:
        kind = option.get("type")
        if kind == "null":
            continue
        if "enum" in option:
            names.append(" \\| ".join(f"`{value}`" for value in option["enum"]))
        elif kind == "array":
            names.append(f"list of {option.get('items', {}).get('type', 'any')}")
        else:
            names.append(kind or "any")
    return " \\| ".join(names) or "any"


def fields_table(model: type[BaseModel]) -> str:
    schema = model.model_json_schema()
    required = set(schema.get("required", []))
    rows = ["| name | type | description |", "| --- | --- | --- |"]
    for name, prop in schema["properties"].items():
        label = f"`{name}`" + (" (required)" if name in required else "")
        rows.append(f"| {label} | {_type_of(prop)} | {prop.get('description', '')} |")
    return "\n".join(rows)


def tool_reference() -> str:
    return "\n\n".join(
        [
            "### `ask`",
            (AskArgs.__doc__ or "").strip(),
            fields_table(AskArgs),
            "Result (`structuredContent`, declared as the tool's `outputSchema`):",
            fields_table(AskResult),
            "### `stream_ask`",
            "Same arguments and result as `ask`. While Claude writes, each progress notification's "
            f"`message` is the next chunk of the answer, or a status line starting `{STATUS_PREFIX.strip()}` "
            "(tool activity such as “Running Bash: `pytest -q`”, queue position, heartbeat). "
            "The chunks concatenate to the final `result`.",
        ]
    )


if __name__ == "__main__":
    print(tool_reference())
