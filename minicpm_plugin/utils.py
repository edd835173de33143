"""Small shared helpers."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

#: Environment for every axolotl/transformers process we start: never touch a hub, no telemetry.
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "AXOLOTL_DO_NOT_TRACK": "1",
    "WANDB_MODE": "disabled",
    "TOKENIZERS_PARALLELISM": "false",
}


def cpu_launch(module_args: Sequence[str], env: Mapping[str, str] | None = None,
               launch_args: Sequence[str] = ()) -> list[str]:
    """``accelerate launch [LAUNCH_ARGS] -m MODULE ARGS`` for one CPU process with torch on every core:
    without a GPU, accelerate sets ``OMP_NUM_THREADS=1`` unless told otherwise (a value set in ``env``,
    default the environment, is kept)."""
    threads = (env if env is not None else os.environ).get("OMP_NUM_THREADS") or str(os.cpu_count() or 1)
    return [sys.executable, "-m", "accelerate.commands.launch", *launch_args, "--num_cpu_threads_per_process",
            threads, "-m", *module_args]


def get_logger(name: str) -> logging.Logger:
    """A logger under `minicpm_plugin` that prints INFO lines with a `[minicpm-plugin]` prefix.

    axolotl makes every non-axolotl logger drop INFO messages (a filter added at creation); the
    plugin's own report lines are INFO, so that filter is removed here.
    """
    logger = logging.getLogger(name)
    logger.filters.clear()
    root = logging.getLogger("minicpm_plugin")
    root.filters.clear()
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("[minicpm-plugin] %(levelname)s %(message)s"))
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        root.propagate = False
    return logger


_PATCH_MARK = "_minicpm_plugin_patch"


def patch_once(owner: Any, name: str, make: Callable[[Any], Any]) -> bool:
    """Replace ``owner.name`` with ``make(original)`` unless our wrapper is already there.

    The one way this package patches other libraries (transformers, axolotl, accelerate, DeepSpeed):
    idempotent, so a hook that runs twice (axolotl calls some twice) wraps once. Returns whether it
    patched now.
    """
    original = getattr(owner, name)
    if getattr(original, _PATCH_MARK, False):
        return False
    wrapper = make(original)
    setattr(wrapper, _PATCH_MARK, True)
    setattr(owner, name, wrapper)
    return True
