"""OpenAI chat messages: ``{"messages": [...], "tools": [...]}``.

Accepts ``tool_calls`` with arguments as a JSON string or an object, the legacy ``function_call``
and ``functions``, roles ``tool`` and ``function`` (and ``developer`` as system), the thought as
``thought``, ``reasoning_content`` or a leading ``<think>...</think>``, and ``tools`` stored as a JSON
string. The record maps one-to-one onto the canonical conversation, so paths in problems are the
record's own paths.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from minicpm_plugin.formats.base import MATCH, NO, Format, RecordError, as_tool, is_message_list


class OpenAIFormat(Format):
    name = "openai"
    aliases = ("messages", "chatml")
    description = "OpenAI chat messages with optional tools/tool_calls (also legacy functions/function_call)"
    example = (
        '{"messages": [{"role": "user", "content": "Weather in Paris?"}, {"role": "assistant", "tool_calls": '
        '[{"type": "function", "function": {"name": "get_weather", "arguments": "{\\"city\\": \\"Paris\\"}"}}]}, '
        '...], "tools": [{"type": "function", "function": {...}}]}'
    )

    def detect(self, record: Mapping[str, Any]) -> int:
        return MATCH if is_message_list(record.get("messages"), "role", "content") or (
            isinstance(record.get("messages"), list) and record["messages"] == []
        ) else NO

    def convert(self, record: Mapping[str, Any]) -> dict[str, Any]:
        messages = record.get("messages")
        if not isinstance(messages, list):
            raise RecordError("must be a list of messages", "messages", "bad-content")
        tools: Any = record.get("tools")
        functions = record.get("functions")
        if functions is not None:
            if tools:
                raise RecordError("has both tools and the legacy functions; keep one", "functions", "bad-tools")
            if not isinstance(functions, list):
                raise RecordError("must be a list of function schemas", "functions", "bad-tools")
            tools = [as_tool(f) for f in functions]
        return {"messages": messages, "tools": tools}
