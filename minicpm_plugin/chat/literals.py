"""How argument values are written inside a call line: JSON literals or Python literals (and read back).

`json` (the default) is what MiniCPM3's official template writes (`"x"`, `true`, `null`,
`{"a": 1}`), so a model trained with it is served correctly by the official template and by vLLM's
`minicpm` tool parser. `python` writes `'x'`, `True`, `None` (the BFCL MiniCPM3 handler's style); it
equals Python's `repr` except that non-ASCII characters are always written as themselves.

Reading back (for the parser): `python_string_value` decodes a Python string literal without
compiling code, and `int_from_digits` / `int_text` convert integers of any length exactly without
Python's process-wide 4,300-digit limit.
"""

from __future__ import annotations

import json
import re
import unicodedata
from typing import Any

from minicpm_plugin.chat.tokens import LiteralStyle, check_literal_style

# Reading a Python string literal's body: each escape sequence, and characters Python rejects.
_PY_ESCAPE = re.compile(
    r"\\(?:([0-7]{1,3})|x([0-9a-fA-F]{2})|u([0-9a-fA-F]{4})|U([0-9a-fA-F]{8})|N\{([^}]*)\}|(\r\n?|\n)|([\s\S]))|(\r)"
)
_PY_SIMPLE = {"\\": "\\", "'": "'", '"': '"', "a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t",
              "v": "\v"}
_PY_BAD_RAW = re.compile(r"[\x00\ud800-\udfff]")

# Characters written as escapes inside a Python-style string literal (besides the quote and `\`).
_PY_NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
PY_HEX_ESCAPED = [chr(c) for c in range(0x20) if chr(c) not in _PY_NAMED_ESCAPES] + ["\x7f"]
_PY_ESCAPED = re.compile(r"[\\\x00-\x1f\x7f]")  # written as escapes whatever the quote


_JSON_ENCODE = json.JSONEncoder(ensure_ascii=False).encode  # json.dumps(value, ensure_ascii=False), built once


def json_literal(value: Any) -> str:
    """`value` exactly as transformers' `tojson` filter writes it (what the official template uses)."""
    return _JSON_ENCODE(value)


def python_string_literal(text: str) -> str:
    quote = '"' if "'" in text and '"' not in text else "'"
    if quote not in text and not _PY_ESCAPED.search(text):  # nothing to escape: the common case, fast
        return quote + text + quote
    out = [quote]
    for ch in text:
        if ch == "\\" or ch == quote:
            out.append("\\" + ch)
        elif ch in _PY_NAMED_ESCAPES:
            out.append(_PY_NAMED_ESCAPES[ch])
        elif ch < " " or ch == "\x7f":
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    out.append(quote)
    return "".join(out)


def python_literal(value: Any) -> str:
    if value is None or isinstance(value, bool):
        return repr(value)
    if isinstance(value, str):
        return python_string_literal(value)
    if isinstance(value, (int, float)):
        return json.dumps(value)  # same digits as repr; NaN/Infinity as JSON writes them
    if isinstance(value, dict):
        return "{" + ", ".join(f"{python_literal(k)}: {python_literal(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(python_literal(v) for v in value) + "]"
    raise TypeError(f"not a JSON value: {type(value).__name__}")


def int_text(value: int) -> str:
    """The decimal digits of any int, also beyond Python's 4,300-digit `str(int)` limit (which is
    process-wide, so it is not raised here): halves joined, about n**1.6 time."""
    if value < 0:
        return "-" + int_text(-value)
    if value.bit_length() < 13_000:  # under 3,914 digits: within the limit
        return str(value)
    half = value.bit_length() * 3 // 20  # about half of its digits (log10(2) ~ 0.3)
    high, low = divmod(value, 10**half)
    return int_text(high) + int_text(low).rjust(half, "0")


def encode_literal(value: Any, style: LiteralStyle = "json") -> str:
    check_literal_style(style)
    return json_literal(value) if style == "json" else python_literal(value)


def _py_escape(m: re.Match[str]) -> str:
    octal, x2, u4, u8, name, newline, other, raw_cr = m.groups()
    if octal is not None:
        return chr(int(octal, 8))
    if x2 or u4:
        return chr(int(x2 or u4, 16))
    if u8:
        if int(u8, 16) > 0x10FFFF:
            raise ValueError("illegal Unicode character")
        return chr(int(u8, 16))
    if name is not None:
        try:
            char = unicodedata.lookup(name) if name.isascii() else ""
        except KeyError:
            char = ""
        if len(char) != 1:  # unknown, or a named sequence (not allowed in a literal)
            raise ValueError("unknown Unicode character name")
        return char
    if newline is not None:
        return ""  # a backslash at the end of a line continues the literal
    if raw_cr is not None:
        raise ValueError("line break in the literal")
    if other in "xuUN":
        raise ValueError(f"truncated \\{other} escape")
    return _PY_SIMPLE.get(other, "\\" + other)


def python_string_value(body: str) -> str:
    """The value of the Python string literal `'body'` (no unescaped quote or newline in `body`).

    Equal to `ast.literal_eval` of it (checked against it in the tests), without compiling code and
    without the warnings Python prints for unknown escapes. ValueError when it is not valid.
    """
    if _PY_BAD_RAW.search(body):
        raise ValueError("null character or unpaired surrogate in the literal")
    if "\\" not in body and "\r" not in body:
        return body
    return _PY_ESCAPE.sub(_py_escape, body)


def int_from_digits(digits: str) -> int:
    """int(digits) for any length, exactly, without raising Python's process-wide 4,300-digit `int()`
    limit: halves joined by multiplication, about n**1.6 time."""
    if len(digits) <= 4_000:
        return int(digits)
    mid = len(digits) // 2
    return int_from_digits(digits[:mid]) * 10 ** (len(digits) - mid) + int_from_digits(digits[mid:])
