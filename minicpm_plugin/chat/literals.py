"""How argument values are written inside a call line: JSON literals or Python literals.

`json` (the default) is what MiniCPM3's official template writes (`"x"`, `true`, `null`,
`{"a": 1}`), so a model trained with it is served correctly by the official template and by vLLM's
`minicpm` tool parser. `python` writes `'x'`, `True`, `None` (the BFCL MiniCPM3 handler's style); it
equals Python's `repr` except that non-ASCII characters are always written as themselves.
"""

from __future__ import annotations

import json
from typing import Any

from minicpm_plugin.chat.tokens import LiteralStyle, check_literal_style

# Characters written as escapes inside a Python-style string literal (besides the quote and `\`).
_PY_NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
PY_HEX_ESCAPED = [chr(c) for c in range(0x20) if chr(c) not in _PY_NAMED_ESCAPES] + ["\x7f"]


_JSON_ENCODE = json.JSONEncoder(ensure_ascii=False).encode  # json.dumps(value, ensure_ascii=False), built once


def json_literal(value: Any) -> str:
    """`value` exactly as transformers' `tojson` filter writes it (what the official template uses)."""
    return _JSON_ENCODE(value)


def python_string_literal(text: str) -> str:
    quote = '"' if "'" in text and '"' not in text else "'"
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
