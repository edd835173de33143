"""Read a dataset file into raw records with their locations, using Python's ``json`` only.

Containers are unpacked first: gzip, bzip2 and xz are decompressed; UTF-16 and UTF-32 text (with a
BOM, or without one when the file starts with ``[``/``{``) is decoded; a Parquet file is read
through pyarrow (imported only then), one record per row, located by its 1-based row number.
Other binary files are named and refused as a whole instead of failing line by line.

Text whose first non-blank character is ``[`` is a JSON array (the seed's ``finetune.py`` layout);
its records are located by their 1-based index. Anything else is JSONL, located by 1-based line
number (blank lines are skipped; a single pretty-printed object also works). Records are decoded by
:mod:`minicpm_plugin.formats.strict_json`, so values keep exactly the digits written in the file
and anything Python would change (repeated keys, numbers out of range, lone surrogates, nesting
over 100 levels) is reported at its record instead.
"""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from minicpm_plugin.formats.problems import Problem
from minicpm_plugin.formats.strict_json import (
    ArrayTooDeep,
    JSONValueError,
    array_items,
    loads,
    too_deep_error,
)


@dataclass
class RawRecord:
    """One record (or the problem that stopped it being read) at its 1-based line/index."""

    line: int
    value: Any = None
    problem: Problem | None = None
    #: The line is not JSON at all (so a JSONL file may be one pretty-printed object instead).
    syntax: bool = False


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


class FileProblem(Exception):
    """The whole file cannot be read; carries the problem to report."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(str(problem))
        self.problem = problem


_COMPRESSED: list[tuple[bytes, str, Callable[[bytes], bytes]]] = [
    (b"\x1f\x8b", "gzip", gzip.decompress),
    (b"BZh", "bzip2", bz2.decompress),
    (b"\xfd7zXZ\x00", "xz", lzma.decompress),
]
_BOMS = [  # UTF-32 first: its little-endian BOM starts with UTF-16's
    (b"\x00\x00\xfe\xff", "UTF-32-BE"), (b"\xff\xfe\x00\x00", "UTF-32-LE"),
    (b"\xfe\xff", "UTF-16-BE"), (b"\xff\xfe", "UTF-16-LE"),
]
_BINARY = [
    (b"PK\x03\x04", "a zip archive (or .xlsx/.docx): unpack it and give the JSON/JSONL file inside"),
    (b"\x28\xb5\x2f\xfd", "zstd-compressed: decompress it first (zstd -d FILE) or recompress it with gzip"),
    (b"ARROW1", "an Arrow file: write it out as JSONL or Parquet (datasets: Dataset.to_json / to_parquet)"),
    (b"\xff\xff\xff\xff", "an Arrow stream (e.g. a datasets cache file): use the original data file, or write it "
                          "out with Dataset.to_json / to_parquet"),
    (b"SQLite format 3\x00", "an SQLite database: export the table as JSONL"),
]
PARQUET_MAGIC = b"PAR1"
_UTF8_BOM = b"\xef\xbb\xbf"


def _json_error(exc: ValueError) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"invalid JSON: {exc.msg} (column {exc.colno})"
    return f"invalid JSON: {exc}"


def _file_problem(file: str, message: str, code: str = "unreadable-file", line: int | None = None) -> FileProblem:
    return FileProblem(Problem(file, line, "", message, code))


def _unreadable(file: str, exc: OSError) -> FileProblem:
    return _file_problem(file, f"cannot read the file: {exc.strerror or exc}")


def _is_parquet(head: bytes, file: str) -> bool:
    return head.startswith(PARQUET_MAGIC) or file.lower().endswith(".parquet")


def read_bytes(path: str | Path, file: str | None = None) -> bytes:
    """The file's bytes; FileProblem when it cannot be read."""
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise _unreadable(file if file is not None else str(path), exc) from None


def _decompress(data: bytes, file: str) -> tuple[bytes, str]:
    """(data, "gzip" | "bzip2" | "xz" | "") with a compressed file unpacked."""
    for magic, kind, decompress in _COMPRESSED:
        if data.startswith(magic):
            try:
                return decompress(data), kind
            except (OSError, EOFError, ValueError, zlib.error, lzma.LZMAError) as exc:
                raise _file_problem(file, f"cannot decompress this {kind} file ({exc}); check that it was copied "
                                    "completely") from None
    return data, ""


def _transcode(data: bytes, encoding: str, file: str, bom: bool) -> bytes:
    """UTF-16/32 text as UTF-8 bytes; FileProblem at the line where it stops being valid."""
    try:
        return data.decode(encoding).encode("utf-8")
    except UnicodeError as exc:
        start = getattr(exc, "start", 0)
        valid = data[: start - start % (4 if "32" in encoding else 2)].decode(encoding, "replace")
        line = valid.count("\n") + 1
        how = "with a BOM" if bom else "by its first bytes"
        raise _file_problem(file, f"the file is {encoding} text ({how}) but line {line} is not valid {encoding} "
                            f"({getattr(exc, 'reason', exc)}); save the file as UTF-8", "not-utf8", line) from None


def _text(data: bytes, file: str) -> bytes:
    """The file's text as UTF-8 bytes (BOM removed); FileProblem for binary files."""
    if data.startswith(_UTF8_BOM):
        return data[len(_UTF8_BOM):]
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return _transcode(data[len(bom):], encoding, file, bom=True)
    head = data[:4]
    if len(head) == 4 and b"\x00" in head:
        encoding = json.detect_encoding(head)
        if encoding != "utf-8":
            first = head.decode(encoding, "replace").lstrip("\x00")[:1]
            if first in ("[", "{", " ", "\n", "\r", "\t"):
                return _transcode(data, encoding.upper(), file, bom=False)
    for magic, what in _BINARY:
        if data.startswith(magic):
            raise _file_problem(file, f"this is {what}")
    sample = data[:8192]
    if sample.count(b"\x00") * 100 > len(sample):  # more than 1% NUL bytes: not a text file with a stray one
        raise _file_problem(file, "this is a binary file, not JSON/JSONL text (supported: JSON, JSONL, the same "
                            "gzip/bzip2/xz-compressed or in UTF-16/32, and Parquet)")
    return data


def parse_records(data: bytes, file: str) -> list[RawRecord]:
    """Split file contents into located records. Raises FileProblem for whole-file problems."""
    data, compressed = _decompress(data, file)
    if _is_parquet(data, file):
        from minicpm_plugin.formats.parquet import parquet_records

        return parquet_records(data, file)
    data = _text(data, file)
    if not data.strip():
        what = f"empty after {compressed} decompression" if compressed else "empty" if not data else "only whitespace"
        raise _file_problem(file, f"the file is {what}: there are no records to read")
    head = data.lstrip()[:1]
    if head == b"[":
        return _parse_array(data, file)
    records: list[RawRecord] = []
    for number, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip():
            continue
        record = parse_line(raw, number, file)
        if not records and head == b"{" and record.syntax:
            whole = _whole_object(data, file)
            if whole is not None:
                return [whole]
        records.append(record)
    return records


def parse_line(raw: bytes, number: int, file: str) -> RawRecord:
    """One non-blank line of a JSONL file as a record, or the problem that stops it being read."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return RawRecord(number, problem=Problem(file, number, "", f"not UTF-8 text (byte {exc.start + 1})", "not-utf8"))
    try:
        return RawRecord(number, loads(text, raw))
    except JSONValueError as exc:
        return RawRecord(number, problem=Problem(file, number, exc.field, exc.msg, exc.code))
    except ValueError as exc:
        hint = "; each line of a JSONL file must hold one whole JSON object"
        return RawRecord(number, problem=Problem(file, number, "", _json_error(exc) + hint, "invalid-json"), syntax=True)


#: Bytes between two calls of iter_records' progress callback.
PROGRESS_EVERY = 1 << 20


def iter_records(path: str | Path, file: str | None = None, progress: Callable[[int], None] | None = None,
                 lazy: bool = False) -> Iterator[RawRecord | RawLine]:
    """The records of a file, exactly as :func:`parse_records` gives them, reading JSONL line by line.

    A plain UTF-8 JSONL file is never held in memory whole (one line at a time); a JSON array, a
    single pretty-printed object, or a file that is not plain UTF-8 text (compressed, UTF-16/32,
    Parquet, binary) is read whole (read_bytes, parse_records). With ``lazy``, JSONL lines after the
    first come as :class:`RawLine` (parse with :func:`as_record`). ``progress(n)`` is called with the
    number of bytes read since its last call (about every PROGRESS_EVERY bytes, and at the end).
    FileProblem when the file cannot be opened.
    """
    name = file if file is not None else str(path)
    try:
        fh = open(path, "rb")  # noqa: SIM115 - closed by _stream_records (the caller may stop early)
    except OSError as exc:
        raise _unreadable(name, exc) from None
    return _stream_records(fh, path, name, progress, lazy)


_NOT_STREAMED = tuple(magic for magic, _, _ in _COMPRESSED) + tuple(magic for magic, _ in _BINARY) + tuple(
    bom for bom, _ in _BOMS)


def _streamable(head: bytes, name: str) -> bool:
    """Plain UTF-8 text (no NUL bytes: not UTF-16/32), not compressed, not Parquet or another binary."""
    return b"\0" not in head and not head.startswith(_NOT_STREAMED) and not _is_parquet(head, name)


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
        start = (head[3:] if head.startswith(_UTF8_BOM) else head).lstrip()[:1]
        if start in (b"[", b"") or not _streamable(head, name):  # an array, only blanks so far, or not plain text
            yield from whole()
            return
        fh.seek(0)
        position = 0
        seen = False
        for number, raw in enumerate(fh, start=1):
            position += len(raw)
            report(position)
            if number == 1 and raw.startswith(_UTF8_BOM):
                raw = raw[len(_UTF8_BOM):]
            if not raw.strip():
                continue
            if seen and lazy:
                yield RawLine(number, raw, name)
                continue
            record = parse_line(raw, number, name)
            if not seen and start == b"{" and record.syntax:
                yield from whole()  # perhaps a single pretty-printed object
                return
            seen = True
            yield record
        report(position, final=True)
    finally:
        fh.close()


def _whole_object(data: bytes, file: str) -> RawRecord | None:
    """The file as one pretty-printed JSON object (record 1), or None if it is not one."""
    try:
        value = loads(data.decode("utf-8"), data)
    except JSONValueError as exc:
        return RawRecord(1, problem=Problem(file, 1, exc.field, exc.msg, exc.code))
    except (ValueError, UnicodeDecodeError):
        return None
    return RawRecord(1, value) if isinstance(value, dict) else None


def _parse_array(data: bytes, file: str) -> list[RawRecord]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise FileProblem(Problem(file, line, "", f"not UTF-8 text (line {line} of the file)", "not-utf8")) from None
    whole = "; a JSON array file is read as a whole, so no record can be used until this is fixed"
    try:
        items = array_items(text, data)
    except ArrayTooDeep as exc:
        raise _file_problem(file, f"record {exc.index + 1} (line {exc.line} of the file): {too_deep_error().msg}{whole}",
                            "invalid-json", exc.index + 1) from None
    except ValueError as exc:
        line = getattr(exc, "lineno", None)
        raise _file_problem(file, _json_error(exc) + f" at line {line} of the file{whole}", "invalid-json", line) from None
    return [
        RawRecord(i + 1, problem=Problem(file, i + 1, v.field, v.msg, v.code)) if isinstance(v, JSONValueError)
        else RawRecord(i + 1, v)
        for i, v in enumerate(items)
    ]
