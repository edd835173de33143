"""Problems found in a dataset file, and the error that stops training on them."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

ERROR = "error"
WARNING = "warning"

#: Every problem code with its severity and a one-line meaning (the docs table is built from this).
CODES: dict[str, tuple[str, str]] = {
    "unreadable-file": (ERROR, "the file does not exist, is empty, or cannot be read (a truncated gzip/Parquet "
                               "file, a binary file, no pyarrow for Parquet)"),
    "no-format": (ERROR, "no known format matches the file (or the forced format is unknown)"),
    "several-formats": (ERROR, "more than one format matches the file"),
    "invalid-json": (ERROR, "a line (JSONL) or the whole file (JSON array) is not valid JSON, or holds what "
                            "Python would change: a repeated key, a number out of float range, an over-long "
                            "integer, nesting over 100 levels"),
    "not-utf8": (ERROR, "a line is not UTF-8 text (or not valid UTF-16/32), or a string holds a lone surrogate"),
    "not-an-object": (ERROR, "a record is not a JSON object"),
    "wrong-format": (ERROR, "a record does not look like the file's format"),
    "bad-record": (ERROR, "a format-specific field cannot be read"),
    "unknown-role": (ERROR, "a message role is not system/user/assistant/tool"),
    "bad-content": (ERROR, "content missing, or not a string (or text parts) where one is required"),
    "bad-field": (ERROR, "thought/tool_calls/train/tool_call_id with the wrong type or on the wrong role"),
    "no-assistant-turn": (ERROR, "no assistant turn to train"),
    "empty-assistant-turn": (ERROR, "an assistant turn with neither content nor tool calls"),
    "bad-tool-call": (ERROR, "a tool call that is not {name, arguments} (e.g. no function name)"),
    "unknown-function": (ERROR, "a tool call to a function not in tools (when the conversation declares tools)"),
    "bad-arguments": (ERROR, "arguments that are not a JSON object or not valid JSON"),
    "bad-argument-name": (ERROR, "an argument name that is not a Python identifier"),
    "orphan-tool-result": (ERROR, "a tool result with no preceding call"),
    "bad-tools": (ERROR, "tools is not a list of function tools"),
    "bad-tool-schema": (ERROR, "a function's parameters are not a JSON-schema object"),
    "bad-function-name": (ERROR, "a function name the model could not write as name(...)"),
    "duplicate-function": (ERROR, "two tools with the same function name"),
    "special-token": (ERROR, "text containing a chat-format marker such as <|im_end|>"),
    "render-error": (ERROR, "the MiniCPM3 renderer rejects the conversation"),
    "bad-call-markup": (ERROR, "MiniCPM3 thought/call markup in assistant text that the strict parser cannot read"),
    "preference-data": (ERROR, "a preference row (chosen/rejected, rejected_response, KTO label): use rl: dpo"),
    "multimodal": (ERROR, "images, videos or audio (fields, <image> placeholders, media parts): MiniCPM3 is text-only"),
    "unknown-argument": (WARNING, "a call passes an argument its function does not declare"),
    "missing-argument": (WARNING, "a call leaves out a required argument"),
    "dotted-function-name": (WARNING, "a function name with dots (not a valid Python def)"),
    "calls-without-tools": (WARNING, "tool calls in a conversation that declares no tools (trained as written)"),
    "markup-respelled": (WARNING, "MiniCPM3 markup read into calls whose canonical spelling differs from the text"),
    "over-length": (WARNING, "check --sequence-len: a row longer than the sequence length"),
}


@dataclass(frozen=True)
class Problem:
    """One problem at one place in one file.

    ``line`` is the 1-based line of a JSONL file or the 1-based record number of a JSON array
    (``None`` for problems with the whole file). ``path`` is the field, e.g.
    ``messages[3].tool_calls[0].function.arguments`` ("" for the whole record).
    """

    file: str
    line: int | None
    path: str
    message: str
    code: str
    severity: str = ERROR

    @property
    def is_error(self) -> bool:
        return self.severity == ERROR

    @property
    def location(self) -> str:
        return f"{self.file}:{self.line}" if self.line is not None else self.file

    def __str__(self) -> str:
        head = self.location + ": " + ("warning: " if self.severity == WARNING else "")
        return f"{head}{self.path + ': ' if self.path else ''}{self.message} [{self.code}]"


class DataError(ValueError):
    """Bad data that stops preparation (and so training). ``problems`` holds every problem found."""

    def __init__(
        self,
        message: str,
        problems: Sequence[Problem] = (),
        *,
        skippable: bool = True,
        shown: int = 10,
        skip_hint: str = "set `minicpm3_on_bad_rows: skip` in the config",
    ) -> None:
        self.problems = list(problems)
        self.summary = message
        lines = [message]
        lines += [f"  {p}" for p in self.problems[:shown]]
        if len(self.problems) > shown:
            lines.append(f"  ... and {len(self.problems) - shown} more problems")
        if skippable and self.problems:
            lines.append(
                f"Fix these rows, or {skip_hint} to leave bad rows out of training (they are counted by "
                "reason in the log). `minicpm-plugin check FILE` lists every problem."
            )
        super().__init__("\n".join(lines))


class LocatedRow:
    """What SFT rows and preference pairs share: where they come from and why one is skipped.
    Subclasses (dataclasses) have ``file``, ``line``, ``problems`` and an ``ok`` property."""

    file: str
    line: int
    problems: list[Problem]

    @property
    def ok(self) -> bool:  # pragma: no cover - defined by each subclass
        raise NotImplementedError

    @property
    def source(self) -> str:
        return f"{self.file}:{self.line}"

    @property
    def reason(self) -> str | None:
        """The code of the first error (the reason the row is skipped), None for a good row."""
        return next((p.code for p in self.problems if p.is_error), None)


RowT = TypeVar("RowT", bound=LocatedRow)


class ScannedRows(Generic[RowT]):
    """What a scanned SFT file and a scanned preference file share. Subclasses (dataclasses) have
    ``file_problems`` and ``rows``."""

    file_problems: list[Problem]
    rows: list[RowT]

    @property
    def problems(self) -> list[Problem]:
        return self.file_problems + [p for r in self.rows for p in r.problems]

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.is_error]

    @property
    def good_rows(self) -> list[RowT]:
        return [r for r in self.rows if r.ok]

    def skipped_by_reason(self) -> dict[str, int]:
        return dict(Counter(r.reason for r in self.rows if not r.ok and r.reason))
