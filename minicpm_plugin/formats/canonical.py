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

from minicpm_plugin.chat import CallError, call_arguments
from minicpm_plugin.chat.names import is_argument_name
from minicpm_plugin.chat.spans import Rendered
from minicpm_plugin.chat.tokens import ASSISTANT_MARKERS, TURN_MARKERS, LiteralStyle
from minicpm_plugin.formats.base import loads
from minicpm_plugin.formats.markup import LAYOUT, Markup, MarkupError, has_markup, read_markup
from minicpm_plugin.formats.problems import CODES
from minicpm_plugin.formats.refuse import MEDIA_CODE, MEDIA_PART_TYPES, TEXT_ONLY, placeholders
from minicpm_plugin.formats.strict_json import JSONValueError
from minicpm_plugin.formats.tool_checks import ToolChecks, short_list, type_name

ROLES = ("system", "user", "assistant", "tool")
#: Other role names accepted in canonical conversations: OpenAI's legacy ``function`` results and
#: its newer ``developer`` instructions.
ROLE_ALIASES = {"function": "tool", "developer": "system"}
#: Keys that may carry the thought, in order of preference.
THOUGHT_KEYS = ("thought", "reasoning_content", "reasoning")

_THINK = re.compile(r"\A\s*<think>(.*?)</think>", re.S)


@dataclass(frozen=True)
class Issue:
    """A problem in one conversation; ``path`` is a field of the canonical conversation."""

    path: str
    message: str
    code: str

    @property
    def severity(self) -> str:
        return CODES.get(self.code, ("error", ""))[0]


def _part_text(part: Any) -> str | None:
    """The text of a text content part (``text`` as in OpenAI, ``value`` as in LLaMA-Factory v1), else None."""
    if not isinstance(part, Mapping) or part.get("type", "text") != "text":
        return None
    text = part.get("text", part.get("value"))
    return text if isinstance(text, str) else None


def _text_parts(value: list[Any]) -> bool:
    return bool(value) and all(_part_text(p) is not None for p in value)


class _Canonicalizer(ToolChecks):
    def __init__(self) -> None:
        self.issues: list[Issue] = []

    def add(self, path: str, message: str, code: str) -> None:
        self.issues.append(Issue(path, message, code))

    # -- messages ------------------------------------------------------------------------------
    def content(self, msg: Mapping[str, Any], role: str, path: str, optional: bool) -> str | None:
        if "content" not in msg or msg["content"] is None:
            if optional:
                return ""
            what = "has no content" if "content" not in msg else "has content null"
            self.add(f"{path}.content", f"a {role} message {what}; give it a string", "bad-content")
            return None
        content = msg["content"]
        if role == "tool" and (isinstance(content, Mapping) or (isinstance(content, list) and not _text_parts(content))):
            return self.tool_result(content, f"{path}.content")
        if isinstance(content, list):  # content parts: {"type": "text", "text" | "value": ...}
            texts = []
            for j, part in enumerate(content):
                text = _part_text(part)
                if text is None and isinstance(part, Mapping) and part.get("type", "text") == "text":
                    self.add(f"{path}.content[{j}]", 'a text part needs a string "text" (or "value")', "bad-content")
                    return None
                if text is None:
                    kind = part.get("type") if isinstance(part, Mapping) else type_name(part)
                    if kind in MEDIA_PART_TYPES:
                        self.add(f"{path}.content[{j}]", f"content part of type {kind!r} is not supported; {TEXT_ONLY}",
                                 MEDIA_CODE)
                    else:
                        self.add(f"{path}.content[{j}]", f"content part of type {kind!r} is not supported; only text "
                                 'parts ({"type": "text", "text": ...}) are read here', "bad-content")
                    return None
                texts.append(text)
            return "".join(texts)
        if not isinstance(content, str):
            self.add(f"{path}.content", f"must be a string, got {type_name(content)}", "bad-content")
            return None
        return content

    def tool_result(self, value: Any, path: str) -> str | None:
        """A tool result given as a JSON object or list: its JSON text (``ensure_ascii=False``)."""
        media = [j for j, p in enumerate(value) if isinstance(p, Mapping) and p.get("type") in MEDIA_PART_TYPES] \
            if isinstance(value, list) else []
        if media:
            self.add(f"{path}[{media[0]}]", f"content part of type {value[media[0]]['type']!r} is not supported; "
                     f"{TEXT_ONLY}", MEDIA_CODE)
            return None
        try:
            return json.dumps(value, ensure_ascii=False, allow_nan=False)
        except (ValueError, TypeError, RecursionError) as exc:
            self.add(path, f"a tool result that is not a string must be a JSON value ({exc})", "bad-content")
            return None

    def call(self, call: Any, path: str) -> dict[str, Any] | None:
        try:
            name, args = call_arguments(call, path, decode=loads)
        except CallError as exc:
            flat = isinstance(call, Mapping) and "function" not in call
            if exc.kind in ("shape", "function") or (exc.kind == "name" and flat and "name" not in call):
                self.add(path, 'a tool call must be an object like {"type": "function", "function": {"name": ..., '
                         '"arguments": {...}}}', "bad-tool-call")
            elif exc.kind == "name":
                self.add(f"{path}.function.name", "a tool call needs a non-empty string function name", "bad-tool-call")
            elif exc.kind == "json" and isinstance(exc.cause, JSONValueError):
                self.add(f"{path}.function.arguments{exc.cause.path}", f"in the arguments JSON string: {exc.cause.msg}",
                         "bad-arguments")
            elif exc.kind == "json":
                self.add(f"{path}.function.arguments", f"arguments are not valid JSON ({exc.detail}); write a JSON "
                         'object such as {"city": "Paris"}', "bad-arguments")
            else:
                self.add(f"{path}.function.arguments", "arguments must be a JSON object of name: value pairs, got "
                         f"{type_name(exc.value)}", "bad-arguments")
            return None
        apath = f"{path}.function.arguments"
        for key in args:
            if not is_argument_name(key):
                self.add(apath, f"argument name {key!r} is not a Python identifier, so MiniCPM3 cannot write the call as "
                         f"{name}({key}=...); rename it in the data and in the tool's schema", "bad-argument-name")
        out: dict[str, Any] = {"type": "function", "function": {"name": name, "arguments": args}}
        if isinstance(call.get("id"), str):
            out["id"] = call["id"]
        return out

    def message(self, msg: Any, i: int) -> dict[str, Any] | None:
        path = f"messages[{i}]"
        if not isinstance(msg, Mapping):
            self.add(path, f"a message must be an object with role and content, got {type_name(msg)}", "bad-content")
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
                        self.add(f"{path}.{key}", f"must be a string, got {type_name(msg[key])}", "bad-field")
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
            self.add(cpath, f"must be a list of tool calls, got {type_name(raw_calls)}", "bad-tool-call")
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
            self.add(f"{path}.{tkey}", f"must be a string, got {type_name(thought)}", "bad-field")
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
        if ok and isinstance(content, str) and has_markup(content):
            read = self.markup(content, path, thought_key=(tkey or "<think> block") if thought else None,
                               has_calls=bool(raw_calls))
            if read is None:
                return None
            content, calls = read.content, [c for c in (self.call(x, f"{path}.content") for x in read.calls) if c]
            thought = read.thought if read.thought is not None else thought
        if content is None or not ok:
            return None
        out["content"] = content
        if thought:
            out["thought"] = thought
        if calls:
            out["tool_calls"] = calls
        self.train_flag(msg, out, path)
        return out

    def markup(self, content: str, path: str, *, thought_key: str | None, has_calls: bool) -> Markup | None:
        """MiniCPM3 thought/call markup in assistant text, read with the strict parser (see formats.markup)."""
        cpath = f"{path}.content"
        try:
            read = read_markup(content)
        except MarkupError as exc:
            self.add(cpath, f"MiniCPM3 markup that the strict parser cannot read: {exc}; write the turn as {LAYOUT}",
                     "bad-call-markup")
            return None
        if has_calls and read.calls:
            self.add(cpath, "has a MiniCPM3 call block and also tool_calls; keep one", "bad-field")
            return None
        if thought_key and read.thought:
            self.add(cpath, f"has a MiniCPM3 thought block and also a {thought_key}; keep one", "bad-field")
            return None
        if read.respelled:
            written, rendered = read.respelled
            self.add(cpath, f"MiniCPM3 markup read as {read.describe()}; it is rendered with a different spelling "
                     f"(first difference: {written!r} -> {rendered!r})", "markup-respelled")
        return read

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
        undeclared: dict[str, None] = {}  # functions called in a conversation that declares no tools
        first_call = ""
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
                if calls and not declared:
                    first_call = first_call or f"{path}.tool_calls"
                    undeclared.update((c["function"]["name"], None) for c in calls)
                for j, call in enumerate(calls if declared else ()):
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
                                 f"assistant turn (ids: {short_list([str(x) for x in ids])})", "orphan-tool-result")
                        continue
                    pending.pop(ids.index(call_id))
                else:
                    pending.pop(0)
            else:
                pending = []
        if undeclared:
            names = list(undeclared)
            self.add(first_call, f"calls {short_list(names)} in a conversation that declares no tools: trained as written "
                     "(MiniCPM3's template renders calls without tools); add the functions to tools so that the model "
                     "sees their schemas", "calls-without-tools")

    def check_call(self, call: dict[str, Any], declared: dict[str, Mapping[str, Any]], path: str) -> None:
        name, args = call["function"]["name"], call["function"]["arguments"]
        if name not in declared:
            msg = f"tool call to {name!r}, which is not in tools (declared: {short_list(list(declared))})"
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
                             f"{short_list(list(props))})", "unknown-argument")
        required = params.get("required")
        if isinstance(required, list):
            for key in required:
                if isinstance(key, str) and key not in args:
                    self.add(f"{path}.arguments", f"required argument {key!r} of {name} is missing", "missing-argument")

    def markers(self, m: dict[str, Any], path: str) -> None:
        for key in ("content", "thought"):
            text = m.get(key)
            if not isinstance(text, str):
                continue
            media = placeholders(text)
            if media:
                self.add(f"{path}.{key}", f"contains the {', '.join(media)} placeholder of multimodal data; {TEXT_ONLY}, "
                         "so the medium it stands for cannot be trained", MEDIA_CODE)
            if "<|" not in text:
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
        return None, [Issue("", f"a conversation must be an object with messages, got {type_name(conversation)}", "bad-record")]
    raw = conversation.get("messages")
    if not isinstance(raw, list):
        return None, [Issue("messages", f"must be a list of messages, got {type_name(raw)}", "bad-content")]
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
    return render_checked(conversation)[1]


def render_checked(conversation: Mapping[str, Any], literal_style: LiteralStyle = "json") -> tuple[Rendered | None, Issue | None]:
    """``(rendered, None)`` for a canonical conversation MiniCPM3's format can render, else ``(None, issue)``."""
    from minicpm_plugin.chat import FormatError, render_conversation

    try:
        return render_conversation(conversation["messages"], conversation["tools"], literal_style=literal_style), None
    except FormatError as exc:
        return None, Issue(exc.path, f"MiniCPM3's format cannot render this: {exc.message}", "render-error")
    except Exception as exc:  # a renderer bug must not become a traceback for the user's data
        return None, Issue("", f"the renderer failed ({type(exc).__name__}: {exc}); please report this", "render-error")


def conversation_stats(conversation: Mapping[str, Any]) -> tuple[bool, int, int]:
    """(has tools, number of tool calls, number of thoughts) of a canonical conversation."""
    calls = sum(len(m.get("tool_calls", ())) for m in conversation["messages"])
    thoughts = sum(1 for m in conversation["messages"] if m.get("thought"))
    return bool(conversation.get("tools")), calls, thoughts
