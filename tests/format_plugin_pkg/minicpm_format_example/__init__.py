"""Alpaca records (``instruction``, optional ``input``, ``output``, optional ``system``) for minicpm-plugin."""

from __future__ import annotations

from typing import Any

from minicpm_plugin.formats import MATCH, NO, Format, RecordError, hookimpl


class AlpacaFormat(Format):
    name = "alpaca"
    description = "Alpaca instruction data: instruction + optional input -> output"
    example = '{"instruction": "Translate to French", "input": "cat", "output": "chat"}'

    def detect(self, record: Any) -> int:
        return MATCH if {"instruction", "output"} <= set(record) else NO

    def convert(self, record: Any) -> dict[str, Any]:
        instruction, extra = record["instruction"], record.get("input") or ""
        if not isinstance(instruction, str):
            raise RecordError("must be a string", "instruction", "bad-content")
        messages = []
        if record.get("system"):
            messages.append({"role": "system", "content": record["system"]})
        messages.append({"role": "user", "content": f"{instruction}\n\n{extra}" if extra else instruction})
        messages.append({"role": "assistant", "content": record["output"]})
        return {"messages": messages, "tools": None}


@hookimpl
def minicpm_plugin_formats() -> list[Any]:
    return [AlpacaFormat()]
