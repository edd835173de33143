"""Bad conversations and schemas raise FormatError naming the field, never a deep crash."""

from __future__ import annotations

import pytest

from minicpm_plugin import FormatError, render_chat, render_conversation
from minicpm_plugin.chat import Part

USER = {"role": "user", "content": "hi"}


@pytest.mark.parametrize(
    ("messages", "tools", "path", "message"),
    [
        ([], None, "messages", "non-empty list"),
        ([{"content": "x"}], None, "messages[0].role", "role"),
        ([USER, {"role": "assistant", "content": 3}], None, "messages[1].content", "must be a string"),
        ([USER, {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "f", "arguments": "{bad"}}]}],
         None, "messages[1].tool_calls[0].function.arguments", "not valid JSON"),
        ([USER, {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "f", "arguments": "[1]"}}]}],
         None, "messages[1].tool_calls[0].function.arguments", "must be a JSON object"),
        ([USER, {"role": "assistant", "content": "", "tool_calls": [{"function": {"arguments": {}}}]}],
         None, "messages[1].tool_calls[0].function.name", "name"),
        ([USER], [{"function": {"name": "f", "parameters": {"type": "object", "properties": {"a": {"type": "float"}}}}}],
         "tools[0].function.parameters.properties.a.type", "unknown JSON-schema type 'float'"),
        ([USER], [{"name": "f", "parameters": "x"}], "tools[0].parameters", "JSON-schema object"),
        ([USER], [{"description": "no name"}], "tools[0].name", "name"),
    ],
)
def test_errors_name_the_field(messages: list, tools: list | None, path: str, message: str) -> None:
    with pytest.raises(FormatError) as info:
        render_chat(messages, tools)
    assert info.value.path == path
    assert message in info.value.message


def test_none_content_is_empty_text() -> None:
    # The official template crashes on None content; we render it as empty text.
    assert render_chat([USER, {"role": "assistant", "content": None}]).endswith("<|im_start|>assistant\n<|im_end|>\n")


def test_assistant_parts_and_message_indices() -> None:
    messages = [
        {"role": "system", "content": "S"},
        USER,
        {"role": "assistant", "content": "C", "thought": "T", "tool_calls": [{"function": {"name": "f", "arguments": {}}}]},
        {"role": "tool", "content": "R"},
    ]
    r = render_conversation(messages, tools=[{"name": "f"}], add_generation_prompt=True)
    parts = [(s.part, s.message_index, r.slice(s)) for s in r.spans]
    assert parts[:3] == [(Part.HEADER, 0, "<|im_start|>system\n"), (Part.SYSTEM, 0, "S"), (Part.TOOLS, None, parts[2][2])]
    assistant = [(p, t) for p, i, t in parts if i == 2]
    assert assistant == [
        (Part.HEADER, "<|im_start|>assistant\n"),
        (Part.THOUGHT, "<|thought_start|>\nT\n<|thought_end|>\n"),
        (Part.TOOL_CALLS, "<|tool_call_start|>\n```python\nf()\n```\n<|tool_call_end|>\n"),
        (Part.CONTENT, "C"),
        (Part.END, "<|im_end|>"),
        (Part.NEWLINE, "\n"),
    ]
    assert parts[-1] == (Part.GENERATION_PROMPT, None, "<|im_start|>assistant\n")
    assert [p for p, i, _ in parts if i == 3] == [Part.HEADER, Part.TOOL, Part.END, Part.NEWLINE]


def test_core_imports_neither_torch_nor_axolotl() -> None:
    import subprocess
    import sys

    code = "import sys, minicpm_plugin; print('torch' in sys.modules, 'axolotl' in sys.modules, 'transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False", "False"]
