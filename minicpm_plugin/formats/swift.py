"""ms-swift agent data: ``messages`` with ``tool_call`` and ``tool_response`` roles, ``tools`` as a JSON string.

A ``tool_call`` message's content is a JSON call ``{"name", "arguments"}``. Consecutive ``tool_call``
messages are one assistant turn with parallel calls, and an ``assistant`` message right before or
after them belongs to the same turn (ms-swift concatenates consecutive assistant parts): its texts
are joined into the turn's content, and a leading ``<think>...</think>`` becomes the thought.
``tool_response`` (or ``tool``) messages are tool results. Everything else is read as OpenAI chat.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from minicpm_plugin.formats.base import (
    COMPATIBLE,
    MATCH,
    NO,
    Converted,
    RecordError,
    as_call,
    is_message_list,
    loads_call,
)
from minicpm_plugin.formats.openai import OpenAIFormat

_AGENT_ROLES = ("tool_call", "tool_response")
_KEEP = ("thought", "reasoning_content", "reasoning", "train", "weight")


def _role(msg: Any) -> Any:
    return msg.get("role") if isinstance(msg, Mapping) else None


def _calls(msg: Mapping[str, Any], path: str) -> list[Any]:
    value = msg.get("content")
    if isinstance(value, str):
        value = loads_call(value, f"{path}.content", "a tool_call message's content")
    calls = value if isinstance(value, list) else [value]
    if not calls or not all(isinstance(c, Mapping) and "name" in c for c in calls):
        raise RecordError('a tool_call message must hold {"name": "...", "arguments": {...}}', f"{path}.content",
                          "bad-tool-call")
    return [as_call(c) for c in calls]


def _turn(run: list[Mapping[str, Any]], start: int) -> dict[str, Any]:
    """One assistant turn from consecutive assistant/tool_call messages (at least one tool_call)."""
    texts: list[str] = []
    calls: list[Any] = []
    out: dict[str, Any] = {"role": "assistant"}
    for k, msg in enumerate(run):
        path = f"messages[{start + k}]"
        if msg["role"] == "tool_call":
            calls += _calls(msg, path)
            continue
        content = msg.get("content")
        if content is not None and not isinstance(content, str):
            raise RecordError("an assistant message before or after tool_call messages must have string content",
                              f"{path}.content", "bad-content")
        texts.append(content or "")
        for key in _KEEP:
            if key in msg and key not in out:
                out[key] = msg[key]
    out["content"] = "".join(texts)
    out["tool_calls"] = calls
    return out


class SwiftAgentFormat(OpenAIFormat):
    name = "swift"
    aliases = ("ms-swift", "ms_swift", "swift_agent")
    specializes = ("openai", "seed")
    description = "ms-swift agent data: messages with tool_call (JSON call) and tool_response roles, tools as JSON text"
    example = (
        '{"tools": "[{\\"type\\": \\"function\\", \\"function\\": {\\"name\\": \\"realtime_aqi\\", ...}}]", "messages": '
        '[{"role": "user", "content": "AQI in Beijing and Shanghai?"}, {"role": "tool_call", "content": "{\\"name\\": '
        '\\"realtime_aqi\\", \\"arguments\\": {\\"city\\": \\"Beijing\\"}}"}, {"role": "tool_call", "content": "..."}, '
        '{"role": "tool_response", "content": "{\\"aqi\\": 10}"}, {"role": "tool_response", "content": "..."}, '
        '{"role": "assistant", "content": "Beijing 10, Shanghai 72."}]}'
    )

    def detect(self, record: Mapping[str, Any]) -> int:
        messages = record.get("messages")
        if not is_message_list(messages, "role", "content"):
            return NO
        return MATCH if any(_role(m) in _AGENT_ROLES for m in messages) else COMPATIBLE

    def convert(self, record: Mapping[str, Any]) -> Converted:
        conv = super().convert(record)
        raw = conv["messages"]
        messages: list[Any] = []
        sources: list[str] = []
        i = 0
        while i < len(raw):
            j = i
            while j < len(raw) and _role(raw[j]) in ("assistant", "tool_call"):
                j += 1
            if j > i and any(_role(m) == "tool_call" for m in raw[i:j]):
                messages.append(_turn(raw[i:j], i))
                sources.append(f"messages[{i}]" if j == i + 1 else f"messages[{i}..{j - 1}]")
                i = j
                continue
            msg = raw[i]
            messages.append(dict(msg, role="tool") if _role(msg) == "tool_response" else msg)
            sources.append(f"messages[{i}]")
            i += 1
        return Converted({"messages": messages, "tools": conv["tools"]}, sources, "tools")
