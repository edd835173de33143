"""Property: converting from any format and then rendering never loses a call, an argument value
or a thought, and values reach the canonical conversation exactly as written."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import arguments, text, tool

from minicpm_plugin.chat import Part, parse_assistant, render_conversation
from minicpm_plugin.formats import canonicalize, get_registry
from minicpm_plugin.formats.base import Converted
from minicpm_plugin.formats.refuse import placeholders

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Media placeholders (<image>, <audio>, <video>) are refused by design (tests/test_formats_refusals.py).
clean = text.map(str.strip).filter(lambda s: s != "" and "<think>" not in s and "</think>" not in s and "<tool" not in s
                                   and not placeholders(s))


@st.composite
def conversation(draw: Any, *, thoughts_with_calls: bool = True, content_with_calls: bool = True) -> dict[str, Any]:
    tools = draw(st.lists(tool(), min_size=1, max_size=3, unique_by=lambda t: t.get("function", t)["name"]))
    names = [t.get("function", t)["name"] for t in tools]
    messages: list[dict[str, Any]] = []
    if draw(st.booleans()):
        messages.append({"role": "system", "content": draw(clean)})
    for _ in range(draw(st.integers(1, 3))):
        messages.append({"role": "user", "content": draw(clean)})
        if draw(st.booleans()):
            calls = [{"type": "function", "function": {"name": draw(st.sampled_from(names)), "arguments": draw(arguments)}}
                     for _ in range(draw(st.integers(1, 3)))]
            msg: dict[str, Any] = {"role": "assistant", "content": draw(clean) if content_with_calls and draw(st.booleans()) else "",
                                   "tool_calls": calls}
            if thoughts_with_calls and draw(st.booleans()):
                msg["thought"] = draw(clean)
            messages.append(msg)
            messages += [{"role": "tool", "content": draw(clean)} for _ in calls]
        msg = {"role": "assistant", "content": draw(clean)}
        if draw(st.booleans()):
            msg["thought"] = draw(clean)
        messages.append(msg)
    return {"messages": messages, "tools": tools}


def flat(tool_: dict[str, Any]) -> dict[str, Any]:
    return tool_.get("function", tool_)


def as_json(value: Any) -> str:
    """Type- and order-exact comparison (1 == 1.0 == True in Python; not here)."""
    return json.dumps(value, ensure_ascii=False)


def convert(fmt: str, record: dict[str, Any]) -> dict[str, Any]:
    out = get_registry().get(fmt).convert(record)
    if isinstance(out, Converted):
        out = out.conversation
    conv, issues = canonicalize(out)
    errors = [i for i in issues if i.severity == "error"]
    assert conv is not None and not errors, errors
    return conv


def assert_kept(original: dict[str, Any], conv: dict[str, Any]) -> None:
    """Every assistant call (name + exact arguments) and thought survives conversion and rendering."""
    want = [m for m in original["messages"] if m["role"] == "assistant"]
    got = [m for m in conv["messages"] if m["role"] == "assistant"]
    assert len(got) == len(want)
    rendered = render_conversation(conv["messages"], conv["tools"])
    index = [i for i, m in enumerate(conv["messages"]) if m["role"] == "assistant"]
    for w, g, i in zip(want, got, index, strict=True):
        calls = [(c["function"]["name"], as_json(c["function"]["arguments"])) for c in w.get("tool_calls", [])]
        assert [(c["function"]["name"], as_json(c["function"]["arguments"])) for c in g.get("tool_calls", [])] == calls
        assert g.get("thought") == w.get("thought")
        turn = "".join(rendered.slice(s) for s in rendered.spans
                       if s.message_index == i and s.part not in (Part.HEADER, Part.END, Part.NEWLINE))
        parsed = parse_assistant(turn)
        assert parsed["error"] is None
        assert [(c["name"], as_json(c["arguments"])) for c in parsed["tool_calls"]] == calls
        assert parsed["thought"] == w.get("thought")


@SETTINGS
@given(conversation(), st.data())
def test_openai_round_trip(original: dict[str, Any], data: st.DataObject) -> None:
    messages = []
    for m in original["messages"]:
        m = dict(m)
        if m.get("tool_calls"):
            m["tool_calls"] = [{"id": f"call_{j}", "type": "function", "function": {
                "name": c["function"]["name"],
                "arguments": json.dumps(c["function"]["arguments"]) if data.draw(st.booleans()) else c["function"]["arguments"]}}
                for j, c in enumerate(m["tool_calls"])]
            if not m["content"] and data.draw(st.booleans()):
                m["content"] = None
        if "thought" in m:
            how = data.draw(st.sampled_from(["thought", "reasoning_content", "think"]))
            thought = m.pop("thought")
            if how == "think":
                m["content"] = f"<think>\n{thought}\n</think>\n\n{m['content']}"
            else:
                m[how] = thought
        messages.append(m)
    tools = original["tools"] if data.draw(st.booleans()) else json.dumps(original["tools"])
    assert_kept(original, convert("openai", {"messages": messages, "tools": tools}))


@SETTINGS
@given(conversation(thoughts_with_calls=False, content_with_calls=False))
def test_sharegpt_round_trip(original: dict[str, Any]) -> None:
    turns = []
    for m in original["messages"]:
        if m["role"] == "assistant" and m.get("tool_calls"):
            value = [{"name": c["function"]["name"], "arguments": c["function"]["arguments"]} for c in m["tool_calls"]]
            turns.append({"from": "function_call", "value": json.dumps(value if len(value) > 1 else value[0])})
        elif m["role"] == "assistant":
            think = f"<think>{m['thought']}</think>" if "thought" in m else ""
            turns.append({"from": "gpt", "value": think + m["content"]})
        else:
            turns.append({"from": {"user": "human", "tool": "observation", "system": "system"}[m["role"]], "value": m["content"]})
    record = {"conversations": turns, "tools": json.dumps([flat(t) for t in original["tools"]])}
    assert_kept(original, convert("sharegpt", record))


@SETTINGS
@given(conversation(content_with_calls=False), st.booleans())
def test_hermes_round_trip(original: dict[str, Any], python_repr: bool) -> None:
    dump = repr if python_repr else json.dumps
    turns = [{"from": "system", "value": f"You are a function calling AI model.\n<tools>\n{dump(original['tools'])}\n</tools>"}]
    for m in original["messages"]:
        if m["role"] == "system":
            continue  # a Hermes system turn holds the tools
        if m["role"] == "assistant":
            think = f"<think>{m['thought']}</think>" if "thought" in m else ""
            blocks = "".join(f"<tool_call>\n{dump({'name': c['function']['name'], 'arguments': c['function']['arguments']})}\n</tool_call>\n"
                             for c in m.get("tool_calls", []))
            turns.append({"from": "gpt", "value": think + (blocks or m["content"])})
        elif m["role"] == "tool":
            turns.append({"from": "tool", "value": f"<tool_response>\n{m['content']}\n</tool_response>"})
        else:
            turns.append({"from": "human", "value": m["content"]})
    original = dict(original, messages=[m for m in original["messages"] if m["role"] != "system"])
    assert_kept(original, convert("hermes", {"conversations": turns}))


@SETTINGS
@given(st.lists(arguments, min_size=1, max_size=3), clean)
def test_xlam_round_trip(args: list[dict[str, Any]], query: str) -> None:
    tools = [{"name": "f", "description": "d", "parameters": {k: {"type": "str"} for a in args for k in a}}]
    answers = [{"name": "f", "arguments": a} for a in args]
    conv = convert("xlam", {"query": query, "tools": json.dumps(tools), "answers": json.dumps(answers)})
    original = {"messages": [{"role": "user", "content": query}, {"role": "assistant", "content": "", "tool_calls": [
        {"type": "function", "function": a} for a in answers]}]}
    assert_kept(original, conv)
