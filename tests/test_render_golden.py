"""The renderer and our Jinja template reproduce MiniCPM3's official template byte for byte."""

from __future__ import annotations

import pytest
from helpers import hf_render, load_json

from minicpm_plugin import CHAT_TEMPLATE, render_chat, render_conversation

GOLDEN = load_json("minicpm3_template_cases.json")
OFFICIAL = load_json("official_rendered_cases.json")


def test_golden_file_covers_the_format() -> None:
    assert len(GOLDEN) == 9
    assert len(OFFICIAL) == 120


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_render_chat_matches_golden(name: str) -> None:
    case = GOLDEN[name]
    assert render_chat(case["messages"], case["tools"], case["add_generation_prompt"]) == case["text"]


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_chat_template_matches_golden(name: str) -> None:
    case = GOLDEN[name]
    assert hf_render(CHAT_TEMPLATE, case["messages"], case["tools"], case["add_generation_prompt"]) == case["text"]


@pytest.mark.parametrize("index", range(len(OFFICIAL)))
def test_generated_cases_match_official_rendering(index: int) -> None:
    case = OFFICIAL[index]
    args = (case["messages"], case["tools"], case["add_generation_prompt"])
    assert render_chat(*args) == case["text"]
    assert hf_render(CHAT_TEMPLATE, *args) == case["text"]


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_spans_tile_the_text(name: str) -> None:
    case = GOLDEN[name]
    rendered = render_conversation(case["messages"], case["tools"], case["add_generation_prompt"])
    pos = 0
    for span in rendered.spans:
        assert span.start == pos and span.end > span.start
        pos = span.end
    assert pos == len(rendered.text)
