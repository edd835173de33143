"""`minicpm-plugin make-tiny-model DIR`: write the offline tiny MiniCPM3 (model + tokenizer)."""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

from minicpm_plugin.cli import UserError


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the `make-tiny-model` subcommand."""
    parser = subparsers.add_parser(
        "make-tiny-model",
        help="write a tiny randomly initialised MiniCPM3 and tokenizer (offline)",
        description=(
            "Write a small, randomly initialised native MiniCPM3ForCausalLM (latent attention, muP "
            "scalings, tied embeddings) and a small MiniCPM3-style tokenizer with the chat template "
            "to DIR, for tests and demos. Offline and deterministic: the same seed gives the same files."
        ),
    )
    parser.add_argument("dir", metavar="DIR", help="output directory (created; must be empty unless --force)")
    parser.add_argument("--seed", type=int, default=0, help="weight initialisation seed (default 0)")
    parser.add_argument(
        "--force", action="store_true", help="write into a non-empty DIR, replacing files of the same name"
    )
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Build the tiny model into `args.dir` and print what was written."""
    from transformers.utils import logging as hf_logging

    from minicpm_plugin.tools.tiny_model import build_tiny_model, iter_files

    hf_logging.disable_progress_bar()
    target = Path(args.dir)
    before = {p.name: p.stat().st_mtime_ns for p in iter_files(target)} if target.is_dir() else {}
    start = time.perf_counter()
    try:
        out = build_tiny_model(args.dir, seed=args.seed, overwrite=args.force)
    except FileExistsError:
        raise UserError(f"{args.dir} is not empty (use --force to write into it anyway)") from None
    except NotADirectoryError:
        raise UserError(f"{args.dir} exists and is not a directory") from None
    except PermissionError as exc:
        raise UserError(f"cannot write to {args.dir}: {exc.strerror}") from None
    seconds = time.perf_counter() - start

    config = json.loads((out / "config.json").read_text(encoding="utf-8"))
    n_params = _parameter_count(out)
    print(f"tiny MiniCPM3 written to {out} in {seconds:.1f} s (seed {args.seed})")
    print(
        f"  {n_params:,} parameters, vocab {config['vocab_size']}, hidden {config['hidden_size']}, "
        f"{config['num_hidden_layers']} layers, {config['num_attention_heads']} heads"
    )
    untouched = []
    for path in iter_files(out):
        if before.get(path.name) == path.stat().st_mtime_ns:
            untouched.append(path.name)
        else:
            print(f"  {path.name}  ({path.stat().st_size:,} bytes)")
    if untouched:
        print(f"  left untouched (not part of the tiny model): {', '.join(untouched)}")
    return 0


def _parameter_count(out: Path) -> int:
    """Distinct parameters stored in the safetensors file (the tied lm_head is stored once)."""
    from safetensors import safe_open

    with safe_open(str(out / "model.safetensors"), framework="pt") as f:
        return sum(math.prod(f.get_slice(key).get_shape()) for key in f.keys())
