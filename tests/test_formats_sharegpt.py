"""ShareGPT conversations (LLaMA-Factory's tool-call layout) -> canonical conversations."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from minicpm_plugin.formats import scan_file

TOOLS = [{
    "name": "search_flights",
    "description": "Search flights between two airports.",
    "parameters": {"type": "object", "properties": {
        "origin": {"type": "string"}, "destination": {"type": "string"}, "max_price": {"type": ["number", "null"]},
        "passengers": {"type": "object", "properties": {"adults": {"type": "integer"}}}},
        "required": ["origin", "destination"]},
}]


def scan(tmp_path: Path, records: list[Any], **kw: Any):
    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return scan_file(path, file="data.jsonl", **kw)


def llamafactory_record() -> dict[str, Any]:
    return {
        "conversations": [
            {"from": "human", "value": "Flights PEK to SHA under 1200.50, two adults?"},
            {"from": "function_call", "value": json.dumps({"name": "search_flights", "arguments": {
                "origin": "PEK", "destination": "SHA", "max_price": 1200.50, "passengers": {"adults": 2}}})},
            {"from": "observation", "value": '[{"flight": "MU5101", "price": 1180.0}]'},
            {"from": "gpt", "value": "MU5101 costs 1180."},
            {"from": "human", "value": "And without a price cap, PEK to CAN?"},
            {"from": "function_call", "value": json.dumps([
                {"name": "search_flights", "arguments": {"origin": "PEK", "destination": "CAN", "max_price": None}},
                {"name": "search_flights", "arguments": '{"origin": "PEK", "destination": "SZX"}'},
            ])},
            {"from": "observation", "value": "[]"},
            {"from": "observation", "value": "[]"},
            {"from": "gpt", "value": "<think>No results for either.</think>Nothing found."},
        ],
        "system": "You book flights.",
        "tools": json.dumps(TOOLS),
    }


def test_realistic_llamafactory_record(tmp_path: Path) -> None:
    scanned = scan(tmp_path, [llamafactory_record()])
    assert scanned.format == "sharegpt"
    assert scanned.problems == []
    conv = scanned.rows[0].conversation
    assert conv["tools"] == [{"type": "function", "function": TOOLS[0]}]
    msgs = conv["messages"]
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "tool", "assistant", "user", "assistant",
                                         "tool", "tool", "assistant"]
    assert msgs[2] == {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": {
        "name": "search_flights", "arguments": {"origin": "PEK", "destination": "SHA", "max_price": 1200.5,
                                                "passengers": {"adults": 2}}}}]}
    assert [c["function"]["arguments"] for c in msgs[6]["tool_calls"]] == [
        {"origin": "PEK", "destination": "CAN", "max_price": None}, {"origin": "PEK", "destination": "SZX"}]
    assert msgs[9] == {"role": "assistant", "content": "Nothing found.", "thought": "No results for either."}


def test_plain_sharegpt_and_openai_wrapped_tools_list(tmp_path: Path) -> None:
    record = {"conversations": [{"from": "system", "value": "Terse."}, {"from": "human", "value": "hi"},
                                {"from": "gpt", "value": "hello"}],
              "tools": [{"type": "function", "function": TOOLS[0]}]}
    scanned = scan(tmp_path, [record])
    assert scanned.format == "sharegpt" and scanned.problems == []
    assert scanned.rows[0].conversation["messages"][0] == {"role": "system", "content": "Terse."}


def test_broken_sharegpt_records(tmp_path: Path) -> None:
    bad_call = llamafactory_record()
    bad_call["conversations"][1]["value"] = '{"name": "search_flights", "arguments": {"origin": "PEK"'
    bad_role = llamafactory_record()
    bad_role["conversations"][3]["from"] = "bot"
    unknown_fn = llamafactory_record()
    unknown_fn["conversations"][1]["value"] = json.dumps({"name": "book_hotel", "arguments": {}})
    scanned = scan(tmp_path, [bad_call, bad_role, unknown_fn])
    assert [str(p) for p in scanned.problems] == [
        "data.jsonl:1: conversations[1].value: function_call value is not valid JSON (Expecting ',' delimiter); "
        'write {"name": "...", "arguments": {...}} [bad-tool-call]',
        "data.jsonl:2: conversations[3].from: unknown role 'bot'; ShareGPT roles are human, gpt, system, "
        "function_call, observation [unknown-role]",
        "data.jsonl:3: messages[2].tool_calls[0].function.name (from conversations[1]): tool call to 'book_hotel', "
        "which is not in tools (declared: search_flights) [unknown-function]",
    ]
