""" "Did you mean …?" for a setting's name that no model knows (a config typo)."""

from __future__ import annotations

import difflib
import typing
from collections.abc import Sequence

from pydantic import BaseModel


def _model_in(annotation: object) -> type[BaseModel] | None:
    """The pydantic model an annotation holds (directly, in `X | None`, or as a dict's values)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in reversed(typing.get_args(annotation)):
        if (found := _model_in(arg)) is not None:
            return found
    return None


def fields_at(model: type[BaseModel], loc: Sequence[str | int]) -> list[str]:
    """The setting names valid where `loc` (a validation error's location, unknown name last) points."""
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        if field is None:
            continue  # a dict's key (a tenant's or an agent's name): the model stays the values'
        inner = _model_in(field.annotation)
        if inner is None:
            return []
        model = inner
    return list(model.model_fields)


def did_you_mean(model: type[BaseModel], loc: Sequence[str | int]) -> str:
    """` (did you mean 'max_turns'?)` for the unknown name at `loc`, or `` when nothing is close."""
    if not loc:
        return ""
    close = difflib.get_close_matches(str(loc[-1]), fields_at(model, loc), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
