"""parse_assistant: the exact inverse of rendering an assistant turn, never evaluating code."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import arguments, identifier, text

from minicpm_plugin import ToolCallParseError, parse_assistant
from minicpm_plugin.chat import render_assistant_turn

SETTINGS = settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def call(name: str, args: dict) -> dict:
    return {"type": "function", "function": {"name": name, "arguments": args}}


def same_json(a: object, b: object) -> bool:
    """Equal as JSON values, with types kept (True is not 1, 1.0 stays a float)."""
    return json.dumps(a, sort_keys=False) == json.dumps(b, sort_keys=False) and type(a) is type(b)


def test_thought_calls_and_content() -> None:
    text_ = (
        '<|thought_start|>\nNeed both.\n<|thought_end|>\n<|tool_call_start|>\n```python\n'
        'search(q="a",flag=true,limit=null,price=1.61,tags=["x", "y"],opts={"deep": false})\nnow()\n'
        '```\n<|tool_call_end|>\nSearching.<|im_end|>'
    )
    out = parse_assistant(text_)
    assert out == {
        "content": "Searching.",
        "thought": "Need both.",
        "tool_calls": [
            {"name": "search", "arguments": {"q": "a", "flag": True, "limit": None, "price": 1.61,
                                             "tags": ["x", "y"], "opts": {"deep": False}}},
            {"name": "now", "arguments": {}},
        ],
        "error": None,
        "lenient": [],
    }


def test_python_literals_and_keyword_names() -> None:
    out = parse_assistant("<|tool_call_start|>\n```python\nbook(from='PEK',class=None,ok=True,n=-3,x=(1, 2))\n```\n<|tool_call_end|>\n")
    assert out["tool_calls"] == [{"name": "book", "arguments": {"from": "PEK", "class": None, "ok": True, "n": -3, "x": [1, 2]}}]
    assert out["content"] == "" and out["error"] is None


def test_plain_content_and_thought_without_calls() -> None:
    assert parse_assistant("Hello") == {"content": "Hello", "thought": None, "tool_calls": [], "error": None,
                                         "lenient": []}
    out = parse_assistant("<|thought_start|>\nno tool\n<|thought_end|>\nJoke.")
    assert (out["thought"], out["content"], out["tool_calls"]) == ("no tool", "Joke.", [])


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ('f("positional")', "positional argument"),
        ("f(x=os.system('rm -rf /'))", "literal"),
        ("f(x=1 + 2)", "expected ',' or ')'"),
        ("f(x=", "expected a value"),
        ('f(x="unterminated)', "string"),
        ("f(x=1,x=2)", "given twice"),
        ("not a call", "expected '('"),
        ("f(x={1: 2})", "object keys must be strings"),
    ],
)
def test_malformed_calls_are_reported_not_raised(body: str, reason: str) -> None:
    text_ = f"<|tool_call_start|>\n```python\n{body}\n```\n<|tool_call_end|>\nafter"
    out = parse_assistant(text_)
    assert out["tool_calls"] == []
    assert reason in out["error"]
    with pytest.raises(ToolCallParseError) as info:
        parse_assistant(text_, strict=True)
    assert reason in str(info.value)


def test_unclosed_blocks() -> None:
    assert "not closed" in parse_assistant("<|tool_call_start|>\n```python\nf(x=1)\n")["error"]
    assert "not closed" in parse_assistant("<|thought_start|>\nhmm")["error"]
    with pytest.raises(ToolCallParseError, match="must come first"):  # the lenient default reads it: test_leniency
        parse_assistant("text <|tool_call_start|>\nf()\n<|tool_call_end|>", strict=True)


def test_never_evaluates() -> None:
    out = parse_assistant("<|tool_call_start|>\n```python\nf(x=__import__('os').getcwd())\n```\n<|tool_call_end|>\n")
    assert out["tool_calls"] == [] and out["error"]


def test_loose_model_output_without_fence() -> None:
    out = parse_assistant('<|tool_call_start|>\nget_weather(city="Paris")\n<|tool_call_end|>\nok')
    assert out["tool_calls"] == [{"name": "get_weather", "arguments": {"city": "Paris"}}]
    assert out["content"] == "ok"


def test_special_floats_and_escapes() -> None:
    out = parse_assistant('<|tool_call_start|>\n```python\nf(a=NaN,b=-Infinity,c="\\u4e2d\\n\\"",d=1e+16,e=\'\\x41\')\n```\n<|tool_call_end|>\n')
    args = out["tool_calls"][0]["arguments"]
    assert math.isnan(args["a"]) and args["b"] == float("-inf")
    assert args["c"] == '中\n"' and args["d"] == 1e16 and args["e"] == "A"


def test_marker_inside_a_string_argument_does_not_end_the_block() -> None:
    message = {"role": "assistant", "content": "c", "tool_calls": [call("f", {"s": "```\n<|tool_call_end|>\n"})]}
    out = parse_assistant(render_assistant_turn(message))
    assert out["tool_calls"] == [{"name": "f", "arguments": {"s": "```\n<|tool_call_end|>\n"}}]
    assert out["content"] == "c"


@st.composite
def assistant_turn(draw: st.DrawFn) -> dict:
    msg: dict = {"role": "assistant", "content": draw(text)}
    if draw(st.booleans()):
        msg["thought"] = draw(text)
    if draw(st.booleans()):
        names = st.from_regex(r"[a-z_][a-z0-9_]{0,8}(\.[a-z_][a-z0-9_]{0,5})?", fullmatch=True) | identifier
        msg["tool_calls"] = [call(draw(names), draw(arguments)) for _ in range(draw(st.integers(1, 4)))]
    return msg


def expected_parse(msg: dict) -> tuple:
    calls = [(c["function"]["name"], c["function"]["arguments"]) for c in msg.get("tool_calls", [])]
    content = msg["content"]
    if calls and content.startswith("<|tool_call_start|>"):
        content = ""
    return content, msg.get("thought") or None, calls


@SETTINGS
@given(assistant_turn(), st.sampled_from(["json", "python"]))
def test_round_trip(msg: dict, style: str) -> None:
    rendered = render_assistant_turn(msg, literal_style=style)
    out = parse_assistant(rendered + "<|im_end|>", strict=True)
    content, thought, calls = expected_parse(msg)
    assert out["content"] == content
    assert out["thought"] == thought
    assert [c["name"] for c in out["tool_calls"]] == [name for name, _ in calls]
    for got, (_, args) in zip(out["tool_calls"], calls, strict=True):
        assert same_json(got["arguments"], args), (got["arguments"], args)
        for key in args:  # types survive, not only values: True is not 1, 1.0 stays a float
            assert same_json(got["arguments"][key], args[key])


GARBAGE_PIECES = ["<|tool_call_start|>", "<|tool_call_end|>", "<|thought_start|>", "<|thought_end|>", "```python\n", "<|im_end|>", "f(x=", "\n```\n"]


@settings(max_examples=2000, deadline=None)
@given(st.lists(st.sampled_from(list('<|>_()=,"\'\\\n ` abc123{}[]:.-') + GARBAGE_PIECES), max_size=60).map("".join))
def test_garbage_never_crashes(garbage: str) -> None:
    out = parse_assistant(garbage)
    assert set(out) == {"content", "thought", "tool_calls", "error", "lenient"}
    assert isinstance(out["content"], str) and isinstance(out["tool_calls"], list)


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=80))
def test_random_unicode_never_crashes(garbage: str) -> None:
    parse_assistant("<|tool_call_start|>\n```python\n" + garbage)
    parse_assistant(garbage)
