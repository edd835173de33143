"""Shared pytest setup: an offline environment and the tiny MiniCPM3 built once per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Before anything imports huggingface_hub/transformers/axolotl: never touch the network.
for _key, _value in {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "AXOLOTL_DO_NOT_TRACK": "1",
    "WANDB_MODE": "disabled",
    "TOKENIZERS_PARALLELISM": "false",
}.items():
    os.environ.setdefault(_key, _value)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Directory with the tiny MiniCPM3 (seed 0): config, safetensors, generation config, tokenizer.

    Built once per session; treat it as read-only (copy it or save elsewhere before changing files).
    """
    from minicpm_plugin.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-minicpm3"), seed=0)
