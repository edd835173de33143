"""Read a dataset file into raw records with their locations, using Python's ``json`` only.

A file whose first non-blank character is ``[`` is a JSON array (the seed's ``finetune.py`` layout);
its records are located by their 1-based index. Anything else is JSONL, located by 1-based line
number (blank lines are skipped; a single pretty-printed object also works). Arrow never sees the
raw records, so values keep exactly the digits written in the file.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from minicpm_plugin.formats.base import reject_constant
from minicpm_plugin.formats.problems import Problem


@dataclass
class RawRecord:
    """One record (or the problem that stopped it being read) at its 1-based line/index."""

    line: int
    value: Any = None
    problem: Problem | None = None


@dataclass
class RawLine:
    """A JSONL line read but not parsed yet: parsed where it is converted (perhaps in a worker process)."""

    line: int
    raw: bytes
    file: str

    def parse(self) -> RawRecord:
        return parse_line(self.raw, self.line, self.file)


def as_record(record: RawRecord | RawLine) -> RawRecord:
    """A record from :func:`iter_records`, parsed."""
    return record.parse() if isinstance(record, RawLine) else record


_BOM = b"\xef\xbb\xbf"


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
    if data.startswith(_BOM):
        data = data[len(_BOM):]
    head = data.lstrip()[:1]
    if head == b"[":
        return _parse_array(data, file)
    records: list[RawRecord] = []
    for number, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip():
            continue
        record = parse_line(raw, number, file)
        if not records and head == b"{" and record.problem is not None and record.problem.code == "invalid-json":
            whole = _whole_object(data)
            if whole is not None:
                return [RawRecord(1, whole)]
        records.append(record)
    return records


def parse_line(raw: bytes, number: int, file: str) -> RawRecord:
    """One non-blank line of a JSONL file as a record, or the problem that stops it being read."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return RawRecord(number, problem=Problem(file, number, "", f"not UTF-8 text (byte {exc.start + 1})", "not-utf8"))
    try:
        return RawRecord(number, _loads(text))
    except ValueError as exc:
        hint = "; each line of a JSONL file must hold one whole JSON object"
        return RawRecord(number, problem=Problem(file, number, "", _json_error(exc) + hint, "invalid-json"))


#: Bytes between two calls of iter_records' progress callback.
PROGRESS_EVERY = 1 << 20


def iter_records(path: str | Path, file: str | None = None, progress: Callable[[int], None] | None = None,
                 lazy: bool = False) -> Iterator[RawRecord | RawLine]:
    """The records of a file, exactly as :func:`parse_records` gives them, reading JSONL line by line.

    A JSONL file is never held in memory whole (one line at a time); a JSON array, a single
    pretty-printed object, or a file that is not plain UTF-8 text is read whole (read_bytes,
    parse_records). With ``lazy``, JSONL lines after the first come as :class:`RawLine` (parse with
    :func:`as_record`). ``progress(n)`` is called with the number of bytes read since its last call
    (about every PROGRESS_EVERY bytes, and at the end). FileProblem when the file cannot be opened.
    """
    name = file if file is not None else str(path)
    try:
        fh = open(path, "rb")  # noqa: SIM115 - closed by _stream_records (the caller may stop early)
    except OSError as exc:
        raise FileProblem(Problem(name, None, "", f"cannot read the file: {exc.strerror or exc}", "unreadable-file")) from None
    return _stream_records(fh, path, name, progress, lazy)


def _streamable(head: bytes) -> bool:
    """Plain UTF-8 text (no NUL bytes: not UTF-16/32), not gzip, not Parquet."""
    return b"\0" not in head and not head.startswith((b"\x1f\x8b", b"PAR1"))


def _stream_records(fh: IO[bytes], path: str | Path, name: str, progress: Callable[[int], None] | None,
                    lazy: bool) -> Iterator[RawRecord | RawLine]:
    reported = 0

    def report(position: int, final: bool = False) -> None:
        nonlocal reported
        if progress and (final or position - reported >= PROGRESS_EVERY):
            progress(position - reported)
            reported = position

    def whole() -> list[RawRecord]:
        data = read_bytes(path, name)
        report(len(data), final=True)
        return parse_records(data, name)

    try:
        head = fh.read(4096)
        start = (head[3:] if head.startswith(_BOM) else head).lstrip()[:1]
        if start in (b"[", b"") or not _streamable(head):  # a JSON array, only blanks so far, or not plain text
            yield from whole()
            return
        fh.seek(0)
        position = 0
        seen = False
        for number, raw in enumerate(fh, start=1):
            position += len(raw)
            report(position)
            if number == 1 and raw.startswith(_BOM):
                raw = raw[len(_BOM):]
            if not raw.strip():
                continue
            if seen and lazy:
                yield RawLine(number, raw, name)
                continue
            record = parse_line(raw, number, name)
            if not seen and start == b"{" and record.problem is not None and record.problem.code == "invalid-json":
                yield from whole()  # perhaps a single pretty-printed object
                return
            seen = True
            yield record
        report(position, final=True)
    finally:
        fh.close()


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

