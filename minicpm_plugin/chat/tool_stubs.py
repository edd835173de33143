"""Tools rendered into the system turn as Python stubs, exactly as MiniCPM3's template does.

Every quirk of the official rendering is kept on purpose (the model was trained on it): class
names come from Jinja's `title` filter ("max_price" -> "Max_price"), string defaults are written as
JSON while other defaults use Python's `str`, a schema without a usable type becomes `Union[]`, an
enum inside array items gives a class name but no class, and nested classes are written before the
function that uses them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from minicpm_plugin.chat.errors import FormatError
from minicpm_plugin.chat.literals import json_literal

TOOLS_HEADER = (
    "\n# Functions\nHere is a list of functions that you can invoke:\n```python\n"
    "from enum import Enum\nfrom typing import List, Dict, Optional\n"
    "from pydantic import BaseModel, Field\n\n"
)

TOOLS_RULES = (
    "\n```\n\n# Function Call Rule and Output Format\n"
    "- If the user's question can be answered without calling any function, please answer the user's "
    "question directly. In this situation, you should return your thought and answer the user's question "
    "directly.\n"
    "- If the user cannot be answered without calling any function, and the user does not provide enough "
    "information to call functions, please ask the user for more information. In this situation, you "
    "should return your thought and ask the user for more information.\n"
    "- If the user's question cannot be answered without calling any function, and the user has provided "
    "enough information to call functions to solve it, you should call the functions. In this situation, "
    "the assistant should return your thought and call the functions.\n"
    "- Use default parameters unless the user has specified otherwise.\n"
    "- You should answer in the following format:\n\n"
    "<|thought_start|>\n"
    "{explain why the user's question can be answered without calling a function or why you should ask "
    "the user for more information or why you should call one or more functions and your plan to solve "
    "the user's question.}\n"
    "<|thought_end|>\n"
    "<|tool_call_start|>\n```python\nfunc1(params_name=params_value, params_name2=params_value2...)\n"
    "func2(params)\n```\n<|tool_call_end|>\n"
    "{answer the user's question directly or ask the user for more information}"
)

_BASIC_TYPES = {"string": "str", "number": "float", "integer": "int", "boolean": "bool", "null": "None"}
_TITLE_SPLIT = re.compile(r"([-\s({\[<]+)")
_MAX_DEPTH = 32


def jinja_title(text: str) -> str:
    """Jinja's `title` filter: upper-case the first letter of each word, lower-case the rest.

    Words are split at whitespace, `-`, and opening brackets only, so underscores do not split.
    """
    return "".join(item[0].upper() + item[1:].lower() for item in _TITLE_SPLIT.split(text) if item)


def _jinja_str(value: Any) -> str:
    """What `{{ value }}` / `value|string` writes for a Python value (None -> "None")."""
    return str(value)


def default_literal(spec: Mapping[str, Any]) -> str:
    if "default" not in spec:
        return "None"
    default = spec["default"]
    return json_literal(default) if isinstance(default, str) else _jinja_str(default)


def python_type(name: str, spec: Any, path: str, depth: int = 0) -> str:
    """The Python annotation the official template derives from a JSON schema."""
    if depth > _MAX_DEPTH:
        raise FormatError("schema nested too deeply", path)
    if not isinstance(spec, Mapping):
        return "Union[]"  # no usable type: what the official template writes
    if spec.get("enum"):
        return jinja_title(name)
    if "type" not in spec:
        return "Union[]"
    kind = spec["type"]
    if isinstance(kind, str):
        if kind in _BASIC_TYPES:
            return _BASIC_TYPES[kind]
        if kind == "array":
            return "List[" + python_type(name, spec.get("items"), f"{path}.items", depth + 1) + "]"
        if kind == "object":
            if spec.get("properties"):
                return jinja_title(name)
            extra = spec.get("additionalProperties") or "Any"
            return "Dict[str, " + python_type(name, extra, f"{path}.additionalProperties", depth + 1) + "]"
        # The official template recurses forever on other strings ("any", "float", ...).
        raise FormatError(
            f"unknown JSON-schema type {kind!r}; use one of string, number, integer, boolean, null, "
            "array, object (or a list of them)",
            f"{path}.type",
        )
    if isinstance(kind, (list, tuple)):
        members = [python_type(name, {"type": t}, f"{path}.type[{i}]", depth + 1) for i, t in enumerate(kind)]
        return "Union[" + ", ".join(members) + "]"
    if isinstance(kind, Mapping):
        members = [python_type(name, {"type": t}, f"{path}.type", depth + 1) for t in kind]
        return "Union[" + ", ".join(members) + "]"
    return "Any"


def _required(spec: Mapping[str, Any], path: str) -> Any:
    required = spec.get("required", ())
    if required is None or isinstance(required, (bool, int, float)):
        raise FormatError("'required' must be a list of property names", f"{path}.required")
    return required


def _properties(spec: Any, path: str) -> list[tuple[str, Any]]:
    if not isinstance(spec, Mapping) or "properties" not in spec:
        return []
    props = spec["properties"]
    if not isinstance(props, Mapping):
        raise FormatError("'properties' must be an object mapping names to schemas", f"{path}.properties")
    return list(props.items())


def _object_fields(spec: Any, indent: str, header: str, path: str, depth: int) -> str:
    """Classes needed by `spec`'s properties, then `header`, then one annotated line per property."""
    if depth > _MAX_DEPTH:
        raise FormatError("schema nested too deeply", path)
    classes: list[str] = []
    lines = [header]
    props = _properties(spec, path)
    required = _required(spec, path) if props else ()
    for name, field in props:
        if not isinstance(name, str):
            raise FormatError("property names must be strings", f"{path}.properties")
        fpath = f"{path}.properties.{name}"
        if not isinstance(field, Mapping):
            raise FormatError("a property schema must be an object", fpath)
        items = field.get("items")
        if field.get("enum"):
            enum = field["enum"]
            if not isinstance(enum, (list, tuple)):
                raise FormatError("'enum' must be a list", f"{fpath}.enum")
            classes.append(f"\n\nclass {jinja_title(name)}(Enum):\n")
            classes.extend(f"    enum_{i} = {json_literal(opt)}\n" for i, opt in enumerate(enum))
        elif field.get("type") == "object" and field.get("properties"):
            classes.append(
                _object_fields(field, "    ", f"\n\nclass {jinja_title(name)}(BaseModel):\n", fpath, depth + 1)
            )
        elif (
            field.get("type") == "array"
            and isinstance(items, Mapping)
            and items.get("type") == "object"
            and items.get("properties")
        ):
            classes.append(
                _object_fields(
                    items, "    ", f"\n\nclass {jinja_title(name)}(BaseModel):\n", f"{fpath}.items", depth + 1
                )
            )
        is_required = name in required
        annotation = python_type(name, field, fpath, depth)
        line = indent + name + ": " + (annotation if is_required else f"Optional[{annotation}]")
        title, description, pattern = field.get("title"), field.get("description"), field.get("pattern")
        if not title and not description and not pattern:
            if not is_required:
                line += " = " + default_literal(field)
        else:
            line += " = Field(..." if is_required else " = Field(" + default_literal(field)
            if description:
                line += ", description=" + json_literal(description)
            if pattern:
                line += ", regex=" + json_literal(pattern)
            if title:
                line += ", title=" + json_literal(title)
            line += ")"
        lines.append(line + "\n")
    return "".join(classes) + "".join(lines)


def render_tool(tool: Any, path: str) -> str:
    """One tool as a `def` stub (plus the classes it needs); '' for non-function tools."""
    if not isinstance(tool, Mapping):
        raise FormatError("a tool must be an object like {'type': 'function', 'function': {...}}", path)
    if "type" in tool and tool["type"] != "function":
        return ""  # the official template skips tools of other types
    if "function" in tool:
        tool, path = tool["function"], f"{path}.function"
        if not isinstance(tool, Mapping):
            raise FormatError("'function' must be an object with name, description, parameters", path)
    name = tool.get("name")
    if not isinstance(name, str) or not name:
        raise FormatError("a tool needs a non-empty string 'name'", f"{path}.name")
    params = tool.get("parameters")
    ppath = f"{path}.parameters"
    if params is not None and not isinstance(params, Mapping):
        raise FormatError("'parameters' must be a JSON-schema object", ppath)
    signature = ""
    if params:
        props = _properties(params, ppath)
        required = _required(params, ppath) if props else ()
        signature = ", ".join(
            n if n in required else f"{n}={default_literal(f if isinstance(f, Mapping) else {})}"
            for n, f in props
        )
    description = _jinja_str(tool["description"]) if "description" in tool else ""
    header = f'\n\ndef {name}({signature}):\n    """{description}' + ("\n\n    Args:\n" if params else "\n")
    return _object_fields(params, "        ", header, ppath, 0) + '    """\n'


def render_tools(tools: list[Any]) -> str:
    """The whole tools block of the system turn (starting with its leading newline)."""
    return TOOLS_HEADER + "".join(render_tool(t, f"tools[{i}]") for i, t in enumerate(tools)) + TOOLS_RULES
