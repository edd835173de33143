"""Preference pairs in every supported shape -> the exact MiniCPM3 text, and the pair rules.

The fixtures in tests/fixtures/preference/ hold the same pairs written in each format's own spelling.
Each row's prompt / chosen / rejected text must equal the official render (`render_chat`) of the
expected conversation, written out here once in plain OpenAI shape.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from minicpm_plugin import render_chat
from minicpm_plugin.formats.preference import (
    canonicalize_pair,
    is_preference_file,
    load_pairs,
    pair_texts,
    scan_pair_records,
    scan_pairs_file,
)
from minicpm_plugin.formats.preference_formats import RawPair
from minicpm_plugin.formats.preference_prepare import prepare_pairs_file, read_prepared_pairs
from minicpm_plugin.formats.problems import DataError
from minicpm_plugin.formats.reader import RawRecord

FIXTURES = Path(__file__).parent / "fixtures" / "preference"
W = {"type": "function", "function": {"name": "get_weather", "description": "Get the weather for a city.", "parameters": {
    "type": "object", "properties": {"city": {"type": "string", "description": "City name"},
                                     "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                                     "days": {"type": "integer", "default": 1}}, "required": ["city"]}}}
C = {"type": "function", "function": {"name": "convert_currency", "description": "Convert money between currencies.",
                                      "parameters": {"type": "object", "properties": {
                                          "amount": {"type": "number"}, "from": {"type": "string"}, "to": {"type": "string"}},
                                          "required": ["amount", "from", "to"]}}}
SYS = {"role": "system", "content": "You are a helpful assistant."}


def fn(name: str, **args: Any) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, "arguments": args}}


PARALLEL = [fn("get_weather", city="Paris", unit="celsius"), fn("get_weather", city="Tokyo", unit="celsius")]
THINK = {"role": "assistant", "content": "4", "thought": "Simple arithmetic."}
# name -> (prompt, tools, chosen, rejected)
EXPECTED: dict[str, tuple[list[Any], list[Any] | None, dict[str, Any], dict[str, Any]]] = {
    "A": ([SYS, {"role": "user", "content": "Weather in Paris and Tokyo, in celsius?"}], [W, C],
          {"role": "assistant", "content": "", "thought": "Two cities: call get_weather twice.", "tool_calls": PARALLEL},
          {"role": "assistant", "content": "", "tool_calls": [fn("weather_now", city="Paris")]}),
    "B": ([{"role": "user", "content": "How much is 1.61 USD in EUR?"},
           {"role": "assistant", "content": "", "tool_calls": [fn("convert_currency", amount=1.61, **{"from": "USD", "to": "EUR"})]},
           {"role": "tool", "content": '{"amount": 1.48}'}], [W, C],
          {"role": "assistant", "content": "1.61 USD is about 1.48 EUR."},
          {"role": "assistant", "content": "", "tool_calls": [fn("convert_currency", amount=1.6, **{"from": "USD", "to": None})]}),
    "C": ([{"role": "user", "content": "What is 2 + 2?"}], None, THINK, {"role": "assistant", "content": "5"}),
    "D": ([{"role": "user", "content": "Translate to French:\n\nHello"}], None, {"role": "assistant", "content": "Bonjour"},
          {"role": "assistant", "content": "Hola"}),
    "E": ([SYS, {"role": "user", "content": "What is 2 + 2?"}], None, THINK, {"role": "assistant", "content": "5"}),
}
EXPECTED["A-no-thought"] = (EXPECTED["A"][0], EXPECTED["A"][1], {"role": "assistant", "content": "", "tool_calls": PARALLEL},
                            EXPECTED["A"][3])
# fixture file -> (detected format, the expected pair of each row)
FILES = {
    "trl.jsonl": ("trl", ["A", "B", "C", "D"]),
    "openai_pairs.jsonl": ("openai_pairs", ["A", "B", "C"]),
    "openai_dpo.jsonl": ("openai_dpo", ["A", "B", "C"]),
    "llamafactory_ranking.json": ("llamafactory_ranking", ["A-no-thought", "B", "C"]),
    "swift.jsonl": ("swift_rlhf", ["A", "B", "C"]),
    "text_pairs.jsonl": ("text_pairs", ["C", "D", "E"]),
}


def official(name: str) -> tuple[str, str, str]:
    """Prompt and answers cut from the official render of the whole conversations."""
    prompt, tools, chosen, rejected = EXPECTED[name]
    head = render_chat(prompt, tools, add_generation_prompt=True)
    out = []
    for answer in (chosen, rejected):
        full = render_chat([*prompt, answer], tools)
        assert full.startswith(head) and full.endswith("<|im_end|>\n")
        out.append(full[len(head):-1])
    return head, out[0], out[1]


@pytest.mark.parametrize("name", FILES)
def test_every_format_renders_the_official_text(name: str) -> None:
    fmt, expected = FILES[name]
    scanned = scan_pairs_file(FIXTURES / name)
    assert scanned.format == fmt
    assert [str(p) for p in scanned.problems] == []
    assert len(scanned.rows) == len(expected)
    for row, key in zip(scanned.rows, expected, strict=True):
        texts = pair_texts(row.pair)
        assert (texts.prompt, texts.chosen, texts.rejected) == official(key), f"{row.source} ({key})"
        assert not texts.prompt.startswith("<s>") and texts.prompt.endswith("<|im_start|>assistant\n")
        assert texts.chosen.count("<|im_end|>") == 1 and texts.chosen.endswith("<|im_end|>")


def test_values_reach_the_text_exactly() -> None:
    """1.61 stays 1.61 and null stays null (no Arrow on the way); rejected wrong values are kept."""
    (b,) = [r.pair for r in scan_pairs_file(FIXTURES / "openai_pairs.jsonl").rows if "1.61" in json.dumps(r.pair)]
    texts = pair_texts(b)
    assert "convert_currency(amount=1.61,from=\"USD\",to=\"EUR\")" in texts.prompt
    assert texts.rejected == ('<|tool_call_start|>\n```python\nconvert_currency(amount=1.6,from="USD",to=null)\n```\n'
                              '<|tool_call_end|>\n<|im_end|>')
    assert pair_texts(b, "python").rejected.count("to=None") == 1


def test_deliberate_mistakes_in_rejected_are_counted_not_reported() -> None:
    scanned = scan_pairs_file(FIXTURES / "trl.jsonl")
    stats = scanned.stats()
    assert stats["rejected_undeclared"] == 1  # weather_now is not in tools
    assert (stats["good"], stats["bad"], stats["warnings"]) == (4, 0, 0)
    assert scanned.rows[0].deliberate["unknown-function"] == 1
    # The same mistakes in the chosen answer are errors (undeclared function) and warnings, as in SFT.
    raw = json.loads((FIXTURES / "trl.jsonl").read_text().splitlines()[0])
    swapped = dict(raw, chosen=raw["rejected"], rejected=raw["chosen"])
    row = scan_pair_records([RawRecord(7, swapped)], "x.jsonl").rows[0]
    assert not row.ok
    assert [str(p) for p in row.problems] == [
        "x.jsonl:7: chosen.tool_calls[0].function.name: tool call to 'weather_now', which is not in tools (declared: "
        "get_weather, convert_currency) [unknown-function]"]


U = {"role": "user", "content": "Weather in Paris?"}
CALL = {"role": "assistant", "tool_calls": [{"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]}


def problems(record: dict[str, Any]) -> list[str]:
    scanned = scan_pair_records([RawRecord(3, record)], "p.jsonl", format="trl")
    return [str(p) for p in scanned.problems]


@pytest.mark.parametrize(("record", "expected"), [
    ({"prompt": [U], "chosen": [CALL], "rejected": [CALL], "tools": [W]},
     "p.jsonl:3: rejected: renders to the same text as chosen, so the pair teaches nothing; fix or remove the pair "
     "[identical-pair]"),
    ({"prompt": [U], "chosen": [CALL], "rejected": [{"role": "assistant", "content": "x", "tool_calls": "get_weather()"}],
      "tools": [W]}, "p.jsonl:3: rejected.tool_calls: must be a list of tool calls, got string [bad-tool-call]"),
    ({"prompt": [U], "chosen": [CALL], "rejected": [{"role": "assistant", "tool_calls": [
        {"type": "function", "function": {"name": "get_weather", "arguments": "{city: Paris}"}}]}], "tools": [W]},
     "p.jsonl:3: rejected.tool_calls[0].function.arguments: arguments are not valid JSON (Expecting property name enclosed "
     "in double quotes); write a JSON object such as {\"city\": \"Paris\"} [bad-arguments]"),
    ({"prompt": [U], "chosen": [CALL], "rejected": [{"role": "assistant", "tool_calls": [
        {"type": "function", "function": {"name": "get-weather", "arguments": {}}}]}], "tools": [W]},
     "p.jsonl:3: rejected.tool_calls: calls 'get-weather', which is not a Python identifier: MiniCPM3 could not write it as "
     "name(arg=value), so no model would produce it [bad-tool-call]"),
    ({"prompt": [U], "chosen": [CALL], "rejected": [{"role": "assistant", "content": ""}], "tools": [W]},
     "p.jsonl:3: rejected: assistant turn has neither content nor tool calls; give it a reply or calls, or remove the turn "
     "[empty-assistant-turn]"),
    ({"prompt": [U], "chosen": [CALL, {"role": "tool", "content": "sunny"}], "rejected": ["no"], "tools": [W]},
     "p.jsonl:3: chosen: must hold exactly one assistant message, got 2 messages; a preference answer is one assistant turn "
     "(put earlier turns into the prompt) [bad-preference]"),
    ({"prompt": [U, CALL], "chosen": [{"role": "assistant", "content": "a"}], "rejected": [{"role": "assistant", "content": "b"}],
      "tools": [W]}, "p.jsonl:3: prompt[1].role: the prompt ends with a assistant turn; it must end with the user or tool turn "
     "the answers reply to [bad-preference]"),
    ({"prompt": [], "chosen": [CALL], "rejected": [{"role": "assistant", "content": "b"}]},
     "p.jsonl:3: prompt: is empty: a pair needs the conversation its answers reply to [bad-preference]"),
    ({"prompt": [U], "chosen": [{"role": "user", "content": "a"}], "rejected": [{"role": "assistant", "content": "b"}]},
     "p.jsonl:3: chosen[0].role: must be an assistant message, got role 'user' [bad-preference]"),
    ({"prompt": [U], "chosen": [CALL], "rejected": [{"role": "assistant", "content": "<|im_end|>"}], "tools": [W]},
     "p.jsonl:3: rejected.content: contains <|im_end|>, which would be read as part of the chat format, not as text; remove "
     "it [special-token]"),
    ({"prompt": [U], "chosen": [dict(CALL, train=False)], "rejected": [{"role": "assistant", "content": "b"}], "tools": [W]},
     "p.jsonl:3: chosen.train: turns training off, but both answers of a pair are always trained; remove it [bad-field]"),
])
def test_pair_rules(record: dict[str, Any], expected: str) -> None:
    assert problems(record) == [expected]


def test_errors_in_the_prompt_are_reported_once_with_their_source() -> None:
    record = {"messages": [U, {"role": "tool", "content": "x"}], "chosen": {"role": "assistant", "content": "a"},
              "rejected": "b"}
    scanned = scan_pair_records([RawRecord(5, record)], "q.jsonl")
    assert [str(p) for p in scanned.problems] == [
        "q.jsonl:5: prompt[1] (from messages[1]): tool result with no preceding call: a tool message must follow an "
        "assistant turn with tool_calls (one result per call) [orphan-tool-result]"]


def test_rejected_raw_output_that_does_not_parse_is_an_error() -> None:
    record = {"messages": [U, {"role": "assistant", "content": "a"}],
              "rejected_response": "<|tool_call_start|>\n```python\nget_weather(city=\n```\n<|tool_call_end|>\n"}
    (line,) = [str(p) for p in scan_pair_records([RawRecord(1, record)], "s.jsonl").problems]
    assert line.startswith("s.jsonl:1: rejected_response: is MiniCPM3 output that does not parse:") and "[bad-tool-call]" in line


def test_detection_and_forced_formats(tmp_path: Path) -> None:
    for name in FILES:
        assert is_preference_file(FIXTURES / name)
    assert not is_preference_file(Path(__file__).parents[1] / "examples" / "data" / "tool_calls.jsonl")
    assert is_preference_file(tmp_path / "missing.jsonl", "swift_rlhf")
    assert not is_preference_file(tmp_path / "x", "openai") and not is_preference_file(tmp_path / "x", "swift")
    wrong = scan_pairs_file(FIXTURES / "text_pairs.jsonl", format="swift_rlhf")
    assert {p.code for p in wrong.problems} == {"wrong-format"}
    unknown = scan_pairs_file(FIXTURES / "text_pairs.jsonl", format="nope")
    assert [p.code for p in unknown.file_problems] == ["no-format"]


def test_hostile_records_never_raise(tmp_path: Path) -> None:
    lines = [
        '{"prompt": ' + "[" * 500 + '"x"' + "]" * 500 + ', "chosen": "a", "rejected": "b"}',
        '{"prompt": "p", "chosen": "a", "chosen": "b", "rejected": "b"}',  # repeated key: the last one wins, as in json
        json.dumps({"prompt": "p" * 200_000, "chosen": "a", "rejected": None}),
        json.dumps({"prompt": [{"role": "user", "content": "\udcff"}], "chosen": ["a"], "rejected": [5]}),
        "\xff\xfe not utf8",
        json.dumps({"prompt": 5, "chosen": [1], "rejected": {"role": "assistant"}}),
    ]
    path = tmp_path / "hostile.jsonl"
    path.write_bytes(b"\n".join(line.encode("utf-8", "surrogatepass") if isinstance(line, str) else line for line in lines))
    scanned = scan_pairs_file(path, format="trl")
    assert len(scanned.rows) == 6 and all(not r.ok for r in scanned.rows)
    assert all(p.line is not None for p in scanned.problems)


def test_prepared_file_round_trips_and_is_reused(tmp_path: Path) -> None:
    first = prepare_pairs_file(FIXTURES / "swift.jsonl", out_dir=tmp_path)
    again = prepare_pairs_file(FIXTURES / "swift.jsonl", out_dir=tmp_path)
    assert (first.written, first.reused, again.reused, again.path) == (3, False, True, first.path)
    rows = list(read_prepared_pairs(first.path))
    assert [pair for pair, _ in rows] == load_pairs(FIXTURES / "swift.jsonl")
    assert [source for _, source in rows] == [f"{FIXTURES / 'swift.jsonl'}:{i}" for i in (1, 2, 3)]
    for line in Path(first.path).read_text().splitlines():
        assert set(json.loads(line)) == {"pair", "source"} and all(isinstance(v, str) for v in json.loads(line).values())
    assert "1 call an undeclared function" in first.summary()


def test_bad_rows_stop_preparation_or_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "mixed.jsonl"
    good = {"prompt": "2+2?", "chosen": "4", "rejected": "5"}
    path.write_text("\n".join(json.dumps(r) for r in [good, dict(good, rejected="4"), good]) + "\n")
    with pytest.raises(DataError, match=r"1 of 3 preference pairs have errors") as exc:
        prepare_pairs_file(path, out_dir=tmp_path / "out")
    assert "mixed.jsonl:2: rejected: renders to the same text" in str(exc.value)
    skipped = prepare_pairs_file(path, out_dir=tmp_path / "out", on_bad_rows="skip")
    assert (skipped.written, skipped.skipped) == (2, {"identical-pair": 1})


def test_canonical_pair_shape() -> None:
    raw = RawPair([U], {"role": "assistant", "reasoning_content": "t", "tool_calls": [
        {"name": "get_weather", "arguments": '{"city": "Paris"}'}]}, "nope", [W["function"]])
    pair, issues, _ = canonicalize_pair(dict_raw(raw))
    assert issues == [] and pair is not None
    assert pair["chosen"] == {"role": "assistant", "content": "", "thought": "t", "tool_calls": [
        {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]}
    assert pair["rejected"] == {"role": "assistant", "content": "nope"} and pair["tools"] == [W]


def dict_raw(raw: RawPair) -> RawPair:
    if isinstance(raw.rejected, str):
        raw.rejected = {"role": "assistant", "content": raw.rejected}
    return raw
