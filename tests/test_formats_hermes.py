"""Hermes function calling (<tools>, <tool_call>, <tool_response>) -> canonical conversations."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from minicpm_plugin.formats import scan_file

STOCK = {"type": "function", "function": {
    "name": "get_stock_price", "description": "Get the current stock price",
    "parameters": {"type": "object", "properties": {"symbol": {"type": "string"}, "exchange": {"type": "string"}},
                   "required": ["symbol"]}}}
NEWS = {"type": "function", "function": {
    "name": "get_news", "description": "Latest news for a company",
    "parameters": {"type": "object", "properties": {"company": {"type": "string"}, "limit": {"type": "integer"}},
                   "required": ["company"]}}}

HERMES_SYSTEM = (
    "You are a function calling AI model. You are provided with function signatures within <tools></tools> XML tags. "
    "You may call one or more functions to assist with the user query. Don't make assumptions about what values to "
    "plug into functions.\n<tools>\n{tools}\n</tools>\nFor each function call return a json object with function name "
    "and arguments within <tool_call></tool_call> XML tags as follows:\n<tool_call>\n{{'arguments': <args-dict>, "
    "'name': <function-name>}}\n</tool_call>"
)


def hermes_record(python_repr: bool = True) -> dict[str, Any]:
    tools = repr([STOCK, NEWS]) if python_repr else json.dumps([STOCK, NEWS])
    call1 = repr({"arguments": {"symbol": "AAPL", "exchange": None}, "name": "get_stock_price"}) if python_repr \
        else json.dumps({"name": "get_stock_price", "arguments": {"symbol": "AAPL", "exchange": None}})
    call2 = json.dumps({"name": "get_news", "arguments": {"company": "Apple", "limit": 3}})
    return {
        "id": "abc",
        "conversations": [
            {"from": "system", "value": HERMES_SYSTEM.format(tools=tools)},
            {"from": "human", "value": "What's Apple's stock price, and any news?"},
            {"from": "gpt", "value": f"<tool_call>\n{call1}\n</tool_call>\n<tool_call>\n{call2}\n</tool_call>"},
            {"from": "tool", "value": "<tool_response>\n{'name': 'get_stock_price', 'content': {'price': 189.84}}\n"
                                      "</tool_response>\n<tool_response>\n{'name': 'get_news', 'content': []}\n</tool_response>"},
            {"from": "gpt", "value": "Apple (AAPL) trades at $189.84; no news today."},
        ],
        "category": "Finance",
    }


def scan(tmp_path: Path, records: list[Any], **kw: Any):
    path = tmp_path / "hermes.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return scan_file(path, file="hermes.jsonl", **kw)


def expected_messages() -> list[dict[str, Any]]:
    return [
        {"role": "user", "content": "What's Apple's stock price, and any news?"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"type": "function", "function": {"name": "get_stock_price", "arguments": {"symbol": "AAPL", "exchange": None}}},
            {"type": "function", "function": {"name": "get_news", "arguments": {"company": "Apple", "limit": 3}}}]},
        {"role": "tool", "content": "{'name': 'get_stock_price', 'content': {'price': 189.84}}"},
        {"role": "tool", "content": "{'name': 'get_news', 'content': []}"},
        {"role": "assistant", "content": "Apple (AAPL) trades at $189.84; no news today."},
    ]


def test_realistic_hermes_record_python_repr(tmp_path: Path) -> None:
    # A plain chat in the same file is read too (hermes reads it, nothing in it is Hermes-specific).
    plain = {"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}]}
    scanned = scan(tmp_path, [hermes_record(), plain])
    assert scanned.format == "hermes"
    assert scanned.problems == []
    conv = scanned.rows[0].conversation
    # the Hermes instruction prompt is replaced by MiniCPM3's own functions block
    assert conv == {"messages": expected_messages(), "tools": [STOCK, NEWS]}
    assert scanned.rows[1].conversation["messages"][1] == {"role": "assistant", "content": "hello"}


def test_hermes_json_in_messages_layout(tmp_path: Path) -> None:
    rec = hermes_record(python_repr=False)
    rec = {"messages": [{"role": {"system": "system", "human": "user", "gpt": "assistant", "tool": "tool"}[t["from"]],
                         "content": t["value"]} for t in rec["conversations"]]}
    scanned = scan(tmp_path, [rec])
    assert scanned.format == "hermes"
    assert scanned.problems == []
    assert scanned.rows[0].conversation == {"messages": expected_messages(), "tools": [STOCK, NEWS]}


def test_broken_hermes_records(tmp_path: Path) -> None:
    bad_call = hermes_record()
    bad_call["conversations"][2]["value"] = "<tool_call>\n{'name': 'get_stock_price', 'arguments': {'symbol': 'AAPL'\n</tool_call>"
    bad_tools = hermes_record()
    bad_tools["conversations"][0]["value"] = "<tools> [{'type': 'function', 'function': </tools>"
    extra_result = hermes_record()
    extra_result["conversations"][3]["value"] += "\n<tool_response>\n{}\n</tool_response>"
    scanned = scan(tmp_path, [bad_call, bad_tools, extra_result])
    got = [str(p) for p in scanned.problems]
    assert got[0].startswith("hermes.jsonl:1: conversations[2].value: a <tool_call> block is neither JSON nor a Python "
                             "literal (") and got[0].endswith(") [bad-tool-call]")
    assert got[1] == ("hermes.jsonl:2: conversations[0].value: the <tools> block is not a JSON (or Python) list of "
                      "function schemas [bad-tools]")
    assert got[2] == ("hermes.jsonl:3: messages[4] (from conversations[3]): tool result with no preceding call: a tool "
                      "message must follow an assistant turn with tool_calls (one result per call) [orphan-tool-result]")
    assert len(got) == 3


def test_openai_record_mentioning_hermes_tags_stays_openai(tmp_path: Path) -> None:
    # Structured tool calls are never reinterpreted from text, even if some text mentions <tool_call>.
    record = {"messages": [
        {"role": "user", "content": "What does <tool_call> mean in Hermes?"},
        {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": {"name": "get_stock_price",
                                                                                              "arguments": "{\"symbol\": \"X\"}"}}]},
        {"role": "tool", "content": "1"},
        {"role": "assistant", "content": "It marks a call."}], "tools": [STOCK]}
    plain = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "<tool_call> is a tag", "train": False},
                          {"role": "user", "content": "ok"}, {"role": "assistant", "content": "ok"}]}
    scanned = scan(tmp_path, [record, plain])
    assert scanned.format == "openai"
    assert scanned.problems == []
    assert scanned.rows[0].conversation["messages"][1]["tool_calls"][0]["function"]["arguments"] == {"symbol": "X"}
