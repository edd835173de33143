"""The `minicpm-plugin` command. Each subcommand lives in its own module with `add_parser`."""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from typing import Any

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


def data_error(exc: Any, data: str) -> UserError:
    """A DataError from reading ``data`` as a UserError: its summary, the first 10 problems, and how to
    see them all."""
    lines = [exc.summary, *(f"  {p}" for p in exc.problems[:10])]
    return UserError("\n".join(lines) + f"\n`minicpm-plugin check {data}` lists every problem.")


def write_report(report: dict[str, Any], path: str | None) -> None:
    """An evaluation report as JSON at ``path`` (nothing without one); UserError when it cannot be written."""
    if not path:
        return
    from minicpm_plugin.evaluation.scoring import dumps_report

    try:
        Path(path).write_text(dumps_report(report) + "\n", encoding="utf-8")
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror}") from None
    print(f"report written to {path}", file=sys.stderr)


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
