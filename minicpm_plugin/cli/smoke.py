"""`minicpm-plugin smoke RECIPE.yml`: train a recipe for a few steps on CPU on the tiny MiniCPM3."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from minicpm_plugin.cli import UserError


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the `smoke` subcommand."""
    parser = subparsers.add_parser(
        "smoke",
        help="train a recipe for a few steps on CPU on the tiny MiniCPM3 and report pass/fail",
        description=(
            "Run RECIPE.yml through `accelerate launch -m axolotl.cli.train` on CPU with the offline tiny "
            "MiniCPM3, overriding only base_model, output_dir, dataset_prepared_path, max_steps, "
            "dataset_num_proc (1) and gradient_accumulation_steps (1 unless --grad-accum recipe; and, if "
            "asked, micro_batch_size and sequence_len). Everything else - data, adapter, "
            "optimizer, DeepSpeed config - runs as written, so a broken key or data file fails here "
            "instead of on a GPU. Relative paths in the recipe are read from the current folder."
        ),
    )
    parser.add_argument("recipe", metavar="RECIPE.yml", help="an axolotl recipe")
    parser.add_argument("--max-steps", type=int, default=2, metavar="N", help="training steps (default 2)")
    parser.add_argument("--micro-batch-size", type=int, metavar="N", help="override micro_batch_size")
    parser.add_argument("--sequence-len", type=int, metavar="N", help="override sequence_len")
    parser.add_argument("--grad-accum", default="1", metavar="N|recipe",
                        help="gradient_accumulation_steps for the run (default 1: each micro batch runs the "
                        "full 73k-token output layer, so the recipe's value mostly costs time); 'recipe' keeps it")
    parser.add_argument("--model", metavar="DIR", help="a small MiniCPM3 to use instead of building the tiny one")
    parser.add_argument("--keep", metavar="DIR", help="run in DIR and keep the config, log and outputs there")
    parser.add_argument("--timeout", type=float, default=1200, metavar="S",
                        help="give up after S seconds (default 1200; the first DeepSpeed CPU-offload run "
                        "compiles DeepSpeed's CPU Adam, which takes minutes)")
    parser.set_defaults(func=run)
    return parser


def _positive_int(text: str, flag: str) -> int:
    if not text.isdecimal() or int(text) <= 0:  # isdigit() accepts '²', which int() refuses
        raise UserError(f"{flag} takes a positive whole number or 'recipe', got {text!r}")
    return int(text)


def run(args: argparse.Namespace) -> int:
    """Run the smoke training; exit 0 on pass, 1 on fail (the reason and the log's end on stderr)."""
    from minicpm_plugin.tools.smoke import smoke_recipe

    if not Path(args.recipe).is_file():
        raise UserError(f"{args.recipe}: no such file")
    grad_accum = None if args.grad_accum == "recipe" else _positive_int(args.grad_accum, "--grad-accum")
    for name in ("max_steps", "micro_batch_size", "sequence_len", "timeout"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            raise UserError(f"--{name.replace('_', '-')} must be positive, got {value:g}")
    result = smoke_recipe(
        args.recipe, model_dir=args.model, max_steps=args.max_steps, micro_batch_size=args.micro_batch_size,
        sequence_len=args.sequence_len, gradient_accumulation_steps=grad_accum, workdir=args.keep,
        timeout=args.timeout,
    )
    print(result.summary())
    if result.workdir:
        print(f"config, log and outputs: {result.workdir}")
    if not result.ok:
        if result.log:
            tail = result.log.rstrip().splitlines()[-40:]
            print("---- end of the training log ----", file=sys.stderr)
            print("\n".join(tail), file=sys.stderr)
        return 1
    return 0
