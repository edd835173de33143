"""Hermes function calling (NousResearch): ``<tools>`` in the system turn, ``<tool_call>`` blocks in
assistant turns and ``<tool_response>`` blocks in tool turns.

Read in ShareGPT layout (``conversations`` with ``from``/``value``, as the Hermes datasets ship) or
in messages layout (``role``/``content``). Tool schemas and calls may be JSON or Python ``repr``
(both occur in the published data). The Hermes system prompt is an instruction to answer in Hermes'
own tags, which MiniCPM3 does not use: a system turn holding ``<tools>`` is replaced by MiniCPM3's
own functions block (its tools are kept, its instruction text is not). Text outside ``<tool_call>``
blocks stays the assistant's content; each ``<tool_response>`` block becomes one tool message.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from minicpm_plugin.formats.base import (
    COMPATIBLE,
    MATCH,
    NO,
    Converted,
    Format,
    RecordError,
    as_call,
    as_tool,
    is_message_list,
    loads_lenient,
)
from minicpm_plugin.formats.sharegpt import ROLE_MAP
from minicpm_plugin.formats.strict_json import JSONValueError, StrictDecoder

_TOOLS = re.compile(r"<tools>(.*?)</tools>", re.S)
_CALL = re.compile(r"<tool_call>(.*?)</tool_call>", re.S)
_RESPONSE = re.compile(r"<tool_response>(.*?)</tool_response>", re.S)


def parse_tools(text: str, path: str) -> list[Any]:
    """The tools inside ``<tools>...</tools>``: a JSON/Python list, or objects one after another."""
    body = text.strip()
    if not body:
        return []
    try:
        value = loads_lenient(body, path, "the <tools> block", "bad-tools")
    except RecordError:
        value, pos, decoder = [], 0, StrictDecoder()
        while pos < len(body):
            if body[pos].isspace():
                pos += 1
                continue
            try:
                obj, pos = decoder.raw_decode(body, pos)
            except JSONValueError as exc:
                raise RecordError(f"the <tools> block: {exc.msg}", path, "bad-tools") from None
            except json.JSONDecodeError:
                raise RecordError("the <tools> block is not a JSON (or Python) list of function schemas", path, "bad-tools") from None
            value.append(obj)
    tools = value if isinstance(value, list) else [value]
    return [as_tool(t) for t in tools]


def _layout(record: Mapping[str, Any]) -> tuple[str, str, str] | None:
    if is_message_list(record.get("conversations"), "from", "value"):
        return "conversations", "from", "value"
    if is_message_list(record.get("messages"), "role", "content"):
        return "messages", "role", "content"
    return None


class HermesFormat(Format):
    name = "hermes"
    aliases = ("nous",)
    specializes = ("sharegpt", "openai", "seed")
    description = "Hermes function calling: <tools> in the system turn, <tool_call>/<tool_response> blocks"
    example = (
        '{"conversations": [{"from": "system", "value": "... <tools> [{\\"type\\": \\"function\\", \\"function\\": {...}}] '
        '</tools> ..."}, {"from": "human", "value": "Weather in Paris?"}, {"from": "gpt", "value": "<tool_call>\\n'
        '{\\"name\\": \\"get_weather\\", \\"arguments\\": {\\"city\\": \\"Paris\\"}}\\n</tool_call>"}, {"from": "tool", '
        '"value": "<tool_response>\\n{\\"temp\\": 21}\\n</tool_response>"}, {"from": "gpt", "value": "21°C."}]}'
    )

    def detect(self, record: Mapping[str, Any]) -> int:
        layout = _layout(record)
        if layout is None:
            return NO
        key, _, content = layout
        if key == "messages" and (
            "tools" in record or "functions" in record
            or any(isinstance(m, Mapping) and (m.get("tool_calls") or m.get("function_call")) for m in record[key])
        ):
            return NO  # structured OpenAI tool calls: read by `openai`, never reinterpreted from text
        for turn in record[key]:
            text = turn.get(content)
            if isinstance(text, str) and ("<tools>" in text or "<tool_call>" in text or "<tool_response>" in text):
                return MATCH
        return COMPATIBLE

    def convert(self, record: Mapping[str, Any]) -> Converted:
        layout = _layout(record)
        if layout is None:
            raise RecordError("needs conversations (from/value) or messages (role/content)", "conversations")
        key, role_key, content_key = layout
        messages: list[dict[str, Any]] = []
        sources: list[str] = []
        tools: list[Any] | None = None
        tools_source = None
        for i, turn in enumerate(record[key]):
            path = f"{key}[{i}]"
            who = turn.get(role_key)
            role = ROLE_MAP.get(who.lower()) if isinstance(who, str) else None
            if role is None or role == "function_call":
                raise RecordError(f"unknown role {who!r}; Hermes turns are system, human/user, gpt/assistant, tool",
                                  f"{path}.{role_key}", "unknown-role")
            text = turn.get(content_key)
            if not isinstance(text, str):
                messages.append({"role": role, "content": text})  # the common checks report it
                sources.append(path)
                continue
            if role == "system" and _TOOLS.search(text):
                if tools is not None:
                    raise RecordError("a second <tools> block; put all tools in one", f"{path}.{content_key}", "bad-tools")
                tools = []
                for m in _TOOLS.finditer(text):
                    tools += parse_tools(m.group(1), f"{path}.{content_key}")
                tools_source = f"{path} <tools>"
                continue
            responses = _RESPONSE.findall(text)
            if role in ("tool", "user") and responses and not _RESPONSE.sub("", text).strip():
                for body in responses:
                    messages.append({"role": "tool", "content": body.strip()})
                    sources.append(path)
                continue
            if role == "assistant" and _CALL.search(text):
                calls = []
                for m in _CALL.finditer(text):
                    call = loads_lenient(m.group(1).strip(), f"{path}.{content_key}", "a <tool_call> block", "bad-tool-call")
                    if not isinstance(call, Mapping) or "name" not in call:
                        raise RecordError('a <tool_call> must hold {"name": "...", "arguments": {...}}',
                                          f"{path}.{content_key}", "bad-tool-call")
                    calls.append(as_call(call))
                messages.append({"role": "assistant", "content": _CALL.sub("", text).strip(), "tool_calls": calls})
            else:
                messages.append({"role": role, "content": text})
            for extra in ("thought", "reasoning_content", "train", "weight"):
                if extra in turn:
                    messages[-1][extra] = turn[extra]
            sources.append(path)
        return Converted({"messages": messages, "tools": tools or None}, sources, tools_source)
