"""Preference files in `check`, `render` and `eval-tools`: the same commands, a branch for pairs.

A file is a preference file when a preference format is forced (`--format trl`, ...) or its first
records carry chosen/rejected (rejected_response, preferred_output) keys.
"""

from __future__ import annotations

import argparse
import sys

from minicpm_plugin.cli import data_error, write_report


def split_pair_files(files: list[str], format: str) -> tuple[list[str], list[str]]:
    """(preference files, other files) of `files` for a `--format` value."""
    from minicpm_plugin.formats.preference import format_names, is_preference_file

    if format != "auto":
        return (list(files), []) if format.strip().lower() in format_names() else ([], list(files))
    pairs = [f for f in files if is_preference_file(f)]
    return pairs, [f for f in files if f not in pairs]


def _n(x: int) -> str:
    return f"{x:,}"


def check_pair_files(files: list[str], args: argparse.Namespace) -> int:
    """`check` for preference files: every problem, then one summary line. Exit status as `check`."""
    from minicpm_plugin.formats.preference import pair_texts, scan_pairs_file
    from minicpm_plugin.formats.problems import WARNING, Problem

    tokenizer = None
    if args.tokenizer:
        from minicpm_plugin.cli.check import load_tokenizer

        tokenizer = load_tokenizer(args.tokenizer)
    totals: dict[str, int] = {}
    tokens = dict(pairs=0, prompt=0, chosen=0, rejected=0, over=0, longest=0)
    formats, errors, warnings = [], 0, 0
    fmt = args.format if args.format != "auto" else "auto"
    for path in files:
        scanned = scan_pairs_file(path, format=fmt)
        extra: list[Problem] = []
        if tokenizer is not None and scanned.good_rows:
            from minicpm_plugin.tokenize import tokenize_pairs

            rows = scanned.good_rows
            for row, t in zip(rows, tokenize_pairs(tokenizer, [pair_texts(r.pair, args.literal_style) for r in rows]), strict=True):
                tokens["pairs"] += 1
                tokens["prompt"] += len(t.prompt_ids)
                tokens["chosen"] += len(t.chosen_ids)
                tokens["rejected"] += len(t.rejected_ids)
                tokens["longest"] = max(tokens["longest"], t.length)
                if not t.boundary_ok:
                    extra.append(Problem(row.file, row.line, "", "the tokenizer merges the end of the prompt with an answer, "
                                         "so the trainer's split would not give the model's own tokens", "token-boundary"))
                if args.sequence_len and t.length > args.sequence_len:
                    tokens["over"] += 1
                    extra.append(Problem(row.file, row.line, "", f"{_n(t.length)} tokens (prompt + longer answer), "
                                         f"{_n(t.length - args.sequence_len)} over --sequence-len {args.sequence_len}; "
                                         "training leaves this pair out", "over-length", WARNING))
        problems = sorted(scanned.problems + extra, key=lambda p: p.line or 0)
        for p in problems:
            print(p)
        for key, value in scanned.stats().items():
            totals[key] = totals.get(key, 0) + value
        errors += sum(p.is_error for p in problems)
        warnings += sum(not p.is_error for p in problems)
        formats.append(f"{path}: {scanned.format or 'format unknown'}")
    t = totals
    line = (f"checked {len(files)} preference file{'s' if len(files) != 1 else ''} ({'; '.join(formats)}): "
            f"{_n(t.get('rows', 0))} pairs, {_n(t.get('bad', 0))} with errors, {_n(warnings)} warnings; "
            f"{_n(t.get('with_tools', 0))} with tools, {_n(t.get('chosen_calls', 0))} chosen / "
            f"{_n(t.get('rejected_calls', 0))} rejected calls, {_n(t.get('thoughts', 0))} thoughts; rejected answers wrong on "
            f"purpose: {_n(t.get('rejected_undeclared', 0))} call an undeclared function, "
            f"{_n(t.get('rejected_bad_arguments', 0))} pass undeclared or miss required arguments, "
            f"{_n(t.get('rejected_without_call', 0))} answer without the call chosen makes, "
            f"{_n(t.get('rejected_extra_call', 0))} call where chosen does not")
    if tokenizer is not None:
        line += (f"; tokens: {_n(tokens['prompt'])} prompt, {_n(tokens['chosen'])} chosen, {_n(tokens['rejected'])} "
                 f"rejected, longest pair {_n(tokens['longest'])}")
        if args.sequence_len:
            line += f"; {_n(tokens['over'])} pairs over {_n(args.sequence_len)} tokens"
    else:
        line += "; token counts need --tokenizer DIR"
    print(line)
    return 1 if errors or (args.strict and warnings) else 0


def render_pair(args: argparse.Namespace) -> int:
    """`render` for a preference file: the prompt, then each answer with its trained text marked."""
    from minicpm_plugin.cli.render import CLOSE, OPEN, mark, pick_record, use_color
    from minicpm_plugin.formats.manager import FormatLookupError
    from minicpm_plugin.formats.preference import REGISTRY, convert_pair_record, pair_texts, read_records
    from minicpm_plugin.formats.problems import Problem
    from minicpm_plugin.formats.reader import FileProblem, read_bytes

    try:
        records = read_records(read_bytes(args.file), args.file)
        auto = args.format == "auto"
        fmt = REGISTRY.detect([r.value for r in records if r.problem is None]) if auto else REGISTRY.get(args.format)
    except FileProblem as exc:
        print(exc.problem)
        return 1
    except FormatLookupError as exc:
        print(Problem(args.file, None, "", str(exc), exc.code))
        return 1
    row = convert_pair_record(fmt, pick_record(records, args.file, args.index, args.line), args.file, detected=auto)
    for p in row.problems:
        print(p, file=sys.stderr if row.ok else sys.stdout)
    if row.pair is None:
        return 1
    pair = row.pair
    texts = pair_texts(pair, args.literal_style)
    color = use_color(args.color, sys.stdout)

    def calls(side: str) -> str:
        n = len(pair[side].get("tool_calls", []))
        return f"{n} call{'s' if n != 1 else ''}"

    wrong = [k for k, v in (("calls an undeclared function", row.deliberate["unknown-function"]),
                            ("undeclared or missing arguments", row.deliberate["unknown-argument"]
                             + row.deliberate["missing-argument"])) if v]
    print(f"# {row.source} ({fmt.name}): preference pair, {len(pair['prompt'])} prompt messages, "
          f"{len(pair['tools'] or [])} tools; chosen: {calls('chosen')}; rejected: {calls('rejected')}"
          + (f" ({', '.join(wrong)}: legal in a rejected answer)" if wrong else "")
          + ("" if color else f"; trained text is between {OPEN} and {CLOSE}"))
    print("## prompt (context; the tokenizer adds <s> before it)")
    sys.stdout.write(mark(texts.prompt, [], color))
    for side in ("chosen", "rejected"):
        text = getattr(texts, side)
        print(f"\n## {side}")
        sys.stdout.write(mark(text, [(0, len(text))], color) + "\n")
    if args.tokenizer:
        from minicpm_plugin.cli.check import load_tokenizer
        from minicpm_plugin.tokenize import tokenize_pairs

        tokenizer = load_tokenizer(args.tokenizer)
        (t,) = tokenize_pairs(tokenizer, [texts])
        bos = "one leading <s>" if t.prompt_ids[:1] == [tokenizer.bos_token_id] else "no <s>"
        split = "on a token boundary" if t.boundary_ok else "NOT on a token boundary (the trainer's split differs)"
        print(f"# tokens: prompt {len(t.prompt_ids):,} ({bos}), chosen {len(t.chosen_ids):,}, rejected "
              f"{len(t.rejected_ids):,} (all trained); the answers split from the prompt {split}")
    else:
        print(f"# {len(texts.prompt):,} prompt characters; {len(texts.chosen):,} chosen and {len(texts.rejected):,} "
              "rejected characters trained; pass --tokenizer DIR for token counts")
    return 0


def eval_pairs(args: argparse.Namespace) -> int:
    """`eval-tools` on a preference file: how often the model prefers the chosen answer."""
    from minicpm_plugin.cli.eval_tools import load_model
    from minicpm_plugin.evaluation.preference import evaluate_pairs, format_pair_table
    from minicpm_plugin.formats.preference import load_pairs
    from minicpm_plugin.formats.problems import DataError

    fmt = args.format
    try:
        pairs = load_pairs(args.data, format=fmt)
    except DataError as exc:
        raise data_error(exc, args.data) from None
    pairs = pairs[: args.max_samples]
    model, tokenizer = load_model(args.model, args.adapter, args.tokenizer, args.device, args.dtype)
    report = evaluate_pairs(model, tokenizer, pairs, literal_style=args.literal_style, batch_size=args.batch_size)
    report = {"model": args.model, "adapter": args.adapter, "data": args.data, **report}
    print(format_pair_table(report))
    write_report(report, args.json)
    return 0
