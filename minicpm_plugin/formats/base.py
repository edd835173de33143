"""What a dataset format is: detection, conversion to the canonical conversation, and its errors.

The canonical conversation is ``{"messages": [...], "tools": [...] or None}`` in OpenAI's chat shape
plus MiniCPM3's ``thought`` (see docs/data_formats.md). A format's ``convert`` may return it loosely
(arguments as JSON strings, ``reasoning_content``, a leading ``<think>`` block, flat tool calls,
flat tools): the common step in :mod:`minicpm_plugin.formats.canonical` normalises and validates it.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from minicpm_plugin.formats import strict_json
from minicpm_plugin.formats.strict_json import reject_constant  # noqa: F401 - re-exported

#: ``detect`` results. MATCH: the record has this format's distinctive markers. COMPATIBLE: the
#: format could read the record but nothing in it is distinctive (e.g. a plain chat for a
#: tool-call format). NO: the format cannot read it. ``True``/``False`` mean MATCH/NO.
NO = 0
COMPATIBLE = 1
MATCH = 2


class RecordError(ValueError):
    """A record a format cannot convert. ``path`` names the field in the *source* record."""

    def __init__(self, message: str, path: str = "", code: str = "bad-record") -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.message = message
        self.path = path
        self.code = code


@dataclass
class Converted:
    """A converted record plus where each canonical message came from in the source record.

    ``sources[i]`` is the source field of ``conversation["messages"][i]`` (e.g. ``conversations[3]``)
    and ``tools_source`` the field the tools came from; problems found later in the canonical
    conversation are reported with these so the user can find the spot in their file.
    """

    conversation: dict[str, Any]
    sources: list[str] | None = None
    tools_source: str | None = None


@runtime_checkable
class DatasetFormat(Protocol):
    """What a format object must provide (a plain class with these attributes is enough)."""

    name: str
    description: str

    def detect(self, record: Mapping[str, Any]) -> int | bool: ...

    def convert(self, record: Mapping[str, Any]) -> dict[str, Any] | Converted: ...


class Format:
    """Convenience base class for formats. Subclasses set the attributes and override ``detect`` and
    ``convert``.

    ``specializes`` names formats this one is a special case of: when a file matches several
    formats, those named here are dropped in favour of this one (e.g. ``seed`` specializes
    ``openai``). ``example`` is a one-line record shown by ``minicpm-plugin check --list-formats``.
    ``version`` is part of the prepared file's cache key: bump it when the conversion changes.
    """

    name: str = ""
    description: str = ""
    example: str = ""
    specializes: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    version: str = "1"

    def detect(self, record: Mapping[str, Any]) -> int | bool:  # pragma: no cover - abstract
        raise NotImplementedError

    def convert(self, record: Mapping[str, Any]) -> dict[str, Any] | Converted:  # pragma: no cover
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<format {self.name!r}>"


# ---------------------------------------------------------------------------------------------
# Helpers shared by the built-in formats (and usable by third-party ones).


def loads(text: str) -> Any:
    """Python's ``json.loads`` keeping values exactly as written, or refusing them: NaN/Infinity,
    repeated keys, numbers a float cannot hold, nesting over MAX_DEPTH and lone surrogates raise
    ValueError (see :mod:`minicpm_plugin.formats.strict_json`)."""
    return strict_json.loads(text)


def jsonable(value: Any, path: str, depth: int = 0) -> Any:
    """``value`` with tuples turned into lists; RecordError for anything that is not a JSON value."""
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, str):
        problem = strict_json.find_problem(value)
        if problem is not None:
            raise RecordError(problem.msg, path, problem.code)
        return value
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise RecordError("NaN and Infinity are not JSON values", path)
        return value
    if depth >= strict_json.MAX_DEPTH and isinstance(value, (list, tuple, dict)):
        raise RecordError(strict_json.too_deep_error().msg, path)
    if isinstance(value, (list, tuple)):
        return [jsonable(v, f"{path}[{i}]", depth + 1) for i, v in enumerate(value)]
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise RecordError(f"object key {k!r} is not a string", path)
            out[jsonable(k, path)] = jsonable(v, f"{path}.{k}", depth + 1)
        return out
    raise RecordError(f"{type(value).__name__} is not a JSON value", path)


def _python_literal(text: str, path: str) -> Any:
    """``ast.literal_eval`` that refuses what it would change silently: repeated dict keys and
    non-zero numbers that underflow to 0.0 (``jsonable`` refuses the rest)."""
    tree = ast.parse(text.strip(), mode="eval")
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            keys = [k.value for k in node.keys if isinstance(k, ast.Constant)]
            repeated = next((k for i, k in enumerate(keys) if k in keys[:i]), None)
            if repeated is not None:
                raise RecordError(f"key {repeated!r} appears more than once in a dict; only its last value would be "
                                  "kept: keep one", path)
        elif isinstance(node, ast.Constant) and type(node.value) is float and node.value == 0.0:
            source = ast.get_source_segment(text.strip(), node) or ""
            if any(c in "123456789" for c in source.split("e")[0].split("E")[0]):
                raise RecordError(f"number {source} is too small for a 64-bit float (it would become 0.0); write 0, "
                                  "or the value as a string", path)
    return ast.literal_eval(tree)


def loads_lenient(text: str, path: str, what: str, code: str = "bad-record") -> Any:
    """Parse JSON, or else a Python literal (Hermes and Glaive data often hold ``repr`` output).

    Only literals are read (``ast.literal_eval``); nothing is executed.
    """
    try:
        return loads(text)
    except strict_json.JSONValueError as exc:
        raise RecordError(f"{what}: {exc.msg}", path + exc.path, exc.code) from None
    except ValueError as json_exc:
        try:
            value = _python_literal(text, path)
        except RecordError:
            raise
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            msg = getattr(json_exc, "msg", str(json_exc))
            raise RecordError(f"{what} is neither JSON nor a Python literal ({msg})", path, code) from None
        return jsonable(value, path)


CALL_SHAPE = '{"name": "...", "arguments": {...}}'


def loads_call(text: str, path: str, what: str) -> Any:
    """The JSON text of one call (or a list of calls) written in a data field; RecordError naming
    ``what`` otherwise, at the spot inside the text where a value cannot be kept exactly."""
    try:
        return loads(text)
    except strict_json.JSONValueError as exc:
        raise RecordError(f"{what}: {exc.msg}", path + exc.path, "bad-tool-call") from None
    except ValueError as exc:
        raise RecordError(f"{what} is not valid JSON ({getattr(exc, 'msg', exc)}); write {CALL_SHAPE}", path,
                          "bad-tool-call") from None


def load_json_field(record: Mapping[str, Any], key: str, *, allow: tuple[type, ...] = (list,)) -> Any:
    """A column that may hold a JSON value or a JSON string of it (xLAM, LLaMA-Factory ``tools``)."""
    value = record[key]
    if isinstance(value, str):
        if not value.strip():
            return None
        try:
            value = loads(value)
        except strict_json.JSONValueError as exc:
            raise RecordError(f"in the JSON string: {exc.msg}", key + exc.path) from None
        except ValueError as exc:
            msg = getattr(exc, "msg", str(exc))
            raise RecordError(f"is a string but not valid JSON ({msg})", key) from None
    if value is not None and not isinstance(value, allow):
        names = " or ".join("a list" if t is list else "an object" if t is dict else t.__name__ for t in allow)
        raise RecordError(f"must be {names} (or a JSON string of one), got {type(value).__name__}", key)
    return value


def as_tool(spec: Any) -> Any:
    """A flat ``{"name", "description", "parameters"}`` function wrapped as an OpenAI tool."""
    if isinstance(spec, Mapping) and "function" not in spec and "name" in spec:
        return {"type": "function", "function": dict(spec)}
    return spec


def as_call(spec: Any) -> Any:
    """A flat ``{"name", "arguments"}`` call wrapped as an OpenAI tool call."""
    if isinstance(spec, Mapping) and "function" not in spec and "name" in spec:
        return {"type": "function", "function": {"name": spec["name"], "arguments": spec.get("arguments", {})}}
    return spec


def is_message_list(value: Any, role_key: str, content_key: str) -> bool:
    return (
        isinstance(value, list)
        and len(value) > 0
        and all(isinstance(m, Mapping) and role_key in m for m in value)
        and any(content_key in m for m in value)
    )


#: Python type names used as JSON-schema ``type`` (xLAM, BFCL, LLaMA-Factory data) and their JSON-schema
#: equivalents; ``any`` has none, so its ``type`` is dropped (a schema without a type accepts any value).
PYTHON_SCHEMA_TYPES: dict[str, str | None] = {
    "dict": "object", "str": "string", "int": "integer", "float": "number", "bool": "boolean", "list": "array",
    "tuple": "array", "any": None,
}
_SUBSCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")


def python_schema_types(schema: Any, depth: int = 0) -> Any:
    """``schema`` with Python type names (``"dict"``, ``"str"``, ``"float"``, ``"any"``...) replaced by JSON-schema
    types, in every nested schema (properties, items, additionalProperties, anyOf/oneOf/allOf). Other values,
    unknown type names included, are kept for the checks to report."""
    if not isinstance(schema, Mapping) or depth > 64:
        return schema
    out = dict(schema)
    kind = out.get("type")
    if isinstance(kind, str) and kind.lower() in PYTHON_SCHEMA_TYPES:
        mapped = PYTHON_SCHEMA_TYPES[kind.lower()]
        if mapped is None:
            del out["type"]
        else:
            out["type"] = mapped
    elif isinstance(kind, list) and any(isinstance(k, str) and k.lower() in PYTHON_SCHEMA_TYPES for k in kind):
        mapped_list = [PYTHON_SCHEMA_TYPES.get(k.lower(), k) if isinstance(k, str) else k for k in kind]
        if None in mapped_list:
            del out["type"]
        else:
            out["type"] = list(dict.fromkeys(mapped_list))
    if isinstance(out.get("properties"), Mapping):
        out["properties"] = {k: python_schema_types(v, depth + 1) for k, v in out["properties"].items()}
    for key in ("items", "additionalProperties"):
        if isinstance(out.get(key), Mapping):
            out[key] = python_schema_types(out[key], depth + 1)
        elif key == "items" and isinstance(out.get(key), list):
            out[key] = [python_schema_types(v, depth + 1) for v in out[key]]
    for key in _SUBSCHEMA_LISTS:
        if isinstance(out.get(key), list):
            out[key] = [python_schema_types(v, depth + 1) for v in out[key]]
    return out


def tool_with_schema_types(tool: Any) -> Any:
    """A tool (flat or OpenAI-wrapped) whose ``parameters`` use JSON-schema type names (see `python_schema_types`)."""
    if not isinstance(tool, Mapping):
        return tool
    fn = tool.get("function") if "function" in tool else tool
    if not isinstance(fn, Mapping) or not isinstance(fn.get("parameters"), Mapping):
        return tool
    fn = dict(fn, parameters=python_schema_types(fn["parameters"]))
    return dict(tool, function=fn) if "function" in tool else fn
