"""Instruction data: Alpaca (``instruction``/``input``/``output``) and query/response (``query``/``response``).

Both may carry ``system`` (text) and ``history`` (earlier turns as ``[[query, answer], ...]``), the
layout LLaMA-Factory and ms-swift read. The user turn is ``instruction``, plus ``"\\n"`` and ``input``
when ``input`` is not empty (the separator both frameworks use). ``history`` may also be a JSON (or
Python literal) string of that list, as ms-swift accepts. A ``tools`` column (JSON text or a list)
is rendered in the system turn.
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
    as_tool,
    load_json_field,
    loads_lenient,
)


def _text(record: Mapping[str, Any], key: str, *, optional: bool = False) -> str:
    value = record.get(key)
    if value is None and optional:
        return ""
    if not isinstance(value, str):
        raise RecordError(f"must be a string, got {type(value).__name__}", key, "bad-content")
    return value


def _history(record: Mapping[str, Any]) -> tuple[list[dict[str, Any]], list[str]]:
    value = record.get("history")
    if isinstance(value, str):
        value = loads_lenient(value, "history", "history", "bad-content") if value.strip() else None
    if value is None:
        return [], []
    if not isinstance(value, list):
        raise RecordError("must be a list of [query, answer] pairs", "history", "bad-content")
    messages: list[dict[str, Any]] = []
    sources: list[str] = []
    for i, pair in enumerate(value):
        path = f"history[{i}]"
        if not isinstance(pair, (list, tuple)) or len(pair) != 2 or not all(isinstance(t, str) for t in pair):
            raise RecordError("must be a pair of strings [query, answer]", path, "bad-content")
        messages += [{"role": "user", "content": pair[0]}, {"role": "assistant", "content": pair[1]}]
        sources += [f"{path}[0]", f"{path}[1]"]
    return messages, sources


def _conversation(record: Mapping[str, Any], prompt: str, prompt_source: str, answer_key: str) -> Converted:
    messages: list[dict[str, Any]] = []
    sources: list[str] = []
    system = _text(record, "system", optional=True)
    if system:
        messages.append({"role": "system", "content": system})
        sources.append("system")
    earlier, earlier_sources = _history(record)
    messages += earlier + [{"role": "user", "content": prompt},
                           {"role": "assistant", "content": _text(record, answer_key)}]
    sources += earlier_sources + [prompt_source, answer_key]
    tools = None
    if record.get("tools") is not None:
        tools = load_json_field(record, "tools", allow=(list, dict))
        tools = [as_tool(t) for t in ([tools] if isinstance(tools, dict) else tools or [])]
    return Converted({"messages": messages, "tools": tools or None}, sources, "tools")


class AlpacaFormat(Format):
    name = "alpaca"
    description = "Alpaca instruction data: instruction (+ input) -> output, optional system and history [[q, a], ...]"
    example = ('{"instruction": "Translate to French", "input": "The cat sleeps.", "output": "Le chat dort.", '
               '"system": "You translate.", "history": [["Hello", "Bonjour"]]}')

    def detect(self, record: Mapping[str, Any]) -> int:
        return MATCH if "instruction" in record and "output" in record else NO

    def convert(self, record: Mapping[str, Any]) -> Converted:
        instruction = _text(record, "instruction")
        extra = _text(record, "input", optional=True)
        prompt = f"{instruction}\n{extra}" if extra else instruction
        return _conversation(record, prompt, "instruction" + (" + input" if extra else ""), "output")


class QueryResponseFormat(Format):
    name = "query_response"
    aliases = ("query-response",)
    description = "query -> response records with optional system and history [[q, a], ...] (ms-swift, ChatGLM style)"
    example = '{"system": "Be brief.", "query": "And 3+3?", "response": "6", "history": [["1+1?", "2"]]}'

    def detect(self, record: Mapping[str, Any]) -> int:
        return MATCH if "query" in record and "response" in record else NO

    def convert(self, record: Mapping[str, Any]) -> Converted:
        return _conversation(record, _text(record, "query"), "query", "response")
