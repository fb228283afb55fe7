"""Every tool schema says what each value is: `tools/list` passes the MCP Inspector's `--strict`
portability check, and no property, item or map value is left free to be anything."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from claude_mcp.mcp_surface.tools import TOOLS

# The keywords that constrain an instance (the Inspector's list): a schema object with none of
# them accepts any value. `if` constrains only together with `then` or `else`.
CONSTRAINING = frozenset(
    {
        *("type", "enum", "const", "multipleOf", "maximum", "exclusiveMaximum", "minimum", "exclusiveMinimum"),
        *("maxLength", "minLength", "pattern", "format", "contentMediaType", "contentEncoding", "contentSchema"),
        *("maxItems", "minItems", "uniqueItems", "maxContains", "minContains", "maxProperties", "minProperties"),
        *("required", "dependentRequired", "allOf", "anyOf", "oneOf", "not", "items", "prefixItems", "contains"),
        *("additionalItems", "unevaluatedItems", "properties", "patternProperties", "additionalProperties"),
        *("unevaluatedProperties", "propertyNames", "dependentSchemas", "dependencies"),
        *("$ref", "$dynamicRef", "$recursiveRef"),
    }
)
JSON_TYPES = frozenset({"null", "boolean", "object", "array", "number", "string", "integer"})

# Where a schema holds subschemas: one, a list of them, or a map of named ones.
ONE = (
    *("items", "contains", "not", "propertyNames", "if", "then", "else", "contentSchema"),
    *("additionalProperties", "unevaluatedProperties", "additionalItems", "unevaluatedItems"),
)
LIST = ("allOf", "anyOf", "oneOf", "prefixItems")
NAMED = ("properties", "patternProperties", "dependentSchemas", "dependencies", "$defs", "definitions")
# `false` is a schema's way to forbid here; anywhere else a bare boolean does not port.
MAY_BE_FALSE = frozenset({"additionalProperties", "unevaluatedProperties", "additionalItems", "unevaluatedItems"})


def _subschemas(node: dict[str, Any], path: str) -> Iterator[tuple[Any, str, str]]:
    for keyword in NAMED:
        if isinstance(named := node.get(keyword), dict):
            for name, sub in named.items():
                yield sub, f"{path}.{keyword}.{name}", keyword
    for keyword in LIST:
        for index, sub in enumerate(node.get(keyword) or []):
            yield sub, f"{path}.{keyword}[{index}]", keyword
    for keyword in ONE:
        if keyword in node:
            value = node[keyword]
            subs: list[tuple[str, Any]] = (
                [(f"[{index}]", sub) for index, sub in enumerate(value)]
                if keyword == "items" and isinstance(value, list)
                else [("", value)]
            )
            for suffix, sub in subs:
                yield sub, f"{path}.{keyword}{suffix}", keyword


def _resolves(document: dict[str, Any], ref: str) -> bool:
    """Whether a local `$ref` (a JSON pointer such as `#/$defs/AskResult`) names a schema in `document`."""
    target: Any = document
    pointer = ref.removeprefix("#")
    for part in pointer.split("/")[1:] if pointer else []:
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(target, dict) or part not in target:
            return False
        target = target[part]
    return isinstance(target, dict | bool)


def _findings(document: dict[str, Any], node: Any, path: str, keyword: str | None) -> Iterator[tuple[str, str]]:
    """(path, issue) for each place of the schema that constrains nothing or does not port."""
    if isinstance(node, bool):
        if node:
            yield path, "is `true`: it accepts any value; say what the value is"
        elif keyword not in MAY_BE_FALSE:
            yield path, "is a bare `false`; write `{'not': {}}`"
        return
    if not isinstance(node, dict):
        return  # not a schema position (a `dependencies` entry may list property names)
    if not (CONSTRAINING & node.keys() or ("if" in node and ("then" in node or "else" in node))) and keyword != "not":
        yield path, "has no validation keyword: it accepts any value; say what the value is"
    kind = node.get("type")
    if isinstance(kind, list):
        yield path, f"`type` is a list {kind}: clients with a single-type dialect drop it; use `anyOf`"
    elif kind is not None and kind not in JSON_TYPES:
        yield path, f"`type` {kind!r} is not a JSON Schema type"
    if kind == "object" and not ({"properties", "patternProperties", "additionalProperties"} & node.keys()):
        yield path, "is an object of any values; say what its values are (`additionalProperties`)"
    if kind == "array" and not ({"items", "prefixItems"} & node.keys()):
        yield path, "is an array of any items; say what its items are (`items`)"
    if isinstance(ref := node.get("$ref"), str):
        if not ref.startswith("#"):
            yield path, f"`$ref` {ref!r} points outside the schema; clients do not fetch it"
        elif not _resolves(document, ref):
            yield path, f"`$ref` {ref!r} names no definition in the schema"
    for sub, sub_path, sub_keyword in _subschemas(node, path):
        yield from _findings(document, sub, sub_path, sub_keyword)


def tool_findings() -> Iterator[tuple[str, str]]:
    """(path in the schema, `tool: schema.path issue`) over every tool's input and output schema."""
    for spec in TOOLS:
        tool = spec.describe()
        for name, schema in (("inputSchema", tool.input_schema), ("outputSchema", tool.output_schema)):
            for path, issue in _findings(schema, schema, "", None) if schema is not None else ():
                yield path.lstrip("."), f"{tool.name}: {name}{path} {issue}"


def test_no_tool_schema_leaves_a_value_free_to_be_anything() -> None:
    findings = [finding for _, finding in tool_findings()]
    assert not findings, "\n".join(findings)


def test_the_check_catches_what_accepts_anything() -> None:
    schema = {
        "type": "object",
        "properties": {
            "free": {"description": "no type"},
            "anything": True,
            "map": {"type": "object", "additionalProperties": True},
            "bare_map": {"type": "object"},
            "list": {"type": "array"},
            "union": {"type": ["string", "null"]},
            "either": {"anyOf": [{"type": "string"}, {}]},
            "remote": {"$ref": "https://example.com/schema.json"},
            "dangling": {"$ref": "#/$defs/Missing"},
            "fine": {"anyOf": [{"$ref": "#/$defs/Json"}, {"type": "null"}]},
            "closed": {"type": "object", "properties": {"x": {"const": 1}}, "additionalProperties": False},
        },
        "$defs": {"Json": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"$ref": "#/$defs/Json"}}]}},
    }
    flagged = {path for path, _ in _findings(schema, schema, "", None)}
    assert flagged == {
        ".properties.free",
        ".properties.anything",
        ".properties.map.additionalProperties",
        ".properties.bare_map",
        ".properties.list",
        ".properties.union",
        ".properties.either.anyOf[1]",
        ".properties.remote",
        ".properties.dangling",
    }


def test_optional_arguments_are_their_type_alone_so_form_filling_clients_can_fill_them() -> None:
    for spec in TOOLS:
        for name, prop in spec.describe().input_schema["properties"].items():
            assert {"type": "null"} not in prop.get("anyOf", []), f"{spec.name}.{name}"
            assert "default" not in prop or prop["default"] is not None, f"{spec.name}.{name}"
    ask = next(spec for spec in TOOLS if spec.name == "ask").describe().input_schema
    assert ask["properties"]["allowed_tools"]["type"] == "array" and "allowed_tools" not in ask["required"]


# The Inspector release whose `--strict` rules this file's check follows; pinned so they do not
# change under the test.
INSPECTOR = "@modelcontextprotocol/inspector@2.12.0"


@pytest.mark.skipif(shutil.which("npx") is None, reason="npx (Node.js) is not on PATH")
def test_the_inspector_strict_check_passes_tools_list(tmp_path: Path) -> None:
    config = tmp_path / "claude-mcp.toml"
    config.write_text(f"roots = [{json.dumps(str(tmp_path))}]\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "CLAUDE_"))}
    server = [sys.executable, "-m", "claude_mcp", "serve", "--config", str(config)]
    completed = subprocess.run(
        ["npx", "-y", INSPECTOR, "--cli", "--strict", "--method", "tools/list", "--", *server],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        env=env,
        cwd=tmp_path,
    )
    assert completed.returncode == 0, completed.stderr
    listed = {tool["name"] for tool in json.loads(completed.stdout)["tools"]}
    assert listed == {spec.name for spec in TOOLS}
    reported = [line for line in completed.stderr.splitlines() if line.startswith(("Warning: tool", "Error: tool"))]
    assert not reported, completed.stderr
