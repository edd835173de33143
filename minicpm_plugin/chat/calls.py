"""One reading of a tool call: its name and its arguments as an object.

A call comes in OpenAI's shape (``{"function": {"name", "arguments"}}``) or flat (``{"name",
"arguments"}``), with the arguments as an object or as a JSON string (OpenAI's wire format). The
renderer and the dataset validation both read calls here; the validation turns a `CallError` into
its own problem codes and messages using ``kind``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, Literal

from minicpm_plugin.chat.errors import FormatError

#: What is wrong with a call: not an object (``shape``), ``function`` not an object, no usable
#: ``name``, arguments that are not JSON (``json``) or not a JSON object (``not-object``).
CallErrorKind = Literal["shape", "function", "name", "json", "not-object"]


class CallError(FormatError):
    """A tool call that cannot be read. ``detail`` is the JSON error, ``value`` the offending arguments."""

    def __init__(self, message: str, path: str, kind: CallErrorKind, detail: str = "", value: Any = None,
                 cause: Exception | None = None) -> None:
        super().__init__(message, path)
        self.kind = kind
        self.detail = detail
        self.value = value
        self.cause = cause


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def call_arguments(call: Any, path: str, *, allow_nan: bool = True,
                   decode: Callable[[str], Any] | None = None) -> tuple[str, dict[str, Any]]:
    """Name and arguments of one tool call in OpenAI shape or flat shape.

    Arguments given as a JSON string are parsed with Python's `json`, so values reach the text
    exactly as written (no Arrow or float round trip); a blank string or null means no arguments.
    ``allow_nan=False`` refuses ``NaN``/``Infinity`` in such a string (they are not JSON).
    ``decode`` replaces ``json.loads`` and ``allow_nan`` (dataset validation passes its strict reader,
    which refuses them too; its ValueError is kept as ``cause``).
    """
    if not isinstance(call, Mapping):
        raise CallError("a tool call must be an object with 'function': {'name', 'arguments'}", path, "shape")
    if "function" in call:
        call, path = call["function"], f"{path}.function"
        if not isinstance(call, Mapping):
            raise CallError("'function' must be an object with 'name' and 'arguments'", path, "function")
    name = call.get("name")
    if not isinstance(name, str) or not name:
        raise CallError("a tool call needs a non-empty string 'name'", f"{path}.name", "name")
    args = call.get("arguments", {})
    apath = f"{path}.arguments"
    if args is None:
        args = {}
    if isinstance(args, str):
        if not args.strip():
            args = {}
        else:
            try:
                if decode is not None:
                    args = decode(args)
                else:
                    args = json.loads(args) if allow_nan else json.loads(args, parse_constant=_reject_constant)
            except json.JSONDecodeError as exc:
                raise CallError(f"arguments are not valid JSON ({exc.msg} at char {exc.pos})", apath, "json",
                                exc.msg, cause=exc) from None
            except (ValueError, RecursionError) as exc:
                detail = str(exc) if isinstance(exc, ValueError) else "nested too deeply"
                raise CallError(f"arguments are not valid JSON ({detail})", apath, "json", detail,
                                cause=exc if isinstance(exc, ValueError) else None) from None
    if not isinstance(args, Mapping):
        raise CallError(f"arguments must be a JSON object, got {type(args).__name__}", apath, "not-object", value=args)
    return name, dict(args)
