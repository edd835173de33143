"""The official ``finetune.py`` layout: ``{"messages": [...]}`` with system/user/assistant turns only.

Usually a ``.json`` file holding an array of such records (JSONL works too). It is a special case of
``openai`` (same conversion); a file of plain chats is reported as ``seed``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from minicpm_plugin.formats.base import MATCH, NO
from minicpm_plugin.formats.openai import OpenAIFormat

_ROLES = {"system", "user", "assistant"}


class SeedFormat(OpenAIFormat):
    name = "seed"
    aliases = ("finetune", "minicpm")
    specializes = ("openai",)
    description = "MiniCPM's official finetune.py data: a JSON array of {\"messages\": [...]} (system/user/assistant)"
    example = '[{"messages": [{"role": "user", "content": "你好"}, {"role": "assistant", "content": "你好！"}]}]'

    def detect(self, record: Mapping[str, Any]) -> int:
        messages = record.get("messages")
        if set(record) != {"messages"} or not isinstance(messages, list) or not messages:
            return NO
        for m in messages:
            if not isinstance(m, Mapping) or set(m) - {"role", "content"} or m.get("role") not in _ROLES:
                return NO
        return MATCH
