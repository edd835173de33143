"""Preference files prepared for training: Arrow-safe JSONL rows of two strings, written once.

Each row is ``{"pair": "<canonical pair as JSON text>", "source": "FILE:LINE"}`` (:func:`encode_pair_row` /
:func:`decode_pair_row` / :func:`is_prepared_pair_row` are the one definition), so Arrow never infers a
schema for tool arguments and floats keep their digits. Named after a hash of the input and the settings,
like the SFT files of :mod:`minicpm_plugin.formats.prepare`, whose helpers it uses.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from minicpm_plugin.formats.preference import REGISTRY, raise_for, scan_pairs_bytes
from minicpm_plugin.formats.prepare import ON_BAD_ROWS, _cache_key, _write_atomic, prepared_paths
from minicpm_plugin.formats.problems import DataError
from minicpm_plugin.formats.reader import FileProblem, read_bytes

#: Bump when prepared pair files change for the same input.
PAIRS_VERSION = "1"


def encode_pair_row(pair: Mapping[str, Any], source: str) -> str:
    return json.dumps({"pair": json.dumps(pair, ensure_ascii=False), "source": source}, ensure_ascii=False)


def is_prepared_pair_row(row: Any) -> bool:
    return isinstance(row, Mapping) and isinstance(row.get("pair"), str) and isinstance(row.get("source"), str)


def decode_pair_row(row: Mapping[str, Any]) -> dict[str, Any]:
    return json.loads(row["pair"])


@dataclass
class PreparedPairs:
    """Where the prepared pairs are and what happened to the input rows."""

    source: str
    path: str
    format: str
    rows: int
    written: int
    skipped: dict[str, int] = field(default_factory=dict)
    stats: dict[str, int] = field(default_factory=dict)
    problems_path: str | None = None
    reused: bool = False

    def summary(self) -> str:
        s = self.stats
        text = (f"{self.source} ({self.format}, preference pairs): {self.rows} rows, {self.written} prepared, "
                f"{sum(self.skipped.values())} skipped")
        if self.skipped:
            text += " (" + ", ".join(f"{k}: {v}" for k, v in sorted(self.skipped.items())) + ")"
        text += (f"; {s.get('with_tools', 0)} with tools, {s.get('chosen_calls', 0)} chosen / {s.get('rejected_calls', 0)} "
                 f"rejected calls; rejected answers wrong on purpose: {s.get('rejected_undeclared', 0)} call an undeclared "
                 f"function, {s.get('rejected_bad_arguments', 0)} pass undeclared or miss required arguments, "
                 f"{s.get('rejected_without_call', 0)} answer without the call chosen makes, "
                 f"{s.get('rejected_extra_call', 0)} call where chosen does not")
        if s.get("warnings"):
            text += f"; {s['warnings']} warnings"
        if self.problems_path:
            text += f"; every problem is listed in {self.problems_path}"
        return text


def prepare_pairs_file(path: str | Path, *, format: str = "auto", on_bad_rows: str = "error",
                       out_dir: str | Path) -> PreparedPairs:
    """Read, convert and validate a preference file with Python's json; write Arrow-safe JSONL rows of
    strings (:func:`encode_pair_row`) into ``out_dir``. Reused when the input and settings are unchanged."""
    if on_bad_rows not in ON_BAD_ROWS:
        raise ValueError(f"on_bad_rows must be one of {', '.join(ON_BAD_ROWS)}, got {on_bad_rows!r}")
    file = str(path)
    try:
        data = read_bytes(path, file)
    except FileProblem as exc:
        raise DataError(f"{file}: cannot be used:", [exc.problem], skippable=False) from None
    key = "pairs." + _cache_key(path, file, f"pairs{PAIRS_VERSION}:{format}", on_bad_rows, "", REGISTRY)
    (rows_path, stats_path, problems_file), reused = prepared_paths(out_dir, path, key, PreparedPairs)
    if reused is not None:
        return reused
    scanned = scan_pairs_bytes(data, file, format=format)
    raise_for(scanned, on_bad_rows)
    stats = scanned.stats()
    problems_path = None
    if scanned.problems:
        problems_path = problems_file
        _write_atomic(problems_path, "".join(f"{p}\n" for p in scanned.problems))
    _write_atomic(rows_path, "".join(encode_pair_row(r.pair, r.source) + "\n" for r in scanned.good_rows if r.pair is not None))
    prepared = PreparedPairs(file, str(rows_path), scanned.format or format, stats["rows"], stats["good"],
                             scanned.skipped_by_reason(), stats, str(problems_path) if problems_path else None)
    record = asdict(prepared)
    record.pop("reused")
    _write_atomic(stats_path, json.dumps(record, ensure_ascii=False, indent=1) + "\n")
    return prepared


def read_prepared_pairs(path: str | Path) -> Iterator[tuple[dict[str, Any], str]]:
    """(pair, source) for every row of a prepared pairs file."""
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                row = json.loads(line)
                yield decode_pair_row(row), row["source"]
