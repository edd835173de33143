"""Read the call lines of a tool-call block: `name(key=value, ...)` with literal values only.

A small recursive-descent reader: JSON values round-trip exactly (`true` -> True, `null` -> None,
nested values, unicode, escapes), Python literals (`True`, `None`, `'x'`) are read too, and Python
keywords work as argument names (`from=`). Nothing is evaluated, so positional arguments and
expressions are reported, not run.

Reading is one pass, linear in the text whatever the input: the calls are read up to the closing
marker (a marker inside a string value is part of the value) and the first error ends it; Python
string literals are decoded here instead of compiled (no code, no warnings), and integers longer than
Python's 4,300-digit `int()` limit are converted in halves, exactly and without touching that
process-wide limit, up to `MAX_INT_DIGITS` digits (longer ones are an error, never an exception).
"""

from __future__ import annotations

import json
import re
from typing import Any

from minicpm_plugin.chat.errors import ToolCallParseError
from minicpm_plugin.chat.literals import int_from_digits, json_literal, python_literal, python_string_value
from minicpm_plugin.chat.names import (
    DOTTED_NAME_RUN,
    NAME_RUN,
    is_argument_name,
    is_function_name,
)
from minicpm_plugin.chat.tokens import TOOL_CALL_END

WS = " \t\r\n"
#: Longest integer literal read exactly (longer ones are reported as an error, never raised).
MAX_INT_DIGITS = 20_000
#: Deepest nesting of lists and objects read (a value inside more containers is an error).
MAX_DEPTH = 100

_WORD_GOES_ON = re.compile(r"[^\W\d]")  # after a number or word: a letter or _ makes it a bare name
_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")
_WORDS: dict[str, Any] = {
    "true": True, "false": False, "null": None, "True": True, "False": False, "None": None,
    "NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf"),
}
_WORD = re.compile(r"-?Infinity|NaN|true|false|null|True|False|None")
_scan_json_string = json.decoder.scanstring
_scan_json_value = json.JSONDecoder(strict=False).scan_once
_WS_RUN = re.compile(r"[ \t\r\n]*")
_SPACES = re.compile(r"[ \t]*")
_ASCII_CALL_HEAD = re.compile(r"([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)\(")
_JSON_START = frozenset('[{-0123456789tfnNI')  # what a JSON value other than a string starts with
_AFTER_SCALAR = frozenset(",)]} \t\r\n")
_ASCII_KEY = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)=(?!=)")
# A call line with plain values only, exactly as rendered, and its newline (see `_plain_calls`).
_PLAIN_VALUE = r'"[^"\\\x00-\x1f]*"|0|-?[1-9][0-9]{0,3000}|true|false|null'
_PLAIN_ARG = re.compile(rf"([A-Za-z_][A-Za-z0-9_]*)=({_PLAIN_VALUE})(?=[,)])")
_PLAIN_CALL = re.compile(
    rf"([A-Za-z_][A-Za-z0-9_]*)\(((?:[A-Za-z_][A-Za-z0-9_]*=(?:{_PLAIN_VALUE})(?:,(?=[A-Za-z_]))?)*)\)\n"
)
# The body of a Python string literal up to its closing quote (or the newline / end that stops it).
_PY_BODY = {q: re.compile(rf"[^\\\n{q}]*(?:\\[\s\S][^\\\n{q}]*)*") for q in "'\""}
#: Where the calls of a block end: the closing fence or the end marker, at a call boundary.
BLOCK_STOPS = ("```", TOOL_CALL_END)
_COMMENT_END = re.compile(r"\n|```|" + re.escape(TOOL_CALL_END))


class ReadError(Exception):
    """A reading error at `pos`; `read_calls` adds the `line` of the call it was reading."""

    def __init__(self, message: str, pos: int) -> None:
        super().__init__(message)
        self.message = message
        self.pos = pos
        self.line = ""

    def parse_error(self) -> ToolCallParseError:
        return ToolCallParseError(self.message, self.line)


def _within_depth(value: Any, depth: int, brackets: int) -> bool:
    """Whether the nesting limit allows `value`, a container read at `depth` that has `brackets` [ and {."""
    if depth + brackets <= MAX_DEPTH:
        return True
    stack = [(value, depth)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        for child in children:
            if depth >= MAX_DEPTH:
                return False
            if isinstance(child, (dict, list)):
                stack.append((child, depth + 1))
    return True


class Reader:
    """Reads literals and calls from `text`; `pos` is the index of the next unread character."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self._json_from = 0  # values starting before this index are not tried with the JSON scanner
        self.spans: list[tuple[int, int]] = []  # where the values of the last call are
        self.tight = True  # whether the last call was written without spaces (as rendered)

    def skip_ws(self) -> None:
        self.pos = _WS_RUN.match(self.text, self.pos).end()

    def peek(self) -> str:
        """The next character; "" at the end of the text or at a block marker (where the block ends)."""
        if self.pos >= len(self.text):
            return ""
        ch = self.text[self.pos]
        return "" if ch in "`<" and self.text.startswith(BLOCK_STOPS, self.pos) else ch

    def expect(self, ch: str, what: str) -> None:
        self.skip_ws()
        if self.peek() != ch:
            found = repr(self.peek()) if self.peek() else "end of text"
            raise ReadError(f"expected {what}, found {found}", self.pos)
        self.pos += 1

    def string(self) -> str:
        """The string literal at `pos`: JSON first, then a Python literal (e.g. with an escape such as \\x41)."""
        text, start = self.text, self.pos
        quote = text[start]
        if quote == '"':
            try:
                value, self.pos = _scan_json_string(text, start + 1, False)
                return value
            except ValueError:
                pass
        end = _PY_BODY[quote].match(text, start + 1).end()
        if end >= len(text) or text[end] == "\\":
            raise ReadError("string literal is not closed", start)
        if text[end] == "\n":
            raise ReadError("string literal runs past the end of the line", start)
        try:
            value = python_string_value(text[start + 1 : end])
        except ValueError as exc:
            raise ReadError(f"bad string literal ({exc})", start) from None
        self.pos = end + 1
        return value

    def number(self, token: str, start: int) -> int | float:
        if "." in token or "e" in token or "E" in token:
            return float(token)
        digits = token.lstrip("+-")
        if len(digits) > MAX_INT_DIGITS:
            raise ReadError(f"integer literal with {len(digits)} digits (more than {MAX_INT_DIGITS} are not read)", start)
        value = int_from_digits(digits)
        return -value if token.startswith("-") else value

    def _json(self, pos: int, depth: int) -> tuple[Any, int] | None:
        """(value, end) read by `json`'s C scanner at `pos` when that is what the reader below reads, else None."""
        text = self.text
        if pos < self._json_from:
            return None
        try:
            value, end = _scan_json_value(text, pos)
        except json.JSONDecodeError as exc:
            # A container starting before the failure would fail there again: do not try before it.
            self._json_from = max(exc.pos, pos + 1)
            return None
        except (ValueError, StopIteration, RecursionError):  # an int over Python's digit limit, deep nesting
            self._json_from = len(text) if text[pos] in "[{" else pos + 1
            return None
        if text[pos] in "[{":  # the scanner has no nesting limit
            ok = _within_depth(value, depth, text.count("[", pos, end) + text.count("{", pos, end))
        else:  # a number or word the reader would read longer (1.5.3, 01, 1x) is left to it
            ok = end >= len(text) or text[end] in _AFTER_SCALAR
        return (value, end) if ok else None

    def value(self, depth: int = 0) -> Any:
        if depth > MAX_DEPTH:
            raise ReadError("value nested too deeply", self.pos)
        text = self.text
        pos = self.pos = _WS_RUN.match(text, self.pos).end()
        ch = text[pos] if pos < len(text) else ""
        if ch == '"' or ch == "'":
            return self.string()
        if ch and ch in _JSON_START:
            read = self._json(pos, depth)
            if read:
                self.pos = read[1]
                return read[0]
        if ch == "{":
            return self.mapping(depth)
        if ch == "[" or ch == "(":
            return self.sequence("]" if ch == "[" else ")", depth)
        if ch and (ch in "-+." or ch.isdecimal()):
            m = _WORD.match(text, pos) if ch == "-" else None
            if m and not _WORD_GOES_ON.match(text, m.end()):
                self.pos = m.end()
                return _WORDS[m.group()]
            m = _NUMBER.match(text, pos)
            if m and not _WORD_GOES_ON.match(text, m.end()):
                self.pos = m.end()
                return self.number(m.group(), pos)
        else:
            m = _WORD.match(text, pos)
            if m and not _WORD_GOES_ON.match(text, m.end()):
                self.pos = m.end()
                return _WORDS[m.group()]
        if not self.peek():
            raise ReadError("expected a value, found end of text", self.pos)
        raise ReadError("expected a literal value (string, number, true/false/null, list or object)", self.pos)

    def sequence(self, close: str, depth: int) -> list[Any]:
        text = self.text
        pos = self.pos + 1
        items: list[Any] = []
        while True:
            pos = _WS_RUN.match(text, pos).end()
            if text.startswith(close, pos):
                self.pos = pos + 1
                return items
            self.pos = pos
            items.append(self.value(depth + 1))
            pos = _WS_RUN.match(text, self.pos).end()
            if text.startswith(",", pos):
                pos += 1
            elif not text.startswith(close, pos):
                self.pos = pos
                raise ReadError(f"expected ',' or '{close}' in a list", pos)

    def mapping(self, depth: int) -> dict[str, Any]:
        text = self.text
        pos = self.pos + 1
        out: dict[str, Any] = {}
        while True:
            pos = self.pos = _WS_RUN.match(text, pos).end()
            if text.startswith("}", pos):
                self.pos = pos + 1
                return out
            if not text.startswith(('"', "'"), pos):
                raise ReadError("object keys must be strings", pos)
            key = self.string()
            self.expect(":", "':' after an object key")
            out[key] = self.value(depth + 1)
            pos = _WS_RUN.match(text, self.pos).end()
            if text.startswith(",", pos):
                pos += 1
            elif not text.startswith("}", pos):
                self.pos = pos
                raise ReadError("expected ',' or '}' in an object", pos)

    def _name(self) -> str:
        m = DOTTED_NAME_RUN.match(self.text, self.pos)
        if not m:
            raise ReadError("expected a function name", self.pos)
        if not is_function_name(m.group()):
            raise ReadError(f"function name {m.group()!r} is not a Python identifier (or dotted identifiers)", self.pos)
        self.pos = m.end()
        self.expect("(", "'(' after the function name")
        return m.group()

    def _key(self, args: dict[str, Any]) -> str:
        text = self.text
        key = NAME_RUN.match(text, self.pos)
        after = _WS_RUN.match(text, key.end()).end() if key else self.pos
        if not key or text[after : after + 1] != "=" or text[after : after + 2] == "==":
            raise ReadError("positional argument: every argument must be written name=value", self.pos)
        name = key.group()
        if not is_argument_name(name):
            raise ReadError(f"argument name {name!r} is not a Python identifier", self.pos)
        self.pos = after + 1
        return name

    def call(self) -> dict[str, Any]:
        """One `name(key=value, ...)`. Sets `spans` (where each value's text is) and `tight` (no
        whitespace between the tokens, no trailing comma: the renderer's layout)."""
        text, start = self.text, self.pos
        m = _ASCII_CALL_HEAD.match(text, start)  # a shortcut for ASCII names directly followed by (
        if m:
            name, pos = m.group(1), m.end()
        else:
            name = self._name()
            pos = self.pos
        tight = pos == start + len(name) + 1
        args: dict[str, Any] = {}
        spans: list[tuple[int, int]] = []
        self.spans = spans
        after_comma = False
        while True:
            self.pos = _WS_RUN.match(text, pos).end()
            tight = tight and self.pos == pos
            if text.startswith(")", self.pos):
                self.pos += 1
                self.tight = tight and not after_comma
                return {"name": name, "arguments": args}
            key_start = self.pos
            m = _ASCII_KEY.match(text, key_start)
            if m:
                key, pos = m.group(1), m.end()
            else:
                key = self._key(args)
                pos = self.pos
                tight = tight and pos == key_start + len(key) + 1
            if key in args:
                raise ReadError(f"argument {key!r} given twice", key_start)
            self.pos = _WS_RUN.match(text, pos).end()
            tight = tight and self.pos == pos
            value_start = self.pos
            args[key] = self.value()
            spans.append((value_start, self.pos))
            pos = _WS_RUN.match(text, self.pos).end()
            tight = tight and pos == self.pos
            if text.startswith(",", pos):
                pos += 1
                after_comma = True
            elif text.startswith(")", pos):
                self.pos = pos + 1
                self.tight = tight
                return {"name": name, "arguments": args}
            else:
                self.pos = pos
                raise ReadError("expected ',' or ')' after an argument (only literal values are allowed)", pos)


def _plain_calls(text: str, pos: int, calls: list[dict[str, Any]], check: _RenderCheck) -> int:
    """Read the call lines from `pos` on that are written as rendered with plain values only (ASCII
    names; strings without escapes, ints, true/false/null), with regular expressions: the common case,
    fast. Returns where the last one's newline is (`pos` when there is none); a line with a repeated
    argument is left to the full reader, which reports it."""
    end = pos
    values, sources = (check.values, check.sources) if check.ok else ([], [])  # what check.add would do
    m = _PLAIN_CALL.match(text, pos)
    while m:
        args: dict[str, Any] = {}
        first, last = m.span(2)
        if last > first:
            written = []
            for arg in _PLAIN_ARG.finditer(text, first, last + 1):  # + 1: the ) its lookahead needs
                key, value = arg.group(1, 2)
                if key in args:
                    return end
                args[key] = value[1:-1] if value[0] == '"' else _WORDS[value] if value in _WORDS else int(value)
                written.append(value)
            sources.append("[" + ", ".join(written) + "]")
            values.append(list(args.values()))
        else:
            sources.append("[]")
            values.append([])
        calls.append({"name": m.group(1), "arguments": args})
        end = m.end() - 1
        m = _PLAIN_CALL.match(text, end + 1)
    return end


def _line_at(text: str, pos: int) -> str:
    """The line around `pos`, up to a block marker after `pos` (the text the failing call was read from)."""
    start = text.rfind("\n", 0, pos) + 1
    end = text.find("\n", pos)
    line = text[start : end if end >= 0 else len(text)]
    cut = [i for i in (line.find(m, pos - start) for m in BLOCK_STOPS) if i >= 0]
    return line[: min(cut)] if cut else line


def note(notes: list[str], name: str) -> None:
    if name not in notes:
        notes.append(name)


class _RenderCheck:
    """Whether the calls of a block are written exactly as the renderer writes them (`render.render_calls`).

    Each call's layout comes from the reader (`tight`); the text of the values is gathered and compared
    once per block with one encoding of all values, in either literal style: a list of lists is
    written as the rendered values joined by ", " and "], [".
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self.ok = True
        self.values: list[list[Any]] = []
        self.sources: list[str] = []

    def add(self, call: dict[str, Any], spans: list[tuple[int, int]], tight: bool) -> None:
        if not tight:
            self.ok = False
        elif self.ok:
            self.values.append(list(call["arguments"].values()))
            self.sources.append("[" + ", ".join([self.text[a:b] for a, b in spans]) + "]" if spans else "[]")

    def rendered(self) -> bool:
        if not self.ok:
            return False
        written = "[" + ", ".join(self.sources) + "]"
        try:
            if json_literal(self.values) == written:
                return True
            # The Python style differs from JSON only where it writes ', True/False/None or \x escapes.
            return any(m in written for m in ("'", "True", "False", "None", "\\x")) and python_literal(self.values) == written
        except ValueError:  # an integer too long for str(): there is no rendering to compare with
            return True


def judge_whitespace(ws: str, canonical: str, notes: list[str]) -> None:
    """Note how whitespace before a line's text differs from the rendered layout's `canonical`.

    Spaces or tabs that start the line are ``indented_block``; any other difference is ``block_whitespace``.
    """
    body = ws.rstrip(" \t")
    if len(body) < len(ws) and (not body or body.endswith("\n")):
        note(notes, "indented_block")
        ws = body
    if ws != canonical:
        note(notes, "block_whitespace")


def read_calls(
    text: str, pos: int = 0, *, notes: list[str] | None = None, lenient: bool = False, first_gap: str = ""
) -> tuple[list[dict[str, Any]], int]:
    """Read `name(key=value, ...)` calls, one per line, from `pos` up to ``` or `<|tool_call_end|>`.

    Returns the calls and where reading stopped (the marker, or the end of `text`); a marker inside a
    string value is part of the value. A malformed call raises `ReadError` (`.parse_error()` for users).
    Calls are separated by whitespace; `lenient` also reads `;` between calls and `#` comments.
    `notes` (when given) gets the names of what differs from the rendered layout; `first_gap` is the
    whitespace the layout has before the first call.
    """
    notes = [] if notes is None else notes
    reader = Reader(text)
    check = _RenderCheck(text)
    end = len(text)
    calls: list[dict[str, Any]] = []
    start = pos
    gap_start, odd_gap = pos, False  # odd_gap: a comment or `;` in this gap (already noted)
    try:
        while True:
            pos = _WS_RUN.match(text, gap_start).end()
            while lenient and text.startswith("#", pos):
                note(notes, "comments")
                odd_gap = True
                m = _COMMENT_END.search(text, pos)
                pos = _WS_RUN.match(text, m.start()).end() if m else len(text)
            if not odd_gap and (pos - gap_start != 1 or not calls or text[gap_start] != "\n"):
                judge_whitespace(text[gap_start:pos], "\n" if calls else first_gap, notes)
            if pos >= end or text.startswith(BLOCK_STOPS, pos):
                if not calls:
                    note(notes, "empty_block")
                if not check.rendered():
                    note(notes, "call_format")
                return calls, pos
            start = reader.pos = pos
            after = _plain_calls(text, pos, calls, check)
            if after > pos:
                gap_start, odd_gap = after, False
                continue
            calls.append(reader.call())
            pos = reader.pos
            check.add(calls[-1], reader.spans, reader.tight)
            gap_start, odd_gap = pos, False
            if lenient and pos < end and text[pos] in " \t;#":
                after = _SPACES.match(text, pos).end()
                if text.startswith(";", after):
                    note(notes, "semicolons")
                    gap_start, odd_gap = after + 1, True
                    continue
                if text.startswith("#", after):
                    gap_start, odd_gap = after, True
                    continue
            if pos < end and text[pos] not in WS and not text.startswith(BLOCK_STOPS, pos):
                raise ReadError("expected a newline after a call", pos)
    except ReadError as exc:
        exc.line = _line_at(text, max(exc.pos, start))
        raise
