"""Turn a user's dataset file into an Arrow-safe JSONL of canonical conversations.

Each output row is ``{"conversation": "<canonical conversation as JSON text>", "source": "FILE:LINE"}``
(`encode_row` / `decode_row` / `is_prepared_row` are the one definition of that contract): two strings, so Arrow never infers a schema for tool arguments (mixed types cannot break it and
floats keep their digits). The output name carries a hash of the input bytes and the settings, so
reruns and other ranks reuse it; files are written atomically.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from minicpm_plugin.formats.manager import Registry, get_registry
from minicpm_plugin.formats.problems import DataError
from minicpm_plugin.formats.reader import FileProblem, read_bytes
from minicpm_plugin.formats.scan import ScannedFile, scan_bytes, scan_file

#: Bump when the output of preparation changes for the same input (invalidates prepared files).
PREPARE_VERSION = "1"
OnBadRows = Literal["error", "skip"]
ON_BAD_ROWS: tuple[str, ...] = ("error", "skip")


@dataclass
class PreparedDataset:
    """Where the prepared rows are and what happened to the input rows."""

    source: str
    path: str
    format: str
    rows: int
    written: int
    skipped: dict[str, int] = field(default_factory=dict)
    with_tools: int = 0
    calls: int = 0
    thoughts: int = 0
    warnings: int = 0
    problems_path: str | None = None
    reused: bool = False

    def summary(self) -> str:
        """One line for the training log."""
        text = (f"{self.source} ({self.format}): {self.rows} rows, {self.written} prepared, "
                f"{sum(self.skipped.values())} skipped")
        if self.skipped:
            text += " (" + ", ".join(f"{k}: {v}" for k, v in sorted(self.skipped.items())) + ")"
        text += f"; {self.with_tools} with tools, {self.calls} calls, {self.thoughts} thoughts"
        if self.warnings:
            text += f"; {self.warnings} warnings"
        if self.problems_path:
            text += f"; every problem is listed in {self.problems_path}"
        return text


def _cache_key(data: bytes, file: str, format: str, on_bad_rows: str, registry: Registry) -> str:
    from minicpm_plugin import __version__

    h = hashlib.sha256()
    fmts = sorted(f"{n}:{getattr(f, 'version', '1')}:{registry.origins.get(n, '')}" for n, f in registry.formats.items())
    for part in (PREPARE_VERSION, __version__, file, format, on_bad_rows, "|".join(fmts)):
        h.update(part.encode("utf-8") + b"\0")
    h.update(data)
    return h.hexdigest()[:16]


def _write_atomic(path: Path, lines: Iterator[str]) -> None:
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            for line in lines:
                fh.write(line)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _raise_for(scanned: ScannedFile, on_bad_rows: str) -> None:
    if scanned.file_problems:
        raise DataError(f"{scanned.file}: cannot be used:", scanned.file_problems, skippable=False)
    stats = scanned.stats()
    errors = scanned.errors
    if errors and on_bad_rows == "error":
        raise DataError(f"{scanned.file}: {stats['bad']} of {stats['rows']} rows have errors (format {scanned.format}):", errors)
    if stats["good"] == 0:
        if errors:
            raise DataError(f"{scanned.file}: every one of its {stats['rows']} rows has errors (format "
                            f"{scanned.format or 'not detected'}), "
                            "nothing left to train on:", errors, skippable=False)
        raise DataError(f"{scanned.file}: has no rows", skippable=False)


def prepare_dataset_file(
    path: str | Path,
    *,
    format: str = "auto",
    on_bad_rows: str = "error",
    out_dir: str | Path,
    registry: Registry | None = None,
) -> PreparedDataset:
    """Read, convert and validate ``path``; write the Arrow-safe JSONL into ``out_dir``.

    With ``on_bad_rows="error"`` any error raises DataError (listing the first problems and the
    count); with ``"skip"`` bad rows are left out and counted by reason. Warnings never block. Every
    problem is also written to ``<name>.problems.txt`` next to the output.
    """
    if on_bad_rows not in ON_BAD_ROWS:
        raise ValueError(f"on_bad_rows must be one of {', '.join(ON_BAD_ROWS)}, got {on_bad_rows!r}")
    reg = registry or get_registry()
    file = str(path)
    try:
        data = read_bytes(path, file)
    except FileProblem as exc:
        raise DataError(f"{file}: cannot be used:", [exc.problem], skippable=False) from None
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = Path(path).name.split(".")[0] or "data"
    base = f"{stem}.{_cache_key(data, file, format, on_bad_rows, reg)}"
    rows_path, stats_path = out / f"{base}.jsonl", out / f"{base}.stats.json"
    if rows_path.exists() and stats_path.exists():
        try:
            prepared = PreparedDataset(**json.loads(stats_path.read_text(encoding="utf-8")))
            prepared.reused = True
            return prepared
        except (ValueError, TypeError):
            pass  # unreadable stats: prepare again
    scanned = scan_bytes(data, file, format=format, registry=reg)
    _raise_for(scanned, on_bad_rows)
    stats = scanned.stats()
    problems = scanned.problems
    problems_path = None
    if problems:
        problems_path = out / f"{base}.problems.txt"
        _write_atomic(problems_path, (f"{p}\n" for p in problems))
    _write_atomic(rows_path, (encode_row(r.conversation, r.source) + "\n" for r in scanned.good_rows))
    prepared = PreparedDataset(
        source=file, path=str(rows_path), format=scanned.format or format, rows=stats["rows"], written=stats["good"],
        skipped=scanned.skipped_by_reason(), with_tools=stats["with_tools"], calls=stats["calls"],
        thoughts=stats["thoughts"], warnings=stats["warnings"], problems_path=str(problems_path) if problems_path else None,
    )
    stats_dict = asdict(prepared)
    stats_dict.pop("reused")
    _write_atomic(stats_path, iter([json.dumps(stats_dict, ensure_ascii=False, indent=1) + "\n"]))
    return prepared


def encode_row(conversation: dict[str, Any], source: str) -> str:
    """One prepared row as a JSON line (without the newline)."""
    return json.dumps({"conversation": json.dumps(conversation, ensure_ascii=False), "source": source}, ensure_ascii=False)


def is_prepared_row(row: Any) -> bool:
    """Whether a row (from the prepared file, through Arrow or not) follows the prepared-row contract."""
    return isinstance(row, dict) and isinstance(row.get("conversation"), str) and isinstance(row.get("source"), str)


def decode_row(row: dict[str, Any]) -> dict[str, Any]:
    """The canonical conversation of one prepared row (``{"conversation": str, "source": str}``)."""
    return json.loads(row["conversation"])


def read_prepared(path: str | Path) -> Iterator[tuple[dict[str, Any], str]]:
    """(conversation, source) for every row of a prepared JSONL file."""
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                row = json.loads(line)
                yield decode_row(row), row["source"]


def load_conversations(path: str | Path, format: str = "auto", *, on_bad_rows: str = "error",
                       registry: Registry | None = None) -> list[dict[str, Any]]:
    """The canonical conversations of a file (for the CLI and evaluation). DataError on bad data
    unless ``on_bad_rows="skip"``."""
    if on_bad_rows not in ON_BAD_ROWS:
        raise ValueError(f"on_bad_rows must be one of {', '.join(ON_BAD_ROWS)}, got {on_bad_rows!r}")
    scanned = scan_file(path, format=format, registry=registry)
    _raise_for(scanned, on_bad_rows)
    return [r.conversation for r in scanned.good_rows if r.conversation is not None]

