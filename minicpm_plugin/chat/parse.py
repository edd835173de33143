"""Parse an assistant turn generated in MiniCPM3's format back into thought, calls and content.

The inverse of `render_assistant_turn`: JSON values round-trip exactly (`true` -> True, `null` ->
None, nested values, unicode, escapes), Python literals (`True`, `None`, `'x'`) are read too, and
Python keywords work as argument names (`from=`). Nothing is evaluated: a small recursive-descent
reader accepts literals only, so positional arguments and expressions are reported, not run.
"""

from __future__ import annotations

import ast
import json
import re
from typing import Any

from minicpm_plugin.chat.errors import ToolCallParseError
from minicpm_plugin.chat.tokens import (
    ASSISTANT_HEADER,
    IM_END,
    THOUGHT_END,
    THOUGHT_START,
    TOOL_CALL_END,
    TOOL_CALL_START,
)

_WS = " \t\r\n"
_NAME = re.compile(r"[^\W\d]\w*(?:\.[^\W\d]\w*)*")
_KEY = re.compile(r"[^\W\d]\w*")
_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")
_WORDS: dict[str, Any] = {
    "true": True, "false": False, "null": None, "True": True, "False": False, "None": None,
    "NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf"),
}
_WORD = re.compile(r"-?Infinity|NaN|true|false|null|True|False|None")
_scan_json_string = json.decoder.scanstring


class _Error(Exception):
    def __init__(self, message: str, pos: int) -> None:
        super().__init__(message)
        self.message = message
        self.pos = pos


class _Reader:
    """Reads literals and calls from `text`; `pos` is the index of the next unread character."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def skip_ws(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in _WS:
            self.pos += 1

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def expect(self, ch: str, what: str) -> None:
        self.skip_ws()
        if self.peek() != ch:
            found = repr(self.peek()) if self.peek() else "end of text"
            raise _Error(f"expected {what}, found {found}", self.pos)
        self.pos += 1

    def string(self) -> str:
        quote, start = self.text[self.pos], self.pos
        if quote == '"':
            try:
                value, self.pos = _scan_json_string(self.text, start + 1, False)
                return value
            except ValueError:
                pass  # not JSON (e.g. a Python escape such as \x41): read it as a Python literal
        i = start + 1
        while i < len(self.text):
            ch = self.text[i]
            if ch == "\\":
                i += 2
                continue
            if ch == quote:
                break
            if ch == "\n":
                raise _Error("string literal runs past the end of the line", start)
            i += 1
        else:
            raise _Error("string literal is not closed", start)
        try:
            value = ast.literal_eval(self.text[start : i + 1])
        except (ValueError, SyntaxError) as exc:
            raise _Error(f"bad string literal ({exc})", start) from None
        self.pos = i + 1
        return value

    def value(self, depth: int = 0) -> Any:
        if depth > 100:
            raise _Error("value nested too deeply", self.pos)
        self.skip_ws()
        ch = self.peek()
        if ch in ('"', "'"):
            return self.string()
        if ch in ("[", "("):
            return self.sequence("]" if ch == "[" else ")", depth)
        if ch == "{":
            return self.mapping(depth)
        m = _WORD.match(self.text, self.pos)
        if m and not _KEY.match(self.text, m.end()):
            self.pos = m.end()
            return _WORDS[m.group()]
        m = _NUMBER.match(self.text, self.pos)
        if m and not _KEY.match(self.text, m.end()):
            self.pos = m.end()
            token = m.group()
            return float(token) if any(c in token for c in ".eE") else int(token)
        if not ch:
            raise _Error("expected a value, found end of text", self.pos)
        raise _Error("expected a literal value (string, number, true/false/null, list or object)", self.pos)

    def sequence(self, close: str, depth: int) -> list[Any]:
        self.pos += 1
        items: list[Any] = []
        while True:
            self.skip_ws()
            if self.peek() == close:
                self.pos += 1
                return items
            items.append(self.value(depth + 1))
            self.skip_ws()
            if self.peek() == ",":
                self.pos += 1
            elif self.peek() != close:
                raise _Error(f"expected ',' or '{close}' in a list", self.pos)

    def mapping(self, depth: int) -> dict[str, Any]:
        self.pos += 1
        out: dict[str, Any] = {}
        while True:
            self.skip_ws()
            if self.peek() == "}":
                self.pos += 1
                return out
            if self.peek() not in ('"', "'"):
                raise _Error("object keys must be strings", self.pos)
            key = self.string()
            self.expect(":", "':' after an object key")
            out[key] = self.value(depth + 1)
            self.skip_ws()
            if self.peek() == ",":
                self.pos += 1
            elif self.peek() != "}":
                raise _Error("expected ',' or '}' in an object", self.pos)

    def call(self) -> dict[str, Any]:
        m = _NAME.match(self.text, self.pos)
        if not m:
            raise _Error("expected a function name", self.pos)
        self.pos = m.end()
        self.expect("(", "'(' after the function name")
        args: dict[str, Any] = {}
        while True:
            self.skip_ws()
            if self.peek() == ")":
                self.pos += 1
                return {"name": m.group(), "arguments": args}
            key = _KEY.match(self.text, self.pos)
            after = self.pos
            if key:
                after = key.end()
                while after < len(self.text) and self.text[after] in _WS:
                    after += 1
            if not key or self.text[after : after + 1] != "=" or self.text[after : after + 2] == "==":
                raise _Error("positional argument: every argument must be written name=value", self.pos)
            if key.group() in args:
                raise _Error(f"argument {key.group()!r} given twice", self.pos)
            self.pos = after + 1
            args[key.group()] = self.value()
            self.skip_ws()
            if self.peek() == ",":
                self.pos += 1
            elif self.peek() != ")":
                raise _Error("expected ',' or ')' after an argument (only literal values are allowed)", self.pos)


def _line_at(text: str, pos: int) -> str:
    start = text.rfind("\n", 0, pos) + 1
    end = text.find("\n", pos)
    return text[start : end if end >= 0 else len(text)]


def parse_calls(block: str) -> list[dict[str, Any]]:
    """Parse the lines between the code fences: one `name(key=value, ...)` per call."""
    reader = _Reader(block)
    calls = []
    try:
        while True:
            reader.skip_ws()
            if reader.pos >= len(block):
                return calls
            start = reader.pos
            calls.append(reader.call())
            if reader.pos < len(block) and block[reader.pos] not in _WS:
                raise _Error("expected a newline after a call", reader.pos)
    except _Error as exc:
        raise ToolCallParseError(exc.message, _line_at(block, max(exc.pos, start))) from None


def _call_block(text: str) -> tuple[str, str]:
    """Split `<|tool_call_start|> ... <|tool_call_end|>\\n rest` into (calls source, rest).

    The exact rendered form is read first; looser model output (no fence, other whitespace) too.
    """
    body_start = len(TOOL_CALL_START)
    reader = _Reader(text)
    # Find the end marker after the calls, reading strings properly so a marker inside an argument
    # value does not end the block.
    m = re.compile(r"[ \t]*\n?```(?:python|py)?[ \t]*\n?").match(text, body_start)
    reader.pos = m.end() if m else body_start
    source_start = reader.pos
    while reader.pos < len(text):
        ch = text[reader.pos]
        if text.startswith("```", reader.pos) or text.startswith(TOOL_CALL_END, reader.pos):
            break
        if ch in ('"', "'"):
            try:
                reader.string()
            except _Error:
                reader.pos += 1
            continue
        reader.pos += 1
    source = text[source_start : reader.pos]
    rest_start = reader.pos
    m = re.compile(r"```[ \t]*\n?").match(text, rest_start)
    if m:
        rest_start = m.end()
    if not text.startswith(TOOL_CALL_END, rest_start):
        raise ToolCallParseError("tool-call block is not closed with <|tool_call_end|>", source.strip() or None)
    rest = text[rest_start + len(TOOL_CALL_END) :]
    return source, rest[1:] if rest.startswith("\n") else rest


def parse_assistant(text: str, *, strict: bool = False) -> dict[str, Any]:
    """Parse generated assistant text into ``{"content", "thought", "tool_calls", "error"}``.

    `thought` is None when there is none; `tool_calls` is a list of ``{"name", "arguments"}``.
    When the call block is malformed the result has ``tool_calls == []`` and `error` says why
    (with ``strict=True`` a `ToolCallParseError` is raised instead). Never raises otherwise.
    """
    if not isinstance(text, str):
        raise TypeError("parse_assistant expects the generated text as a string")
    end = text.find(IM_END)
    if end >= 0:
        text = text[:end]
    if text.startswith(ASSISTANT_HEADER):
        text = text[len(ASSISTANT_HEADER) :]
    result: dict[str, Any] = {"content": text, "thought": None, "tool_calls": [], "error": None}

    def fail(message: str, call: str | None = None) -> dict[str, Any]:
        if strict:
            raise ToolCallParseError(message, call)
        result["error"] = f"{message}: {call!r}" if call else message
        return result

    rest = text
    if rest.startswith(THOUGHT_START):
        close = rest.find(THOUGHT_END, len(THOUGHT_START))
        if close < 0:
            return fail("thought is not closed with <|thought_end|>")
        thought = rest[len(THOUGHT_START) : close]
        thought = thought[1:] if thought.startswith("\n") else thought
        result["thought"] = thought[:-1] if thought.endswith("\n") else thought
        rest = rest[close + len(THOUGHT_END) :]
        rest = rest[1:] if rest.startswith("\n") else rest
        result["content"] = rest
    if rest.startswith(TOOL_CALL_START):
        try:
            source, rest = _call_block(rest)
            result["tool_calls"] = parse_calls(source)
        except ToolCallParseError as exc:
            return fail(exc.message, exc.call)
        result["content"] = rest
    elif TOOL_CALL_START in rest:
        return fail("the tool-call block must come first in the turn (after the thought)")
    return result
