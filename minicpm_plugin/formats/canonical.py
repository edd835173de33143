"""Normalise a converted record into the canonical conversation, and validate it.

Every format's output goes through :func:`canonicalize`, so the rules (docs/data_formats.md) are the
same whatever the source format. Paths in the issues refer to the canonical conversation
(``messages[3].tool_calls[0].function.arguments``); the scanner adds where that came from.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from minicpm_plugin.chat.tokens import ASSISTANT_MARKERS, TURN_MARKERS
from minicpm_plugin.formats.base import as_call, as_tool, loads
from minicpm_plugin.formats.problems import CODES
from minicpm_plugin.formats.strict_json import JSONValueError

ROLES = ("system", "user", "assistant", "tool")
#: Other role names accepted in canonical conversations: OpenAI's legacy ``function`` results and
#: its newer ``developer`` instructions.
ROLE_ALIASES = {"function": "tool", "developer": "system"}
#: Keys that may carry the thought, in order of preference.
THOUGHT_KEYS = ("thought", "reasoning_content", "reasoning")

_THINK = re.compile(r"\A\s*<think>(.*?)</think>", re.S)
_FUNCTION_NAME = re.compile(r"[^\W\d]\w*(?:\.[^\W\d]\w*)*\Z")


@dataclass(frozen=True)
class Issue:
    """A problem in one conversation; ``path`` is a field of the canonical conversation."""

    path: str
    message: str
    code: str

    @property
    def severity(self) -> str:
        return CODES.get(self.code, ("error", ""))[0]


def _type(value: Any) -> str:
    return {dict: "object", list: "list", str: "string", bool: "boolean", type(None): "null", int: "number",
            float: "number"}.get(
        type(value), type(value).__name__
    )


def _names(names: list[str]) -> str:
    shown = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
    return shown or "none"


class _Canonicalizer:
    def __init__(self) -> None:
        self.issues: list[Issue] = []

    def add(self, path: str, message: str, code: str) -> None:
        self.issues.append(Issue(path, message, code))

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
            self.add("tools", f"must be a list of tools, got {_type(tools)}", "bad-tools")
            return None
        out: list[dict[str, Any]] = []
        seen: set[str] = set()
        for i, tool in enumerate(tools):
            path = f"tools[{i}]"
            tool = as_tool(tool)
            if not isinstance(tool, Mapping):
                self.add(path, f"must be an object like {{\"type\": \"function\", \"function\": {{...}}}}, got {_type(tool)}", "bad-tools")
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
                self.add(f"{fpath}.description", f"must be a string, got {_type(fn['description'])}", "bad-tool-schema")
            self.parameters(fn.get("parameters"), f"{fpath}.parameters")
            out.append({"type": "function", "function": dict(fn)})
        return out

    def function_name(self, name: str, path: str) -> None:
        if not _FUNCTION_NAME.match(name):
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
            self.add(path, f"must be a JSON-schema object, got {_type(params)}; {fix}", "bad-tool-schema")
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
            self.add(f"{path}.properties", f"must be an object mapping parameter names to schemas, got {_type(props)}", "bad-tool-schema")
            return
        for pname, spec in props.items():
            if not isinstance(spec, Mapping):
                self.add(f"{path}.properties.{pname}", f"must be a JSON schema (an object such as {{\"type\": \"string\"}}), got {_type(spec)}", "bad-tool-schema")
            if not pname.isidentifier():
                self.add(f"{path}.properties.{pname}", f"parameter name {pname!r} is not a Python identifier, so MiniCPM3 "
                         "could not pass it as name=value; rename it (letters, digits and _)", "bad-argument-name")
        required = params.get("required", [])
        if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
            self.add(f"{path}.required", "must be a list of parameter names", "bad-tool-schema")

    # -- messages ------------------------------------------------------------------------------
    def content(self, msg: Mapping[str, Any], role: str, path: str, optional: bool) -> str | None:
        if "content" not in msg or msg["content"] is None:
            if optional:
                return ""
            what = "has no content" if "content" not in msg else "has content null"
            self.add(f"{path}.content", f"a {role} message {what}; give it a string", "bad-content")
            return None
        content = msg["content"]
        if isinstance(content, list):  # OpenAI content parts
            texts = []
            for j, part in enumerate(content):
                if isinstance(part, Mapping) and part.get("type") == "text" and isinstance(part.get("text"), str):
                    texts.append(part["text"])
                else:
                    kind = part.get("type") if isinstance(part, Mapping) else _type(part)
                    self.add(f"{path}.content[{j}]", f"content part of type {kind!r} is not supported; MiniCPM3 is text-only", "bad-content")
                    return None
            return "".join(texts)
        if not isinstance(content, str):
            self.add(f"{path}.content", f"must be a string, got {_type(content)}", "bad-content")
            return None
        return content

    def call(self, call: Any, path: str) -> dict[str, Any] | None:
        call = as_call(call)
        if not isinstance(call, Mapping) or not isinstance(call.get("function"), Mapping):
            self.add(path, 'a tool call must be an object like {"type": "function", "function": {"name": ..., "arguments": {...}}}', "bad-tool-call")
            return None
        fn = call["function"]
        name = fn.get("name")
        if not isinstance(name, str) or not name:
            self.add(f"{path}.function.name", "a tool call needs a non-empty string function name", "bad-tool-call")
            return None
        args = fn.get("arguments", {})
        apath = f"{path}.function.arguments"
        if args is None:
            args = {}
        if isinstance(args, str):
            if not args.strip():
                args = {}
            else:
                try:
                    args = loads(args)
                except JSONValueError as exc:
                    self.add(apath + exc.path, f"in the arguments JSON string: {exc.msg}", "bad-arguments")
                    return None
                except ValueError as exc:
                    self.add(apath, f"arguments are not valid JSON ({getattr(exc, 'msg', exc)}); write a JSON object such as {{\"city\": \"Paris\"}}", "bad-arguments")
                    return None
        if not isinstance(args, Mapping):
            self.add(apath, f"arguments must be a JSON object of name: value pairs, got {_type(args)}", "bad-arguments")
            return None
        for key in args:
            if not isinstance(key, str) or not key.isidentifier():
                self.add(apath, f"argument name {key!r} is not a Python identifier, so MiniCPM3 cannot write the call as "
                         f"{name}({key}=...); rename it in the data and in the tool's schema", "bad-argument-name")
        out: dict[str, Any] = {"type": "function", "function": {"name": name, "arguments": dict(args)}}
        if isinstance(call.get("id"), str):
            out["id"] = call["id"]
        return out

    def message(self, msg: Any, i: int) -> dict[str, Any] | None:
        path = f"messages[{i}]"
        if not isinstance(msg, Mapping):
            self.add(path, f"a message must be an object with role and content, got {_type(msg)}", "bad-content")
            return None
        role = msg.get("role")
        role = ROLE_ALIASES.get(role, role) if isinstance(role, str) else role
        if role not in ROLES:
            what = f"unknown role {json.dumps(role, ensure_ascii=False)}" if "role" in msg else "a message needs a role"
            self.add(f"{path}.role", f"{what}; use system, user, assistant or tool", "unknown-role")
            return None
        out: dict[str, Any] = {"role": role}
        if role == "assistant":
            return self.assistant(msg, out, path)
        for key in ("tool_calls", "function_call", *THOUGHT_KEYS):
            if msg.get(key):
                self.add(f"{path}.{key}", f"only assistant messages can have {key}", "bad-field")
        content = self.content(msg, role, path, optional=False)
        if content is None:
            return None
        out["content"] = content
        if role == "tool":
            for key in ("tool_call_id", "name"):
                if key in msg and msg[key] is not None:
                    if isinstance(msg[key], str):
                        out[key] = msg[key]
                    else:
                        self.add(f"{path}.{key}", f"must be a string, got {_type(msg[key])}", "bad-field")
        self.train_flag(msg, out, path)
        return out

    def assistant(self, msg: Mapping[str, Any], out: dict[str, Any], path: str) -> dict[str, Any] | None:
        ok = True
        raw_calls = msg.get("tool_calls")
        if msg.get("function_call") is not None:
            if raw_calls:
                self.add(f"{path}.function_call", "has both tool_calls and the legacy function_call; keep one", "bad-field")
                ok = False
            raw_calls, cpath = [msg["function_call"]], f"{path}.function_call"
        else:
            cpath = f"{path}.tool_calls"
        calls: list[dict[str, Any]] = []
        if raw_calls is not None and not isinstance(raw_calls, list):
            self.add(cpath, f"must be a list of tool calls, got {_type(raw_calls)}", "bad-tool-call")
            ok = False
        else:
            for j, raw in enumerate(raw_calls or []):
                call = self.call(raw, f"{cpath}[{j}]" if cpath.endswith("tool_calls") else cpath)
                ok = ok and call is not None
                if call is not None:
                    calls.append(call)
        content = self.content(msg, "assistant", path, optional=True)
        thought, tkey = None, None
        for key in THOUGHT_KEYS:
            if msg.get(key) is not None:
                thought, tkey = msg[key], key
                break
        if thought is not None and not isinstance(thought, str):
            self.add(f"{path}.{tkey}", f"must be a string, got {_type(thought)}", "bad-field")
            ok = False
        if isinstance(content, str) and content.lstrip().startswith("<think>"):
            m = _THINK.match(content)
            if not m:
                self.add(f"{path}.content", "starts with <think> but has no </think>", "bad-content")
                ok = False
            elif thought:
                self.add(f"{path}.content", f"has a <think> block and also a {tkey}; keep one", "bad-field")
                ok = False
            else:
                thought, content = m.group(1).strip(), content[m.end():].lstrip()
        if content is None or not ok:
            return None
        out["content"] = content
        if thought:
            out["thought"] = thought
        if calls:
            out["tool_calls"] = calls
        self.train_flag(msg, out, path)
        return out

    def train_flag(self, msg: Mapping[str, Any], out: dict[str, Any], path: str) -> None:
        if "train" in msg and msg["train"] is not None:
            if isinstance(msg["train"], bool):
                out["train"] = msg["train"]
            else:
                self.add(f"{path}.train", f"must be true or false, got {json.dumps(msg['train'])}", "bad-field")
        elif "weight" in msg and msg["weight"] is not None:  # axolotl's per-message flag
            weight = msg["weight"]
            if isinstance(weight, (bool, int, float)) and weight in (0, 1):
                out["train"] = bool(weight)
            else:
                self.add(f"{path}.weight", f"must be 0 or 1, got {json.dumps(msg['weight'])}", "bad-field")

    # -- conversation-level rules --------------------------------------------------------------
    def rules(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None) -> None:
        declared = {t["function"]["name"]: t["function"] for t in tools or []}
        assistants = [m for m in messages if m["role"] == "assistant"]
        if not messages:
            self.add("messages", "is empty; a conversation needs at least a user turn and an assistant turn", "no-assistant-turn")
        elif not assistants:
            self.add("messages", "no assistant turn to train; add the assistant's reply", "no-assistant-turn")
        elif all(m.get("train") is False for m in assistants):
            self.add("messages", 'every assistant turn has "train": false, so nothing would be trained', "no-assistant-turn")
        pending: list[dict[str, Any]] = []  # calls of the latest assistant turn not answered yet
        for i, m in enumerate(messages):
            path = f"messages[{i}]"
            role = m["role"]
            self.markers(m, path)
            if role == "assistant":
                calls = m.get("tool_calls", [])
                if not calls and not m["content"].strip():
                    extra = " (only a thought)" if m.get("thought") else ""
                    self.add(path, f"assistant turn has neither content nor tool calls{extra}; give it a reply or "
                             "calls, or remove the turn", "empty-assistant-turn")
                for j, call in enumerate(calls):
                    self.check_call(call, declared, f"{path}.tool_calls[{j}].function")
                pending = list(calls)
            elif role == "tool":
                if not pending:
                    self.add(path, "tool result with no preceding call: a tool message must follow an assistant "
                             "turn with tool_calls (one result per call)", "orphan-tool-result")
                    continue
                call_id = m.get("tool_call_id")
                ids = [c.get("id") for c in pending]
                if call_id is not None and any(ids):
                    if call_id not in ids:
                        self.add(f"{path}.tool_call_id", f"{call_id!r} matches no unanswered call of the preceding "
                                 f"assistant turn (ids: {_names([str(x) for x in ids])})", "orphan-tool-result")
                        continue
                    pending.pop(ids.index(call_id))
                else:
                    pending.pop(0)
            else:
                pending = []

    def check_call(self, call: dict[str, Any], declared: dict[str, Mapping[str, Any]], path: str) -> None:
        name, args = call["function"]["name"], call["function"]["arguments"]
        if name not in declared:
            if declared:
                msg = f"tool call to {name!r}, which is not in tools (declared: {_names(list(declared))})"
            else:
                msg = f"tool call to {name!r}, but the conversation declares no tools; add {name}'s schema to tools"
            self.add(f"{path}.name", msg, "unknown-function")
            return
        params = declared[name].get("parameters")
        if not isinstance(params, Mapping):
            params = {}
        props = params.get("properties")
        if isinstance(props, Mapping) and not params.get("additionalProperties"):
            for key in args:
                if key not in props:
                    self.add(f"{path}.arguments", f"argument {key!r} is not a parameter of {name} (parameters: "
                             f"{_names(list(props))})", "unknown-argument")
        required = params.get("required")
        if isinstance(required, list):
            for key in required:
                if isinstance(key, str) and key not in args:
                    self.add(f"{path}.arguments", f"required argument {key!r} of {name} is missing", "missing-argument")

    def markers(self, m: dict[str, Any], path: str) -> None:
        for key in ("content", "thought"):
            text = m.get(key)
            if not isinstance(text, str) or "<|" not in text:
                continue
            bad = [t for t in TURN_MARKERS if t in text]
            if m["role"] == "assistant":
                bad += [t for t in ASSISTANT_MARKERS if t in text]
            if bad:
                self.add(f"{path}.{key}", f"contains {', '.join(bad)}, which would be read as part of the chat format, "
                         "not as text; remove it", "special-token")
        for j, call in enumerate(m.get("tool_calls", [])):
            text = json.dumps(call["function"]["arguments"], ensure_ascii=False)
            bad = [t for t in TURN_MARKERS if t in text]
            if bad:
                self.add(f"{path}.tool_calls[{j}].function.arguments", f"contains {', '.join(bad)}; remove it", "special-token")


def canonicalize(conversation: Any, *, render_check: bool = True) -> tuple[dict[str, Any] | None, list[Issue]]:
    """Normalise a converted record and check it against every rule.

    Returns ``(conversation, issues)``; the conversation is None when an issue is an error.
    With ``render_check`` the conversation is also rendered once, so anything the renderer would
    reject later is reported here with its path.
    """
    c = _Canonicalizer()
    if not isinstance(conversation, Mapping):
        return None, [Issue("", f"a conversation must be an object with messages, got {_type(conversation)}", "bad-record")]
    raw = conversation.get("messages")
    if not isinstance(raw, list):
        return None, [Issue("messages", f"must be a list of messages, got {_type(raw)}", "bad-content")]
    tools = c.tools(conversation.get("tools"))
    messages = [c.message(m, i) for i, m in enumerate(raw)]
    if any(m is None for m in messages) or any(i.severity == "error" for i in c.issues):
        return None, c.issues
    kept: list[dict[str, Any]] = [m for m in messages if m is not None]
    c.rules(kept, tools)
    result = {"messages": kept, "tools": tools}
    if any(i.severity == "error" for i in c.issues):
        return None, c.issues
    if render_check:
        issue = _render_issue(result)
        if issue:
            return None, [*c.issues, issue]
    return result, c.issues


def _render_issue(conversation: dict[str, Any]) -> Issue | None:
    from minicpm_plugin.chat import FormatError, render_conversation

    try:
        render_conversation(conversation["messages"], conversation["tools"])
    except FormatError as exc:
        return Issue(exc.path, f"MiniCPM3's format cannot render this: {exc.message}", "render-error")
    except Exception as exc:  # a renderer bug must not become a traceback for the user's data
        return Issue("", f"the renderer failed ({type(exc).__name__}: {exc}); please report this", "render-error")
    return None


def conversation_stats(conversation: Mapping[str, Any]) -> tuple[bool, int, int]:
    """(has tools, number of tool calls, number of thoughts) of a canonical conversation."""
    calls = sum(len(m.get("tool_calls", ())) for m in conversation["messages"])
    thoughts = sum(1 for m in conversation["messages"] if m.get("thought"))
    return bool(conversation.get("tools")), calls, thoughts
