"""MiniCPM3's own markup written into assistant text, read back into a thought and structured calls.

OpenBMB's MiniCPM3/MiniCPM4 tool SFT data keeps each assistant turn as the text the model generates:
``<|thought_start|>\\n...\\n<|thought_end|>\\n<|tool_call_start|>\\n```python\\nf(a=1,b="x")\\n```\\n
<|tool_call_end|>\\n`` followed by the answer. Such text is read with the strict parser
(`minicpm_plugin.chat.parse_assistant(text, strict=True)`: exact values, literals only, nothing
evaluated), and the turn is then rendered canonically like any other. When the canonical text
differs from what was written (``f(a=1, b=2)`` becomes ``f(a=1,b=2)``, Python literals become JSON
literals), the difference is reported so that no change goes unnoticed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from minicpm_plugin.chat import FormatError, ToolCallParseError, parse_assistant, render_assistant_turn
from minicpm_plugin.chat.tokens import (
    ASSISTANT_MARKERS,
    CALLS_CLOSE,
    CALLS_OPEN,
    THOUGHT_END,
    THOUGHT_START,
    TURN_MARKERS,
)

LAYOUT = f"{THOUGHT_START}\\n...\\n{THOUGHT_END}\\n{CALLS_OPEN}name(arg=value)\\n{CALLS_CLOSE}answer".replace("\n", "\\n")


class MarkupError(ValueError):
    """Assistant text with MiniCPM3 markup that the strict parser cannot read as a thought and calls."""


@dataclass
class Markup:
    """What the markup held, and the first line whose spelling the canonical rendering changes."""

    thought: str | None
    calls: list[dict[str, Any]]
    content: str
    respelled: tuple[str, str] | None

    def describe(self) -> str:
        parts = (["a thought"] if self.thought else []) + (
            [f"{len(self.calls)} call{'s' if len(self.calls) != 1 else ''}"] if self.calls else [])
        return " and ".join(parts) or "no thought and no calls"


def has_markup(text: str) -> bool:
    """Whether ``text`` holds MiniCPM3 thought/call markers (and no turn markers, which are never text)."""
    return "<|" in text and any(m in text for m in ASSISTANT_MARKERS) and not any(m in text for m in TURN_MARKERS)


def _first_difference(written: str, rendered: str) -> tuple[str, str] | None:
    if written == rendered:
        return None
    a, b = written.split("\n"), rendered.split("\n")
    for x, y in zip(a, b, strict=False):
        if x != y:
            return x, y
    return ("\n".join(a[len(b) - 1:]), b[-1]) if len(a) > len(b) else (a[-1], "\n".join(b[len(a) - 1:]))


def read_markup(text: str) -> Markup:
    """Read a thought block and a call block at the start of ``text``; MarkupError when that fails."""
    source = text.lstrip() if text.lstrip().startswith(ASSISTANT_MARKERS) else text
    try:
        parsed = parse_assistant(source, strict=True)
    except ToolCallParseError as exc:
        call = exc.call if exc.call is None or len(exc.call) <= 120 else exc.call[:117] + "..."
        raise MarkupError(f"{exc.message}: {call!r}" if call else exc.message) from None
    rest = parsed["content"]
    left = [m for m in ASSISTANT_MARKERS if m in rest]
    if left:
        where = "after the call block" if parsed["tool_calls"] else "outside a thought block at the start of the turn"
        raise MarkupError(f"{', '.join(left)} {where}; MiniCPM3 writes one thought block, then one call block with "
                          "every call of the turn, then the answer")
    markup = Markup(parsed["thought"], parsed["tool_calls"], rest, None)
    try:
        rendered = render_assistant_turn({"content": rest, "thought": markup.thought, "tool_calls": markup.calls})
    except FormatError as exc:  # pragma: no cover - the strict parser only yields renderable calls
        raise MarkupError(f"the calls cannot be rendered: {exc}") from None
    markup.respelled = _first_difference(text, rendered)
    return markup
