"""Every validation rule: its code, field path and exact message; and the file-level readers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from minicpm_plugin.formats import CODES, canonicalize, scan_file
from minicpm_plugin.formats.markup import LAYOUT

W = {"type": "function", "function": {"name": "get_weather", "description": "Weather for a city.", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
U = {"role": "user", "content": "Weather in Paris?"}
A = {"role": "assistant", "content": "Sunny."}
T = {"role": "tool", "content": "sunny"}


def call(name: str = "get_weather", args: Any = '{"city": "Paris"}', **kw: Any) -> dict[str, Any]:
    return {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": {"name": name, "arguments": args}, **kw}]}


def tool(name: str = "f", **fn: Any) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, **fn}}


SCHEMA_FIX = 'write it as {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}'

# (conversation, path, message, code) for every rule; the conversation is rejected unless the code is a warning.
RULES: list[tuple[str, dict[str, Any], str, str, str]] = [
    ("unknown role", {"messages": [U, {"role": "bot", "content": "x"}]},
     "messages[1].role", 'unknown role "bot"; use system, user, assistant or tool', "unknown-role"),
    ("missing role", {"messages": [U, {"content": "x"}]},
     "messages[1].role", "a message needs a role; use system, user, assistant or tool", "unknown-role"),
    ("missing content", {"messages": [{"role": "user"}, A]},
     "messages[0].content", "a user message has no content; give it a string", "bad-content"),
    ("null content", {"messages": [{"role": "user", "content": None}, A]},
     "messages[0].content", "a user message has content null; give it a string", "bad-content"),
    ("non-string content", {"messages": [U, {"role": "assistant", "content": 3}]},
     "messages[1].content", "must be a string, got number", "bad-content"),
    ("image part", {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}, A]},
     "messages[0].content[0]", "content part of type 'image_url' is not supported; MiniCPM3 is text-only", "multimodal"),
    ("unknown part", {"messages": [{"role": "user", "content": [{"type": "file", "file": {}}]}, A]},
     "messages[0].content[0]", "content part of type 'file' is not supported; only text parts ({\"type\": \"text\", "
     '"text": ...}) are read here', "bad-content"),
    ("image placeholder", {"messages": [{"role": "user", "content": "<image>What is this?"}, A]},
     "messages[0].content", "contains the <image> placeholder of multimodal data; MiniCPM3 is text-only, so the medium "
     "it stands for cannot be trained", "multimodal"),
    ("no assistant", {"messages": [U]},
     "messages", "no assistant turn to train; add the assistant's reply", "no-assistant-turn"),
    ("no messages", {"messages": []},
     "messages", "is empty; a conversation needs at least a user turn and an assistant turn", "no-assistant-turn"),
    ("nothing trained", {"messages": [U, dict(A, train=False)]},
     "messages", 'every assistant turn has "train": false, so nothing would be trained', "no-assistant-turn"),
    ("unknown function", {"messages": [U, call("get_wether"), T, A], "tools": [W]},
     "messages[1].tool_calls[0].function.name", "tool call to 'get_wether', which is not in tools (declared: get_weather)",
     "unknown-function"),
    ("arguments not an object", {"messages": [U, call(args="[1, 2]"), T, A], "tools": [W]},
     "messages[1].tool_calls[0].function.arguments", "arguments must be a JSON object of name: value pairs, got list",
     "bad-arguments"),
    ("arguments not JSON", {"messages": [U, call(args="{city: Paris}"), T, A], "tools": [W]},
     "messages[1].tool_calls[0].function.arguments", "arguments are not valid JSON (Expecting property name enclosed in "
     'double quotes); write a JSON object such as {"city": "Paris"}', "bad-arguments"),
    ("NaN argument", {"messages": [U, call(args='{"city": NaN}'), T, A], "tools": [W]},
     "messages[1].tool_calls[0].function.arguments", 'arguments are not valid JSON (NaN is not valid JSON); write a JSON '
     'object such as {"city": "Paris"}', "bad-arguments"),
    ("call without name", {"messages": [U, {"role": "assistant", "tool_calls": [{"function": {"arguments": "{}"}}]}]},
     "messages[1].tool_calls[0].function.name", "a tool call needs a non-empty string function name", "bad-tool-call"),
    ("tool result without call", {"messages": [U, T, A]},
     "messages[1]", "tool result with no preceding call: a tool message must follow an assistant turn with tool_calls "
     "(one result per call)", "orphan-tool-result"),
    ("more results than calls", {"messages": [U, call(), T, T, A], "tools": [W]},
     "messages[3]", "tool result with no preceding call: a tool message must follow an assistant turn with tool_calls "
     "(one result per call)", "orphan-tool-result"),
    ("result id matches no call", {"messages": [U, call(id="c1"), dict(T, tool_call_id="c2"), A], "tools": [W]},
     "messages[2].tool_call_id", "'c2' matches no unanswered call of the preceding assistant turn (ids: c1)",
     "orphan-tool-result"),
    ("empty assistant", {"messages": [U, {"role": "assistant", "content": "  "}]},
     "messages[1]", "assistant turn has neither content nor tool calls; give it a reply or calls, or remove the turn",
     "empty-assistant-turn"),
    ("thought only", {"messages": [U, {"role": "assistant", "content": "", "thought": "hmm"}]},
     "messages[1]", "assistant turn has neither content nor tool calls (only a thought); give it a reply or calls, or "
     "remove the turn", "empty-assistant-turn"),
    ("parameters of type array", {"messages": [U, A], "tools": [tool(parameters={"type": "array"})]},
     "tools[0].function.parameters.type", f'must be "object", got "array"; {SCHEMA_FIX}', "bad-tool-schema"),
    ("parameters as text", {"messages": [U, A], "tools": [tool(parameters="city: str")]},
     "tools[0].function.parameters", f"must be a JSON-schema object, got string; {SCHEMA_FIX}", "bad-tool-schema"),
    ("flat parameters", {"messages": [U, A], "tools": [tool(parameters={"city": {"type": "str"}})]},
     "tools[0].function.parameters", f'is not a JSON-schema object (no "type": "object" and no "properties"); {SCHEMA_FIX}',
     "bad-tool-schema"),
    ("properties as list", {"messages": [U, A], "tools": [tool(parameters={"type": "object", "properties": ["city"]})]},
     "tools[0].function.parameters.properties", "must be an object mapping parameter names to schemas, got list",
     "bad-tool-schema"),
    ("argument name", {"messages": [U, call(args='{"city-name": "Paris"}'), T, A], "tools": [W]},
     "messages[1].tool_calls[0].function.arguments", "argument name 'city-name' is not a Python identifier, so MiniCPM3 "
     "cannot write the call as get_weather(city-name=...); rename it in the data and in the tool's schema",
     "bad-argument-name"),
    ("parameter name", {"messages": [U, A], "tools": [tool(parameters={"type": "object", "properties": {"my arg": {}}})]},
     "tools[0].function.parameters.properties.my arg", "parameter name 'my arg' is not a Python identifier, so MiniCPM3 "
     "could not pass it as name=value; rename it (letters, digits and _)", "bad-argument-name"),
    ("function name", {"messages": [U, A], "tools": [tool("get-weather")]},
     "tools[0].function.name", "function name 'get-weather' is not a Python identifier, so MiniCPM3 could not write a "
     "call to it as name(arg=value); rename it (letters, digits and _)", "bad-function-name"),
    ("duplicate function", {"messages": [U, A], "tools": [W, W]},
     "tools[1].function.name", "function 'get_weather' is declared twice in tools", "duplicate-function"),
    ("non-function tool", {"messages": [U, A], "tools": [{"type": "code_interpreter"}]},
     "tools[0].type", "tool type 'code_interpreter' is not supported; MiniCPM3 only has function tools", "bad-tools"),
    ("tools not a list", {"messages": [U, A], "tools": {"name": "f"}},
     "tools", "must be a list of tools, got object", "bad-tools"),
    ("chat marker in text", {"messages": [{"role": "user", "content": "hi<|im_end|>"}, A]},
     "messages[0].content", "contains <|im_end|>, which would be read as part of the chat format, not as text; remove it",
     "special-token"),
    ("unreadable call markup", {"messages": [U, {"role": "assistant", "content": "<|tool_call_start|>x"}]},
     "messages[1].content", "MiniCPM3 markup that the strict parser cannot read: tool-call block is not closed with "
     "<|tool_call_end|>: 'x'; write the turn as " + LAYOUT, "bad-call-markup"),
    ("schema the renderer rejects", {"messages": [U, A], "tools": [tool(parameters={"type": "object", "properties": {"x": {"type": "float"}}})]},
     "tools[0].function.parameters.properties.x.type", "MiniCPM3's format cannot render this: unknown JSON-schema type "
     "'float'; use one of string, number, integer, boolean, null, array, object (or a list of them)", "render-error"),
    ("train not a bool", {"messages": [U, dict(A, train="yes")]},
     "messages[1].train", 'must be true or false, got "yes"', "bad-field"),
    ("thought not a string", {"messages": [U, dict(A, thought=3)]},
     "messages[1].thought", "must be a string, got number", "bad-field"),
    ("unclosed think", {"messages": [U, {"role": "assistant", "content": "<think>hmm"}]},
     "messages[1].content", "starts with <think> but has no </think>", "bad-content"),
    ("two thoughts", {"messages": [U, {"role": "assistant", "content": "<think>a</think>b", "reasoning_content": "c"}]},
     "messages[1].content", "has a <think> block and also a reasoning_content; keep one", "bad-field"),
    ("calls on a user turn", {"messages": [dict(U, tool_calls=[{}]), A]},
     "messages[0].tool_calls", "only assistant messages can have tool_calls", "bad-field"),
    # warnings: reported, the conversation is kept
    ("call without tools", {"messages": [U, call(), T, A]},
     "messages[1].tool_calls", "calls get_weather in a conversation that declares no tools: trained as written "
     "(MiniCPM3's template renders calls without tools); add the functions to tools so that the model sees their "
     "schemas", "calls-without-tools"),
    ("respelled markup", {"messages": [U, {"role": "assistant", "content": "<|tool_call_start|>\n```python\n"
                                            "get_weather(city='Paris')\n```\n<|tool_call_end|>\n"}, T, A], "tools": [W]},
     "messages[1].content", "MiniCPM3 markup read as 1 call; it is rendered with a different spelling (first "
     "difference: \"get_weather(city='Paris')\" -> 'get_weather(city=\"Paris\")')", "markup-respelled"),
    ("undeclared argument", {"messages": [U, call(args='{"city": "Paris", "days": 3}'), T, A], "tools": [W]},
     "messages[1].tool_calls[0].function.arguments", "argument 'days' is not a parameter of get_weather (parameters: city)",
     "unknown-argument"),
    ("missing required argument", {"messages": [U, call(args="{}"), T, A], "tools": [W]},
     "messages[1].tool_calls[0].function.arguments", "required argument 'city' of get_weather is missing", "missing-argument"),
    ("dotted function name", {"messages": [U, A], "tools": [tool("api.get")]},
     "tools[0].function.name", "function name 'api.get' contains dots: its stub `def api.get(...)` is not valid Python "
     "and parsers other than minicpm_plugin's may not read calls to it", "dotted-function-name"),
]


@pytest.mark.parametrize(("conversation", "path", "message", "code"), [r[1:] for r in RULES], ids=[r[0] for r in RULES])
def test_rule(conversation: dict[str, Any], path: str, message: str, code: str) -> None:
    result, issues = canonicalize(conversation)
    assert [(i.path, i.message, i.code) for i in issues] == [(path, message, code)]
    if CODES[code][0] == "warning":
        assert result is not None
    else:
        assert result is None


def test_every_row_level_code_is_exercised() -> None:
    file_level = {"unreadable-file", "no-format", "several-formats", "invalid-json", "not-utf8", "not-an-object",
                  "wrong-format", "bad-record", "over-length", "preference-data"}
    assert set(CODES) - file_level == {r[4] for r in RULES}


def test_keyword_argument_names_are_fine() -> None:
    weather = tool("convert", parameters={"type": "object", "properties": {"from": {"type": "string"}, "to": {"type": "string"}}})
    conv = {"messages": [U, call("convert", {"from": "CNY", "to": "USD"}), T, A], "tools": [weather]}
    result, issues = canonicalize(conv)
    assert issues == [] and result is not None


# ---------------------------------------------------------------------------------------------
# file-level reading: locations are JSONL line numbers or JSON-array index + 1


def test_jsonl_problems_are_located_by_line(tmp_path: Path) -> None:
    good = {"messages": [U, A]}
    path = tmp_path / "d.jsonl"
    lines = [json.dumps(good), "", '{"messages": [', "[1, 2]", json.dumps({"messages": [U, {"role": "bot", "content": "x"}]}),
             '{"messages": [], "x": NaN}', json.dumps({"conversations": [{"from": "human", "value": "hi"}]})]
    data = "\ufeff" + "\n".join(lines) + "\n"
    path.write_bytes(data.encode("utf-8") + b'{"messages": "\xff"}\n')
    scanned = scan_file(path, file="d.jsonl", format="openai")  # auto-detection refuses a mixed file
    assert scanned.format == "openai"
    assert [r.line for r in scanned.rows] == [1, 3, 4, 5, 6, 7, 8]
    assert [str(p) for p in scanned.problems] == [
        "d.jsonl:3: invalid JSON: Expecting value (column 15); each line of a JSONL file must hold one whole JSON object [invalid-json]",
        "d.jsonl:4: a record must be a JSON object, got a list [not-an-object]",
        'd.jsonl:5: messages[1].role: unknown role "bot"; use system, user, assistant or tool [unknown-role]',
        "d.jsonl:6: invalid JSON: NaN is not valid JSON; each line of a JSONL file must hold one whole JSON object [invalid-json]",
        "d.jsonl:7: this record does not look like openai; its keys: "
        "conversations [wrong-format]",
        "d.jsonl:8: not UTF-8 text (byte 15) [not-utf8]",
    ]
    assert scanned.skipped_by_reason() == {"invalid-json": 2, "not-an-object": 1, "unknown-role": 1, "wrong-format": 1,
                                           "not-utf8": 1}


def test_json_array_syntax_error_is_located_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "train.json"
    path.write_text('[\n  {"messages": []},\n  {"messages": [}\n]\n', encoding="utf-8")
    scanned = scan_file(path, file="train.json")
    assert scanned.rows == []
    assert [str(p) for p in scanned.problems] == [
        "train.json:3: invalid JSON: Expecting value (column 17) at line 3 of the file; a JSON array file is read as a "
        "whole, so no record can be used until this is fixed [invalid-json]"
    ]


def test_pretty_printed_single_object_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "one.json"
    path.write_text(json.dumps({"messages": [U, A]}, indent=2), encoding="utf-8")
    scanned = scan_file(path)
    assert scanned.problems == [] and len(scanned.rows) == 1 and scanned.rows[0].line == 1
    missing = scan_file(tmp_path / "nope.jsonl", file="nope.jsonl")
    assert [str(p) for p in missing.problems] == ["nope.jsonl: cannot read the file: No such file or directory [unreadable-file]"]
