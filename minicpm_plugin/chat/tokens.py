"""The spellings of MiniCPM3's format, defined once: special tokens, format markers, literal styles.

`<|im_start|>`/`<|im_end|>` are special tokens of the tokenizer; the thought and tool-call markers are
ordinary text (several tokens each) and must never be added to the vocabulary.
"""

from __future__ import annotations

from typing import Literal, get_args

BOS = "<s>"
EOS_LEGACY = "</s>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
THOUGHT_START = "<|thought_start|>"
THOUGHT_END = "<|thought_end|>"
TOOL_CALL_START = "<|tool_call_start|>"
TOOL_CALL_END = "<|tool_call_end|>"
CALLS_OPEN = TOOL_CALL_START + "\n```python\n"
CALLS_CLOSE = "```\n" + TOOL_CALL_END + "\n"
ASSISTANT_HEADER = IM_START + "assistant\n"
GENERATION_PROMPT = ASSISTANT_HEADER

#: Markers that would break the turn structure if they appeared in any text.
TURN_MARKERS = (IM_START, IM_END)
#: Markers of the assistant format: inside assistant text they would be read back as a thought or a call block.
ASSISTANT_MARKERS = (THOUGHT_START, THOUGHT_END, TOOL_CALL_START, TOOL_CALL_END)
#: Generation stops on either (the real MiniCPM3's generation config lists both).
STOP_TOKENS: tuple[str, ...] = (EOS_LEGACY, IM_END)

#: How call argument values are written: JSON literals (the official template) or Python literals.
LiteralStyle = Literal["json", "python"]
LITERAL_STYLES: tuple[str, ...] = get_args(LiteralStyle)


def check_literal_style(style: str) -> None:
    """ValueError naming the allowed styles, for a style that is neither."""
    if style not in LITERAL_STYLES:
        raise ValueError(f"unknown literal style {style!r}; use one of {', '.join(LITERAL_STYLES)}")
