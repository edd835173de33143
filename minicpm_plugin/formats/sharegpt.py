"""ShareGPT ``conversations`` with ``from``/``value`` (LLaMA-Factory's tool-call layout).

Turns: ``human``/``user``, ``gpt``/``assistant``, ``system``, ``function_call`` (the assistant's call:
a JSON string of ``{"name", "arguments"}`` or a list of them for parallel calls) and
``observation``/``tool`` (a tool result). Record-level ``system`` (text) and ``tools`` (a JSON string
or a list of functions, flat or OpenAI-wrapped) columns are read too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from minicpm_plugin.formats.base import (
    MATCH,
    NO,
    Converted,
    Format,
    RecordError,
    as_call,
    as_tool,
    is_message_list,
    load_json_field,
    loads_call,
)

ROLE_MAP = {
    "human": "user", "user": "user",
    "gpt": "assistant", "assistant": "assistant", "model": "assistant", "chatgpt": "assistant",
    "system": "system",
    "observation": "tool", "tool": "tool", "function_response": "tool", "function": "tool",
    "function_call": "function_call",
}


def parse_call_value(value: Any, path: str) -> list[Any]:
    """A ``function_call`` turn's value: one call or a list of calls, as JSON text or already parsed."""
    if isinstance(value, str):
        value = loads_call(value, path, "function_call value")
    calls = value if isinstance(value, list) else [value]
    for call in calls:
        if not isinstance(call, Mapping) or "name" not in call:
            raise RecordError('a function_call must be {"name": "...", "arguments": {...}} or a list of them', path, "bad-tool-call")
    return [as_call(c) for c in calls]


class ShareGPTFormat(Format):
    name = "sharegpt"
    aliases = ("llamafactory", "conversations")
    description = "ShareGPT conversations (from/value) incl. LLaMA-Factory function_call/observation turns and tools column"
    example = (
        '{"conversations": [{"from": "human", "value": "Weather in Paris?"}, {"from": "function_call", "value": '
        '"{\\"name\\": \\"get_weather\\", \\"arguments\\": {\\"city\\": \\"Paris\\"}}"}, {"from": "observation", '
        '"value": "sunny"}, {"from": "gpt", "value": "Sunny."}], "tools": "[{\\"name\\": \\"get_weather\\", ...}]"}'
    )

    def detect(self, record: Mapping[str, Any]) -> int:
        return MATCH if is_message_list(record.get("conversations"), "from", "value") else NO

    def convert(self, record: Mapping[str, Any]) -> Converted:
        turns = record.get("conversations")
        if not isinstance(turns, list):
            raise RecordError("must be a list of {from, value} turns", "conversations")
        messages: list[dict[str, Any]] = []
        sources: list[str] = []
        system = record.get("system")
        if system is not None and system != "":
            if not isinstance(system, str):
                raise RecordError("must be a string", "system", "bad-content")
            messages.append({"role": "system", "content": system})
            sources.append("system")
        for i, turn in enumerate(turns):
            path = f"conversations[{i}]"
            if not isinstance(turn, Mapping):
                raise RecordError("a turn must be an object with from and value", path)
            who = turn.get("from")
            role = ROLE_MAP.get(who.lower()) if isinstance(who, str) else None
            if role is None:
                raise RecordError(
                    f"unknown role {who!r}; ShareGPT roles are human, gpt, system, function_call, observation",
                    f"{path}.from", "unknown-role")
            value = turn.get("value")
            if role == "function_call":
                msg: dict[str, Any] = {"role": "assistant", "content": "", "tool_calls": parse_call_value(value, f"{path}.value")}
            else:
                msg = {"role": role, "content": value}
                if role == "assistant":
                    for key in ("thought", "reasoning_content"):
                        if key in turn:
                            msg[key] = turn[key]
            if "train" in turn:
                msg["train"] = turn["train"]
            elif "weight" in turn:
                msg["weight"] = turn["weight"]
            messages.append(msg)
            sources.append(path)
        tools = None
        if record.get("tools") is not None:
            tools = load_json_field(record, "tools", allow=(list, dict))
            if isinstance(tools, dict):
                tools = [tools]
            tools = [as_tool(t) for t in tools] if tools else None
        return Converted({"messages": messages, "tools": tools}, sources, "tools")
