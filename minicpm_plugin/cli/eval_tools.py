"""`minicpm-plugin eval-tools --model DIR --data FILE`: tool-call accuracy of a (fine-tuned) MiniCPM3.

Every assistant turn of the held-out conversations is generated greedily from the conversation
before it, parsed with `parse_assistant` and scored (see `minicpm_plugin.evaluation.scoring`); a table goes
to stdout, the full report (metrics, counts, every generated turn) to ``--json``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from minicpm_plugin.cli import UserError, data_error, write_report


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the `eval-tools` subcommand."""
    parser = subparsers.add_parser(
        "eval-tools",
        help="tool-call accuracy of a model on held-out conversations",
        description=(
            "Generate every assistant turn of the conversations in FILE (any supported format) from the "
            "conversation before it, parse the model's calls and score them: well-formed rate, the share read "
            "only leniently (format drift: blank lines, text before the call block, no code fence, ...), "
            "call/no-call decision, function names, exact arguments, per-argument accuracy, wrong calls."
        ),
    )
    parser.add_argument("--model", required=True, metavar="DIR", help="model directory (a full or merged model)")
    parser.add_argument("--adapter", metavar="DIR", help="a PEFT (LoRA/QLoRA) adapter directory to apply")
    parser.add_argument("--tokenizer", metavar="DIR",
                        help="tokenizer directory (default: the adapter's when it has one, else the model's)")
    parser.add_argument("--data", required=True, metavar="FILE", help="held-out conversations")
    parser.add_argument("--format", default="auto", help="force the data format (default: detect)")
    parser.add_argument("--max-samples", type=int, metavar="N", help="evaluate only the first N conversations")
    parser.add_argument("--max-new-tokens", type=int, default=128, metavar="N", help="per turn (default 128)")
    parser.add_argument("--literal-style", choices=("json", "python"), default="json",
                        help="how earlier calls in the prompt are written; use the style the model was trained with")
    parser.add_argument("--batch-size", type=int, default=8, metavar="N", help="turns generated together (default 8)")
    parser.add_argument("--device", default="auto", help="auto (cuda when present), cpu, cuda, cuda:1, ...")
    parser.add_argument("--dtype", choices=("auto", "float32", "bfloat16", "float16"), default="auto",
                        help="auto: bfloat16 on a GPU that has it, else float32")
    parser.add_argument("--json", metavar="OUT", help="write the full report as JSON")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)
    return parser


def _positive(value: int | None, flag: str) -> None:
    if value is not None and value < 1:
        raise UserError(f"{flag} must be a positive number")


def _is_dir(path: str, what: str) -> Path:
    p = Path(path)
    if not p.is_dir():
        raise UserError(f"{what} {path} is not a directory")
    return p


def load_model(model_dir: str, adapter: str | None, tokenizer_dir: str | None, device: str, dtype: str) -> tuple[Any, Any]:
    """(model, tokenizer) from local directories, the adapter applied; one-line UserError on failure."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from minicpm_plugin.model.compat import apply_transformers_fixes

    apply_transformers_fixes()
    _is_dir(model_dir, "--model")
    if adapter:
        _is_dir(adapter, "--adapter")
        if not (Path(adapter) / "adapter_config.json").is_file():
            raise UserError(f"--adapter {adapter} has no adapter_config.json (is it a PEFT adapter directory?)")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if dtype == "auto":
        dtype = "bfloat16" if device.startswith("cuda") and torch.cuda.is_bf16_supported() else "float32"
    if tokenizer_dir is None:
        tokenizer_dir = adapter if adapter and (Path(adapter) / "tokenizer_config.json").is_file() else model_dir
    try:
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    except Exception as exc:
        raise UserError(f"cannot load a tokenizer from {tokenizer_dir}: {type(exc).__name__}: {exc}") from None
    try:
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=getattr(torch, dtype))
    except Exception as exc:
        raise UserError(f"cannot load a model from {model_dir}: {type(exc).__name__}: {exc}") from None
    if adapter:
        try:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, adapter)
        except Exception as exc:
            raise UserError(f"cannot apply the adapter {adapter}: {type(exc).__name__}: {exc}") from None
    try:
        model.to(device)
    except Exception as exc:
        raise UserError(f"cannot move the model to {device}: {type(exc).__name__}: {exc}") from None
    return model, tokenizer


def run(args: argparse.Namespace) -> int:
    from minicpm_plugin.evaluation.generate import evaluate
    from minicpm_plugin.evaluation.scoring import format_table
    from minicpm_plugin.formats.prepare import DataError, load_conversations

    _positive(args.max_samples, "--max-samples")
    _positive(args.max_new_tokens, "--max-new-tokens")
    _positive(args.batch_size, "--batch-size")
    if not Path(args.data).is_file():
        raise UserError(f"--data {args.data} is not a file")
    from minicpm_plugin.cli.preference import eval_pairs, split_pair_files

    if split_pair_files([args.data], args.format)[0]:  # preference pairs: log-prob of chosen vs rejected
        return eval_pairs(args)
    try:
        conversations = load_conversations(args.data, format=args.format)
    except DataError as exc:
        raise data_error(exc, args.data) from None
    except Exception as exc:  # unknown format name and the like
        raise UserError(f"cannot read {args.data}: {exc}") from None
    chosen = conversations[: args.max_samples]
    if not any(m.get("role") == "assistant" for c in chosen for m in c["messages"][1:]):
        raise UserError(f"{args.data} has no assistant turn to evaluate")
    model, tokenizer = load_model(args.model, args.adapter, args.tokenizer, args.device, args.dtype)
    report = evaluate(model, tokenizer, conversations, max_samples=args.max_samples, max_new_tokens=args.max_new_tokens,
                      literal_style=args.literal_style, batch_size=args.batch_size, progress=not args.no_progress)
    report = {"model": args.model, "adapter": args.adapter, "data": args.data, **report}
    print(format_table(report))
    write_report(report, args.json)
    return 0
