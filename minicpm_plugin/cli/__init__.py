"""The `minicpm-plugin` command. Each subcommand lives in its own module with `add_parser`."""

from __future__ import annotations

import argparse
import importlib
import sys

# (subcommand, module under minicpm_plugin.cli); each module defines add_parser(subparsers)
# which registers the subcommand and sets `func(args) -> int` as its default.
SUBCOMMANDS = [
    ("check", "check"),
    ("render", "render"),
    ("memory", "memory"),
    ("convert-script", "convert_script"),
    ("eval-tools", "eval_tools"),
    ("make-tiny-model", "make_tiny_model"),
    ("smoke", "smoke"),
    ("init", "init"),
]


class UserError(Exception):
    """A mistake in the user's input: printed as one line on stderr, exit code 1, no traceback."""


def registry_for(format: str):  # noqa: ANN201 - minicpm_plugin.formats.Registry, imported lazily
    """The format registry, with a forced `--format` name checked up front (UserError if unknown)."""
    from minicpm_plugin.formats import FormatLookupError, get_registry

    reg = get_registry()
    if format != "auto":
        try:
            reg.get(format)
        except FormatLookupError as exc:
            raise UserError(str(exc)) from None
    return reg


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="minicpm-plugin", description="MiniCPM3 tools for axolotl.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for _name, module in SUBCOMMANDS:
        importlib.import_module(f"minicpm_plugin.cli.{module}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for stream in (sys.stdout, sys.stderr):  # text the terminal cannot show is escaped, never a traceback
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"minicpm-plugin {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # Output piped into `head` & co.: stop quietly, as other command-line tools do.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
