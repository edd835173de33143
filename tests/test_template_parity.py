"""CHAT_TEMPLATE (rendered by transformers) and render_chat agree on generated conversations."""

from __future__ import annotations

import copy
import json

from helpers import hf_render
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from strategies import conversation

from minicpm_plugin import CHAT_TEMPLATE, CHAT_TEMPLATE_PYTHON, render_chat

SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def with_string_arguments(conv: dict, draw_sep: tuple[str, str]) -> dict:
    """The same conversation with every `arguments` as an OpenAI-style JSON string."""
    conv = copy.deepcopy(conv)
    for msg in conv["messages"]:
        for c in msg.get("tool_calls", []):
            c["function"]["arguments"] = json.dumps(c["function"]["arguments"], ensure_ascii=False, separators=draw_sep)
    return conv


@SETTINGS
@given(conversation(), st.sampled_from(["json", "python"]))
def test_template_equals_renderer(conv: dict, style: str) -> None:
    template = CHAT_TEMPLATE if style == "json" else CHAT_TEMPLATE_PYTHON
    expected = render_chat(conv["messages"], conv["tools"], conv["add_generation_prompt"], literal_style=style)
    assert hf_render(template, conv["messages"], conv["tools"], conv["add_generation_prompt"]) == expected


@SETTINGS
@given(conversation(), st.sampled_from(["json", "python"]), st.sampled_from([(",", ":"), (", ", ": "), (" , ", " : ")]))
def test_json_string_arguments(conv: dict, style: str, separators: tuple[str, str]) -> None:
    template = CHAT_TEMPLATE if style == "json" else CHAT_TEMPLATE_PYTHON
    expected = render_chat(conv["messages"], conv["tools"], conv["add_generation_prompt"], literal_style=style)
    conv = with_string_arguments(conv, separators)
    if style == "python":
        # Documented limit: a JSON string with \u escapes (json.dumps writes control characters
        # that way) is kept as a double-quoted literal: same value, other spelling.
        assume(not any("\\u" in c["function"]["arguments"] for m in conv["messages"] for c in m.get("tool_calls", [])))
    assert render_chat(conv["messages"], conv["tools"], conv["add_generation_prompt"], literal_style=style) == expected
    assert hf_render(template, conv["messages"], conv["tools"], conv["add_generation_prompt"]) == expected


def test_python_style_literals() -> None:
    msgs = [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "f", "arguments": {
            "s": "it's", "t": "x\ny", "b": True, "n": None, "d": {"k": [1.5, False]}}}}]},
    ]
    text = render_chat(msgs, literal_style="python")
    assert "f(s=\"it's\",t='x\\ny',b=True,n=None,d={'k': [1.5, False]})\n" in text
    assert hf_render(CHAT_TEMPLATE_PYTHON, msgs) == text
    assert "f(s=\"it's\",t=\"x\\ny\",b=true,n=null,d={\"k\": [1.5, false]})\n" in render_chat(msgs)
