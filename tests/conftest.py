"""Shared pytest setup: an offline environment, the tiny MiniCPM3 built once per test session, and the
split of the suite over pytest-xdist workers (`make test` runs TEST_WORKERS of them, 2 by default)."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest

# Before anything imports huggingface_hub/transformers/axolotl: never touch the network.
from minicpm_plugin.utils import OFFLINE_ENV  # noqa: E402  (pure Python: imports no hub client)

for _key, _value in OFFLINE_ENV.items():
    os.environ.setdefault(_key, _value)

# Under pytest-xdist each worker gets its share of the cores for torch, here and in the training runs
# it launches (tests/axolotl_runs.py and `smoke` keep OMP_NUM_THREADS): two workers with every core
# each would oversubscribe the machine, and OpenMP's spinning threads then waste a third of its time.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 1)
if _WORKERS > 1:
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // _WORKERS)))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Files with the most slow tests first. `make test` hands out whole files in this order
    (`--dist loadfile --no-loadscope-reorder`: a module's fixture, such as one training run, is built
    once), and a long file must not start last while the other worker idles."""
    slow: Counter[Path] = Counter(item.path for item in items if item.get_closest_marker("slow"))
    items.sort(key=lambda item: -slow[item.path])


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Directory with the tiny MiniCPM3 (seed 0): config, safetensors, generation config, tokenizer.

    Built once per session; treat it as read-only (copy it or save elsewhere before changing files).
    """
    from minicpm_plugin.tools.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-minicpm3"), seed=0)
