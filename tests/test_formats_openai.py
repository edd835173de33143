"""OpenAI chat messages and the seed (finetune.py) layout -> canonical conversations."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from minicpm_plugin.formats import scan_file

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]},
                           "lat": {"type": "number"}, "filters": {"type": "object"}},
            "required": ["city"],
        },
    },
}


def write_jsonl(tmp_path: Path, records: list[Any], name: str = "data.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def scan(tmp_path: Path, records: list[Any], **kw: Any):
    path = write_jsonl(tmp_path, records)
    return scan_file(path, file="data.jsonl", **kw)


def test_realistic_openai_tool_conversation(tmp_path: Path) -> None:
    # Arguments as an OpenAI JSON string with a float, a null and a nested value; the thought as
    # reasoning_content; a tool result with its call id.
    record = {
        "messages": [
            {"role": "system", "content": "You are a weather bot."},
            {"role": "user", "content": "Weather at 1.61 latitude in Paris?"},
            {"role": "assistant", "content": None, "reasoning_content": "Need the weather tool.",
             "tool_calls": [{"id": "call_1", "type": "function", "function": {
                 "name": "get_weather",
                 "arguments": '{"city": "Paris", "lat": 1.61, "unit": null, "filters": {"days": [1, 2.50]}}'}}]},
            {"role": "tool", "tool_call_id": "call_1", "name": "get_weather", "content": '{"temp": 21.5}'},
            {"role": "assistant", "content": "It is 21.5°C in Paris."},
        ],
        "tools": [WEATHER],
    }
    scanned = scan(tmp_path, [record])
    assert scanned.format == "openai"
    assert scanned.problems == []
    conv = scanned.rows[0].conversation
    assert conv == {
        "messages": [
            {"role": "system", "content": "You are a weather bot."},
            {"role": "user", "content": "Weather at 1.61 latitude in Paris?"},
            {"role": "assistant", "content": "", "thought": "Need the weather tool.", "tool_calls": [
                {"type": "function", "function": {"name": "get_weather", "arguments": {
                    "city": "Paris", "lat": 1.61, "unit": None, "filters": {"days": [1, 2.5]}}}, "id": "call_1"}]},
            {"role": "tool", "content": '{"temp": 21.5}', "tool_call_id": "call_1", "name": "get_weather"},
            {"role": "assistant", "content": "It is 21.5°C in Paris."},
        ],
        "tools": [WEATHER],
    }
    # the value is the float written in the file, not a neighbouring double
    assert json.dumps(conv["messages"][2]["tool_calls"][0]["function"]["arguments"]["lat"]) == "1.61"


def test_legacy_function_call_functions_and_function_role(tmp_path: Path) -> None:
    record = {
        "functions": [WEATHER["function"]],
        "messages": [
            {"role": "developer", "content": "Be brief."},
            {"role": "user", "content": "Weather in Rome?"},
            {"role": "assistant", "content": None, "function_call": {"name": "get_weather", "arguments": '{"city": "Rome"}'}},
            {"role": "function", "name": "get_weather", "content": "sunny"},
            {"role": "assistant", "content": "Sunny."},
        ],
    }
    scanned = scan(tmp_path, [record])
    assert scanned.problems == []
    msgs = scanned.rows[0].conversation["messages"]
    assert msgs[0] == {"role": "system", "content": "Be brief."}
    assert msgs[2]["tool_calls"] == [{"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Rome"}}}]
    assert msgs[3] == {"role": "tool", "content": "sunny", "name": "get_weather"}
    assert scanned.rows[0].conversation["tools"] == [WEATHER]


def test_think_block_arguments_object_content_parts_and_weight(tmp_path: Path) -> None:
    record = {
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Weather "}, {"type": "text", "text": "in Oslo?"}]},
            {"role": "assistant", "content": "<think>\nOslo; call the tool.\n</think>\n\nChecking.",
             "tool_calls": [{"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}]},
            {"role": "tool", "content": "snow"},
            {"role": "assistant", "content": "Snow.", "weight": 0},
            {"role": "user", "content": "Thanks"},
            {"role": "assistant", "content": "<think></think>You're welcome."},
        ],
        "tools": json.dumps([WEATHER]),  # tools stored as a JSON string (an Arrow-safe layout)
    }
    scanned = scan(tmp_path, [record])
    assert scanned.problems == []
    msgs = scanned.rows[0].conversation["messages"]
    assert msgs[0]["content"] == "Weather in Oslo?"
    assert msgs[1]["thought"] == "Oslo; call the tool." and msgs[1]["content"] == "Checking."
    assert msgs[1]["tool_calls"][0]["function"]["arguments"] == {"city": "Oslo"}
    assert msgs[3] == {"role": "assistant", "content": "Snow.", "train": False}
    assert msgs[5] == {"role": "assistant", "content": "You're welcome."}  # an empty think block is no thought
    assert scanned.rows[0].conversation["tools"] == [WEATHER]


def test_broken_openai_record(tmp_path: Path) -> None:
    record = {
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": "", "tool_calls": [
                {"type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"'}}]},
        ],
        "tools": [WEATHER],
    }
    scanned = scan(tmp_path, [record])
    assert [str(p) for p in scanned.problems] == [
        "data.jsonl:1: messages[1].tool_calls[0].function.arguments: arguments are not valid JSON (Expecting ',' "
        "delimiter); write a JSON object such as {\"city\": \"Paris\"} [bad-arguments]"
    ]
    assert scanned.rows[0].conversation is None


def test_seed_array_file_is_detected_as_seed(tmp_path: Path) -> None:
    records = [
        {"messages": [{"role": "user", "content": "春节是哪天？"}, {"role": "assistant", "content": "农历正月初一。"}]},
        {"messages": [{"role": "system", "content": "简洁"}, {"role": "user", "content": "1+1?"},
                      {"role": "assistant", "content": "2"}]},
    ]
    path = tmp_path / "train.json"
    path.write_text(json.dumps(records, ensure_ascii=False, indent=2), encoding="utf-8")
    scanned = scan_file(path, file="train.json")
    assert scanned.format == "seed"
    assert [r.line for r in scanned.rows] == [1, 2]  # record index + 1
    assert [r.conversation for r in scanned.rows] == [{"messages": r["messages"], "tools": None} for r in records]
    # the same records as JSONL are seed too
    assert scan(tmp_path, records).format == "seed"


def test_broken_seed_array_record_is_located_by_index(tmp_path: Path) -> None:
    records = [
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]},
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": 42}]},
    ]
    path = tmp_path / "train.json"
    path.write_text(json.dumps(records, indent=2), encoding="utf-8")
    scanned = scan_file(path, file="train.json")
    assert scanned.format == "seed"
    assert [str(p) for p in scanned.problems] == [
        "train.json:2: messages[1].content: must be a string, got number [bad-content]"
    ]


def test_real_sample_files_are_clean() -> None:
    root = Path(__file__).resolve().parent.parent / "examples" / "data"
    seed = scan_file(root / "chat_seed.json")
    tools = scan_file(root / "tool_calls.jsonl")
    assert (seed.format, seed.problems, len(seed.rows)) == ("seed", [], 40)
    assert (tools.format, tools.problems, len(tools.rows)) == ("openai", [], 60)
    assert tools.stats()["calls"] > 60
