"""MiniCPM3's own thought/call markup in assistant text: read strictly, rendered canonically, changes counted."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from minicpm_plugin import render_chat
from minicpm_plugin.formats import canonicalize, scan_file
from minicpm_plugin.formats.markup import LAYOUT

F = {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {
    k: {} for k in ("a", "b", "c", "d", "e", "from")}}}}
U = {"role": "user", "content": "go"}
BLOCK = "<|tool_call_start|>\n```python\n{}\n```\n<|tool_call_end|>\n"


def conv(content: str, **extra: Any) -> dict[str, Any]:
    return {"messages": [U, {"role": "assistant", "content": content, **extra}], "tools": [F]}


def issues_of(content: str, **extra: Any) -> list[tuple[str, str, str]]:
    return [(i.path, i.message, i.code) for i in canonicalize(conv(content, **extra))[1]]


def test_exact_values_and_byte_identical_rendering() -> None:
    text = ("<|thought_start|>\nCall f.\n<|thought_end|>\n"
            + BLOCK.format('f(a=1,b="x\\né",c=null,d=true,e={"k": [1, 2.5, -0.0, 1e+100]},from="y")') + "Done.")
    result, issues = canonicalize(conv(text))
    assert issues == []
    msg = result["messages"][1]
    assert msg["thought"] == "Call f." and msg["content"] == "Done."
    assert msg["tool_calls"] == [{"type": "function", "function": {"name": "f", "arguments": {
        "a": 1, "b": "x\né", "c": None, "d": True, "e": {"k": [1, 2.5, -0.0, 1e100]}, "from": "y"}}}]
    assert type(msg["tool_calls"][0]["function"]["arguments"]["a"]) is int
    rendered = render_chat(result["messages"], result["tools"])
    assert rendered.endswith("<|im_start|>assistant\n" + text + "<|im_end|>\n")


@pytest.mark.parametrize(("content", "first"), [
    (BLOCK.format("f(a=1, b=2)"), ("f(a=1, b=2)", "f(a=1,b=2)")),
    (BLOCK.format('f(b="\\u00e9")'), ('f(b="\\u00e9")', 'f(b="é")')),
    (BLOCK.format("f(a=True, b=None, c='x')"), ("f(a=True, b=None, c='x')", 'f(a=true,b=null,c="x")')),
    ("\n" + BLOCK.format("f(a=1)"), ("", "<|tool_call_start|>")),
    ("<|thought_start|>hm<|thought_end|>" + BLOCK.format("f()"), ("<|thought_start|>hm<|thought_end|><|tool_call_start|>",
                                                                 "<|thought_start|>")),
])
def test_respelling_is_a_warning_with_the_first_difference(content: str, first: tuple[str, str]) -> None:
    result, issues = canonicalize(conv(content))
    assert result is not None
    assert [(i.path, i.code) for i in issues] == [("messages[1].content", "markup-respelled")]
    assert issues[0].message.endswith(f"(first difference: {first[0]!r} -> {first[1]!r})")


def test_thought_only_markup() -> None:
    result, issues = canonicalize(conv("<|thought_start|>\nNo call needed.\n<|thought_end|>\nHello."))
    assert issues == []
    assert result["messages"][1] == {"role": "assistant", "content": "Hello.", "thought": "No call needed."}


CANNOT = "MiniCPM3 markup that the strict parser cannot read: "


@pytest.mark.parametrize(("content", "extra", "expected"), [
    (BLOCK.format("f(1)"), {}, ("messages[1].content", CANNOT + "positional argument: every argument must be written "
                                "name=value: 'f(1)'; write the turn as " + LAYOUT, "bad-call-markup")),
    ("Sure. " + BLOCK.format("f()"), {}, ("messages[1].content", CANNOT + "the tool-call block must come first in the "
                                          "turn (after the thought); write the turn as " + LAYOUT, "bad-call-markup")),
    (BLOCK.format("f()") + BLOCK.format("f()"), {}, ("messages[1].content", CANNOT + "<|tool_call_start|>, "
     "<|tool_call_end|> after the call block; MiniCPM3 writes one thought block, then one call block with every call "
     "of the turn, then the answer; write the turn as " + LAYOUT, "bad-call-markup")),
    ("<|thought_start|>\nhm", {}, ("messages[1].content", CANNOT + "thought is not closed with <|thought_end|>; write "
                                   "the turn as " + LAYOUT, "bad-call-markup")),
    ("Answer <|thought_end|>", {}, ("messages[1].content", CANNOT + "<|thought_end|> outside a thought block at the "
                                    "start of the turn; MiniCPM3 writes one thought block, then one call block with "
                                    "every call of the turn, then the answer; write the turn as " + LAYOUT,
                                    "bad-call-markup")),
    (BLOCK.format("f()"), {"tool_calls": [{"type": "function", "function": {"name": "f", "arguments": {}}}]},
     ("messages[1].content", "has a MiniCPM3 call block and also tool_calls; keep one", "bad-field")),
    ("<|thought_start|>\na\n<|thought_end|>\nx", {"reasoning_content": "b"},
     ("messages[1].content", "has a MiniCPM3 thought block and also a reasoning_content; keep one", "bad-field")),
    ("<think>a</think><|thought_start|>\nb\n<|thought_end|>\nx", {},
     ("messages[1].content", "has a MiniCPM3 thought block and also a <think> block; keep one", "bad-field")),
    (BLOCK.format("f()") + "<|im_end|>", {}, ("messages[1].content", "contains <|im_end|>, <|tool_call_start|>, "
     "<|tool_call_end|>, which would be read as part of the chat format, not as text; remove it", "special-token")),
])
def test_markup_that_cannot_be_read(content: str, extra: dict[str, Any], expected: tuple[str, str, str]) -> None:
    result, issues = canonicalize(conv(content, **extra))
    assert result is None
    assert [(i.path, i.message, i.code) for i in issues] == [expected]


def test_markup_in_other_formats_and_the_check_counts(tmp_path: Path) -> None:
    sharegpt = {"conversations": [{"from": "human", "value": "go"}, {"from": "gpt", "value": BLOCK.format("f(a=1, b=2)")},
                                  {"from": "observation", "value": "ok"}, {"from": "gpt", "value": "done"}],
                "tools": json.dumps([F])}
    path = tmp_path / "s.jsonl"
    path.write_text(json.dumps(sharegpt) + "\n" + json.dumps(sharegpt) + "\n", encoding="utf-8")
    scanned = scan_file(path, file="s.jsonl")
    assert scanned.format == "sharegpt" and len(scanned.good_rows) == 2
    assert [str(p) for p in scanned.problems][0] == (
        "s.jsonl:1: warning: messages[1].content (from conversations[1]): MiniCPM3 markup read as 1 call; it is "
        "rendered with a different spelling (first difference: 'f(a=1, b=2)' -> 'f(a=1,b=2)') [markup-respelled]")
    assert scanned.stats()["respelled"] == 2 and scanned.stats()["calls"] == 2


def test_long_unreadable_markup_is_quoted_short() -> None:
    (issue,) = canonicalize(conv(BLOCK.format("f(a=" + "[" * 5000 + ")")))[1]
    assert issue.code == "bad-call-markup"
    assert issue.message.startswith(CANNOT + "value nested too deeply: 'f(a=[[[")
    assert "...'; write the turn as" in issue.message and len(issue.message) < 400
