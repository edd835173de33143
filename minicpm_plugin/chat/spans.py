"""The parts of a rendered conversation, as character spans over the rendered text."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any


class Part(str, Enum):
    HEADER = "header"  # `<|im_start|>{role}\n` of any turn
    SYSTEM = "system"  # system message text
    TOOLS = "tools"  # the "# Functions ..." block in the system turn
    USER = "user"
    TOOL = "tool"  # a tool result
    OTHER = "other"  # content of any other role
    THOUGHT = "thought"  # `<|thought_start|>\n...\n<|thought_end|>\n`
    TOOL_CALLS = "tool_calls"  # `<|tool_call_start|>\n```python\n...```\n<|tool_call_end|>\n`
    CONTENT = "content"  # assistant text
    END = "end"  # `<|im_end|>` closing a turn
    NEWLINE = "newline"  # the `\n` after `<|im_end|>`
    GENERATION_PROMPT = "generation_prompt"  # final `<|im_start|>assistant\n`


#: Parts of an assistant turn that carry a training signal (docs/architecture.md, "What gets a label").
ASSISTANT_TRAINABLE = frozenset({Part.THOUGHT, Part.TOOL_CALLS, Part.CONTENT, Part.END})


@dataclass(frozen=True)
class Span:
    start: int
    end: int
    part: Part
    #: index into the messages given to the renderer; None for the tools block and generation prompt
    message_index: int | None
    role: str | None

    @property
    def is_assistant_output(self) -> bool:
        """True for the parts of an assistant turn that the model generates."""
        return self.role == "assistant" and self.part in ASSISTANT_TRAINABLE


@dataclass(frozen=True)
class Rendered:
    """Rendered text plus spans that tile it exactly (every character in exactly one span)."""

    text: str
    spans: tuple[Span, ...]

    def slice(self, span: Span) -> str:
        return self.text[span.start : span.end]


def label_spans(spans: Sequence[Span], messages: Sequence[Mapping[str, Any]]) -> list[Span]:
    """The spans of a render that labelling needs: each assistant turn's thought, calls, content and
    `<|im_end|>` (none for a message with ``"train": false``), and the `\n` that ends the turn."""
    untrained = {i for i, m in enumerate(messages) if m.get("train", True) is False}
    return [s for s in spans if s.role == "assistant" and s.message_index is not None and (
        s.part is Part.NEWLINE or (s.is_assistant_output and s.message_index not in untrained))]
