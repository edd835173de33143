"""The checks of a conversation's ``tools``: function tools with a usable name and a JSON-schema object.

A mixin of the canonicalizer (:mod:`minicpm_plugin.formats.canonical`), which provides ``add``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from minicpm_plugin.chat.names import is_argument_name, is_function_name
from minicpm_plugin.formats.base import as_tool, loads
from minicpm_plugin.formats.strict_json import JSONValueError


def type_name(value: Any) -> str:
    return {dict: "object", list: "list", str: "string", bool: "boolean", type(None): "null", int: "number",
            float: "number"}.get(
        type(value), type(value).__name__
    )


def short_list(names: list[str]) -> str:
    shown = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
    return shown or "none"


class ToolChecks:
    """Reads and checks ``tools``; problems go to ``add(path, message, code)``."""

    def add(self, path: str, message: str, code: str) -> None:  # pragma: no cover - provided by the subclass
        raise NotImplementedError

    # -- tools ---------------------------------------------------------------------------------
    def tools(self, tools: Any) -> list[dict[str, Any]] | None:
        if isinstance(tools, str):
            try:
                tools = loads(tools) if tools.strip() else None
            except JSONValueError as exc:
                self.add("tools" + exc.path, f"in the tools JSON string: {exc.msg}", "bad-tools")
                return None
            except ValueError as exc:
                self.add("tools", f"is a string but not valid JSON ({getattr(exc, 'msg', exc)})", "bad-tools")
                return None
        if tools is None or tools == []:
            return None
        if not isinstance(tools, list):
            self.add("tools", f"must be a list of tools, got {type_name(tools)}", "bad-tools")
            return None
        out: list[dict[str, Any]] = []
        seen: set[str] = set()
        for i, tool in enumerate(tools):
            path = f"tools[{i}]"
            tool = as_tool(tool)
            if not isinstance(tool, Mapping):
                self.add(path, f"must be an object like {{\"type\": \"function\", \"function\": {{...}}}}, got {type_name(tool)}", "bad-tools")
                continue
            if tool.get("type", "function") != "function":
                self.add(f"{path}.type", f"tool type {tool.get('type')!r} is not supported; MiniCPM3 only has function tools", "bad-tools")
                continue
            fn = tool.get("function")
            if not isinstance(fn, Mapping):
                self.add(f"{path}.function", "must be an object with name, description and parameters", "bad-tools")
                continue
            fpath = f"{path}.function"
            name = fn.get("name")
            if not isinstance(name, str) or not name:
                self.add(f"{fpath}.name", "a function needs a non-empty string name", "bad-function-name")
                continue
            self.function_name(name, f"{fpath}.name")
            if name in seen:
                self.add(f"{fpath}.name", f"function {name!r} is declared twice in tools", "duplicate-function")
            seen.add(name)
            if "description" in fn and not isinstance(fn["description"], (str, type(None))):
                self.add(f"{fpath}.description", f"must be a string, got {type_name(fn['description'])}", "bad-tool-schema")
            self.parameters(fn.get("parameters"), f"{fpath}.parameters")
            out.append({"type": "function", "function": dict(fn)})
        return out

    def function_name(self, name: str, path: str) -> None:
        if not is_function_name(name):
            self.add(path, f"function name {name!r} is not a Python identifier, so MiniCPM3 could not write a call to it "
                     "as name(arg=value); rename it (letters, digits and _)", "bad-function-name")
        elif "." in name:
            self.add(path, f"function name {name!r} contains dots: its stub `def {name}(...)` is not valid Python and "
                     "parsers other than minicpm_plugin's may not read calls to it", "dotted-function-name")

    def parameters(self, params: Any, path: str) -> None:
        if params is None:
            return
        fix = 'write it as {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}'
        if not isinstance(params, Mapping):
            self.add(path, f"must be a JSON-schema object, got {type_name(params)}; {fix}", "bad-tool-schema")
            return
        if not params:
            return
        if "type" in params and params["type"] != "object":
            self.add(f"{path}.type", f"must be \"object\", got {json.dumps(params['type'], ensure_ascii=False)}; {fix}", "bad-tool-schema")
            return
        if "type" not in params and "properties" not in params:
            self.add(path, f"is not a JSON-schema object (no \"type\": \"object\" and no \"properties\"); {fix}", "bad-tool-schema")
            return
        props = params.get("properties", {})
        if not isinstance(props, Mapping):
            self.add(f"{path}.properties", f"must be an object mapping parameter names to schemas, got {type_name(props)}", "bad-tool-schema")
            return
        for pname, spec in props.items():
            if not isinstance(spec, Mapping):
                self.add(f"{path}.properties.{pname}", f"must be a JSON schema (an object such as {{\"type\": \"string\"}}), got {type_name(spec)}", "bad-tool-schema")
            if not is_argument_name(pname):
                self.add(f"{path}.properties.{pname}", f"parameter name {pname!r} is not a Python identifier, so MiniCPM3 "
                         "could not pass it as name=value; rename it (letters, digits and _)", "bad-argument-name")
        required = params.get("required", [])
        if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
            self.add(f"{path}.required", "must be a list of parameter names", "bad-tool-schema")
