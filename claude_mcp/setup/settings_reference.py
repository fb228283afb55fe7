"""The README's settings reference, generated from `Policy` and the models its tables use.

Every field an operator may set in the config file is a field of `Policy` (or of a model one of
its fields holds: `[tenants.NAME]`, `[agents.NAME]`, `[mcp_servers.NAME]`, `[oauth]`, …), so the
reference is read off those models: a new setting appears in it, or the docs test fails, with no
hand-kept list to forget.
"""

from __future__ import annotations

import json
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from ..config.call_settings import CallSettings
from ..config.policy import Policy


def _schema_type(schema: dict[str, Any]) -> str:
    """A short name for a JSON Schema's type: `string`, `list of integer`, `"a" \\| "b"`, `table`."""
    options = schema.get("anyOf") or schema.get("oneOf") or [schema]
    names: list[str] = []
    for option in options:
        kind = option.get("type")
        if kind == "null":
            continue
        if "enum" in option:
            names.append(" \\| ".join(f'`"{value}"`' for value in option["enum"]))
        elif kind == "array":
            names.append(f"list of {_schema_type(option.get('items', {}))}")
        elif "$ref" in option or kind == "object":
            names.append("table")
        else:
            names.append(kind or "any")
    return " \\| ".join(dict.fromkeys(names)) or "any"


def _toml(value: Any) -> str:
    """A default as it would be written in the TOML file."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return f"{int(value):_}" if abs(value) >= 10_000 else str(int(value))
    if isinstance(value, int):
        return f"{value:_}" if abs(value) >= 10_000 else str(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value))
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    return str(value)


def _default(field: FieldInfo) -> str:
    if field.default_factory is not None:
        if field.default_factory_takes_validated_data:
            return "see description"
        made = field.default_factory()  # type: ignore[call-arg]
        if made in ((), [], {}) or isinstance(made, BaseModel):
            return "none"
        return "see description"
    if field.default is PydanticUndefined:
        return "required"
    if field.default is None:
        return "unset"
    return f"`{_toml(field.default)}`"


def _models_in(annotation: Any) -> Iterator[tuple[bool, type[BaseModel]]]:
    """The models an annotation holds, each with whether it sits in a table of named entries (a dict)."""
    origin = get_origin(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield False, annotation
    elif origin is Annotated:
        yield from _models_in(get_args(annotation)[0])
    elif origin is dict:
        for keyed, model in _models_in(get_args(annotation)[1]):
            yield keyed or True, model
    elif origin in (Union, types.UnionType, list, tuple):
        for arg in get_args(annotation):
            yield from _models_in(arg)


def _table(model: type[BaseModel]) -> str:
    properties = model.model_json_schema(by_alias=False)["properties"]
    rows = ["| setting | type | default | what it does |", "| --- | --- | --- | --- |"]
    for name, field in model.model_fields.items():
        description = (field.description or "").replace("\n", " ").replace("|", "\\|")
        rows.append(f"| `{name}` | {_schema_type(properties[name])} | {_default(field)} | {description} |")
    return "\n".join(rows)


def _sections(model: type[BaseModel], path: str) -> Iterator[tuple[str, type[BaseModel]]]:
    yield path, model
    for name, field in model.model_fields.items():
        for keyed, inner in _models_in(field.annotation):
            if inner is CallSettings:
                continue  # `[defaults]`: the tools' own arguments, in the tool reference
            label = f"{name}.NAME" if keyed else name
            yield from _sections(inner, f"{path}.{label}" if path else label)


def settings_reference() -> str:
    """Every setting of the config file, table by table."""
    parts = [
        "Top-level settings (a tenant's `[tenants.NAME.policy]` takes the same names). `[defaults]` takes the "
        "per-call settings of the [tool reference](#ask) (`model`, `permission_mode`, `max_turns`, …) and "
        "`[cli_env]` environment variables for the CLI.",
        _table(Policy),
    ]
    seen: set[tuple[str, type[BaseModel]]] = set()
    for path, model in _sections(Policy, ""):
        if model is Policy or (path, model) in seen:
            continue
        seen.add((path, model))
        doc = (model.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")
        parts += [f"`[{path}]` ({model.__name__}): {doc}", _table(model)]
    return "\n\n".join(parts)
