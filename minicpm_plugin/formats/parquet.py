"""Parquet files as records: one row -> one record (a dict of its columns), located by row number.

pyarrow is imported here only, when a Parquet file is read. Values come back as Python values
(lists, dicts for structs, dicts for maps) with what the file holds: a struct column carries every
field of its type, so a field a row never had reads as null. Values JSON cannot hold (binary,
timestamps, decimals, NaN, maps with repeated or non-string keys) are reported per row.
"""

from __future__ import annotations

from typing import Any

from minicpm_plugin.formats.problems import Problem
from minicpm_plugin.formats.reader import FileProblem, RawRecord
from minicpm_plugin.formats.strict_json import MAX_DEPTH, JSONValueError, find_problem, too_deep_error


def _problem(file: str, message: str) -> FileProblem:
    return FileProblem(Problem(file, None, "", message, "unreadable-file"))


def _maps_as_dicts(value: Any, path: str = "", depth: int = 0) -> Any:
    """pyarrow gives a map as a list of (key, value) tuples: make it a dict, refusing repeated keys."""
    if isinstance(value, list):
        if depth >= MAX_DEPTH:
            raise JSONValueError(too_deep_error().msg, path)
        if value and all(type(v) is tuple and len(v) == 2 for v in value):
            out: dict[Any, Any] = {}
            for key, item in value:
                if key in out:
                    raise JSONValueError(f"map key {key!r} appears more than once; only one value can be kept", path)
                out[key] = _maps_as_dicts(item, f"{path}.{key}", depth + 1)
            return out
        return [_maps_as_dicts(v, f"{path}[{i}]", depth + 1) for i, v in enumerate(value)]
    if isinstance(value, dict):
        if depth >= MAX_DEPTH:
            raise JSONValueError(too_deep_error().msg, path)
        return {k: _maps_as_dicts(v, f"{path}.{k}", depth + 1) for k, v in value.items()}
    return value


def parquet_records(data: bytes, file: str) -> list[RawRecord]:
    """Every row of a Parquet file as a record at its 1-based row number."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise _problem(file, "reading a Parquet file needs pyarrow, which is not installed: pip install pyarrow "
                       "(or convert the file to JSONL)") from None
    try:
        table = pq.read_table(pa.BufferReader(data))
    except Exception as exc:  # ArrowInvalid, OSError, ...: a broken or truncated file
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise _problem(file, f"not a readable Parquet file ({reason}); check that it was copied completely") from None
    records: list[RawRecord] = []
    number = 0
    for batch in table.to_batches():
        try:
            rows = batch.to_pylist()
        except Exception:  # e.g. invalid UTF-8 in a string column: convert row by row to find it
            rows = [_row(batch, i) for i in range(batch.num_rows)]
        for row in rows:
            number += 1
            if isinstance(row, Exception):
                records.append(RawRecord(number, problem=Problem(file, number, "", f"this row cannot be read: {row}",
                                                                 "not-utf8" if isinstance(row, UnicodeError) else "bad-record")))
                continue
            try:
                value = _maps_as_dicts(row)
            except JSONValueError as exc:
                records.append(RawRecord(number, problem=Problem(file, number, exc.field, exc.msg, exc.code)))
                continue
            issue = find_problem(value)
            if issue is not None:
                records.append(RawRecord(number, problem=Problem(file, number, issue.field, issue.msg, issue.code)))
            else:
                records.append(RawRecord(number, value))
    return records


def _row(batch: Any, index: int) -> Any:
    try:
        return batch.slice(index, 1).to_pylist()[0]
    except Exception as exc:
        return exc
