"""ms-swift agent data: tool_call / tool_response roles, consecutive calls as one parallel turn."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from minicpm_plugin.formats import scan_file

TOOLS = json.dumps([{"type": "function", "function": {"name": "realtime_aqi", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}])
USER = {"role": "user", "content": "AQI?"}


def call(city: str, name: str = "realtime_aqi") -> dict[str, Any]:
    return {"role": "tool_call", "content": json.dumps({"name": name, "arguments": {"city": city}})}


def scan(tmp_path: Path, *records: dict[str, Any]):
    path = tmp_path / "swift.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return scan_file(path, file="swift.jsonl")


def fn(city: str) -> dict[str, Any]:
    return {"type": "function", "function": {"name": "realtime_aqi", "arguments": {"city": city}}}


def test_text_around_the_calls_joins_the_turn_and_plain_records_mix_in(tmp_path: Path) -> None:
    agent = {"tools": TOOLS, "messages": [
        USER, {"role": "assistant", "content": "Checking. "}, call("Beijing"),
        {"role": "tool_call", "content": {"name": "realtime_aqi", "arguments": '{"city": "Wuhan"}'}},
        {"role": "assistant", "content": "Both requested."},
        {"role": "tool_response", "content": "10"}, {"role": "tool", "content": "72"},
        {"role": "assistant", "content": "10 and 72."}]}
    plain = {"messages": [USER, {"role": "assistant", "content": "Which city?"}]}
    scanned = scan(tmp_path, agent, plain)
    assert scanned.format == "swift" and scanned.problems == []
    assert scanned.rows[0].conversation["messages"] == [
        USER, {"role": "assistant", "content": "Checking. Both requested.", "tool_calls": [fn("Beijing"), fn("Wuhan")]},
        {"role": "tool", "content": "10"}, {"role": "tool", "content": "72"},
        {"role": "assistant", "content": "10 and 72."}]
    assert scanned.rows[1].conversation["messages"] == plain["messages"]


def test_problems_point_at_the_source_messages(tmp_path: Path) -> None:
    unknown = {"tools": TOOLS, "messages": [USER, call("Beijing"), call("Rome", "weather"),
                                            {"role": "tool_response", "content": "1"},
                                            {"role": "tool_response", "content": "2"},
                                            {"role": "assistant", "content": "ok"}]}
    not_json = {"tools": TOOLS, "messages": [USER, {"role": "tool_call", "content": "realtime_aqi(city='Rome')"}]}
    no_name = {"tools": TOOLS, "messages": [USER, {"role": "tool_call", "content": "[]"}]}
    bad_text = {"tools": TOOLS, "messages": [USER, {"role": "assistant", "content": ["x"]}, call("Rome")]}
    scanned = scan(tmp_path, unknown, not_json, no_name, bad_text)
    assert [str(p) for p in scanned.problems] == [
        "swift.jsonl:1: messages[1].tool_calls[1].function.name (from messages[1..2]): tool call to 'weather', which is "
        "not in tools (declared: realtime_aqi) [unknown-function]",
        "swift.jsonl:2: messages[1].content: a tool_call message's content is not valid JSON (Expecting value); write "
        '{"name": "...", "arguments": {...}} [bad-tool-call]',
        'swift.jsonl:3: messages[1].content: a tool_call message must hold {"name": "...", "arguments": {...}} '
        "[bad-tool-call]",
        "swift.jsonl:4: messages[1].content: an assistant message before or after tool_call messages must have string "
        "content [bad-content]",
    ]


def test_tool_results_that_are_json_values(tmp_path: Path) -> None:
    record = {"tools": TOOLS, "messages": [USER, call("Beijing"),
                                           {"role": "tool_response", "content": {"aqi": 10, "城市": "北京"}},
                                           {"role": "assistant", "content": "10."}]}
    scanned = scan(tmp_path, record)
    assert scanned.problems == []
    assert scanned.rows[0].conversation["messages"][2] == {"role": "tool", "content": '{"aqi": 10, "城市": "北京"}'}
