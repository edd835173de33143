"""`minicpm-plugin memory RECIPE.yml [--gpu-gb N]`: peak GPU memory per device, before a run."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from minicpm_plugin.cli import UserError


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the `memory` subcommand."""
    parser = subparsers.add_parser(
        "memory",
        help="estimate a recipe's peak GPU memory per device and which cards it fits",
        description=(
            "Estimate the peak GPU memory of one training step per device from a recipe: weights (by dtype "
            "and 4-bit quantization), LoRA adapters, gradients, optimizer states and where DeepSpeed keeps "
            "them, activations for the sequence length and micro batch (with or without gradient "
            "checkpointing), the logits of MiniCPM3's 73,448-token vocabulary, and CUDA overhead. "
            "See docs/memory.md for the model behind the numbers."
        ),
    )
    parser.add_argument("recipe", metavar="RECIPE.yml", help="an axolotl recipe")
    parser.add_argument("--gpu-gb", type=float, metavar="N", help="also say whether it fits an N GB card")
    parser.add_argument("--world-size", type=int, default=1, metavar="N",
                        help="number of GPUs (ZeRO shards across them; default 1)")
    parser.add_argument("--sequence-len", type=int, metavar="N", help="override the recipe's sequence_len")
    parser.add_argument("--micro-batch-size", type=int, metavar="N", help="override the recipe's micro_batch_size")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Print the breakdown for `args.recipe`."""
    from minicpm_plugin.tools.memory import (
        PlanError,
        estimate,
        format_report,
        plan_from_recipe,
        with_overrides,
    )
    from minicpm_plugin.tools.recipes import RecipeError, load_recipe

    path = Path(args.recipe)
    try:
        recipe = load_recipe(path)
    except RecipeError as exc:
        raise UserError(str(exc)) from None
    for name in ("world_size", "sequence_len", "micro_batch_size", "gpu_gb"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            raise UserError(f"--{name.replace('_', '-')} must be positive, got {value:g}")
    try:
        plan = plan_from_recipe(recipe, base_dir=path.parent, world_size=args.world_size)
    except PlanError as exc:
        raise UserError(f"{path}: {exc}") from None
    changes = {k: v for k, v in (("sequence_len", args.sequence_len), ("micro_batch_size", args.micro_batch_size))
               if v is not None}
    if changes:
        plan = with_overrides(plan, **changes)
    print(format_report(estimate(plan), extra_gpu_gb=args.gpu_gb, title=f"{path}:"))
    return 0
