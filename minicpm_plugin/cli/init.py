"""`minicpm-plugin init [DIR]`: write the shipped recipes, DeepSpeed configs and sample data."""

from __future__ import annotations

import argparse
import shlex
from typing import Any

from minicpm_plugin.cli import UserError


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the `init` subcommand."""
    parser = subparsers.add_parser(
        "init",
        help="write the recipes, DeepSpeed configs and sample data into a folder to start from",
        description=(
            "Write the recipes (examples/*.yml), the DeepSpeed configs (deepspeed_configs/*.json) and the "
            "sample data (examples/data/) that come with the package into DIR, in the same layout, so the "
            "recipes' relative paths work when you launch from DIR. Files already there with the same "
            "content are left alone; a file that differs stops the command (nothing is written) unless "
            "--force replaces it. Other files in DIR are never touched."
        ),
    )
    parser.add_argument("dir", nargs="?", default=".", metavar="DIR", help="target folder (default: the current one)")
    parser.add_argument("--force", action="store_true", help="replace files that differ from the shipped ones")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Write the files and print what was written; conflicts are listed one per line (exit 1)."""
    from minicpm_plugin.tools.resources import ResourceError, write_resources

    try:
        result = write_resources(args.dir, force=args.force)
    except ResourceError as exc:
        lines = str(exc).splitlines()
        raise UserError("\n".join(lines[:1] + [f"minicpm-plugin init: error: {line}" for line in lines[1:]])) from None
    for rel in result.written:
        print(f"wrote     {rel}")
    for rel in result.replaced:
        print(f"replaced  {rel}")
    total = len(result.written) + len(result.replaced)
    if total:
        kept = f" ({len(result.unchanged)} already up to date)" if result.unchanged else ""
        print(f"{total} file(s) written to {result.dest}{kept}")
    else:
        print(f"nothing to write: {result.dest} already holds all {len(result.unchanged)} shipped files")
    where = "" if str(args.dir) in (".", "") else f"cd {shlex.quote(str(args.dir))} && "
    print("next:")
    print(f"  {where}minicpm-plugin smoke examples/minicpm3_lora.yml                    # a few steps on CPU, tiny model")
    print(f"  {where}accelerate launch -m axolotl.cli.train examples/minicpm3_qlora.yml  # train on a GPU")
    return 0
