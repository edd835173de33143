"""Read a dataset file into raw records with their locations, using Python's ``json`` only.

A file whose first non-blank character is ``[`` is a JSON array (the seed's ``finetune.py`` layout);
its records are located by their 1-based index. Anything else is JSONL, located by 1-based line
number (blank lines are skipped; a single pretty-printed object also works). Arrow never sees the
raw records, so values keep exactly the digits written in the file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from minicpm_plugin.formats.base import reject_constant
from minicpm_plugin.formats.problems import Problem


@dataclass
class RawRecord:
    """One record (or the problem that stopped it being read) at its 1-based line/index."""

    line: int
    value: Any = None
    problem: Problem | None = None


class FileProblem(Exception):
    """The whole file cannot be read; carries the problem to report."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(str(problem))
        self.problem = problem


def _loads(text: str) -> Any:
    return json.loads(text, parse_constant=reject_constant)


def _json_error(exc: ValueError) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"invalid JSON: {exc.msg} (column {exc.colno})"
    return f"invalid JSON: {exc}"


def read_bytes(path: str | Path, file: str | None = None) -> bytes:
    """The file's bytes; FileProblem when it cannot be read."""
    name = file if file is not None else str(path)
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise FileProblem(Problem(name, None, "", f"cannot read the file: {exc.strerror or exc}", "unreadable-file")) from None


def parse_records(data: bytes, file: str) -> list[RawRecord]:
    """Split file contents into located records. Raises FileProblem for whole-file problems."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    head = data.lstrip()[:1]
    if head == b"[":
        return _parse_array(data, file)
    records: list[RawRecord] = []
    for number, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip():
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            records.append(RawRecord(number, problem=Problem(file, number, "", f"not UTF-8 text (byte {exc.start + 1})", "not-utf8")))
            continue
        try:
            records.append(RawRecord(number, _loads(text)))
        except ValueError as exc:
            if not records and head == b"{":
                whole = _whole_object(data)
                if whole is not None:
                    return [RawRecord(1, whole)]
            hint = "; each line of a JSONL file must hold one whole JSON object"
            records.append(RawRecord(number, problem=Problem(file, number, "", _json_error(exc) + hint, "invalid-json")))
    return records


def _whole_object(data: bytes) -> Any:
    try:
        value = _loads(data.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


def _parse_array(data: bytes, file: str) -> list[RawRecord]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise FileProblem(Problem(file, line, "", f"not UTF-8 text (line {line} of the file)", "not-utf8")) from None
    try:
        values = _loads(text)
    except ValueError as exc:
        line = getattr(exc, "lineno", None)
        raise FileProblem(
            Problem(file, line, "", _json_error(exc) + f" at line {line} of the file; a JSON array file is read as a "
                    "whole, so no record can be used until this is fixed", "invalid-json")
        ) from None
    if not isinstance(values, list):  # pragma: no cover - starts with "[" so it is a list
        raise FileProblem(Problem(file, None, "", "expected a JSON array of records", "invalid-json"))
    return [RawRecord(i + 1, v) for i, v in enumerate(values)]

