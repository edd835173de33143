"""LLaMA-Factory v1 samples: ``messages`` whose content is a list of typed parts.

A part is ``{"type": "text" | "reasoning" | "tool_call", "value": ...}``: text parts make the content,
reasoning parts the thought, and each tool_call part (a JSON string of ``{"name", "arguments"}``) one
call; several tool_call parts in a turn are parallel calls (newlines around the joined reasoning are
trimmed, as LLaMA-Factory's own renderer does). Each message may carry a ``loss_weight``:
on an assistant turn 1.0 trains it and 0.0 keeps it as context (``"train": false``); any other weight,
or a weight above 0 on a system, user or tool message, cannot be trained as asked and is refused.
``tools`` is a JSON string (or a list) of functions, flat or OpenAI-wrapped; Python type names in their
schemas (``"dict"``, ``"str"``, ``"float"``, ``"any"``...) are mapped to JSON-schema types.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from minicpm_plugin.formats.base import (
    COMPATIBLE,
    MATCH,
    NO,
    Format,
    RecordError,
    as_call,
    as_tool,
    is_message_list,
    load_json_field,
    loads_call,
    tool_with_schema_types,
)

PART_TYPES = ("text", "reasoning", "tool_call", "image_url", "video_url", "audio_url")
_EMPTY = {"type": "text", "value": ""}


def _is_part(part: Any) -> bool:
    return isinstance(part, Mapping) and "value" in part and part.get("type") in PART_TYPES


def _weight(value: Any, role: Any, path: str) -> bool | None:
    """``train`` for a message's loss_weight (None: no flag); RecordError for a weight that cannot be honoured."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RecordError(f"must be a number, got {value!r}", path, "bad-field")
    if role != "assistant":
        if value != 0:
            raise RecordError(f"loss_weight {value} on a {role} message: only assistant turns are trained; set it to 0.0 "
                              "or leave it out", path, "bad-field")
        return None
    if value not in (0, 1):
        raise RecordError(f"loss_weight {value}: a turn is trained with full weight or not at all; use 1.0 or 0.0",
                          path, "bad-field")
    return bool(value)


def _call(value: Any, path: str) -> Any:
    if isinstance(value, str):
        value = loads_call(value, path, "a tool_call part")
    if not isinstance(value, Mapping) or "name" not in value:
        raise RecordError('a tool_call part must hold {"name": "...", "arguments": {...}}', path, "bad-tool-call")
    return as_call(value)


def convert_message(msg: Any, path: str) -> Any:
    """One v1 message as a canonical one (reasoning/tool_call parts taken out of the content)."""
    if not isinstance(msg, Mapping):
        return msg  # the common checks report it
    role = msg.get("role")
    out = {k: v for k, v in msg.items() if k != "loss_weight"}
    if _weight(msg.get("loss_weight"), role, f"{path}.loss_weight") is False and "train" not in msg:
        out["train"] = False
    content = msg.get("content")
    if not isinstance(content, list):
        return out
    thoughts: list[str] = []
    calls: list[Any] = []
    parts: list[Any] = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, Mapping) else None
        ppath = f"{path}.content[{j}]"
        if kind in ("reasoning", "tool_call"):
            if role != "assistant":
                raise RecordError(f"a {kind} part on a {role} message: only assistant messages have them", ppath,
                                  "bad-field")
            if kind == "reasoning":
                if not isinstance(part.get("value"), str):
                    raise RecordError("a reasoning part's value must be a string", f"{ppath}.value", "bad-field")
                thoughts.append(part["value"])
            else:
                calls.append(_call(part.get("value"), f"{ppath}.value"))
            parts.append(_EMPTY)  # keeps the index of every other part for the common checks' paths
        else:
            parts.append(part)
    out["content"] = parts
    if thoughts:
        out["thought"] = "".join(thoughts).strip("\n")  # LLaMA-Factory trims these newlines when rendering too
    if calls:
        out["tool_calls"] = calls
    return out


class LlamaFactoryV1Format(Format):
    name = "llamafactory_v1"
    aliases = ("lf_v1", "llamafactory-v1")
    specializes = ("openai", "seed")
    description = "LLaMA-Factory v1: messages with typed content parts (text/reasoning/tool_call, value), loss_weight"
    example = (
        '{"messages": [{"role": "user", "content": [{"type": "text", "value": "6*8?"}], "loss_weight": 0.0}, '
        '{"role": "assistant", "content": [{"type": "reasoning", "value": "Multiply."}, {"type": "tool_call", '
        '"value": "{\\"name\\": \\"multiply\\", \\"arguments\\": {\\"a\\": 6, \\"b\\": 8}}"}], "loss_weight": 1.0}, '
        '...], "tools": "[{\\"type\\": \\"function\\", \\"function\\": {...}}]"}'
    )

    def detect(self, record: Mapping[str, Any]) -> int:
        messages = record.get("messages")
        if not is_message_list(messages, "role", "content"):
            return NO
        parts = [p for m in messages if isinstance(m.get("content"), list) for p in m["content"] if _is_part(p)]
        if any("loss_weight" in m for m in messages) or any(p["type"] in ("reasoning", "tool_call") for p in parts):
            return MATCH
        openai_calls = any(m.get("tool_calls") or m.get("function_call") for m in messages)
        return MATCH if parts and not openai_calls else COMPATIBLE  # `value` parts beside tool_calls: OpenAI data

    def convert(self, record: Mapping[str, Any]) -> dict[str, Any]:
        messages = record.get("messages")
        if not isinstance(messages, list):
            raise RecordError("must be a list of messages", "messages", "bad-content")
        tools = None
        if record.get("tools") is not None:
            tools = load_json_field(record, "tools", allow=(list, dict))
            tools = [tool_with_schema_types(as_tool(t)) for t in ([tools] if isinstance(tools, dict) else tools or [])]
        return {"messages": [convert_message(m, f"messages[{i}]") for i, m in enumerate(messages)], "tools": tools or None}
