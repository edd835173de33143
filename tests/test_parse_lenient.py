"""parse_assistant reads what drifts from the template's layout (and says so), never raises, stays linear.

The official MiniCPM3 parser (`fc2dict` in OpenBMB's minicpm_tool_parser.py) strips whitespace
around the markers and the fence, keeps what follows the call block as content and reads the calls
with Python's `ast`; these tests pin that the default reading recovers the exact calls from such
variants of a rendered turn, names what it needed, and that ``strict=True`` keeps the exact reading.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import random
import warnings
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from strategies import arguments, identifier, text

from minicpm_plugin import ToolCallParseError, parse_assistant
from minicpm_plugin.chat import parse_calls, render_assistant_turn
from minicpm_plugin.chat.literals import python_string_value
from minicpm_plugin.chat.names import is_argument_name, is_function_name
from minicpm_plugin.chat.parse import LENIENCIES
from minicpm_plugin.chat.reader import _PY_BODY, MAX_INT_DIGITS
from minicpm_plugin.formats.canonical import canonicalize

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "parse_pathological.py"
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
BLOCK = "<|tool_call_start|>\n```python\n"
END = "```\n<|tool_call_end|>\n"


def call(name: str, args: dict) -> dict:
    return {"type": "function", "function": {"name": name, "arguments": args}}


def same_json(a: object, b: object) -> bool:
    return json.dumps(a) == json.dumps(b) and type(a) is type(b)


def assert_calls(got: list, message: dict) -> None:
    want = [(c["function"]["name"], c["function"]["arguments"]) for c in message["tool_calls"]]
    assert [c["name"] for c in got] == [name for name, _ in want]
    for g, (_, args) in zip(got, want, strict=True):
        assert list(g["arguments"]) == list(args)
        for key in args:  # exact values and types: True is not 1, 1.0 stays a float
            assert same_json(g["arguments"][key], args[key]), (g["arguments"][key], args[key])


# --- the drifts a fine-tuned model shows, applied to a rendered turn --------------------------------

WHITESPACE = st.sampled_from(["\n", "\n\n", " ", "  \n", "\t", "\n  \n", "\r\n"])
BLANK_LINES = st.sampled_from(["\n", "\n\n", "  \n", "\n  \n", "\r\n", " \t\n"])  # spaces alone are indentation
PROSE = st.sampled_from(["Let me check.", "Sure:", "好的，我来查一下。", "I'll call it.\n"])
INDENT = st.sampled_from(["  ", "    ", "\t", " "])


@st.composite
def drifted_turn(draw: st.DrawFn) -> tuple[dict, str, str, set[str], str]:
    """(message, style, drifted text, lenient names it must report, expected content)."""
    names = st.from_regex(r"[a-z_][a-z0-9_]{0,8}(\.[a-z_][a-z0-9_]{0,5})?", fullmatch=True) | identifier
    message: dict = {"role": "assistant", "content": draw(text),
                     "tool_calls": [call(draw(names), draw(arguments)) for _ in range(draw(st.integers(1, 3)))]}
    if draw(st.booleans()):
        message["thought"] = draw(text.filter(bool))
    style = draw(st.sampled_from(["json", "python"]))
    rendered = render_assistant_turn(message, literal_style=style)
    start, end = rendered.index("<|tool_call_start|>"), rendered.index("<|tool_call_end|>\n") + len("<|tool_call_end|>\n")
    head, block, content = rendered[:start], rendered[start:end], rendered[end:]
    expected: set[str] = set()
    if draw(st.booleans()):  # no fence (or ``` / ```py)
        how = draw(st.sampled_from(["none", "```", "```py"]))
        block = block.replace("```python\n", "" if how == "none" else how + "\n", 1)
        block = block.replace("```\n<|tool_call_end|>", "<|tool_call_end|>" if how == "none" else "```\n<|tool_call_end|>")
        expected.add("fence")
    if draw(st.booleans()):  # every line of the block indented
        indent = draw(INDENT)
        lines = block.split("\n")
        block = "\n".join(indent + line if line else line for line in lines)
        expected.add("indented_block")
    before = ""
    if draw(st.booleans()):  # blank lines / spaces before the block
        before = draw(BLANK_LINES)
        expected.add("block_whitespace")
    prose = ""
    if draw(st.booleans()):  # text before the block: read as content
        prose = draw(PROSE)
        before = prose + before
        expected = (expected - {"block_whitespace"}) | {"text_before_block"}
    lead = ""
    if "thought" in message and draw(st.booleans()):
        lead = draw(WHITESPACE)
        expected.add("whitespace_before_thought")
    if not content.startswith("\n") and draw(st.booleans()):  # no newline after <|tool_call_end|>
        block = block[:-1]
        expected.add("newline_after_block")
    drifted = lead + head + before + block + content
    want_content = "\n".join(p for p in (prose.strip(), content) if p)
    return message, style, drifted, expected, want_content


@SETTINGS
@given(drifted_turn())
def test_drifted_layouts_give_the_exact_calls_and_say_what_was_needed(case: tuple) -> None:
    message, _, drifted, expected, want_content = case
    out = parse_assistant(drifted + "<|im_end|>")
    assert out["error"] is None, (drifted, out["error"])
    assert_calls(out["tool_calls"], message)
    assert out["thought"] == (message.get("thought") or None)
    assert out["content"] == want_content
    assert expected <= set(out["lenient"]) <= set(LENIENCIES), (expected, out["lenient"])
    assert bool(out["lenient"]) == bool(expected)


@SETTINGS
@given(drifted_turn())
def test_strict_reading_is_the_exact_one(case: tuple) -> None:
    """Strict rejects what the exact reading always rejected (the block must come first) and reads the
    rest as before (no fence, ``` or ```py, no newline after the block were read before too)."""
    message, _, drifted, expected, _ = case
    moved = {"text_before_block", "block_whitespace", "whitespace_before_thought"} & expected
    if moved or ("indented_block" in expected):
        with pytest.raises(ToolCallParseError, match="must come first"):
            parse_assistant(drifted, strict=True)
        return
    strict, lenient = parse_assistant(drifted, strict=True), parse_assistant(drifted)
    assert strict == lenient
    assert_calls(strict["tool_calls"], message)


@settings(max_examples=150, deadline=None)
@given(st.builds(dict, role=st.just("assistant"), content=text, thought=text,
                 tool_calls=st.lists(st.builds(call, identifier, arguments), max_size=3)),
       st.sampled_from(["json", "python"]))
def test_rendered_text_needs_no_leniency(message: dict, style: str) -> None:
    rendered = render_assistant_turn(message, literal_style=style) + "<|im_end|>"
    lenient, strict = parse_assistant(rendered), parse_assistant(rendered, strict=True)
    assert lenient == strict and lenient["lenient"] == [] and lenient["error"] is None


@pytest.mark.parametrize(("body", "names"), [
    ("f(a=1, c=2)", ["call_format"]),
    ("f(a=1); g(b=2)", ["semicolons"]),
    ("# looking it up\nf(a=1)  # now", ["comments"]),
    ("f(a=1)\n\ng(b=2)", ["block_whitespace"]),
    ("", ["empty_block"]),
])
def test_call_lines_read_leniently(body: str, names: list[str]) -> None:
    out = parse_assistant(BLOCK + body + ("\n" if body else "") + END)
    assert out["error"] is None and out["lenient"] == names
    if body:
        assert out["tool_calls"][0]["name"] == "f" and out["tool_calls"][0]["arguments"]["a"] == 1
    if names[0] in ("semicolons", "comments"):
        with pytest.raises(ToolCallParseError, match="expected a (newline after a call|function name)"):
            parse_assistant(BLOCK + body + "\n" + END, strict=True)


def test_what_the_official_parser_reads_is_read() -> None:
    """Shapes `fc2dict` accepts: blank line after the thought, prose before the block, an indented
    block, no fence; the content after the block is kept (the official parser strips it)."""
    out = parse_assistant('<|thought_start|>\nweather\n<|thought_end|>\n\n<|tool_call_start|>\n```python\n'
                          'get_weather(city="Paris",days=3)\n```\n<|tool_call_end|>\nChecking.<|im_end|>')
    assert (out["thought"], out["content"], out["lenient"]) == ("weather", "Checking.", ["block_whitespace"])
    assert out["tool_calls"] == [{"name": "get_weather", "arguments": {"city": "Paris", "days": 3}}]
    out = parse_assistant("    <|tool_call_start|>\n    ```python\n    f(x=true)\n    ```\n    <|tool_call_end|>\n")
    assert out["tool_calls"] == [{"name": "f", "arguments": {"x": True}}] and out["lenient"] == ["indented_block"]
    out = parse_assistant("<|thought_start|>\nneed it\n<|tool_call_start|>\n```python\nf(x=1)\n```\n<|tool_call_end|>\n")
    assert (out["thought"], out["tool_calls"], out["lenient"]) == (
        "need it", [{"name": "f", "arguments": {"x": 1}}], ["thought_not_closed"])
    assert "not closed" in parse_assistant("<|thought_start|>\nhmm")["error"]
    out = parse_assistant("<|tool_call_start|>f(x=None)<|tool_call_end|>")
    assert out["tool_calls"] == [{"name": "f", "arguments": {"x": None}}]
    assert out["lenient"] == ["fence", "block_whitespace", "newline_after_block"]


# --- never raises, linear --------------------------------------------------------------------------

PIECES = ["<|tool_call_start|>", "<|tool_call_end|>", "<|thought_start|>", "<|thought_end|>", "```python\n", "```",
          "<|im_end|>", "f(x=", "g(", ")", "\n", " ", '"', "'", "\\", "\\x4", "\\N{", "[", "{", ":", ",", "=", "#", ";",
          "1", "1.", "true", "None", "é", "\ud800", "\x00", "\r", "9" * 4301]


@settings(max_examples=800, deadline=None)
@given(st.lists(st.sampled_from(PIECES) | st.text(max_size=5), max_size=40).map("".join))
def test_any_text_is_read_without_raising(garbage: str) -> None:
    out = parse_assistant(garbage)
    assert set(out) == {"content", "thought", "tool_calls", "error", "lenient"}
    assert out["error"] is None or not out["error"].startswith("unreadable output"), out["error"]
    try:
        parse_assistant(garbage, strict=True)
    except ToolCallParseError:
        pass


def test_any_unicode_never_raises() -> None:
    rng = random.Random(0)
    for _ in range(300):
        garbage = "".join(chr(rng.randrange(0x110000)) for _ in range(rng.randrange(60)))
        for prefix in ("", BLOCK, BLOCK + "f(x="):
            out = parse_assistant(prefix + garbage)
            assert out["error"] is None or not out["error"].startswith("unreadable output")


PATHOLOGICAL = {
    "unclosed string of escaped quotes": BLOCK + "f(a='" + "\\'" * 100_000,
    "unclosed JSON string of escaped quotes": BLOCK + 'f(a="' + '\\"' * 100_000,
    "brackets": BLOCK + "f(a=" + "[" * 200_000,
    "parentheses": BLOCK + "(" * 200_000,
    "nested just past the limit": BLOCK + "f(a=" + "[" * 101 + "1" + "]" * 101 + ")\n" + END,
    "an integer longer than read": BLOCK + f"f(a={'7' * (MAX_INT_DIGITS + 1)})\n" + END,
}


@pytest.mark.parametrize("name", PATHOLOGICAL)
def test_pathological_inputs_are_errors_not_exceptions(name: str) -> None:
    out = parse_assistant(PATHOLOGICAL[name])
    assert out["tool_calls"] == [] and out["error"] and not out["error"].startswith("unreadable output")
    with pytest.raises(ToolCallParseError):
        parse_assistant(PATHOLOGICAL[name], strict=True)


def test_nesting_limit_is_the_same_for_json_and_python_literals() -> None:
    for close in ("]", ")"):
        opening = "[" if close == "]" else "("
        ok = BLOCK + "f(a=" + opening * 101 + close * 101 + ")\n" + END  # 101 containers, the deepest empty
        assert parse_assistant(ok, strict=True)["tool_calls"]
        deep = BLOCK + "f(a=" + opening * 101 + "1" + close * 101 + ")\n" + END
        assert "nested too deeply" in parse_assistant(deep)["error"]


@pytest.mark.parametrize("digits", [4300, 4301, 5000, MAX_INT_DIGITS])
def test_long_integers_are_read_exactly(digits: int) -> None:
    number = "9" + "0" * (digits - 2) + "7"
    out = parse_assistant(BLOCK + f"f(a={number},b=-{number},c=[{number}])\n" + END, strict=True)
    args = out["tool_calls"][0]["arguments"]
    assert args["a"] == 9 * 10 ** (digits - 1) + 7 and args["b"] == -args["a"] and args["c"] == [args["a"]]


# --- Python string literals are decoded as Python does ----------------------------------------------

LITERAL_PIECES = ["a", "é", "中", "\\", "\\\\", "\\'", '"', "\\n", "\\x4", "\\x41", "\\u00e9", "\\u12", "\\U0001F600",
                  "\\U00110000", "\\N{BULLET}", "\\N{bullet}", "\\N{LF}", "\\N{NOPE}", "\\N{LATIN SMALL LETTER R WITH TILDE}", "\\N{", "\\N", "\\777", "\\8", "\\q",
                  "\\\n", "\\\r", "\\\r\n", "\r", "\x00", "\t", "\ud800", "\\\ud800", "{", "}"]


@settings(max_examples=3000, deadline=None)
@given(st.lists(st.sampled_from(LITERAL_PIECES), max_size=8).map("".join))
def test_python_string_literals_decode_like_literal_eval(body: str) -> None:
    assume(_PY_BODY["'"].fullmatch(body))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            want: str | None = ast.literal_eval("'" + body + "'")
        except (ValueError, SyntaxError):
            want = None
    try:
        got: str | None = python_string_value(body)
    except ValueError:
        got = None
    assert got == want


# --- one rule for names: validation accepts exactly what the parser reads back ------------------------

NAME_CHARS = st.sampled_from(list("abz_AZ09") + ["é", "e\u0301", "²", "·", "ǅ", "中", "℘", "ª", "١", "\u200d", "-", " ",
                                                  ".", "=", "(", "\u00a0", "ﬁ", "𝔘"])
NAMES = st.lists(NAME_CHARS, min_size=1, max_size=6).map("".join) | identifier


@settings(max_examples=1000, deadline=None)
@given(NAMES)
def test_argument_names_validation_and_parser_agree(name: str) -> None:
    out = parse_assistant(f"{BLOCK}f({name}=1)\n{END}", strict=False)
    read = out["error"] is None and out["tool_calls"] == [{"name": "f", "arguments": {name: 1}}]
    assert read == is_argument_name(name)
    conversation = {"messages": [{"role": "user", "content": "hi"},
                                 {"role": "assistant", "content": "", "tool_calls": [call("f", {name: 1})]}],
                    "tools": [{"type": "function", "function": {"name": "f", "parameters": {
                        "type": "object", "properties": {name: {"type": "integer"}}}}}]}
    _, issues = canonicalize(conversation)
    rejected = {i.path for i in issues if i.code == "bad-argument-name"}
    assert bool(rejected) == (not read), (name, issues)
    if read:  # and what validation accepts renders and parses back
        turn = render_assistant_turn({"role": "assistant", "content": "", "tool_calls": [call("f", {name: 1})]})
        assert parse_assistant(turn, strict=True)["tool_calls"] == [{"name": "f", "arguments": {name: 1}}]


@settings(max_examples=1000, deadline=None)
@given(NAMES)
def test_function_names_validation_and_parser_agree(name: str) -> None:
    out = parse_assistant(f"{BLOCK}{name}(a=1)\n{END}")
    read = out["error"] is None and out["tool_calls"] == [{"name": name, "arguments": {"a": 1}}]
    assert read == is_function_name(name)
    tools = [{"type": "function", "function": {"name": name, "parameters": {"type": "object", "properties": {}}}}]
    _, issues = canonicalize({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "ok"}],
                              "tools": tools})
    assert any(i.code == "bad-function-name" for i in issues) == (not read), (name, issues)


def test_parse_calls_reads_a_block_body() -> None:
    assert parse_calls('f(a="```")\ng(b=[1, {"c": null}])\n') == [
        {"name": "f", "arguments": {"a": "```"}}, {"name": "g", "arguments": {"b": [1, {"c": None}]}}]
    with pytest.raises(ToolCallParseError, match="expected a function name"):
        parse_calls("f()\n```\n")


def test_pathological_benchmark_runs(tmp_path: Path) -> None:
    """benchmarks/parse_pathological.py in tiny sizes: every case finishes, none raises now."""
    spec = importlib.util.spec_from_file_location("parse_pathological", BENCH)
    bench = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(bench)  # type: ignore[union-attr]
    out = tmp_path / "bench.json"
    results = bench.main(["--scale", "0.002", "--timeout", "60", "--json", str(out)])
    assert json.loads(out.read_text(encoding="utf-8")) == results
    assert set(results["cases"]) == set(bench.CASES)
    for case, row in results["cases"].items():
        assert row["after"]["cpu_s"] is not None and not row["after"]["outcome"].startswith("raised"), case
        assert row["after_strict"]["cpu_s"] is not None, case
    assert results["cases"]["5,000-digit integer"]["after"]["outcome"] == "1 calls"
    if results["cases"]["5,000-digit integer"]["before"]:  # git and the old commit are there
        assert results["cases"]["5,000-digit integer"]["before"]["outcome"] == "raised ValueError"


# --- strict is the exact reading of before: checked against the parser this work replaced ------------

def _parser_before(where: Path) -> object:
    """`parse_assistant` of the commit before this work (via git), or skip when git or it is missing."""
    spec = importlib.util.spec_from_file_location("parse_pathological", BENCH)
    bench = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(bench)  # type: ignore[union-attr]
    path = bench._load_before(bench.BEFORE_REF, where)
    if path is None:
        pytest.skip(f"git show {bench.BEFORE_REF} is not available here")
    old = importlib.util.spec_from_file_location("parse_before", path)
    module = importlib.util.module_from_spec(old)  # type: ignore[arg-type]
    old.loader.exec_module(module)  # type: ignore[union-attr]
    return module.parse_assistant


def _outcome(parse: object, text_: str) -> tuple:
    try:
        out = parse(text_, strict=True)  # type: ignore[operator]
    except ToolCallParseError as exc:
        return ("raises", exc.message)
    return ("reads", {k: v for k, v in out.items() if k != "lenient"})


@pytest.fixture(scope="module")
def before(tmp_path_factory: pytest.TempPathFactory) -> object:
    return _parser_before(tmp_path_factory.mktemp("parse-before"))


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(case=drifted_turn())
def test_strict_equals_the_parser_before_on_drifted_turns(before: object, case: tuple) -> None:
    drifted = case[2]
    assert _outcome(parse_assistant, drifted) == _outcome(before, drifted)


@settings(max_examples=1000, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.sampled_from(PIECES[:-1]) | st.text(max_size=4), max_size=30).map("".join))
def test_strict_accepts_and_reads_what_the_parser_before_did(before: object, garbage: str) -> None:
    """On any text both accept or both reject, and read the same; only some error messages on garbage
    differ (e.g. a name rejected by the shared name rule is named in the message)."""
    for prefix in ("", BLOCK, BLOCK + "f(x="):
        new, old = _outcome(parse_assistant, prefix + garbage), _outcome(before, prefix + garbage)
        assert new[0] == old[0]
        if new[0] == "reads":
            assert new == old


SIMPLE_VALUES = st.sampled_from(['"x"', '"中,b=1"', '"\\""', '"\\n"', '""', '"a\tb"', "0", "-0", "01", "7", "-12",
                                 "9" * 3002, "true", "false", "null", "None", "1.5", "[1]"])
SIMPLE_LINES = st.builds(
    lambda name, args, sep, tail: name + "(" + sep.join(k + "=" + v for k, v in args) + tail + ")",
    st.sampled_from(["f", "g_1", "f.g"]), st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), SIMPLE_VALUES), max_size=4),
    st.sampled_from([",", ",", ", "]), st.sampled_from(["", "", ","]))


@settings(max_examples=2000, deadline=None)
@given(SIMPLE_LINES)
def test_the_plain_call_shortcut_reads_what_the_full_reader_reads(line: str) -> None:
    from minicpm_plugin.chat.reader import Reader, ReadError, _plain_calls, _RenderCheck

    text_ = line + "\n" + line + "\n"
    calls: list = []
    check = _RenderCheck(text_)
    end = _plain_calls(text_, 0, calls, check)
    if end == 0:
        return
    reader = Reader(text_)
    try:
        full = [reader.call()]
        spans = list(reader.spans)
        reader.pos += 1
        full.append(reader.call())
    except ReadError:
        full = []
    assert calls == full and end == len(text_) - 1 and reader.tight, line
    assert check.sources == ["[" + ", ".join(text_[a:b] for a, b in spans) + "]",
                             "[" + ", ".join(text_[a:b] for a, b in reader.spans) + "]"]
