"""`minicpm-plugin convert-script SCRIPT.sh [-o recipe.yml]`: official finetune.py script -> recipe."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from minicpm_plugin.cli import UserError


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the `convert-script` subcommand."""
    parser = subparsers.add_parser(
        "convert-script",
        help="convert an official MiniCPM finetune.py launch script into an axolotl recipe",
        description=(
            "Read a `deepspeed ... finetune.py --flags` launch script the way bash does (continuations, "
            "quotes, variables set earlier in the script) and write the equivalent axolotl recipe. A "
            "'# comment' after a line-continuation backslash (with one space or two), a comment line "
            "inside the command, or a `use_lora \\` line without dashes makes bash run something else than "
            "the author meant: the flags are read as the author meant, with a warning per line saying "
            "what bash does instead. Flags without an axolotl equivalent are listed."
        ),
    )
    parser.add_argument("script", metavar="SCRIPT.sh", help="the launch script")
    parser.add_argument("-o", "--output", metavar="RECIPE.yml", help="write the recipe here (default: stdout)")
    parser.add_argument(
        "--var", action="append", default=[], metavar="NAME=VALUE",
        help="define a shell variable the script uses but does not set (repeatable)",
    )
    parser.add_argument(
        "--base-dir", metavar="DIR",
        help="folder the script's relative paths are relative to (default: the script's folder; "
        "the official scripts are run from finetune/)",
    )
    parser.set_defaults(func=run)
    return parser


def _variables(items: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.isidentifier():
            raise UserError(f"--var {item!r}: expected NAME=VALUE")
        out[name] = value
    return out


def run(args: argparse.Namespace) -> int:
    """Convert `args.script`, print warnings and unconverted flags on stderr."""
    from minicpm_plugin.tools.convert import ScriptError, convert_script, decode_script

    path = Path(args.script)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        text = decode_script(data, str(path))
    except ScriptError as exc:
        raise UserError(str(exc)) from None
    base_dir = args.base_dir if args.base_dir is not None else str(path.parent)
    try:
        conv = convert_script(text, str(path), _variables(args.var), base_dir=base_dir)
    except ScriptError as exc:
        raise UserError(str(exc)) from None
    recipe = conv.to_yaml(args.output or "RECIPE.yml")
    for warning in conv.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    for item in conv.unmapped:
        print(f"not converted: {item}", file=sys.stderr)
    if args.output:
        out = Path(args.output)
        try:
            out.write_text(recipe, encoding="utf-8")
        except OSError as exc:
            raise UserError(f"{out}: cannot write: {exc.strerror}") from None
        print(f"wrote {out} ({len(conv.recipe)} keys, {len(conv.warnings)} warning(s), "
              f"{len(conv.unmapped)} flag(s) not converted); train with: {conv.train_command(str(out))}",
              file=sys.stderr)
    else:
        sys.stdout.write(recipe)
    return 0
