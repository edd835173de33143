"""Turn a user's dataset file into an Arrow-safe JSONL of canonical conversations, rendered once.

The prepared-row contract (`encode_row` / `decode_row` / `is_prepared_row` / `stored_render` are its
one definition), one JSON object per line:

    {"conversation": "<the canonical conversation as JSON text>", "source": "FILE:LINE",
     "text": "<the conversation rendered in MiniCPM3's format>", "literal_style": "json",
     "spans": [start, end, message, part, start, end, message, part, ...]}

- Strings and one list of ints: Arrow never infers a schema from tool arguments (mixed types cannot
  break it, floats keep their digits).
- ``text`` is the render made while validating the row, in the run's literal style (part of the cache
  key). The strategy tokenizes it as is: each conversation is rendered once and decoded from JSON
  once, here, and `datasets.map` only tokenizes and labels.
- ``spans`` is what labelling needs, 4 ints per span: character offsets into ``text``, the message
  index and the part (an index into SPAN_PARTS). For every assistant turn: its thought, call block,
  content and `<|im_end|>` (left out for a message with ``"train": false``), and the `\\n` after it
  (where the turn ends, for `minicpm3_overlong: truncate_turns`). Every row has at least one
  assistant turn, so the list is never empty. The label options (`minicpm3_train_last_turn_only`,
  `minicpm3_train_thought`) and `sequence_len` are applied by the strategy to these spans, so one
  prepared file serves them all.
- ``conversation`` stays for what needs the conversation itself: the tool-call evaluation of
  `test_datasets`, `read_prepared`, and rows whose ``literal_style`` is not the run's (the strategy
  renders those again). Rows without ``text``/``spans`` (prepared by an older version) work the same way.

A JSONL file is read and written one line at a time (memory does not grow with the file); a JSON
array is parsed whole, then written the same way. Rows go to a temporary file that is renamed only
when the whole file has been checked: with ``on_bad_rows="error"`` nothing is left behind for a file
with errors. The output name carries a hash of the input bytes (read in chunks) and the settings, so
reruns and other ranks reuse it.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import multiprocessing
import os
import tempfile
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args

from minicpm_plugin.chat.spans import Part, Rendered, Span, label_spans
from minicpm_plugin.chat.tokens import LiteralStyle, check_literal_style
from minicpm_plugin.formats.canonical import conversation_stats
from minicpm_plugin.formats.manager import Registry, get_registry
from minicpm_plugin.formats.problems import DataError, Problem
from minicpm_plugin.formats.reader import FileProblem, iter_records
from minicpm_plugin.formats.scan import RowStream, scan_file

#: Bump when the output of preparation changes for the same input (invalidates prepared files).
PREPARE_VERSION = "3"
OnBadRows = Literal["error", "skip"]
ON_BAD_ROWS: tuple[str, ...] = get_args(OnBadRows)
#: The parts a prepared row's spans can have; a span stores its part as an index into this tuple.
SPAN_PARTS: tuple[Part, ...] = (Part.THOUGHT, Part.TOOL_CALLS, Part.CONTENT, Part.END, Part.NEWLINE)
_PART_CODE = {part: i for i, part in enumerate(SPAN_PARTS)}
ROW_KEYS = frozenset({"conversation", "source", "text", "literal_style", "spans"})
HASH_CHUNK = 1 << 20


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
    calls_without_tools: int = 0
    respelled: int = 0
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
        if self.calls_without_tools:
            text += f" ({self.calls_without_tools} conversations with calls but no tools, trained as written)"
        if self.respelled:
            text += f" ({self.respelled} assistant turns of MiniCPM3 markup respelled)"
        if self.problems_path:
            text += f"; every problem is listed in {self.problems_path}"
        return text


# ---- the row contract ----------------------------------------------------------------------------

def encode_spans(spans: Sequence[Span]) -> list[int]:
    """Label spans as a flat list of ints: start, end, message index, part code per span."""
    out: list[int] = []
    for s in spans:
        out += (s.start, s.end, s.message_index, _PART_CODE[s.part])
    return out


def decode_spans(values: Sequence[int]) -> list[Span]:
    """The inverse of :func:`encode_spans` (every span belongs to an assistant turn)."""
    return [Span(values[k], values[k + 1], SPAN_PARTS[values[k + 3]], values[k + 2], "assistant")
            for k in range(0, len(values), 4)]


def encode_row(conversation: dict[str, Any], source: str, rendered: Rendered | None = None,
               literal_style: LiteralStyle = "json") -> str:
    """One prepared row as a JSON line (without the newline). Without ``rendered``, the conversation
    and source only (a row the strategy renders itself)."""
    row: dict[str, Any] = {"conversation": json.dumps(conversation, ensure_ascii=False), "source": source}
    if rendered is not None:
        row["text"] = rendered.text
        row["literal_style"] = literal_style
        row["spans"] = encode_spans(label_spans(rendered.spans, conversation["messages"]))
    return json.dumps(row, ensure_ascii=False)


def is_prepared_row(row: Any) -> bool:
    """Whether a row (from the prepared file, through Arrow or not) follows the prepared-row contract."""
    return (isinstance(row, Mapping) and isinstance(row.get("conversation"), str) and isinstance(row.get("source"), str)
            and set(row) <= ROW_KEYS)


def decode_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """The canonical conversation of one prepared row."""
    return json.loads(row["conversation"])


def stored_render(row: Mapping[str, Any], literal_style: str) -> Rendered | None:
    """The text and label spans a prepared row carries for ``literal_style``; None when it has none
    (an older prepared row, or one rendered in another literal style)."""
    text, spans = row.get("text"), row.get("spans")
    if row.get("literal_style") != literal_style or not isinstance(text, str) or not spans:
        return None
    return Rendered(text, tuple(decode_spans(spans)))


def read_prepared(path: str | Path) -> Iterator[tuple[dict[str, Any], str]]:
    """(conversation, source) for every row of a prepared JSONL file."""
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                row = json.loads(line)
                yield decode_row(row), row["source"]


# ---- preparing a file ----------------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def _code_fingerprint() -> str:
    """Hash of this package's chat/ and formats/ sources: prepared rows hold rendered text, so a change to
    the renderer or to a converter (in a checkout, before any version bump) must not reuse old files."""
    h = hashlib.sha256()
    root = Path(__file__).resolve().parents[1]
    for source in sorted([*root.glob("chat/*.py"), *root.glob("formats/*.py")]):
        h.update(source.name.encode() + b"\0" + source.read_bytes())
    return h.hexdigest()


def _cache_key(path: str | Path, file: str, format: str, on_bad_rows: str, literal_style: str,
               registry: Registry) -> str:
    """Hash of the settings and of the file's bytes (read in chunks). OSError when unreadable."""
    from minicpm_plugin import __version__

    h = hashlib.sha256()
    fmts = sorted(f"{n}:{getattr(f, 'version', '1')}:{registry.origins.get(n, '')}" for n, f in registry.formats.items())
    for part in (PREPARE_VERSION, __version__, _code_fingerprint(), file, format, on_bad_rows, literal_style,
                 "|".join(fmts)):
        h.update(part.encode("utf-8") + b"\0")
    with open(path, "rb") as fh:
        while chunk := fh.read(HASH_CHUNK):
            h.update(chunk)
    return h.hexdigest()[:16]


class _Staged:
    """A binary file written under a temporary name next to ``path``: commit() renames it to ``path``,
    discard() removes it (a no-op after commit)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        fd, self.tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
        self.fh = os.fdopen(fd, "wb")

    def commit(self) -> None:
        self.fh.close()
        os.replace(self.tmp, self.path)

    def discard(self) -> None:
        self.fh.close()
        if os.path.exists(self.tmp):
            os.unlink(self.tmp)


def _write_atomic(path: Path, text: str) -> None:
    staged = _Staged(path)
    try:
        staged.fh.write(text.encode("utf-8", "backslashreplace"))
        staged.commit()
    finally:
        staged.discard()


def _check(file: str, fmt: str | None, file_problems: list[Problem], errors: list[Problem], rows: int, good: int,
           on_bad_rows: str) -> None:
    """Raise DataError when the file cannot be used as it is (the rules of `minicpm3_on_bad_rows`)."""
    if file_problems:
        raise DataError(f"{file}: cannot be used:", file_problems, skippable=False)
    if errors and on_bad_rows == "error":
        raise DataError(f"{file}: {rows - good} of {rows} rows have errors (format {fmt}):", errors)
    if good == 0:
        if errors:
            raise DataError(f"{file}: every one of its {rows} rows has errors (format {fmt}), "
                            "nothing left to train on:", errors, skippable=False)
        raise DataError(f"{file}: has no rows", skippable=False)


_P = TypeVar("_P")


def prepared_paths(out_dir: str | Path, path: str | Path, key: str,
                   stats_type: Callable[..., _P]) -> tuple[tuple[Path, Path, Path], _P | None]:
    """The rows, stats and problems files for an input file and its cache key, and the earlier result
    (its stats file read into ``stats_type``, marked reused) when the rows and stats are already there."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    name = f"{Path(path).name.split('.')[0] or 'data'}.{key}"
    paths = (out / f"{name}.jsonl", out / f"{name}.stats.json", out / f"{name}.problems.txt")
    if paths[0].exists() and paths[1].exists():
        try:
            prepared = stats_type(**json.loads(paths[1].read_text(encoding="utf-8")))
            prepared.reused = True  # type: ignore[attr-defined]
            return paths, prepared
        except (ValueError, TypeError):
            pass  # unreadable stats: prepare again
    return paths, None


def prepare_dataset_file(
    path: str | Path,
    *,
    format: str = "auto",
    on_bad_rows: str = "error",
    out_dir: str | Path,
    registry: Registry | None = None,
    literal_style: LiteralStyle = "json",
    progress: Callable[[int], None] | None = None,
    num_proc: int = 1,
) -> PreparedDataset:
    """Read, convert, validate and render ``path``; write the prepared rows into ``out_dir``.

    With ``on_bad_rows="error"`` any error raises DataError (listing the first problems and the
    count); with ``"skip"`` bad rows are left out and counted by reason. Warnings never block. Every
    problem is also written to ``<name>.problems.txt`` next to the output. ``literal_style`` is the
    run's (`minicpm3_literal_style`): rows are rendered in it. ``progress(n)`` is told about every n
    bytes read (for a progress bar). ``num_proc`` > 1 converts a file of PARALLEL_MIN_BYTES or more
    in that many forked processes (same output, in the same order). Memory holds a few JSONL lines
    at a time, plus the problems found (error problems are kept for the DataError).
    """
    if on_bad_rows not in ON_BAD_ROWS:
        raise ValueError(f"on_bad_rows must be one of {', '.join(ON_BAD_ROWS)}, got {on_bad_rows!r}")
    check_literal_style(literal_style)
    reg = registry or get_registry()
    file = str(path)
    try:
        key = _cache_key(path, file, format, on_bad_rows, literal_style, reg)
    except OSError as exc:
        problem = Problem(file, None, "", f"cannot read the file: {exc.strerror or exc}", "unreadable-file")
        raise DataError(f"{file}: cannot be used:", [problem], skippable=False) from None
    paths, reused = prepared_paths(out_dir, path, key, PreparedDataset)
    if reused is not None:
        return reused
    rows_path, stats_path, problems_path = paths
    rows_out, problems_out = _Staged(rows_path), _Staged(problems_path)
    try:
        try:
            records = iter_records(path, file, progress, lazy=True)
        except FileProblem as exc:
            raise DataError(f"{file}: cannot be used:", [exc.problem], skippable=False) from None
        parallel = num_proc if os.path.getsize(path) >= PARALLEL_MIN_BYTES else 1
        counts = _write_rows(records, file, format, reg, literal_style, on_bad_rows, rows_out.fh, problems_out.fh,
                             parallel)
        if counts.problems:
            problems_out.commit()
        rows_out.commit()
    finally:
        rows_out.discard()
        problems_out.discard()
    prepared = PreparedDataset(
        source=file, path=str(rows_path), format=counts.format, rows=counts.rows, written=counts.good,
        skipped=dict(counts.skipped), with_tools=counts.with_tools, calls=counts.calls, thoughts=counts.thoughts,
        warnings=counts.warnings, calls_without_tools=counts.warning_codes["calls-without-tools"],
        respelled=counts.warning_codes["markup-respelled"], problems_path=str(problems_path) if counts.problems else None,
    )
    stats_dict = asdict(prepared)
    stats_dict.pop("reused")
    _write_atomic(stats_path, json.dumps(stats_dict, ensure_ascii=False, indent=1) + "\n")
    return prepared


@dataclass
class _Counts:
    format: str = ""
    rows: int = 0
    good: int = 0
    with_tools: int = 0
    calls: int = 0
    thoughts: int = 0
    warnings: int = 0
    problems: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    warning_codes: Counter[str] = field(default_factory=Counter)


#: Files smaller than this are prepared in one process (starting workers would cost more than it saves).
PARALLEL_MIN_BYTES = 4 << 20
#: Records per job sent to a worker process; at most 4 jobs per worker are in flight.
PARALLEL_CHUNK = 64
_RowResult = tuple[bytes | None, list[Problem], tuple[bool, int, int]]
#: What a forked worker converts with (set by the parent just before it forks).
_JOB: tuple[RowStream, str, LiteralStyle] | None = None


def _prepared_row(stream: RowStream, record: Any, file: str, literal_style: LiteralStyle) -> _RowResult:
    """(the prepared row as a JSON line, or None; its problems; its (tools, calls, thoughts))."""
    row = stream.convert(record)
    if row.conversation is None:
        return None, row.problems, (False, 0, 0)
    try:
        line = (encode_row(row.conversation, row.source, row.rendered, literal_style) + "\n").encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate escape such as "\ud800": not a character
        return None, [*row.problems, Problem(
            file, row.line, "", f"contains {exc.object[exc.start:exc.end]!a}, a lone surrogate escape that is not a "
            "character and cannot be written as UTF-8; remove it", "not-utf8")], (False, 0, 0)
    return line, row.problems, conversation_stats(row.conversation)


def _work(chunk: list[Any]) -> list[_RowResult]:
    stream, file, literal_style = _JOB  # type: ignore[misc]
    return [_prepared_row(stream, record, file, literal_style) for record in chunk]


def _row_results(stream: RowStream, file: str, literal_style: LiteralStyle, num_proc: int) -> Iterator[_RowResult]:
    """Every record's result, in file order: in this process, or (num_proc > 1 where processes can be
    forked) in num_proc worker processes with a bounded number of records in flight."""
    global _JOB
    try:
        ctx = multiprocessing.get_context("fork") if num_proc > 1 else None
    except ValueError:  # no fork on this platform
        ctx = None
    if ctx is None:
        for record in stream.records:
            yield _prepared_row(stream, record, file, literal_style)
        return
    _JOB = (stream, file, literal_style)
    try:
        with ctx.Pool(num_proc) as pool:
            pending: deque[Any] = deque()
            records = stream.records
            while chunk := list(itertools.islice(records, PARALLEL_CHUNK)):
                pending.append(pool.apply_async(_work, (chunk,)))
                if len(pending) >= 4 * num_proc:
                    yield from pending.popleft().get()
            while pending:
                yield from pending.popleft().get()
    finally:
        _JOB = None


def _write_rows(records: Iterator[Any], file: str, format: str, reg: Registry, literal_style: LiteralStyle,
                on_bad_rows: str, rows_fh: Any, problems_fh: Any, num_proc: int = 1) -> _Counts:
    """Convert, check and render each record as it is read; write good rows and every problem.
    DataError (after the whole file is read) when the file cannot be used as it is."""
    counts = _Counts()
    errors: list[Problem] = []
    try:
        stream = RowStream(records, file, format=format, registry=reg, literal_style=literal_style)
        if stream.format is None:
            _check(file, None, stream.file_problems, [], 0, 0, on_bad_rows)
        counts.format = stream.format or format
        for line, problems, (tools, calls, thoughts) in _row_results(stream, file, literal_style, num_proc):
            counts.rows += 1
            for p in problems:
                problems_fh.write(f"{p}\n".encode("utf-8", "backslashreplace"))
                counts.problems += 1
                if p.is_error:
                    errors.append(p)
                else:
                    counts.warnings += 1
                    counts.warning_codes[p.code] += 1
            if line is None:
                counts.skipped[next(p.code for p in problems if p.is_error)] += 1
                continue
            rows_fh.write(line)
            counts.good += 1
            counts.with_tools += tools
            counts.calls += calls
            counts.thoughts += thoughts
    except FileProblem as exc:
        raise DataError(f"{file}: cannot be used:", [exc.problem], skippable=False) from None
    _check(file, counts.format, [], errors, counts.rows, counts.good, on_bad_rows)
    return counts


def load_conversations(path: str | Path, format: str = "auto", *, on_bad_rows: str = "error",
                       registry: Registry | None = None) -> list[dict[str, Any]]:
    """The canonical conversations of a file (for the CLI and evaluation). DataError on bad data
    unless ``on_bad_rows="skip"``."""
    if on_bad_rows not in ON_BAD_ROWS:
        raise ValueError(f"on_bad_rows must be one of {', '.join(ON_BAD_ROWS)}, got {on_bad_rows!r}")
    scanned = scan_file(path, format=format, registry=registry)
    stats = scanned.stats()
    _check(scanned.file, scanned.format, scanned.file_problems, scanned.errors, stats["rows"], stats["good"], on_bad_rows)
    return [r.conversation for r in scanned.good_rows if r.conversation is not None]
