"""xLAM / APIGen records -> canonical conversations (flat parameters -> JSON schema)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from minicpm_plugin.formats import scan_file
from minicpm_plugin.formats.xlam import type_schema

XLAM_TOOLS = [
    {"name": "live_giveaways_by_type", "description": "Retrieve live giveaways from the GiveawayAPI based on the specified type.",
     "parameters": {"type": {"description": "The type of giveaways to retrieve (e.g., game, loot, beta).", "type": "str",
                             "default": "game"}}},
    {"name": "calculate_grade", "description": "Calculates the weighted average grade.",
     "parameters": {"scores": {"description": "A list of scores.", "type": "List[float]"},
                    "weights": {"description": "A list of weights.", "type": "List[float]"},
                    "round_to": {"description": "Decimals.", "type": "int, optional"},
                    "callback": {"description": "A function.", "type": "Callable[[float], float], optional"}}},
]


def xlam_record() -> dict[str, Any]:
    return {
        "id": 7,
        "query": "Where can I find live giveaways for beta access and games? Also my grade for 90.5 and 1.61 with weights 0.4, 0.6.",
        "answers": json.dumps([
            {"name": "live_giveaways_by_type", "arguments": {"type": "beta"}},
            {"name": "live_giveaways_by_type", "arguments": {"type": "game"}},
            {"name": "calculate_grade", "arguments": {"scores": [90.5, 1.61], "weights": [0.4, 0.6], "round_to": None}},
        ]),
        "tools": json.dumps(XLAM_TOOLS),
    }


def scan(tmp_path: Path, records: list[Any], **kw: Any):
    path = tmp_path / "xlam.json"
    path.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    return scan_file(path, file="xlam.json", **kw)


def test_realistic_xlam_record(tmp_path: Path) -> None:
    scanned = scan(tmp_path, [xlam_record()])
    assert scanned.format == "xlam"
    assert scanned.problems == []
    conv = scanned.rows[0].conversation
    assert conv["messages"][0] == {"role": "user", "content": xlam_record()["query"]}
    calls = conv["messages"][1]["tool_calls"]
    assert conv["messages"][1]["content"] == ""
    assert [c["function"]["name"] for c in calls] == ["live_giveaways_by_type"] * 2 + ["calculate_grade"]
    assert calls[2]["function"]["arguments"] == {"scores": [90.5, 1.61], "weights": [0.4, 0.6], "round_to": None}
    assert conv["tools"] == [
        {"type": "function", "function": {
            "name": "live_giveaways_by_type", "description": XLAM_TOOLS[0]["description"],
            "parameters": {"type": "object", "properties": {"type": {
                "type": "string", "description": "The type of giveaways to retrieve (e.g., game, loot, beta).",
                "default": "game"}}, "required": []}}},
        {"type": "function", "function": {
            "name": "calculate_grade", "description": "Calculates the weighted average grade.",
            "parameters": {"type": "object", "properties": {
                "scores": {"type": "array", "items": {"type": "number"}, "description": "A list of scores."},
                "weights": {"type": "array", "items": {"type": "number"}, "description": "A list of weights."},
                "round_to": {"type": "integer", "description": "Decimals."},
                "callback": {"description": "A function."}}, "required": ["scores", "weights"]}}},
    ]


@pytest.mark.parametrize(("name", "schema", "optional"), [
    ("str", {"type": "string"}, False),
    ("int, optional", {"type": "integer"}, True),
    ("Optional[float]", {"type": "number"}, True),
    ("bool", {"type": "boolean"}, False),
    ("List[int]", {"type": "array", "items": {"type": "integer"}}, False),
    ("List[List[str]]", {"type": "array", "items": {"type": "array", "items": {"type": "string"}}}, False),
    ("list", {"type": "array"}, False),
    ("Tuple[float, float]", {"type": "array", "items": {"type": "number"}}, False),
    ("Dict[str, int]", {"type": "object"}, False),
    ("dict, optional", {"type": "object"}, True),
    ("Union[int, float]", {}, False),
    ("Callable", {}, False),
    ("Any", {}, False),
])
def test_type_names_to_json_schema(name: str, schema: dict[str, Any], optional: bool) -> None:
    assert type_schema(name) == (schema, optional)


def test_broken_xlam_records(tmp_path: Path) -> None:
    bad_json = xlam_record()
    bad_json["answers"] = bad_json["answers"][:-2]
    bad_param = xlam_record()
    bad_param["tools"] = json.dumps([{"name": "f", "description": "d", "parameters": {"x": "str"}}])
    no_answer = xlam_record()
    no_answer["answers"] = "[]"
    hallucinated = xlam_record()
    hallucinated["answers"] = json.dumps([{"name": "live_giveaways", "arguments": {"type": "beta"}}])
    scanned = scan(tmp_path, [bad_json, bad_param, no_answer, hallucinated])
    assert [str(p) for p in scanned.problems] == [
        "xlam.json:1: answers: is a string but not valid JSON (Expecting ',' delimiter) [bad-record]",
        "xlam.json:2: tools[0].parameters.x: parameter 'x' must be an object like {\"type\": \"str\", \"description\": "
        "\"...\"} [bad-tool-schema]",
        "xlam.json:3: messages[1] (from answers): assistant turn has neither content nor tool calls; give it a reply "
        "or calls, or remove the turn [empty-assistant-turn]",
        "xlam.json:4: messages[1].tool_calls[0].function.name (from answers): tool call to 'live_giveaways', which is "
        "not in tools (declared: live_giveaways_by_type, calculate_grade) [unknown-function]",
    ]
