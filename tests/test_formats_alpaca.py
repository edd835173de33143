"""Alpaca (instruction/input/output) and query/response records, with system and history."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from minicpm_plugin.formats import scan_file


def scan(tmp_path: Path, *records: Any):
    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return scan_file(path, file="data.jsonl")


def test_alpaca_history_as_text_and_tools_column(tmp_path: Path) -> None:
    tools = json.dumps([{"name": "lookup", "description": "Look a word up.", "parameters": {
        "type": "object", "properties": {"word": {"type": "string"}}, "required": ["word"]}}])
    swift_history = {"instruction": "And 'chien'?", "output": "dog", "history": "[('chat', 'cat')]", "tools": tools}
    json_history = {"instruction": "And 'chien'?", "input": None, "output": "dog", "history": '[["chat", "cat"]]',
                    "system": ""}
    scanned = scan(tmp_path, swift_history, json_history)
    assert scanned.format == "alpaca" and scanned.problems == []
    first, second = (r.conversation for r in scanned.rows)
    assert first["messages"] == second["messages"] == [
        {"role": "user", "content": "chat"}, {"role": "assistant", "content": "cat"},
        {"role": "user", "content": "And 'chien'?"}, {"role": "assistant", "content": "dog"}]
    assert first["tools"][0]["function"]["name"] == "lookup" and second["tools"] is None


def test_alpaca_and_query_response_problems(tmp_path: Path) -> None:
    scanned = scan(tmp_path, {"instruction": 3, "output": "x"}, {"instruction": "a", "output": ["x", "y"]},
                   {"instruction": "a", "output": "b", "history": [["q"]]},
                   {"instruction": "a", "output": "b", "history": "[[q, a]]"},
                   {"instruction": "a", "output": "b", "history": {"q": "a"}})
    assert [str(p) for p in scanned.problems] == [
        "data.jsonl:1: instruction: must be a string, got int [bad-content]",
        "data.jsonl:2: output: must be a string, got list [bad-content]",
        "data.jsonl:3: history[0]: must be a pair of strings [query, answer] [bad-content]",
        "data.jsonl:4: history: history is neither JSON nor a Python literal (Expecting value) [bad-content]",
        "data.jsonl:5: history: must be a list of [query, answer] pairs [bad-content]",
    ]
    scanned = scan(tmp_path, {"query": "hi", "response": ["a", "b"]}, {"query": "hi", "response": "yo"})
    assert scanned.format == "query_response"
    assert [str(p) for p in scanned.problems] == ["data.jsonl:1: response: must be a string, got list [bad-content]"]


def test_llamafactory_alpaca_preference_rows_are_refused(tmp_path: Path) -> None:
    # LLaMA-Factory's ranking alpaca layout (instruction, input, chosen, rejected): no output, so it is preference data
    scanned = scan(tmp_path, {"instruction": "2+2?", "input": "", "chosen": "4", "rejected": "5"})
    assert scanned.format == "preference"
    assert [p.code for p in scanned.problems] == ["preference-data"]
