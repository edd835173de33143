"""LLaMA-Factory v1 samples (typed content parts, loss_weight, tools as JSON text with Python type names)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from minicpm_plugin.formats import scan_file
from minicpm_plugin.formats.base import python_schema_types

TOOLS = json.dumps([{"type": "function", "function": {"name": "multiply", "parameters": {
    "type": "dict", "properties": {"a": {"type": "float"}, "b": {"type": "float"}}, "required": ["a", "b"]}}}])


def text(value: Any) -> dict[str, Any]:
    return {"type": "text", "value": value}


def sample(*assistant_parts: dict[str, Any], **kw: Any) -> dict[str, Any]:
    user = {"role": "user", "content": [text("6*8?")], "loss_weight": 0.0}
    assistant = {"role": "assistant", "content": list(assistant_parts), "loss_weight": 1.0}
    record = {"messages": [user, assistant, {"role": "tool", "content": [text("48")]},
                           {"role": "assistant", "content": [text("48.")]}], "tools": TOOLS}
    for key, value in kw.items():
        index, field = key.split("_", 1)
        record["messages"][int(index[1:])][field] = value
    return record


CALL = {"type": "tool_call", "value": json.dumps({"name": "multiply", "arguments": {"a": 6, "b": 8}})}


def problems(tmp_path: Path, records: list[Any], **kw: Any) -> list[str]:
    path = tmp_path / "v1.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return [str(p) for p in scan_file(path, file="v1.jsonl", **kw).problems]


def test_parts_become_thought_calls_and_content(tmp_path: Path) -> None:
    record = sample({"type": "reasoning", "value": "Multiply"}, {"type": "reasoning", "value": " them.\n"}, CALL,
                    CALL, text("Calling."))
    path = tmp_path / "v1.jsonl"
    path.write_text(json.dumps(record) + "\n", encoding="utf-8")
    scanned = scan_file(path, format="lf_v1")  # an alias
    assert scanned.format == "llamafactory_v1" and scanned.problems == []
    msg = scanned.rows[0].conversation["messages"][1]
    call = {"type": "function", "function": {"name": "multiply", "arguments": {"a": 6, "b": 8}}}
    assert msg == {"role": "assistant", "content": "Calling.", "thought": "Multiply them.", "tool_calls": [call, call]}
    assert scanned.rows[0].conversation["tools"][0]["function"]["parameters"] == {
        "type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}, "required": ["a", "b"]}


@pytest.mark.parametrize(("kw", "expected"), [
    ({"m1_loss_weight": 0.5}, "v1.jsonl:1: messages[1].loss_weight: loss_weight 0.5: a turn is trained with full weight "
     "or not at all; use 1.0 or 0.0 [bad-field]"),
    ({"m0_loss_weight": 1.0}, "v1.jsonl:1: messages[0].loss_weight: loss_weight 1.0 on a user message: only assistant "
     "turns are trained; set it to 0.0 or leave it out [bad-field]"),
    ({"m1_loss_weight": True}, "v1.jsonl:1: messages[1].loss_weight: must be a number, got True [bad-field]"),
    ({"m1_loss_weight": "1"}, "v1.jsonl:1: messages[1].loss_weight: must be a number, got '1' [bad-field]"),
    ({"m0_content": [{"type": "reasoning", "value": "x"}]}, "v1.jsonl:1: messages[0].content[0]: a reasoning part on a "
     "user message: only assistant messages have them [bad-field]"),
    ({"m1_content": [{"type": "tool_call", "value": '{"name": "multiply", "arguments": {'}]}, "v1.jsonl:1: "
     "messages[1].content[0].value: a tool_call part is not valid JSON (Expecting property name enclosed in double "
     'quotes); write {"name": "...", "arguments": {...}} [bad-tool-call]'),
    ({"m1_content": [{"type": "tool_call", "value": '{"arguments": {}}'}]}, "v1.jsonl:1: messages[1].content[0].value: "
     'a tool_call part must hold {"name": "...", "arguments": {...}} [bad-tool-call]'),
    ({"m1_content": [{"type": "reasoning", "value": 3}]}, "v1.jsonl:1: messages[1].content[0].value: a reasoning "
     "part's value must be a string [bad-field]"),
    ({"m0_content": [text("Look: "), {"type": "image_url", "value": "cat.png"}]}, "v1.jsonl:1: messages[0].content[1]: "
     "content part of type 'image_url' is not supported; MiniCPM3 is text-only [multimodal]"),
    ({"m3_content": [text(None)]}, 'v1.jsonl:1: messages[3].content[0]: a text part needs a string "text" (or '
     '"value") [bad-content]'),
    ({"m1_content": [CALL, text("x"), {"type": "tool_call", "value": json.dumps({"name": "divide"})}]},
     "v1.jsonl:1: messages[1].tool_calls[1].function.name: tool call to 'divide', which is not in tools (declared: "
     "multiply) [unknown-function]"),
])
def test_what_cannot_be_trained_as_asked_is_refused(tmp_path: Path, kw: dict[str, Any], expected: str) -> None:
    assert problems(tmp_path, [sample(CALL, **kw)]) == [expected]


def test_tools_as_list_or_single_object_and_unknown_type_names(tmp_path: Path) -> None:
    fn = {"name": "f", "parameters": {"type": "dict", "properties": {"x": {"type": "Double"}}}}
    record = {"messages": [{"role": "user", "content": [text("hi")]}, {"role": "assistant", "content": [text("ok")]}],
              "tools": fn}  # one flat function, not in a list
    assert problems(tmp_path, [record]) == [
        "v1.jsonl:1: tools[0].function.parameters.properties.x.type: MiniCPM3's format cannot render this: unknown "
        "JSON-schema type 'Double'; use one of string, number, integer, boolean, null, array, object (or a list of "
        "them) [render-error]"]


def test_python_schema_types_everywhere_in_a_schema() -> None:
    schema = {"type": "dict", "properties": {
        "rows": {"type": "list", "items": {"type": "dict", "properties": {"y": {"type": "float"}}}},
        "either": {"type": ["str", "int", "null"]}, "anything": {"type": ["any", "str"]},
        "union": {"anyOf": [{"type": "str"}, {"type": "Bool"}]}, "map": {"type": "dict", "additionalProperties": {"type": "int"}},
        "pair": {"type": "tuple", "items": [{"type": "int"}, {"type": "str"}]}, "type": {"type": "str"}}}
    assert python_schema_types(schema) == {"type": "object", "properties": {
        "rows": {"type": "array", "items": {"type": "object", "properties": {"y": {"type": "number"}}}},
        "either": {"type": ["string", "integer", "null"]}, "anything": {},
        "union": {"anyOf": [{"type": "string"}, {"type": "boolean"}]},
        "map": {"type": "object", "additionalProperties": {"type": "integer"}},
        "pair": {"type": "array", "items": [{"type": "integer"}, {"type": "string"}]}, "type": {"type": "string"}}}
    deep: dict[str, Any] = {"type": "str"}
    for _ in range(5000):  # hostile nesting: no RecursionError, the renderer reports the depth later
        deep = {"type": "list", "items": deep}
    assert python_schema_types(deep)["type"] == "array"


def test_detection_prefers_openai_for_openai_records_with_value_parts(tmp_path: Path) -> None:
    openai = {"messages": [{"role": "user", "content": [{"type": "text", "value": "hi"}]},
                           {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": {
                               "name": "multiply", "arguments": "{}"}}]},
                           {"role": "tool", "content": "0"}, {"role": "assistant", "content": "0"}], "tools": TOOLS}
    path = tmp_path / "o.jsonl"
    path.write_text(json.dumps(openai) + "\n", encoding="utf-8")
    assert scan_file(path).format == "openai"
    path.write_text(json.dumps(openai) + "\n" + json.dumps(sample(CALL)) + "\n", encoding="utf-8")
    scanned = scan_file(path)
    assert scanned.format == "llamafactory_v1" and [p.code for p in scanned.problems] == ["missing-argument"] * 2


def test_hostile_json_text_in_fields(tmp_path: Path) -> None:
    deep = "[" * 100_000
    tools = sample(CALL)
    tools["tools"] = deep
    call = sample({"type": "tool_call", "value": deep})
    assert problems(tmp_path, [tools, call]) == [
        "v1.jsonl:1: tools: in the JSON string: arrays/objects are nested more than 100 levels deep (the most this "
        "reader accepts, so that nothing later runs out of stack); flatten the data [bad-record]",
        "v1.jsonl:2: messages[1].content[0].value: a tool_call part: arrays/objects are nested more than 100 levels "
        "deep (the most this reader accepts, so that nothing later runs out of stack); flatten the data [bad-tool-call]"]
