"""Read, detect, convert and validate a whole file: every record ends up as a conversation or as
problems with their locations; nothing is dropped without a problem saying why.

:class:`RowStream` does it one record at a time (the format is detected from the first
DETECT_SAMPLE records, then each record is converted as it is read), so a large file is never held
in memory; :func:`scan_records` / :func:`scan_bytes` / :func:`scan_file` collect every row.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from minicpm_plugin.chat.spans import Rendered
from minicpm_plugin.chat.tokens import LiteralStyle
from minicpm_plugin.formats.base import NO, Converted, RecordError
from minicpm_plugin.formats.canonical import canonicalize, conversation_stats, render_checked
from minicpm_plugin.formats.manager import DETECT_SAMPLE, FormatLookupError, Registry, get_registry, score
from minicpm_plugin.formats.problems import ERROR, LocatedRow, Problem, ScannedRows
from minicpm_plugin.formats.reader import (
    FileProblem,
    RawLine,
    RawRecord,
    as_record,
    parse_records,
    read_bytes,
)
from minicpm_plugin.formats.refuse import record_refusals


@dataclass
class Row(LocatedRow):
    """One record of a file: its canonical conversation (None when it has errors) and problems."""

    file: str
    line: int
    conversation: dict[str, Any] | None
    problems: list[Problem] = field(default_factory=list)
    #: the render made by the validation, kept only when the scan is asked for it (``literal_style``)
    rendered: Rendered | None = None

    @property
    def ok(self) -> bool:
        return self.conversation is not None


@dataclass
class ScannedFile(ScannedRows[Row]):
    """A whole file: its format, rows and counts."""

    file: str
    format: str | None
    rows: list[Row] = field(default_factory=list)
    file_problems: list[Problem] = field(default_factory=list)
    load_errors: list[str] = field(default_factory=list)
    _stats: dict[str, int] | None = field(default=None, init=False, repr=False, compare=False)

    def stats(self) -> dict[str, int]:
        """rows, good, bad, with_tools, calls, thoughts, warnings, calls_without_tools, respelled.

        Computed once (the rows of a scanned file do not change afterwards); callers share the result.
        """
        if self._stats is None:
            self._stats = self._count()
        return dict(self._stats)

    def _count(self) -> dict[str, int]:
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
        warnings = Counter(p.code for p in self.problems if not p.is_error)
        out["warnings"] = sum(warnings.values())
        out["calls_without_tools"] = warnings["calls-without-tools"]
        out["respelled"] = warnings["markup-respelled"]
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


def convert_record(fmt: Any, raw: RawRecord, file: str, *, detected: bool = False, render_check: bool = True,
                   literal_style: LiteralStyle | None = None) -> Row:
    """Convert and validate one raw record with ``fmt``.

    With ``render_check`` the conversation is rendered once (in ``literal_style``, default json) so
    that anything the renderer rejects is reported here; with a ``literal_style`` that render is kept
    in ``Row.rendered``.
    """
    line = raw.line
    if raw.problem is not None:
        return Row(file, line, None, [raw.problem])
    value = raw.value
    if not isinstance(value, Mapping):
        kind = {list: "a list", str: "a string", bool: "a boolean", type(None): "null", int: "a number", float: "a number"}.get(type(value), type(value).__name__)
        return Row(file, line, None, [Problem(file, line, "", f"a record must be a JSON object, got {kind}", "not-an-object")])
    refused = record_refusals(value)
    if refused:  # preference rows and media: refused by name in any format, never converted and trained partly
        return Row(file, line, None, [Problem(file, line, path, message, code) for path, message, code in refused])
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
    conversation, issues = canonicalize(out, render_check=False)
    rendered = None
    if conversation is not None and render_check:
        rendered, issue = render_checked(conversation, literal_style or "json")
        if issue is not None:
            conversation, issues = None, [*issues, issue]
    problems = [
        Problem(file, line, _source_path(i.path, sources, tools_source), i.message, i.code, i.severity) for i in issues
    ]
    if conversation is None and not any(p.is_error for p in problems):  # pragma: no cover - defensive
        problems.append(Problem(file, line, "", "conversation rejected", "bad-record", ERROR))
    return Row(file, line, conversation, problems, rendered if literal_style else None)


class RowStream:
    """The rows of a stream of records, converted one at a time as they are iterated.

    The format is looked up, or detected from the records up to the DETECT_SAMPLE-th JSON object
    (held until then), when the stream is made: ``format`` is its name, or None with the reason in
    ``file_problems``; rows of records that could not be read are still reported one by one.
    Iterate once. FileProblem (from a reader) propagates.
    """

    def __init__(self, records: Iterable[RawRecord | RawLine], file: str, *, format: str = "auto",
                 registry: Registry | None = None, render_check: bool = True,
                 literal_style: LiteralStyle | None = None) -> None:
        reg = registry or get_registry()
        self.file = file
        self.load_errors = list(reg.load_errors)
        self.file_problems: list[Problem] = []
        self.format: str | None = None
        self._options = {"render_check": render_check, "literal_style": literal_style, "detected": format == "auto"}
        rest = iter(records)
        head: list[RawRecord] = []
        if format == "auto":
            objects = 0
            for record in rest:
                record = as_record(record)
                head.append(record)
                if record.problem is None and isinstance(record.value, Mapping):
                    objects += 1
                    if objects >= DETECT_SAMPLE:
                        break
        self._records: Iterator[RawRecord | RawLine] = itertools.chain(head, rest)
        if format == "auto" and head and all(r.problem is not None for r in head):
            # Not one record could be read (the loop above read them all): their own problems say
            # why; there is no format to report.
            self._fmt = None
            return
        try:
            self._fmt = reg.detect([r.value for r in head if r.problem is None]) if format == "auto" else reg.get(format)
        except FormatLookupError as exc:
            self._fmt = None
            self.file_problems.append(Problem(file, None, "", str(exc), exc.code))
        else:
            self.format = self._fmt.name

    @property
    def records(self) -> Iterator[RawRecord | RawLine]:
        """The records not converted yet (all of them before iterating), for converting elsewhere."""
        return self._records

    def convert(self, record: RawRecord | RawLine) -> Row:
        """One record of this stream as a row (the format must be known)."""
        return convert_record(self._fmt, as_record(record), self.file, **self._options)

    def __iter__(self) -> Iterator[Row]:
        if self._fmt is None:  # rows that could not even be parsed are still reported individually
            for r in map(as_record, self._records):
                if r.problem is not None:
                    yield Row(self.file, r.line, None, [r.problem])
            return
        for r in self._records:
            yield self.convert(r)


def scan_records(records: Iterable[RawRecord], file: str, *, format: str = "auto", registry: Registry | None = None,
                 render_check: bool = True) -> ScannedFile:
    """Detect (or look up) the format of already-read records and convert every one."""
    stream = RowStream(records, file, format=format, registry=registry, render_check=render_check)
    rows = list(stream)
    return ScannedFile(file, stream.format, rows=rows, file_problems=stream.file_problems, load_errors=stream.load_errors)


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
