"""Glaive function-calling v2: raw ``system`` and ``chat`` text.

``system`` is ``SYSTEM: <prompt> -`` followed by one or more function schemas as JSON objects;
``chat`` is a sequence of ``USER:``, ``ASSISTANT:`` and ``FUNCTION RESPONSE:`` turns, turns ending
in ``<|endoftext|>``. A chat with at most one marker at a line start is read in the one-line layout
(``USER: ... ASSISTANT: ... <|endoftext|> FUNCTION RESPONSE: ...``), where a marker is any
``USER:``/``ASSISTANT:``/``FUNCTION RESPONSE:`` after whitespace. A call is ``<functioncall> {"name": "...", "arguments": '{...}'}`` (the
arguments are a JSON string in single quotes, which is not JSON; an object works too).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from minicpm_plugin.formats.base import MATCH, NO, Converted, Format, RecordError, as_tool, loads
from minicpm_plugin.formats.strict_json import JSONValueError, StrictDecoder

_TURN = re.compile(r"^(USER|ASSISTANT|FUNCTION RESPONSE):[ \t]?", re.M)
#: The same markers anywhere after whitespace: Glaive chats re-exported on one line.
_INLINE_TURN = re.compile(r"(?:^|(?<=\s))(USER|ASSISTANT|FUNCTION RESPONSE):[ \t]?")
_EOT = "<|endoftext|>"
_CALL = "<functioncall>"
_GLAIVE_CALL = re.compile(r'\A\{\s*"name"\s*:\s*("(?:[^"\\]|\\.)*")\s*,\s*"arguments"\s*:\s*\'(.*)\'\s*\}\Z', re.S)
_ROLES = {"USER": "user", "ASSISTANT": "assistant", "FUNCTION RESPONSE": "tool"}


def parse_functions(system: str) -> tuple[str, list[Any]]:
    """Split the system text into its prompt and the function schemas that follow it."""
    text = system.strip()
    if text.startswith("SYSTEM:"):
        text = text[len("SYSTEM:"):].lstrip()
    start = text.find("{")
    if start < 0:
        return text, []
    prompt, rest = text[:start].rstrip(), text[start:]
    decoder = StrictDecoder()
    functions, pos = [], 0
    while pos < len(rest):
        while pos < len(rest) and rest[pos].isspace():
            pos += 1
        if pos == len(rest):
            break
        try:
            obj, pos = decoder.raw_decode(rest, pos)
        except JSONValueError as exc:
            raise RecordError(f"a function schema after the prompt: {exc.msg}", "system", "bad-tools") from None
        except json.JSONDecodeError as exc:
            raise RecordError(f"the function schemas after the prompt are not JSON objects ({exc.msg} at char "
                              f"{start + exc.pos})", "system", "bad-tools") from None
        functions.append(as_tool(obj))
    return prompt, functions


def parse_call(text: str, path: str) -> dict[str, Any]:
    """The JSON after ``<functioncall>``, with Glaive's single-quoted arguments string."""
    text = text.strip()
    m = _GLAIVE_CALL.match(text)
    if m:
        return {"name": json.loads(m.group(1)), "arguments": m.group(2)}
    try:
        call = loads(text)
    except ValueError:
        call = None
    if not isinstance(call, Mapping) or "name" not in call:
        raise RecordError(f'{_CALL} must be followed by {{"name": "...", "arguments": ...}}, got {text[:80]!r}', path, "bad-tool-call")
    return {"name": call["name"], "arguments": call.get("arguments", {})}


class GlaiveFormat(Format):
    name = "glaive"
    description = "Glaive function-calling v2 raw text (SYSTEM: + functions JSON, USER:/ASSISTANT:/FUNCTION RESPONSE:)"
    example = (
        '{"system": "SYSTEM: You are a helpful assistant with access to the following functions. Use them if required -\\n'
        '{\\"name\\": \\"get_weather\\", ...}", "chat": "USER: Weather in Paris?\\n\\n\\nASSISTANT: <functioncall> '
        '{\\"name\\": \\"get_weather\\", \\"arguments\\": \'{\\"city\\": \\"Paris\\"}\'} <|endoftext|>\\n\\n\\n'
        'FUNCTION RESPONSE: {\\"temp\\": 21}\\n\\n\\nASSISTANT: It is 21°C. <|endoftext|>"}'
    )

    def detect(self, record: Mapping[str, Any]) -> int:
        chat = record.get("chat")
        return MATCH if isinstance(chat, str) and _TURN.search(chat) else NO

    def convert(self, record: Mapping[str, Any]) -> Converted:
        messages: list[dict[str, Any]] = []
        sources: list[str] = []
        tools: list[Any] | None = None
        system = record.get("system")
        if system is not None:
            if not isinstance(system, str):
                raise RecordError("must be a string", "system", "bad-content")
            prompt, tools = parse_functions(system)
            if prompt:
                messages.append({"role": "system", "content": prompt})
                sources.append("system")
        chat = record.get("chat")
        if not isinstance(chat, str):
            raise RecordError("must be a string of USER:/ASSISTANT: turns", "chat", "bad-content")
        marks = list(_TURN.finditer(chat))
        if len(marks) <= 1:  # one-line layout: "USER: ... ASSISTANT: ... <|endoftext|> FUNCTION RESPONSE: ..."
            marks = list(_INLINE_TURN.finditer(chat)) or marks
        if not marks:
            raise RecordError("has no USER:/ASSISTANT: turns", "chat", "bad-content")
        if chat[: marks[0].start()].strip():
            raise RecordError(f"text before the first turn: {chat[: marks[0].start()].strip()[:60]!r}", "chat")
        for n, m in enumerate(marks):
            end = marks[n + 1].start() if n + 1 < len(marks) else len(chat)
            body = chat[m.end():end].strip()
            if body.endswith(_EOT):
                body = body[: -len(_EOT)].rstrip()
            role = _ROLES[m.group(1)]
            path = f"chat (turn {n + 1}, {m.group(1)})"
            msg: dict[str, Any] = {"role": role, "content": body}
            if role == "assistant" and _CALL in body:
                before, _, call = body.partition(_CALL)
                msg = {"role": role, "content": before.strip(), "tool_calls": [parse_call(call, path)]}
            messages.append(msg)
            sources.append(path)
        return Converted({"messages": messages, "tools": tools or None}, sources, "system")
