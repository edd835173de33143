"""minicpm-plugin: MiniCPM3 for axolotl.

The format core (`render_chat`, `parse_assistant`, `CHAT_TEMPLATE`) is pure Python. The axolotl
plugin class is imported lazily so that `import minicpm_plugin` never pulls in torch or axolotl.
"""

from __future__ import annotations

from typing import Any

from minicpm_plugin.chat import (
    CHAT_TEMPLATE,
    CHAT_TEMPLATE_PYTHON,
    FormatError,
    ToolCallParseError,
    parse_assistant,
    render_chat,
    render_conversation,
)

__all__ = [
    "CHAT_TEMPLATE",
    "CHAT_TEMPLATE_PYTHON",
    "FormatError",
    "MiniCPM3Plugin",
    "ToolCallParseError",
    "parse_assistant",
    "render_chat",
    "render_conversation",
]

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # axolotl resolves `plugins: [minicpm_plugin.MiniCPM3Plugin]` with getattr on this module.
    if name == "MiniCPM3Plugin":
        from minicpm_plugin.integration import MiniCPM3Plugin

        return MiniCPM3Plugin
    # `rl: dpo` + `type: minicpm_plugin.dpo`: axolotl's RL loader imports this package and calls
    # `getattr(minicpm_plugin, "dpo")(cfg, dataset_idx=i)` (axolotl.prompt_strategies.base.load).
    if name == "dpo":
        from minicpm_plugin.integration.dpo import dpo

        return dpo
    raise AttributeError(f"module 'minicpm_plugin' has no attribute {name!r}")
