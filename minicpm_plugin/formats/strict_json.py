"""Python's ``json`` with the checks that keep every value exactly as written, or say why not.

``json.loads`` alone silently keeps the last of repeated keys, turns ``1e400`` into ``inf`` and
``1e-400`` into ``0.0``, returns lone surrogates (``"\\ud800"``) that cannot be written as UTF-8
later, and recurses once per nesting level (a 100,000-deep ``[[[...`` line raises RecursionError,
or worse where the recursion limit was raised). Here:

- nesting is measured on the raw text before ``json`` recurses (:data:`MAX_DEPTH` levels of
  arrays/objects, counting the record itself), with C-speed string operations;
- repeated keys and numbers a float cannot hold are marked by decoding hooks; only a marked
  value, or text with a surrogate escape, is walked again (:func:`find_problem`) to name the spot.

``JSONValueError.path`` is a suffix such as ``.messages[1].content`` so that callers can append it
to the path of the field that held the JSON text. Standard library only.
"""

from __future__ import annotations

import json
import math
import re
import sys
import threading
from itertools import accumulate
from typing import Any

#: The most arrays/objects that may be nested inside each other, counting the outermost.
MAX_DEPTH = 100

_STATE = threading.local()
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abcdefABCDEF]")
_SURROGATE_ESCAPE_BYTES = re.compile(rb"\\u[dD][89abcdefABCDEF]")
_NOT_STRUCTURE = bytes(c for c in range(256) if c not in b'[]{}"')
_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}
_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{},]')
_NONZERO_DIGIT = re.compile(r"[1-9]")


class JSONValueError(ValueError):
    """JSON text whose value Python cannot hold exactly (or at all). ``path`` is a suffix such as
    ``.arguments.city`` or ``[2]`` ("" for the top level); ``code`` is the problem code."""

    def __init__(self, msg: str, path: str = "", code: str = "invalid-json") -> None:
        super().__init__(f"{path.lstrip('.')}: {msg}" if path else msg)
        self.msg = msg
        self.path = path
        self.code = code

    @property
    def field(self) -> str:
        """``path`` as a record-level field path (no leading dot)."""
        return self.path.lstrip(".")


class _Marked:
    """Stands in for a value that cannot be kept (a number out of range), with the reason."""

    __slots__ = ("message",)

    def __init__(self, message: str) -> None:
        self.message = message


class _RepeatedKeys(dict):
    """An object that had a key more than once (the key is in ``repeated``)."""

    repeated = ""


def _mark() -> None:
    _STATE.marks = getattr(_STATE, "marks", 0) + 1


def _show(text: str) -> str:
    """``text`` shortened for a message, with lone surrogates written as ``\\udxxx`` so it can be printed."""
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= 40 else f"{text[:20]}...{text[-12:]} ({len(text):,} characters)"


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    value = dict(pairs)
    if len(value) == len(pairs):
        return value
    marked = _RepeatedKeys(value)
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            marked.repeated = key
            break
        seen.add(key)
    _mark()
    return marked


def _float(text: str) -> Any:
    value = float(text)
    if math.isinf(value):
        _mark()
        return _Marked(f"number {_show(text)} is beyond the range of a 64-bit float (it would become "
                       f"{'-' if value < 0 else ''}Infinity); write a smaller number, or the value as a string")
    if value == 0.0 and _NONZERO_DIGIT.search(re.split("[eE]", text, maxsplit=1)[0]):
        _mark()
        return _Marked(f"number {_show(text)} is too small for a 64-bit float (it would become 0.0); "
                       "write 0, or the value as a string")
    return value


def _int(text: str) -> Any:
    try:
        return int(text)
    except ValueError:
        _mark()
        limit = getattr(sys, "get_int_max_str_digits", lambda: 4300)()
        digits = len(text.lstrip("-"))
        return _Marked(f"integer with {digits:,} digits: Python reads at most {limit:,}; write it as a string")


def _constant(name: str) -> Any:
    _mark()
    return _Marked(f"{name} is not valid JSON; write null, a number or a string")


def reject_constant(name: str) -> Any:
    """``parse_constant`` for ``json.loads``: NaN and Infinity are not JSON and cannot be trained."""
    raise ValueError(f"{name} is not valid JSON")


#: The everyday decoder: repeated keys and out-of-range floats are marked, NaN/Infinity refused.
_DECODER = json.JSONDecoder(object_pairs_hook=_object, parse_float=_float, parse_constant=reject_constant)
#: Also marks over-long integers and NaN/Infinity (used to locate them when the first decoder raised).
_MARKING_DECODER = json.JSONDecoder(object_pairs_hook=_object, parse_float=_float, parse_int=_int,
                                    parse_constant=_constant)


def _too_long_integer(exc: ValueError) -> bool:
    return not isinstance(exc, json.JSONDecodeError) and "integer string conversion" in str(exc)


def depth_exceeds(data: bytes, limit: int = MAX_DEPTH) -> bool:
    """Whether arrays/objects in JSON ``data`` nest deeper than ``limit``, ignoring brackets in strings.

    Never recurses and never loops in Python per character: escapes and string bodies are removed
    with ``bytes`` operations, then innermost ``[]``/``{}`` pairs are peeled off, one level per pass.
    For text that is not valid JSON the answer may err on the side of "too deep".
    """
    if len(data) <= limit:
        return False
    structure = data.translate(None, _NOT_STRUCTURE)  # brackets and quotes only
    quotes = structure.count(b'"')
    if len(structure) - quotes <= limit:  # not even that many brackets, in strings or not
        return False
    if b'\\"' in data:  # without an escaped quote, backslashes cannot move a string's end
        structure = data.replace(b"\\\\", b"").replace(b'\\"', b"").translate(None, _NOT_STRUCTURE)
    if quotes:
        # Two quotes with nothing between them change no bracket's in-or-out-of-string state, so they
        # can go first (most strings hold no bracket); the strings left are cut out without a big list.
        structure = structure.replace(b'""', b"")
        if b'"' in structure:
            structure = b"".join(structure.split(b'"')[::2])
    if b"[" * (limit + 1) in structure:  # the usual attack, [[[[..., answered without peeling
        return True
    peeled = 0
    while structure:  # peel the innermost pairs: one pass per level, at C speed
        if peeled == limit:
            return True
        # Mark the pairs present now (so that one pass peels exactly one level), then drop the marks.
        inner = structure.replace(b"[]", b"\0").replace(b"{}", b"\0").replace(b"\0", b"")
        if len(inner) == len(structure):
            # Unbalanced, so not valid JSON: what is left nests at most this deep, plus the peeled levels.
            deeper = limit - peeled
            return next(filter(deeper.__lt__, accumulate(map(_STEP.__getitem__, structure))), None) is not None
        structure = inner
        peeled += 1
    return False


def too_deep_error(limit: int = MAX_DEPTH) -> JSONValueError:
    return JSONValueError(f"arrays/objects are nested more than {limit} levels deep (the most this reader accepts, "
                          "so that nothing later runs out of stack); flatten the data")


def _as_bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def loads(text: str, raw: bytes | None = None) -> Any:
    """``json.loads(text)`` that returns only values Python holds exactly.

    ``raw`` may be ``text`` as UTF-8 bytes (saves encoding it again). Raises ``json.JSONDecodeError``
    for syntax errors, ``ValueError`` for NaN/Infinity, and :class:`JSONValueError` (with the path)
    for nesting over :data:`MAX_DEPTH`, repeated keys, numbers out of range, over-long integers and
    lone surrogates.
    """
    data = raw if raw is not None else _as_bytes(text)
    if depth_exceeds(data):
        raise too_deep_error()
    _STATE.marks = 0
    try:
        value = _DECODER.decode(text)
    except RecursionError:  # pragma: no cover - depth_exceeds stops this first
        raise too_deep_error() from None
    except ValueError as exc:
        if not _too_long_integer(exc):
            raise
        value = _MARKING_DECODER.decode(text)
    if _STATE.marks or _SURROGATE_ESCAPE_BYTES.search(data):
        problem = find_problem(value)
        if problem is not None:
            raise problem
    return value


class StrictDecoder(json.JSONDecoder):
    """A ``json.JSONDecoder`` whose ``raw_decode`` applies the checks of :func:`loads`."""

    def raw_decode(self, s: str, idx: int = 0) -> tuple[Any, int]:
        if depth_exceeds(_as_bytes(s[idx:])):
            raise too_deep_error()
        _STATE.marks = 0
        value, end = _MARKING_DECODER.raw_decode(s, idx)
        if _STATE.marks or _SURROGATE_ESCAPE.search(s, idx, end):
            problem = find_problem(value)
            if problem is not None:
                raise problem
        return value, end


def _surrogate(text: str, where: str, path: str) -> JSONValueError | None:
    if text.isascii():
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        char = text[exc.start]
        return JSONValueError(f"{where} holds a lone surrogate \\u{ord(char):04x} (character {exc.start + 1}), which is "
                              "not Unicode text and cannot be written as UTF-8; fix the \\u escape (a pair such as "
                              "\\ud83d\\ude00 is fine) or remove it", path, "not-utf8")
    return None


def find_problem(value: Any, path: str = "", depth: int = 0) -> JSONValueError | None:
    """The first value (in document order) that JSON cannot carry exactly, or None.

    Finds what the decoding hooks marked, lone surrogates in keys and strings, nesting over
    :data:`MAX_DEPTH`, NaN/Infinity, non-string keys and non-JSON types (e.g. from Parquet).
    """
    kind = type(value)
    if kind is str:
        return _surrogate(value, "the string", path)
    if value is None or kind is bool or kind is int:
        return None
    if kind is float:
        if math.isfinite(value):
            return None
        return JSONValueError(f"{value} is not a JSON value; write null, a number or a string", path)
    if kind is _Marked:
        return JSONValueError(value.message, path)
    if isinstance(value, (dict, list, tuple)):
        if depth >= MAX_DEPTH:
            return JSONValueError(too_deep_error().msg, path)
        if isinstance(value, _RepeatedKeys):
            return JSONValueError(f'key "{_show(value.repeated)}" appears more than once in this object; JSON readers '
                                  "keep only its last value and drop the others silently: keep one", path)
        if isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str):
                    return JSONValueError(f"object key {key!r} is not a string", path)
                sub = f"{path}.{key if key.isascii() else _show(key)}"
                problem = _surrogate(key, "the key", sub) or find_problem(item, sub, depth + 1)
                if problem is not None:
                    return problem
            return None
        for i, item in enumerate(value):
            problem = find_problem(item, f"{path}[{i}]", depth + 1)
            if problem is not None:
                return problem
        return None
    return JSONValueError(f"a {kind.__name__} value is not JSON; store it as a string or a number", path)


def array_items(text: str, raw: bytes) -> list[Any | JSONValueError]:
    """The elements of a JSON array file, each a value or the JSONValueError that makes it unusable.

    Raises ``json.JSONDecodeError`` for a syntax error anywhere (the file cannot be split into
    records) and :class:`ArrayTooDeep` when an element nests deeper than :data:`MAX_DEPTH`.
    """
    if depth_exceeds(raw, MAX_DEPTH + 1):
        raise ArrayTooDeep(*_deep_element(text))
    _STATE.marks = 0
    try:
        values = _DECODER.decode(text)
    except ValueError as exc:
        if isinstance(exc, json.JSONDecodeError):
            raise
        values = _MARKING_DECODER.decode(text)  # NaN or an over-long integer: mark it and go on
    if not isinstance(values, list):
        raise json.JSONDecodeError("expected a JSON array of records", text, 0)
    if not (_STATE.marks or _SURROGATE_ESCAPE_BYTES.search(raw)):
        return values
    return [find_problem(v) or v for v in values]


class ArrayTooDeep(ValueError):
    """An element of a JSON array file nests deeper than MAX_DEPTH (``index`` 0-based, ``line`` 1-based)."""

    def __init__(self, index: int, line: int) -> None:
        super().__init__(f"record {index + 1} (line {line}) is nested too deep")
        self.index = index
        self.line = line


def _deep_element(text: str) -> tuple[int, int]:
    """(element index, file line) where an array file first nests deeper than MAX_DEPTH + 1."""
    depth = index = 0
    for match in _TOKEN.finditer(text):
        token = match.group()
        if token == "[" or token == "{":
            depth += 1
            if depth > MAX_DEPTH + 1:
                return index, text.count("\n", 0, match.start()) + 1
        elif token == "]" or token == "}":
            depth -= 1
        elif token == "," and depth == 1:
            index += 1
    return index, text.count("\n") + 1  # pragma: no cover - only called when too deep
