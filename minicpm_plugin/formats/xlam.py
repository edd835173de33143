"""xLAM / APIGen function-calling records: ``query``, ``tools`` and ``answers`` (JSON strings).

Each record becomes one user turn (``query``) and one assistant turn with the calls in ``answers``
(parallel calls in order). ``tools`` uses flat parameter dicts, ``{"city": {"type": "str",
"description": ..., "default": ...}}``, turned into JSON schema: Python type names map to JSON-schema
types (``List[int]`` -> array of integer, ``Dict`` -> object, ``str, optional`` -> string, not
required); a parameter is required when it has no ``default`` and is not marked optional; a type
with no JSON-schema equivalent (``Callable``, ``Any``, ``Union[...]``) is left without ``type``.
Tools that already carry a JSON-schema ``parameters`` object are kept as they are.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from minicpm_plugin.formats.base import MATCH, NO, Converted, Format, RecordError, as_call, load_json_field

_BASIC = {
    "str": "string", "string": "string", "int": "integer", "integer": "integer", "float": "number",
    "number": "number", "bool": "boolean", "boolean": "boolean", "none": "null", "nonetype": "null",
}
_ARRAYS = {"list", "tuple", "set", "sequence", "array", "iterable"}
_OBJECTS = {"dict", "mapping", "object"}
_OPTIONAL = re.compile(r",\s*optional\s*$", re.I)
_GENERIC = re.compile(r"^(\w+)\s*(?:\[(.*)\])?$", re.S)


def _split_args(text: str) -> list[str]:
    parts, depth, cur = [], 0, []
    for ch in text:
        if ch == "," and depth == 0:
            parts.append("".join(cur).strip())
            cur = []
            continue
        depth += ch == "["
        depth -= ch == "]"
        cur.append(ch)
    if cur:
        parts.append("".join(cur).strip())
    return [p for p in parts if p]


def type_schema(type_name: str) -> tuple[dict[str, Any], bool]:
    """(JSON schema for a Python type name, whether it is marked optional)."""
    text = type_name.strip()
    optional = bool(_OPTIONAL.search(text))
    text = _OPTIONAL.sub("", text).strip()
    m = _GENERIC.match(text)
    if not m:
        return {}, optional
    base, inner = m.group(1).lower(), m.group(2)
    if base == "optional" and inner:
        schema, _ = type_schema(inner)
        return schema, True
    if base in _BASIC and inner is None:
        return {"type": _BASIC[base]}, optional
    if base in _ARRAYS:
        args = _split_args(inner) if inner else []
        schema: dict[str, Any] = {"type": "array"}
        if len(args) == 1 or (base == "tuple" and args and len(set(args)) == 1):
            items, _ = type_schema(args[0])
            if items:
                schema["items"] = items
        return schema, optional
    if base in _OBJECTS:
        return {"type": "object"}, optional
    return {}, optional


def flat_parameters(params: Any, path: str) -> dict[str, Any]:
    """xLAM's flat ``{name: {"type": "str", ...}}`` as a JSON-schema object."""
    if params is None or params == {}:
        return {"type": "object", "properties": {}, "required": []}
    if not isinstance(params, Mapping):
        raise RecordError(f"must be an object of parameters, got {type(params).__name__}", path, "bad-tool-schema")
    if params.get("type") == "object" and isinstance(params.get("properties"), Mapping):
        return dict(params)  # already JSON schema
    properties: dict[str, Any] = {}
    required: list[str] = []
    for name, spec in params.items():
        if not isinstance(spec, Mapping):
            raise RecordError(f"parameter {name!r} must be an object like {{\"type\": \"str\", \"description\": \"...\"}}",
                              f"{path}.{name}", "bad-tool-schema")
        out: dict[str, Any] = {}
        optional = False
        if isinstance(spec.get("type"), str):
            schema, optional = type_schema(spec["type"])
            out.update(schema)
        for key in ("description", "enum", "default"):
            if key in spec:
                out[key] = spec[key]
        properties[name] = out
        if "default" not in spec and not optional:
            required.append(name)
    return {"type": "object", "properties": properties, "required": required}


class XLAMFormat(Format):
    name = "xlam"
    aliases = ("apigen",)
    description = "xLAM/APIGen: query + tools + answers (JSON strings), flat parameter dicts"
    example = (
        '{"query": "Weather in Paris?", "tools": "[{\\"name\\": \\"get_weather\\", \\"description\\": \\"...\\", '
        '\\"parameters\\": {\\"city\\": {\\"type\\": \\"str\\", \\"description\\": \\"City\\"}}}]", '
        '"answers": "[{\\"name\\": \\"get_weather\\", \\"arguments\\": {\\"city\\": \\"Paris\\"}}]"}'
    )

    def detect(self, record: Mapping[str, Any]) -> int:
        return MATCH if {"query", "tools", "answers"} <= set(record) else NO

    def convert(self, record: Mapping[str, Any]) -> Converted:
        query = record["query"]
        if not isinstance(query, str):
            raise RecordError(f"must be a string, got {type(query).__name__}", "query", "bad-content")
        raw_tools = load_json_field(record, "tools") or []
        tools = []
        for i, t in enumerate(raw_tools):
            if not isinstance(t, Mapping) or "function" in t or "name" not in t:
                tools.append(t)  # OpenAI-wrapped or malformed: the common checks report it
                continue
            fn = {k: v for k, v in t.items() if k != "parameters"}
            fn["parameters"] = flat_parameters(t.get("parameters"), f"tools[{i}].parameters")
            tools.append({"type": "function", "function": fn})
        answers = load_json_field(record, "answers") or []
        calls = []
        for j, a in enumerate(answers):
            if not isinstance(a, Mapping) or "name" not in a:
                raise RecordError('each answer must be {"name": "...", "arguments": {...}}', f"answers[{j}]", "bad-tool-call")
            calls.append(as_call(a))
        assistant: dict[str, Any] = {"role": "assistant", "content": ""}
        if calls:
            assistant["tool_calls"] = calls
        return Converted({"messages": [{"role": "user", "content": query}, assistant], "tools": tools or None},
                         ["query", "answers"], "tools")
