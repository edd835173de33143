"""Parse an assistant turn generated in MiniCPM3's format back into thought, calls and content.

The inverse of `render_assistant_turn`. The call lines are read by `chat.reader` (literals only,
nothing evaluated, values exact). Two readings of the turn's layout:

* the default reads everything the official MiniCPM3 parser (`fc2dict` in OpenBMB's
  `minicpm_tool_parser.py`) reads: whitespace and blank lines around the markers, text before the
  call block (kept as content), an indented block, no code fence, a thought without
  `<|thought_end|>` before the call block, `;` between calls, `#` comments.
  It never raises for a `str`, and the result's ``lenient`` lists what the text needed beyond the
  template's exact layout (names in `LENIENCIES`; empty for exactly rendered text);
* ``strict=True`` is the exact reading used for validation: the thought (if any) first, the call
  block right after it, and a `ToolCallParseError` for a malformed block.
"""

from __future__ import annotations

import re
from typing import Any

from minicpm_plugin.chat.errors import ToolCallParseError
from minicpm_plugin.chat.reader import BLOCK_STOPS, ReadError, judge_whitespace, note, read_calls
from minicpm_plugin.chat.tokens import (
    ASSISTANT_HEADER,
    IM_END,
    THOUGHT_END,
    THOUGHT_START,
    TOOL_CALL_END,
    TOOL_CALL_START,
)

#: What a lenient reading may need, by the name `parse_assistant` reports in ``lenient``.
LENIENCIES: dict[str, str] = {
    "whitespace_before_thought": "whitespace before <|thought_start|>",
    "thought_newlines": "no newline after <|thought_start|>, before or after <|thought_end|>",
    "thought_not_closed": "no <|thought_end|> before the call block (the thought ends at <|tool_call_start|>)",
    "text_before_block": "text before <|tool_call_start|> (read as content)",
    "indented_block": "lines of the call block (markers, fences or calls) indented with spaces or tabs",
    "block_whitespace": "other whitespace than the template writes before, in or around the call block (blank lines, spaces)",
    "fence": "calls not fenced as ```python ... ``` (no fence, one fence, ``` or ```py)",
    "call_format": "a call not written as the template writes it (spaces, other spellings of values)",
    "semicolons": "calls separated by ';'",
    "comments": "'#' comments in the call block",
    "empty_block": "a call block without calls",
    "newline_after_block": "no newline after <|tool_call_end|>",
}

_STRICT_OPEN = re.compile(r"([ \t]*\n?)```(python|py)?([ \t]*\n?)")
_LENIENT_OPEN = re.compile(r"([ \t\r\n]*)```(python|py)?([ \t]*\r?\n?)")
_STRICT_CLOSE = re.compile(r"```([ \t]*\n?)")
_LENIENT_CLOSE = re.compile(r"```([ \t\r\n]*)")
_NOT_CLOSED = "tool-call block is not closed with <|tool_call_end|>"


def parse_calls(block: str) -> list[dict[str, Any]]:
    """Parse the lines between the code fences: one `name(key=value, ...)` per call."""
    try:
        calls, stop = read_calls(block)
    except ReadError as exc:
        raise exc.parse_error() from None
    if stop < len(block):
        raise ToolCallParseError("expected a function name", block[stop:].split("\n", 1)[0])
    return calls


def _read_block(text: str, start: int, notes: list[str], strict: bool) -> tuple[list[dict[str, Any]], int]:
    """The calls of the block whose `<|tool_call_start|>` is at `start`, and the index after its end marker."""
    body = start + len(TOOL_CALL_START)
    fence = (_STRICT_OPEN if strict else _LENIENT_OPEN).match(text, body)
    if fence:
        if fence.group(2) != "python":
            note(notes, "fence")
        judge_whitespace(fence.group(1), "\n", notes)
        if fence.group(3) != "\n":
            note(notes, "block_whitespace")
        body = fence.end()
    else:
        note(notes, "fence")
    closing = _STRICT_CLOSE if strict else _LENIENT_CLOSE
    try:
        calls, stop = read_calls(text, body, notes=notes, lenient=not strict, first_gap="" if fence else "\n")
    except ReadError as exc:
        # A block that is not closed is reported as such, as when the end is looked for first.
        stop = min((i for i in (text.find(m, exc.pos) for m in BLOCK_STOPS) if i >= 0), default=len(text))
        if _closed_at(text, stop, closing) < 0:
            raise ToolCallParseError(_NOT_CLOSED, text[body:stop].strip() or None) from None
        raise exc.parse_error() from None
    end = _closed_at(text, stop, closing)
    if end < 0:
        raise ToolCallParseError(_NOT_CLOSED, text[body:stop].strip() or None)
    close = closing.match(text, stop)
    if close:
        judge_whitespace(close.group(1), "\n", notes)
    if bool(fence) != bool(close):
        note(notes, "fence")
    return calls, end


def _closed_at(text: str, stop: int, closing: re.Pattern[str]) -> int:
    """The index after `<|tool_call_end|>` when the block closes at `stop` (``` then the marker, or the marker), else -1."""
    close = closing.match(text, stop)
    end = close.end() if close else stop
    return end + len(TOOL_CALL_END) if text.startswith(TOOL_CALL_END, end) else -1


def _thought(text: str, start: int, close: int, notes: list[str]) -> tuple[str, int]:
    """The thought between `<|thought_start|>` at `start` and `<|thought_end|>` at `close`, and where it ends."""
    thought = text[start + len(THOUGHT_START) : close]
    if thought.startswith("\n"):
        thought = thought[1:]
    else:
        note(notes, "thought_newlines")
    if thought.endswith("\n"):
        thought = thought[:-1]
    else:
        note(notes, "thought_newlines")
    end = close + len(THOUGHT_END)
    if text.startswith("\n", end):
        end += 1
    else:
        note(notes, "thought_newlines")
    return thought, end


def _after_block(text: str, end: int, notes: list[str]) -> str:
    if text.startswith("\n", end):
        return text[end + 1 :]
    note(notes, "newline_after_block")
    return text[end:]


def _read_exact(text: str, result: dict[str, Any]) -> None:
    notes = result["lenient"]
    rest = text
    if rest.startswith(THOUGHT_START):
        close = rest.find(THOUGHT_END, len(THOUGHT_START))
        if close < 0:
            raise ToolCallParseError("thought is not closed with <|thought_end|>")
        result["thought"], end = _thought(rest, 0, close, notes)
        rest = result["content"] = rest[end:]
    if rest.startswith(TOOL_CALL_START):
        result["tool_calls"], end = _read_block(rest, 0, notes, strict=True)
        result["content"] = _after_block(rest, end, notes)
    elif TOOL_CALL_START in rest:
        raise ToolCallParseError("the tool-call block must come first in the turn (after the thought)")


def _read_lenient(text: str, result: dict[str, Any]) -> None:
    notes = result["lenient"]
    base = 0
    first = len(text) - len(text.lstrip())
    if text.startswith(THOUGHT_START, first):
        if first:
            note(notes, "whitespace_before_thought")
        close = text.find(THOUGHT_END, first + len(THOUGHT_START))
        if close >= 0:
            result["thought"], base = _thought(text, first, close, notes)
        else:  # no <|thought_end|>: the official parser still reads a call block after the thought
            base = text.find(TOOL_CALL_START, first)
            if base < 0:
                raise ToolCallParseError("thought is not closed with <|thought_end|>")
            note(notes, "thought_not_closed")
            result["thought"] = text[first + len(THOUGHT_START) : base].strip("\n")
        result["content"] = text[base:]
    start = text.find(TOOL_CALL_START, base)
    if start < 0:
        return
    before = text[base:start].strip()
    if before:
        note(notes, "text_before_block")
    elif start > base:
        judge_whitespace(text[base:start], "", notes)
    result["tool_calls"], end = _read_block(text, start, notes, strict=False)
    after = _after_block(text, end, notes)
    result["content"] = f"{before}\n{after}" if before and after else before or after


def parse_assistant(text: str, *, strict: bool = False) -> dict[str, Any]:
    """Parse generated assistant text into ``{"content", "thought", "tool_calls", "error", "lenient"}``.

    `thought` is None when there is none; `tool_calls` is a list of ``{"name", "arguments"}``;
    `lenient` names what the text needed beyond the template's exact layout (see `LENIENCIES`; empty
    when it is exactly what the template renders). A malformed call block gives ``tool_calls == []``
    and `error` says why; the default reading never raises for a `str`. ``strict=True`` reads the
    exact layout only and raises `ToolCallParseError` instead of returning an error.
    """
    if not isinstance(text, str):
        raise TypeError("parse_assistant expects the generated text as a string")
    end = text.find(IM_END)
    if end >= 0:
        text = text[:end]
    if text.startswith(ASSISTANT_HEADER):
        text = text[len(ASSISTANT_HEADER) :]
    result: dict[str, Any] = {"content": text, "thought": None, "tool_calls": [], "error": None, "lenient": []}
    if strict:
        _read_exact(text, result)
        return result
    try:
        _read_lenient(text, result)
    except ToolCallParseError as exc:
        result["error"] = str(exc)
    except Exception as exc:  # noqa: BLE001 - a promise to clients: model output never crashes the reader
        result["error"] = f"unreadable output ({type(exc).__name__}: {exc})"
    return result
