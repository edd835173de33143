"""Render messages (+ tools) as MiniCPM3 text, byte-identical to the model's own chat template.

`render_conversation` also returns the character span of every part of the text, so the tokenizing
step can label tokens from one render and one tokenizer call, without re-rendering per turn.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from minicpm_plugin.chat.calls import call_arguments
from minicpm_plugin.chat.errors import FormatError
from minicpm_plugin.chat.literals import encode_literal
from minicpm_plugin.chat.spans import Part, Rendered, Span
from minicpm_plugin.chat.tokens import (
    CALLS_CLOSE,
    CALLS_OPEN,
    GENERATION_PROMPT,
    IM_END,
    IM_START,
    THOUGHT_END,
    THOUGHT_START,
    TOOL_CALL_START,
    LiteralStyle,
    check_literal_style,
)
from minicpm_plugin.chat.tool_stubs import render_tools

_CONTENT_PART = {"system": Part.SYSTEM, "user": Part.USER, "tool": Part.TOOL}


class _Builder:
    def __init__(self) -> None:
        self.chunks: list[str] = []
        self.spans: list[Span] = []
        self.pos = 0

    def add(self, text: str, part: Part, index: int | None, role: str | None) -> None:
        if text:
            self.chunks.append(text)
            self.spans.append(Span(self.pos, self.pos + len(text), part, index, role))
            self.pos += len(text)

    def build(self) -> Rendered:
        return Rendered("".join(self.chunks), tuple(self.spans))


def _text(value: Any, path: str) -> str:
    # None counts as empty text (the official template would fail on it in most places).
    if value is None:
        return ""
    if not isinstance(value, str):
        raise FormatError(f"must be a string, got {type(value).__name__}", path)
    return value


def render_calls(tool_calls: Sequence[Any], path: str, literal_style: LiteralStyle = "json") -> str:
    """The call block of an assistant turn: one `name(arg=value,...)` line per call."""
    lines = []
    for i, call in enumerate(tool_calls):
        name, args = call_arguments(call, f"{path}[{i}]")
        for key in args:
            if not isinstance(key, str):
                raise FormatError("argument names must be strings", f"{path}[{i}].arguments")
        lines.append(name + "(" + ",".join(k + "=" + encode_literal(v, literal_style) for k, v in args.items()) + ")\n")
    return CALLS_OPEN + "".join(lines) + CALLS_CLOSE


def _assistant(b: _Builder, msg: Mapping[str, Any], i: int, path: str, style: LiteralStyle) -> None:
    content = _text(msg.get("content"), f"{path}.content")
    thought = _text(msg.get("thought"), f"{path}.thought")
    calls = msg.get("tool_calls")
    if calls is not None and not isinstance(calls, (list, tuple)):
        raise FormatError("tool_calls must be a list", f"{path}.tool_calls")
    b.add(IM_START + "assistant\n", Part.HEADER, i, "assistant")
    if thought:
        b.add(f"{THOUGHT_START}\n{thought}\n{THOUGHT_END}\n", Part.THOUGHT, i, "assistant")
    if calls:
        b.add(render_calls(calls, f"{path}.tool_calls", style), Part.TOOL_CALLS, i, "assistant")
        if content.startswith(TOOL_CALL_START):
            content = ""  # the official template drops content that repeats the call block
    b.add(content, Part.CONTENT, i, "assistant")
    b.add(IM_END, Part.END, i, "assistant")
    b.add("\n", Part.NEWLINE, i, "assistant")


def render_conversation(
    messages: Sequence[Mapping[str, Any]],
    tools: Sequence[Any] | None = None,
    add_generation_prompt: bool = False,
    *,
    literal_style: LiteralStyle = "json",
) -> Rendered:
    """Render a conversation and return its text with the span of every part."""
    check_literal_style(literal_style)
    if not isinstance(messages, Sequence) or isinstance(messages, (str, bytes)) or not messages:
        raise FormatError("needs a non-empty list of messages", "messages")
    if tools is not None and not isinstance(tools, Sequence):
        raise FormatError("tools must be a list", "tools")
    b = _Builder()
    for i, msg in enumerate(messages):
        if not isinstance(msg, Mapping):
            raise FormatError("a message must be an object with 'role' and 'content'", f"messages[{i}]")
        if not isinstance(msg.get("role"), str) or not msg["role"]:
            raise FormatError("a message needs a non-empty string 'role'", f"messages[{i}].role")

    start = 0
    system = ""
    if messages[0]["role"] == "system":
        system = _text(messages[0].get("content"), "messages[0].content")
        start = 1
    if system or tools:
        b.add(IM_START + "system\n", Part.HEADER, 0 if start else None, "system")
        b.add(system, Part.SYSTEM, 0, "system")
        if tools:
            b.add(render_tools(list(tools)), Part.TOOLS, None, "system")
        b.add(IM_END, Part.END, 0 if start else None, "system")
        b.add("\n", Part.NEWLINE, 0 if start else None, "system")

    for i in range(start, len(messages)):
        msg, path = messages[i], f"messages[{i}]"
        role = msg["role"]
        if role == "assistant" and (msg.get("tool_calls") or msg.get("thought")):
            _assistant(b, msg, i, path, literal_style)
            continue
        b.add(IM_START + role + "\n", Part.HEADER, i, role)
        b.add(_text(msg.get("content"), f"{path}.content"), _CONTENT_PART.get(role, Part.CONTENT if role == "assistant" else Part.OTHER), i, role)
        b.add(IM_END, Part.END, i, role)
        b.add("\n", Part.NEWLINE, i, role)

    if add_generation_prompt:
        b.add(GENERATION_PROMPT, Part.GENERATION_PROMPT, None, "assistant")
    return b.build()


def render_chat(
    messages: Sequence[Mapping[str, Any]],
    tools: Sequence[Any] | None = None,
    add_generation_prompt: bool = False,
    *,
    literal_style: LiteralStyle = "json",
) -> str:
    """Exactly the text MiniCPM3's official chat template renders for these messages and tools."""
    return render_conversation(messages, tools, add_generation_prompt, literal_style=literal_style).text


def render_assistant_turn(message: Mapping[str, Any], *, literal_style: LiteralStyle = "json") -> str:
    """The text the model generates for one assistant message (after the header, before `<|im_end|>`)."""
    r = render_conversation([{"role": "user", "content": ""}, dict(message, role="assistant")], literal_style=literal_style)
    return "".join(r.slice(s) for s in r.spans if s.message_index == 1 and s.part not in (Part.HEADER, Part.END, Part.NEWLINE))
