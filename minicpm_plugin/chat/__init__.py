"""The MiniCPM3 chat and tool-call format: render and parse. Pure Python (no torch, no axolotl)."""

from minicpm_plugin.chat.calls import CallError, call_arguments
from minicpm_plugin.chat.errors import FormatError, ToolCallParseError
from minicpm_plugin.chat.literals import encode_literal
from minicpm_plugin.chat.parse import parse_assistant, parse_calls
from minicpm_plugin.chat.render import (
    render_assistant_turn,
    render_chat,
    render_conversation,
)
from minicpm_plugin.chat.spans import ASSISTANT_TRAINABLE, Part, Rendered, Span
from minicpm_plugin.chat.template import CHAT_TEMPLATE, CHAT_TEMPLATE_PYTHON, chat_template_for
from minicpm_plugin.chat.tokens import GENERATION_PROMPT, LITERAL_STYLES, LiteralStyle, check_literal_style

__all__ = [
    "ASSISTANT_TRAINABLE",
    "CHAT_TEMPLATE",
    "CHAT_TEMPLATE_PYTHON",
    "CallError",
    "GENERATION_PROMPT",
    "LITERAL_STYLES",
    "FormatError",
    "LiteralStyle",
    "Part",
    "Rendered",
    "Span",
    "ToolCallParseError",
    "call_arguments",
    "check_literal_style",
    "chat_template_for",
    "encode_literal",
    "parse_assistant",
    "parse_calls",
    "render_assistant_turn",
    "render_chat",
    "render_conversation",
]
