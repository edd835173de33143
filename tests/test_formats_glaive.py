"""Glaive function-calling v2 raw text -> canonical conversations."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from minicpm_plugin.formats import scan_file

FUNCTIONS = [
    {"name": "calculate_median", "description": "Calculate the median of a list of numbers",
     "parameters": {"type": "object", "properties": {"numbers": {"type": "array", "items": {"type": "number"},
                                                                  "description": "The list of numbers"}},
                    "required": ["numbers"]}},
    {"name": "get_news", "description": "Get news headlines",
     "parameters": {"type": "object", "properties": {"country": {"type": "string"}}, "required": ["country"]}},
]


def glaive_record() -> dict[str, Any]:
    system = ("SYSTEM: You are a helpful assistant with access to the following functions. Use them if required -\n"
              + "\n\n".join(json.dumps(f, indent=4) for f in FUNCTIONS) + "\n")
    chat = (
        "USER: Hi, what is the median of 5, 2.25, 9 and 1?\n\n\n"
        "ASSISTANT: <functioncall> {\"name\": \"calculate_median\", \"arguments\": '{\"numbers\": [5, 2.25, 9, 1]}'} "
        "<|endoftext|>\n\n\n"
        "FUNCTION RESPONSE: {\"median\": 3.625}\n\n\n"
        "ASSISTANT: The median of your numbers is 3.625. <|endoftext|>\n\n\n"
        "USER: Thanks! Any news from France?\n\n\n"
        "ASSISTANT: <functioncall> {\"name\": \"get_news\", \"arguments\": {\"country\": \"France\"}} <|endoftext|>\n\n\n"
        "FUNCTION RESPONSE: {\"headlines\": [\"Tour de France starts\"]}\n\n\n"
        "ASSISTANT: The top headline: \"Tour de France starts\". <|endoftext|>\n"
    )
    return {"system": system, "chat": chat}


def scan(tmp_path: Path, records: list[Any], **kw: Any):
    path = tmp_path / "glaive.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return scan_file(path, file="glaive.jsonl", **kw)


def test_realistic_glaive_record(tmp_path: Path) -> None:
    scanned = scan(tmp_path, [glaive_record()])
    assert scanned.format == "glaive"
    assert scanned.problems == []
    conv = scanned.rows[0].conversation
    assert conv["tools"] == [{"type": "function", "function": f} for f in FUNCTIONS]
    assert conv["messages"] == [
        {"role": "system", "content": "You are a helpful assistant with access to the following functions. Use them if required -"},
        {"role": "user", "content": "Hi, what is the median of 5, 2.25, 9 and 1?"},
        {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": {
            "name": "calculate_median", "arguments": {"numbers": [5, 2.25, 9, 1]}}}]},
        {"role": "tool", "content": '{"median": 3.625}'},
        {"role": "assistant", "content": "The median of your numbers is 3.625."},
        {"role": "user", "content": "Thanks! Any news from France?"},
        {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": {
            "name": "get_news", "arguments": {"country": "France"}}}]},
        {"role": "tool", "content": '{"headlines": ["Tour de France starts"]}'},
        {"role": "assistant", "content": 'The top headline: "Tour de France starts".'},
    ]


def test_glaive_without_functions(tmp_path: Path) -> None:
    record = {"system": "SYSTEM: You are a helpful assistant, with no access to external functions.\n",
              "chat": "USER: Tell me a joke.\n\n\nASSISTANT: Why did the scarecrow win? He was outstanding. <|endoftext|>\n"}
    scanned = scan(tmp_path, [record])
    assert scanned.problems == []
    assert scanned.rows[0].conversation == {"messages": [
        {"role": "system", "content": "You are a helpful assistant, with no access to external functions."},
        {"role": "user", "content": "Tell me a joke."},
        {"role": "assistant", "content": "Why did the scarecrow win? He was outstanding."}], "tools": None}


def test_broken_glaive_records(tmp_path: Path) -> None:
    bad_call = glaive_record()
    bad_call["chat"] = bad_call["chat"].replace('<functioncall> {"name": "calculate_median"', "<functioncall> {name: calculate_median")
    bad_args = glaive_record()
    bad_args["chat"] = bad_args["chat"].replace("'{\"numbers\": [5, 2.25, 9, 1]}'", "'{\"numbers\": [5, 2.25, 9, 1}'")
    orphan = {"system": "SYSTEM: You are helpful.", "chat": "USER: hi\n\n\nFUNCTION RESPONSE: {}\n\n\nASSISTANT: hello <|endoftext|>"}
    scanned = scan(tmp_path, [bad_call, bad_args, orphan])
    assert [str(p) for p in scanned.problems] == [
        "glaive.jsonl:1: chat (turn 2, ASSISTANT): <functioncall> must be followed by {\"name\": \"...\", \"arguments\": ...}, "
        "got '{name: calculate_median, \"arguments\": \\'{\"numbers\": [5, 2.25, 9, 1]}\\'}' [bad-tool-call]",
        "glaive.jsonl:2: messages[2].tool_calls[0].function.arguments (from chat (turn 2, ASSISTANT)): arguments are not "
        "valid JSON (Expecting ',' delimiter); write a JSON object such as {\"city\": \"Paris\"} [bad-arguments]",
        "glaive.jsonl:3: messages[2] (from chat (turn 2, FUNCTION RESPONSE)): tool result with no preceding call: a tool "
        "message must follow an assistant turn with tool_calls (one result per call) [orphan-tool-result]",
    ]


def test_glaive_on_one_line(tmp_path: Path) -> None:
    one_line = glaive_record()
    one_line["system"] = one_line["system"].replace("\n", " ")
    one_line["chat"] = " ".join(one_line["chat"].split("\n\n\n")).strip()
    assert "\n" not in one_line["chat"]
    scanned = scan(tmp_path, [one_line, glaive_record()])
    assert scanned.problems == []
    assert scanned.rows[0].conversation == scanned.rows[1].conversation


def test_a_marker_inside_a_multi_line_turn_is_text(tmp_path: Path) -> None:
    record = {"system": "SYSTEM: You are helpful.",
              "chat": "USER: What does the label ASSISTANT: mean in a transcript?\n\n\n"
                      "ASSISTANT: It marks who speaks. <|endoftext|>\n"}
    scanned = scan(tmp_path, [record])
    assert scanned.problems == []
    assert scanned.rows[0].conversation["messages"][1:] == [
        {"role": "user", "content": "What does the label ASSISTANT: mean in a transcript?"},
        {"role": "assistant", "content": "It marks who speaks."}]
