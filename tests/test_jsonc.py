"""JSONC settings (VS Code, Zed) read and added to with every other byte kept (`setup/jsonc.py`)."""

from __future__ import annotations

import json

import pytest

from claude_mcp.setup.jsonc import insert_member, loads

TRICKY = """// top comment with "quotes" and { braces }
{
  /* a block comment: "servers": { "not": "this" } */
  "url": "http://example.com//path/*not a comment*/",
  "escaped": "a \\" quote // still a string",
  "nested": {"servers": {"deep": 1}},
  "servers": {
    "other": {"command": "x",}, // trailing commas, as VS Code allows
  },
}
"""


def test_comments_and_trailing_commas_are_read_and_strings_left_alone() -> None:
    document = loads(TRICKY)
    assert document["url"] == "http://example.com//path/*not a comment*/"
    assert document["escaped"] == 'a " quote // still a string'
    assert document["servers"] == {"other": {"command": "x"}}


def test_a_member_goes_into_the_top_level_object_not_a_nested_one_of_the_same_name() -> None:
    text = insert_member(TRICKY, "servers", ("claude", {"command": "c", "args": ["serve"]}))
    document = loads(text)
    assert document["servers"] == {"claude": {"command": "c", "args": ["serve"]}, "other": {"command": "x"}}
    assert document["nested"] == {"servers": {"deep": 1}}
    assert text.replace(text[text.index('    "claude"') : text.index('    "other"')], "") == TRICKY


@pytest.mark.parametrize(
    "original",
    ["", "{}", "{\n}\n", '{"a": 1}', "// only a comment\n{ /* empty */ }", '{"servers": {}}', '{"servers": { }, }'],
)
def test_a_member_can_be_added_to_any_shape_of_file(original: str) -> None:
    text = insert_member(original, "servers", ("claude", {"command": "c"}))
    assert loads(text)["servers"] == {"claude": {"command": "c"}}
    with_input = insert_member(text, "inputs", {"id": "key"})
    assert loads(with_input)["inputs"] == [{"id": "key"}] and loads(with_input)["servers"]["claude"]


def test_a_file_that_is_not_json_is_refused() -> None:
    with pytest.raises(json.JSONDecodeError):
        loads('{"a": 1 // unclosed')
