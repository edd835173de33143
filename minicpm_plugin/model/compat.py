"""Fixes for transformers' native MiniCPM3 that the real checkpoint needs.

MiniCPM3-4B's config.json lists its longrope fields without `factor`. transformers 5.16.1's
MiniCPM3 attention reads `rope_parameters["factor"]` unconditionally (for the yarn mscale, which
MiniCPM3 does not use: `mscale_all_dim` is 0), so building the model raises `KeyError: 'factor'`.
We fill in the value transformers' own longrope code derives when it is missing.
"""

from __future__ import annotations

from typing import Any

from minicpm_plugin.utils import patch_once


def fill_rope_factor(config: object) -> None:
    params = getattr(config, "rope_parameters", None)
    if isinstance(params, dict) and params.get("rope_type", "default") != "default" and "factor" not in params:
        original = params.get("original_max_position_embeddings") or getattr(config, "max_position_embeddings", 1)
        params["factor"] = getattr(config, "max_position_embeddings", original) / original


def apply_transformers_fixes() -> None:
    """Idempotent; called by the plugin, the demo, and the evaluation before loading a model."""
    from transformers.models.minicpm3.configuration_minicpm3 import MiniCPM3Config

    def wrap(original_post_init: Any) -> Any:
        def __post_init__(self: Any, *args: Any, **kwargs: Any) -> None:
            original_post_init(self, *args, **kwargs)
            fill_rope_factor(self)

        return __post_init__

    patch_once(MiniCPM3Config, "__post_init__", wrap)
