"""The parts of a rendered conversation, as character spans over the rendered text."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


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
