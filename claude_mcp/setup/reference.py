"""The README's tool and settings references, generated from the same models and specs the server
publishes and reads.

`python -m claude_mcp.setup.reference` prints the tool reference, `python -m claude_mcp.setup.reference --write
README.md` updates both in the README; a test keeps README.md in step.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from ..mcp_surface.tools import TOOLS, ToolSpec
from .settings_reference import settings_reference


def _type_of(schema: dict[str, Any]) -> str:
    names = []
    for option in schema.get("anyOf", [schema]):
        kind = option.get("type")
        if kind == "null":
            continue
        if "enum" in option:
            names.append(" \\| ".join(f"`{value}`" for value in option["enum"]))
        elif kind == "array":
            names.append(f"list of {option.get('items', {}).get('type', 'object')}")
        elif "$ref" in option:
            names.append(option["$ref"].rsplit("/", 1)[-1])
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


def _section(spec: ToolSpec, described: dict[type[BaseModel], str]) -> str:
    parts = [f"### `{spec.name}`", spec.description]
    if spec.args in described:
        parts.append(f"Arguments: as for `{described[spec.args]}`.")
    else:
        described[spec.args] = spec.name
        parts += ["Arguments:", fields_table(spec.args)]
    if spec.result in described:
        parts.append(f"Result: as for `{described[spec.result]}`.")
    else:
        described[spec.result] = spec.name
        parts += ["Result (`structuredContent`, the tool's `outputSchema`):", fields_table(spec.result)]
    return "\n\n".join(parts)


def tool_reference() -> str:
    described: dict[type[BaseModel], str] = {}
    return "\n\n".join(_section(spec, described) for spec in TOOLS)


START, END = "<!-- tool-reference:start -->", "<!-- tool-reference:end -->"
SETTINGS_START, SETTINGS_END = "<!-- settings-reference:start -->", "<!-- settings-reference:end -->"


def _between(text: str, start: str, end: str, generated: str) -> str:
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{generated}\n{end}{tail}"


def with_reference(readme: str) -> str:
    """`readme` with the text between each pair of reference markers regenerated."""
    readme = _between(readme, START, END, tool_reference())
    return _between(readme, SETTINGS_START, SETTINGS_END, settings_reference())


if __name__ == "__main__":
    import sys
    from pathlib import Path

    if sys.argv[1:2] == ["--write"]:
        path = Path(sys.argv[2] if len(sys.argv) > 2 else "README.md")
        path.write_text(with_reference(path.read_text()))
    else:
        print(tool_reference())
