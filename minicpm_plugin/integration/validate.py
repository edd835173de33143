"""Validate a recipe as `axolotl.cli.train` does, before anything loads, and report unknown keys.

axolotl's schema silently drops keys it does not know, so a typo such as `lora_dropuot` would
otherwise train with the default.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from typing import Any

from minicpm_plugin.tools.recipes import RecipeError

# The machine the shipped recipes are written for: one Ampere-or-newer GPU.
TARGET_GPU: dict[str, Any] = {"bf16": True, "fp8": False, "tf32": True, "n_gpu": 1, "compute_capability": "sm_80"}


def validate_recipe(recipe: Mapping[str, Any], source: str = "recipe",
                    capabilities: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Validate like `axolotl.cli.train` does before loading anything; return the validated config.

    Registers the recipe's plugins first (their keys become valid), then runs
    `axolotl.utils.config.validate_config`. Raises `RecipeError` for a rejected recipe or for
    top-level keys the schema does not know.
    """
    os.environ.setdefault("AXOLOTL_DO_NOT_TRACK", "1")
    import torch
    from axolotl.utils.config import prepare_plugins, validate_config
    from axolotl.utils.dict import DictDefault
    from axolotl.utils.schemas.config import AxolotlInputConfig

    from minicpm_plugin.integration.config_checks import for_another_machine

    cfg = DictDefault(copy.deepcopy(dict(recipe)))
    try:
        with for_another_machine():  # its model and data are where the recipe will run, maybe not here
            prepare_plugins(cfg)
    except (Exception, SystemExit) as exc:  # a plugin's import error, or its own check in register()
        raise RecipeError(f"{source}: plugins: {exc}") from exc
    schema = AxolotlInputConfig
    if cfg.get("plugins"):
        from axolotl.integrations.config import merge_input_args

        schema = merge_input_args()[1]
    names = set(schema.model_fields) | {f.alias for f in schema.model_fields.values() if f.alias}
    unknown = sorted(k for k in recipe if k not in names)
    if unknown:
        raise RecipeError(f"{source}: unknown key(s) {', '.join(unknown)}: axolotl would ignore them "
                          "(a typo, or a plugin key without its plugin)")
    env = {"torch_version": str(torch.__version__).split("+", maxsplit=1)[0]}
    try:
        return dict(validate_config(cfg, capabilities=dict(capabilities or TARGET_GPU), env_capabilities=env))
    except Exception as exc:  # pydantic.ValidationError or a validator's ValueError
        raise RecipeError(f"{source}: axolotl rejects the recipe: {exc}") from exc
