"""`minicpm-plugin render FILE`: one sample as MiniCPM3 text with the trained parts marked.

Trained text is green on a terminal and between ``[[`` and ``]]`` when piped (``--color`` overrides).
Without --tokenizer the marks come from the renderer's character spans; with --tokenizer they come
from the token labels themselves (a token is shown as trained when its label is not -100), with
token counts.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from minicpm_plugin.cli import UserError, registry_for

GREEN, DIM, RESET = "\x1b[32;1m", "\x1b[2m", "\x1b[0m"
OPEN, CLOSE = "[[", "]]"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the `render` subcommand."""
    parser = subparsers.add_parser(
        "render",
        help="show one sample as MiniCPM3 text with the trained spans marked",
        description=(
            "Convert one record of FILE (any supported format) and print it exactly as MiniCPM3 sees it in "
            "training. Trained text is coloured on a terminal and between [[ and ]] when piped."
        ),
    )
    parser.add_argument("file", metavar="FILE", help="dataset file")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--index", type=int, default=None, metavar="N", help="0-based record number (default 0)")
    which.add_argument("--line", type=int, default=None, metavar="L", help="the record at LINE, as printed by `check`")
    parser.add_argument("--format", default="auto", help="force a format (default: detect)")
    parser.add_argument("--tokenizer", metavar="DIR", help="a MiniCPM3 tokenizer directory: mark trained tokens and count them")
    parser.add_argument("--literal-style", choices=("json", "python"), default="json", help="how call arguments are written (default json)")
    parser.add_argument("--train-last-turn-only", action="store_true", help="train only the last assistant turn")
    parser.add_argument("--no-train-thought", action="store_true", help="leave thoughts out of the loss")
    parser.add_argument("--color", choices=("auto", "always", "never"), default="auto", help="colour the output (default: on a terminal)")
    parser.set_defaults(func=run)
    return parser


def use_color(choice: str, stream: Any) -> bool:
    if choice != "auto":
        return choice == "always"
    return bool(getattr(stream, "isatty", lambda: False)()) and not os.environ.get("NO_COLOR")


def mark(text: str, ranges: list[tuple[int, int]], color: bool) -> str:
    """``text`` with the character ranges marked as trained (merged when adjacent)."""
    merged: list[list[int]] = []
    for start, end in sorted(ranges):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        elif start < end:
            merged.append([start, end])
    out, pos = [], 0
    for start, end in merged:
        if start > pos:
            out.append(f"{DIM}{text[pos:start]}{RESET}" if color else text[pos:start])
        out.append(f"{GREEN}{text[start:end]}{RESET}" if color else f"{OPEN}{text[start:end]}{CLOSE}")
        pos = end
    if pos < len(text):
        out.append(f"{DIM}{text[pos:]}{RESET}" if color else text[pos:])
    return "".join(out)


def pick_record(records: list[Any], file: str, index: int | None, line: int | None) -> Any:
    if line is not None:
        for rec in records:
            if rec.line == line:
                return rec
        raise UserError(f"{file} has no record at line {line}")
    index = 0 if index is None else index
    if not 0 <= index < len(records):
        raise UserError(f"{file} has {len(records)} records; --index must be 0..{len(records) - 1}")
    return records[index]


def run(args: argparse.Namespace) -> int:
    from minicpm_plugin.chat import render_conversation
    from minicpm_plugin.cli.preference import render_pair, split_pair_files
    from minicpm_plugin.formats import FormatLookupError, Problem
    from minicpm_plugin.formats.reader import FileProblem, parse_records, read_bytes
    from minicpm_plugin.formats.scan import convert_record
    from minicpm_plugin.tokenize import IGNORE_INDEX, LabelOptions, tokenize_conversation, trainable_spans

    if split_pair_files([args.file], args.format)[0]:
        return render_pair(args)
    reg = registry_for(args.format)
    tokenizer = None
    if args.tokenizer:
        from minicpm_plugin.cli.check import load_tokenizer

        tokenizer = load_tokenizer(args.tokenizer)
    # Only the chosen record is converted (the format is still detected from the file's first records).
    try:
        records = parse_records(read_bytes(args.file), args.file)
    except FileProblem as exc:
        print(exc.problem)
        return 1
    record = pick_record(records, args.file, args.index, args.line)
    if record.problem is not None:  # the record itself cannot be read: that is the one thing to fix
        print(record.problem)
        return 1
    try:
        fmt = reg.get(args.format) if args.format != "auto" else reg.detect([r.value for r in records if r.problem is None])
    except FormatLookupError as exc:
        print(Problem(args.file, None, "", str(exc), exc.code))
        return 1
    row = convert_record(fmt, record, args.file, detected=args.format == "auto")
    for p in row.problems:
        print(p, file=sys.stderr if row.ok else sys.stdout)
    if not row.ok:
        return 1
    conv = row.conversation
    options = LabelOptions(train_last_turn_only=args.train_last_turn_only, train_thought=not args.no_train_thought)
    color = use_color(args.color, sys.stdout)
    rendered = render_conversation(conv["messages"], conv["tools"], literal_style=args.literal_style)
    calls = sum(len(m.get("tool_calls", ())) for m in conv["messages"])
    print(f"# {row.source} ({fmt.name}): {len(conv['messages'])} messages, {len(conv['tools'] or [])} tools, "
          f"{calls} calls" + ("" if color else f"; trained text is between {OPEN} and {CLOSE}"))
    if tokenizer is not None:
        tc = tokenize_conversation(tokenizer, conv, options, literal_style=args.literal_style)
        enc = tokenizer(rendered.text, return_offsets_mapping=True, add_special_tokens=True)
        offsets = enc["offset_mapping"]
        if list(enc["input_ids"]) != tc.input_ids:  # pragma: no cover - defensive
            raise UserError("tokenizer output differs between calls; cannot map labels to text")
        ranges = [(s, e) for (s, e), lab in zip(offsets, tc.labels, strict=True) if lab != IGNORE_INDEX]
        sys.stdout.write(mark(rendered.text, ranges, color))
        bos = "a leading <s>" if tc.input_ids and tc.input_ids[0] == tokenizer.bos_token_id else "no <s>"
        print(f"# {len(tc.input_ids):,} tokens ({bos}), {tc.trained_tokens:,} trained; {len(rendered.text):,} characters")
    else:
        spans = trainable_spans(rendered.spans, conv["messages"], options)
        ranges = [(s.start, s.end) for s in spans]
        sys.stdout.write(mark(rendered.text, ranges, color))
        trained = sum(e - s for s, e in ranges)
        print(f"# {len(rendered.text):,} characters, {trained:,} trained; pass --tokenizer DIR for token counts")
    return 0
