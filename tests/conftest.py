"""Shared pytest setup: an offline environment and the tiny MiniCPM3 built once per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Before anything imports huggingface_hub/transformers/axolotl: never touch the network.
from minicpm_plugin.utils import OFFLINE_ENV  # noqa: E402  (pure Python: imports no hub client)

for _key, _value in OFFLINE_ENV.items():
    os.environ.setdefault(_key, _value)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Directory with the tiny MiniCPM3 (seed 0): config, safetensors, generation config, tokenizer.

    Built once per session; treat it as read-only (copy it or save elsewhere before changing files).
    """
    from minicpm_plugin.tools.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-minicpm3"), seed=0)
