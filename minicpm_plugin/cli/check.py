"""`minicpm-plugin check FILE...`: every problem in dataset files, then a one-line summary.

Problems go to stdout as ``FILE:LINE: field.path: message [code]`` (warnings say ``warning:``).
Exit status 0 when no file has an error (and, with --strict, no warning), 1 otherwise. Bad data
never produces a traceback.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from minicpm_plugin.cli import UserError, registry_for


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the `check` subcommand."""
    parser = subparsers.add_parser(
        "check",
        help="validate dataset files (any supported format) and count rows, calls and tokens",
        description=(
            "Read each FILE (JSONL, or a JSON array of records), detect its format (or use --format), "
            "convert every record to MiniCPM3's canonical conversation and check it. Every problem is "
            "printed as FILE:LINE: field: message [code], then a one-line summary. With --tokenizer, also "
            "count trained tokens, and with --sequence-len the rows that do not fit."
        ),
    )
    parser.add_argument("files", nargs="*", metavar="FILE", help="dataset files")
    parser.add_argument("--format", default="auto", help="force a format (default: detect per file); see --list-formats")
    parser.add_argument("--list-formats", action="store_true", help="list the known formats and exit")
    parser.add_argument("--tokenizer", metavar="DIR", help="a MiniCPM3 tokenizer directory, to count tokens")
    parser.add_argument("--sequence-len", type=int, metavar="N", help="count rows longer than N tokens (needs --tokenizer)")
    parser.add_argument("--train-last-turn-only", action="store_true", help="count trained tokens of the last assistant turn only")
    parser.add_argument("--no-train-thought", action="store_true", help="count thoughts as not trained")
    parser.add_argument("--literal-style", choices=("json", "python"), default="json", help="how call arguments are written (default json)")
    parser.add_argument("--strict", action="store_true", help="exit 1 on warnings too")
    parser.set_defaults(func=run)
    return parser


def list_formats(out: Any = None) -> int:
    from minicpm_plugin.formats import get_registry

    out = out or sys.stdout
    reg = get_registry()
    for name, fmt in reg.formats.items():
        aliases = getattr(fmt, "aliases", ())
        origin = reg.origins.get(name, "")
        extra = f" (also: {', '.join(aliases)})" if aliases else ""
        print(f"{name}{extra} [{origin}]: {fmt.description}", file=out)
        if getattr(fmt, "example", ""):
            print(f"    e.g. {fmt.example}", file=out)
    for err in reg.load_errors:
        print(f"warning: format plugin failed to load: {err}", file=sys.stderr)
    return 0


def load_tokenizer(path: str) -> Any:
    """A tokenizer from a local directory, or a hub id already in the local cache (never downloads;
    transformers is imported only here)."""
    from pathlib import Path

    from minicpm_plugin.model.hub import cache_dir, cached_snapshot, looks_like_hub_id

    if not Path(path).is_dir():
        snapshot = cached_snapshot(path, "tokenizer_config.json") if looks_like_hub_id(path) else None
        if snapshot is None:
            cached = (f", nor a hub id in the local Hugging Face cache ({cache_dir()}): download it first (hf download "
                      f"{path}) or" if looks_like_hub_id(path) else ":")
            raise UserError(f"cannot load a tokenizer from {path}: not a directory{cached} give the model or tokenizer "
                            "folder")
        path = str(snapshot)
    try:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(path)
    except Exception as exc:  # missing dir, not a tokenizer, no network: one line, no traceback
        raise UserError(f"cannot load a tokenizer from {path}: {type(exc).__name__}: {exc}") from None


def _n(x: int) -> str:
    return f"{x:,}"


def run(args: argparse.Namespace) -> int:
    from minicpm_plugin.formats import scan_file
    from minicpm_plugin.formats.problems import WARNING, Problem

    if args.list_formats:
        return list_formats()
    if not args.files:
        raise UserError("give at least one FILE (or --list-formats)")
    if args.sequence_len is not None and not args.tokenizer:
        raise UserError("--sequence-len needs --tokenizer DIR to count tokens")
    if args.sequence_len is not None and args.sequence_len <= 0:
        raise UserError("--sequence-len must be a positive number of tokens")
    from minicpm_plugin.cli.preference import check_pair_files, split_pair_files

    pair_files, args.files = split_pair_files(args.files, args.format)  # preference pairs: their own checks
    pair_status = check_pair_files(pair_files, args) if pair_files else 0
    if not args.files:
        return pair_status
    reg = registry_for(args.format)
    for err in reg.load_errors:
        print(f"warning: format plugin failed to load: {err}", file=sys.stderr)

    tokenizer = options = None
    if args.tokenizer:
        from minicpm_plugin.tokenize import LabelOptions

        tokenizer = load_tokenizer(args.tokenizer)
        options = LabelOptions(train_last_turn_only=args.train_last_turn_only, train_thought=not args.no_train_thought)

    totals = dict(rows=0, bad=0, with_tools=0, calls=0, thoughts=0, warnings=0, errors=0, calls_without_tools=0,
                  respelled=0)
    tokens = dict(total=0, trained=0, over=0, lost=0, trained_in_over=0)
    formats: list[str] = []
    for path in args.files:
        scanned = scan_file(path, format=args.format, registry=reg)
        extra: list[Problem] = []
        if tokenizer is not None:
            from minicpm_plugin.tokenize import tokenize_conversation

            for row in scanned.good_rows:
                tc = tokenize_conversation(tokenizer, row.conversation, options, literal_style=args.literal_style)
                tokens["total"] += tc.full_length
                tokens["trained"] += tc.trained_tokens
                if args.sequence_len and tc.full_length > args.sequence_len:
                    over = tc.full_length - args.sequence_len
                    tokens["over"] += 1
                    tokens["lost"] += over
                    tokens["trained_in_over"] += tc.trained_tokens
                    extra.append(Problem(row.file, row.line, "", f"{_n(tc.full_length)} tokens, {_n(over)} over "
                                         f"--sequence-len {args.sequence_len}", "over-length", WARNING))
        problems = sorted(scanned.problems + extra, key=lambda p: (p.line or 0))
        for p in problems:
            print(p)
        stats = scanned.stats()
        for key in ("rows", "bad", "with_tools", "calls", "thoughts", "calls_without_tools", "respelled"):
            totals[key] += stats[key]
        totals["warnings"] += sum(1 for p in problems if not p.is_error)
        totals["errors"] += sum(1 for p in problems if p.is_error)
        if scanned.format is None:
            code = scanned.file_problems[0].code if scanned.file_problems else ""
            label = {"unreadable-file": "unreadable", "no-format": "format unknown", "several-formats": "format ambiguous"}
            formats.append(f"{path}: {label.get(code, 'invalid JSON' if code else 'no readable record')}")
        else:
            formats.append(f"{path}: {scanned.format}")

    files = f"{len(args.files)} file{'s' if len(args.files) != 1 else ''} ({'; '.join(formats)})"
    line = (f"checked {files}: {_n(totals['rows'])} rows, {_n(totals['bad'])} with errors, {_n(totals['warnings'])} "
            f"warnings; {_n(totals['with_tools'])} conversations with tools, {_n(totals['calls'])} calls, "
            f"{_n(totals['thoughts'])} thoughts")
    if totals["calls_without_tools"]:
        line += f"; {_n(totals['calls_without_tools'])} conversations with calls but no tools (trained as written)"
    if totals["respelled"]:
        line += f"; {_n(totals['respelled'])} assistant turns of MiniCPM3 markup respelled"
    if tokenizer is not None:
        if args.sequence_len:
            line += (f"; {_n(tokens['over'])} rows over {_n(args.sequence_len)} tokens ({_n(tokens['lost'])} tokens "
                     "beyond the limit)")
        line += f"; {_n(tokens['trained'])} trained tokens of {_n(tokens['total'])}"
        if tokens["trained_in_over"]:
            line += f" ({_n(tokens['trained_in_over'])} of them in rows over the length)"
    else:
        line += "; token counts need --tokenizer DIR"
    print(line)
    failed = totals["errors"] > 0 or (args.strict and totals["warnings"] > 0)
    return 1 if failed or pair_status else 0
