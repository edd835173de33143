"""Dolly records (``instruction``, optional ``context``, ``response``; databricks-dolly-15k) for minicpm-plugin."""

from __future__ import annotations

from typing import Any

from minicpm_plugin.formats import MATCH, NO, Format, RecordError, hookimpl


class DollyFormat(Format):
    name = "dolly"
    description = "Dolly instruction data: instruction + optional context -> response"
    example = '{"instruction": "Translate to French", "context": "cat", "response": "chat", "category": "open_qa"}'

    def detect(self, record: Any) -> int:
        return MATCH if {"instruction", "response"} <= set(record) else NO

    def convert(self, record: Any) -> dict[str, Any]:
        instruction, context = record["instruction"], record.get("context") or ""
        if not isinstance(instruction, str):
            raise RecordError("must be a string", "instruction", "bad-content")
        messages = []
        if record.get("system"):
            messages.append({"role": "system", "content": record["system"]})
        messages.append({"role": "user", "content": f"{instruction}\n\n{context}" if context else instruction})
        messages.append({"role": "assistant", "content": record["response"]})
        return {"messages": messages, "tools": None}


@hookimpl
def minicpm_plugin_formats() -> list[Any]:
    return [DollyFormat()]
