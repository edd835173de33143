"""Small helpers shared by tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

DATA = Path(__file__).parent / "data"


def load_json(name: str) -> Any:
    return json.loads((DATA / name).read_text(encoding="utf-8"))


def hf_render(template: str, messages: list[dict], tools: list | None = None, add_generation_prompt: bool = False) -> str:
    """Render through transformers' own chat-template renderer (what tokenizers and vLLM use)."""
    from transformers.utils.chat_template_utils import render_jinja_template

    rendered, _ = render_jinja_template(
        conversations=[messages], tools=tools, chat_template=template, add_generation_prompt=add_generation_prompt
    )
    return rendered[0]


#: The built-in formats in registration order (what `check --list-formats` shows first).
BUILTIN_FORMATS = ["seed", "openai", "sharegpt", "glaive", "xlam", "hermes", "llamafactory_v1", "swift", "alpaca",
                   "query_response", "preference"]
