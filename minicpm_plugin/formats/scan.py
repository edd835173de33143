"""Read, detect, convert and validate a whole file: every record ends up as a conversation or as
problems with their locations; nothing is dropped without a problem saying why.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from minicpm_plugin.formats.base import NO, Converted, RecordError
from minicpm_plugin.formats.canonical import canonicalize, conversation_stats
from minicpm_plugin.formats.manager import DETECT_SAMPLE, FormatLookupError, Registry, get_registry, score
from minicpm_plugin.formats.problems import ERROR, Problem
from minicpm_plugin.formats.reader import FileProblem, RawRecord, parse_records, read_bytes


@dataclass
class Row:
    """One record of a file: its canonical conversation (None when it has errors) and problems."""

    file: str
    line: int
    conversation: dict[str, Any] | None
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.conversation is not None

    @property
    def source(self) -> str:
        return f"{self.file}:{self.line}"

    @property
    def reason(self) -> str | None:
        """The code of the first error (the reason the row is skipped), None for a good row."""
        return next((p.code for p in self.problems if p.is_error), None)


@dataclass
class ScannedFile:
    """A whole file: its format, rows and counts."""

    file: str
    format: str | None
    rows: list[Row] = field(default_factory=list)
    file_problems: list[Problem] = field(default_factory=list)
    load_errors: list[str] = field(default_factory=list)

    @property
    def problems(self) -> list[Problem]:
        return self.file_problems + [p for r in self.rows for p in r.problems]

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.is_error]

    @property
    def good_rows(self) -> list[Row]:
        return [r for r in self.rows if r.ok]

    def skipped_by_reason(self) -> dict[str, int]:
        return dict(Counter(r.reason for r in self.rows if not r.ok and r.reason))

    def stats(self) -> dict[str, int]:
        """rows, good, bad, with_tools, calls, thoughts, warnings."""
        out = Counter(rows=len(self.rows), good=0, bad=0, with_tools=0, calls=0, thoughts=0)
        for r in self.rows:
            if r.conversation is None:
                out["bad"] += 1
                continue
            out["good"] += 1
            tools, calls, thoughts = conversation_stats(r.conversation)
            out["with_tools"] += tools
            out["calls"] += calls
            out["thoughts"] += thoughts
        out["warnings"] = sum(1 for p in self.problems if not p.is_error)
        return dict(out)


def _source_path(path: str, sources: list[str] | None, tools_source: str | None) -> str:
    if sources is not None and path.startswith("messages["):
        index = int(path[len("messages["): path.index("]")])
        if 0 <= index < len(sources):
            return f"{path} (from {sources[index]})"
    if tools_source and tools_source != "tools" and path.startswith("tools"):
        return f"{path} (from {tools_source})"
    return path


def _keys(value: Mapping[str, Any]) -> str:
    return ", ".join(list(value)[:12]) or "none"


def convert_record(fmt: Any, raw: RawRecord, file: str, *, detected: bool = False, render_check: bool = True) -> Row:
    """Convert and validate one raw record with ``fmt``."""
    line = raw.line
    if raw.problem is not None:
        return Row(file, line, None, [raw.problem])
    value = raw.value
    if not isinstance(value, Mapping):
        kind = {list: "a list", str: "a string", bool: "a boolean", type(None): "null", int: "a number", float: "a number"}.get(type(value), type(value).__name__)
        return Row(file, line, None, [Problem(file, line, "", f"a record must be a JSON object, got {kind}", "not-an-object")])
    recognised = score(fmt, value) != NO
    wrong = Problem(file, line, "", f"this record does not look like {fmt.name}"
                    f"{f' (the format detected from the first {DETECT_SAMPLE} records)' if detected else ''}; its keys: "
                    f"{_keys(value)}", "wrong-format")
    if not recognised and detected:
        return Row(file, line, None, [wrong])
    try:
        out = fmt.convert(value)
    except Exception as exc:  # RecordError, or a converter bug / a record it did not expect: never a traceback
        if not recognised:  # a forced format given a record of another shape
            return Row(file, line, None, [wrong])
        if isinstance(exc, RecordError):
            return Row(file, line, None, [Problem(file, line, exc.path, exc.message, exc.code)])
        path = getattr(exc, "path", "")
        return Row(file, line, None, [Problem(file, line, path if isinstance(path, str) else "",
                                              f"the {fmt.name} converter failed: {type(exc).__name__}: {exc}", "bad-record")])
    sources = tools_source = None
    if isinstance(out, Converted):
        out, sources, tools_source = out.conversation, out.sources, out.tools_source
    conversation, issues = canonicalize(out, render_check=render_check)
    problems = [
        Problem(file, line, _source_path(i.path, sources, tools_source), i.message, i.code, i.severity) for i in issues
    ]
    if conversation is None and not any(p.is_error for p in problems):  # pragma: no cover - defensive
        problems.append(Problem(file, line, "", "conversation rejected", "bad-record", ERROR))
    return Row(file, line, conversation, problems)


def scan_records(records: list[RawRecord], file: str, *, format: str = "auto", registry: Registry | None = None,
                 render_check: bool = True) -> ScannedFile:
    """Detect (or look up) the format of already-read records and convert every one."""
    reg = registry or get_registry()
    scanned = ScannedFile(file, None, load_errors=list(reg.load_errors))
    if format == "auto" and records and all(r.problem is not None for r in records):
        # Not one record could be read: their own problems say why; there is no format to report.
        scanned.rows = [Row(file, r.line, None, [r.problem]) for r in records if r.problem is not None]
        return scanned
    try:
        if format == "auto":
            fmt = reg.detect([r.value for r in records if r.problem is None])
        else:
            fmt = reg.get(format)
    except FormatLookupError as exc:
        # Rows that could not even be parsed are still reported individually.
        scanned.rows = [Row(file, r.line, None, [r.problem]) for r in records if r.problem is not None]
        scanned.file_problems.append(Problem(file, None, "", str(exc), exc.code))
        return scanned
    scanned.format = fmt.name
    scanned.rows = [convert_record(fmt, r, file, detected=format == "auto", render_check=render_check) for r in records]
    return scanned


def scan_bytes(data: bytes, file: str, *, format: str = "auto", registry: Registry | None = None,
               render_check: bool = True) -> ScannedFile:
    try:
        records = parse_records(data, file)
    except FileProblem as exc:
        return ScannedFile(file, None, file_problems=[exc.problem])
    return scan_records(records, file, format=format, registry=registry, render_check=render_check)


def scan_file(path: str | Path, *, format: str = "auto", file: str | None = None, registry: Registry | None = None,
              render_check: bool = True) -> ScannedFile:
    """Read ``path`` and return every row as a canonical conversation or as located problems.

    ``file`` is the name used in problems (default: the path as given). Never raises for bad data.
    """
    name = file if file is not None else str(path)
    try:
        data = read_bytes(path, name)
    except FileProblem as exc:
        return ScannedFile(name, None, file_problems=[exc.problem])
    return scan_bytes(data, name, format=format, registry=registry, render_check=render_check)
