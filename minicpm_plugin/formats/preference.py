"""Preference pairs (DPO and friends): validate, render and prepare them with the SFT rules.

A canonical pair is ``{"prompt": [messages], "tools": [...] or None, "chosen": {assistant message},
"rejected": {assistant message}}``. Each side is checked as the conversation ``prompt + [answer]``
by :func:`minicpm_plugin.formats.canonical.canonicalize`, so every spelling and every rule of the SFT
formats applies, with one difference: the rejected answer may be wrong on purpose. A rejected call
to a function that is not in ``tools``, or with undeclared or missing arguments, is legal; it is
counted (``deliberate``), not reported as a problem. Malformed structure is an error on either side,
and so is a pair whose two answers render to the same text.

What is trained (:func:`pair_texts`): the prompt is the official render of the history with its tools
plus ``<|im_start|>assistant\\n`` (the tokenizer adds ``<s>``), and each answer is its assistant turn
exactly as the official template renders it, through ``<|im_end|>``. Standard library only.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from minicpm_plugin.chat import FormatError, render_assistant_turn, render_chat
from minicpm_plugin.chat.tokens import IM_END, LiteralStyle
from minicpm_plugin.formats.base import NO, RecordError, as_call
from minicpm_plugin.formats.canonical import Issue, canonicalize
from minicpm_plugin.formats.manager import FormatLookupError, Registry, score
from minicpm_plugin.formats.preference_formats import PREFERENCE_FORMATS, RawPair, looks_like_pair
from minicpm_plugin.formats.problems import CODES, ERROR, DataError, LocatedRow, Problem, ScannedRows
from minicpm_plugin.formats.reader import FileProblem, RawRecord, parse_records, read_bytes

#: Problem codes of preference pairs (the SFT codes in ``CODES`` apply too).
PREFERENCE_CODES: dict[str, tuple[str, str]] = {
    "bad-preference": (ERROR, "a pair without one prompt and one chosen and one rejected assistant answer"),
    "identical-pair": (ERROR, "chosen and rejected render to the same text"),
    "token-boundary": (ERROR, "with a tokenizer: the prompt's tokens are not a prefix of prompt + answer"),
}
#: Codes that are legal in a rejected answer (counted as deliberate mistakes, never reported).
DELIBERATE = ("unknown-function", "unknown-argument", "missing-argument")
REGISTRY = Registry(formats={f.name: f for f in PREFERENCE_FORMATS},
                    origins={f.name: "builtin" for f in PREFERENCE_FORMATS})

_MESSAGE = re.compile(r"messages\[(\d+)\]")


def severity(code: str) -> str:
    return (PREFERENCE_CODES.get(code) or CODES.get(code) or (ERROR, ""))[0]


def _index(path: str) -> int | None:
    m = _MESSAGE.match(path)
    return int(m.group(1)) if m else None


def _where(path: str, raw: RawPair, side: str) -> str:
    """A canonical conversation path as a pair path (``prompt[1].content``, ``chosen.tool_calls[0]``)
    plus the source field it came from when that is spelled differently."""
    i = _index(path)
    n = len(raw.prompt)
    if i is None:
        if path.startswith("tools") and raw.tools_source != "tools":
            return f"{path} (from {raw.tools_source})"
        return path
    rest = path[_MESSAGE.match(path).end():]  # type: ignore[union-attr]
    if i < n:
        canon, src = f"prompt[{i}]", raw.prompt_sources[i] if i < len(raw.prompt_sources) else f"prompt[{i}]"
    else:
        canon, src = side, raw.chosen_source if side == "chosen" else raw.rejected_source
    return canon + rest + (f" (from {src})" if src != canon else "")


@dataclass(frozen=True)
class PairIssue:
    path: str
    message: str
    code: str

    @property
    def severity(self) -> str:
        return severity(self.code)


def _issues(issues: list[Issue], raw: RawPair, side: str) -> list[PairIssue]:
    return [PairIssue(_where(i.path, raw, side), i.message, i.code) for i in issues]


def _call_names(message: Mapping[str, Any]) -> list[str]:
    calls = message.get("tool_calls") or ([message["function_call"]] if message.get("function_call") else [])
    names = []
    for call in calls:
        fn = as_call(call).get("function") if isinstance(as_call(call), Mapping) else None
        if isinstance(fn, Mapping) and isinstance(fn.get("name"), str):
            names.append(fn["name"])
    return names


def _identifier(name: str) -> bool:
    return all(part.isidentifier() for part in name.split("."))


def _rejected(raw: RawPair, tools: Any, messages: list[Any], prompt_ok: bool) -> tuple[
        dict[str, Any] | None, list[Issue], Counter[str]]:
    """The canonical rejected answer, its own issues and the deliberate mistakes it makes.

    With ``prompt_ok`` the prompt and tools are already canonical (the chosen side passed)."""
    n = len(raw.prompt)
    conv, issues = canonicalize({"messages": [*messages, raw.rejected], "tools": tools}, render_check=False)
    own = [i for i in issues if _index(i.path) == n]
    deliberate = Counter(i.code for i in own if i.code in DELIBERATE)
    rest = [i for i in own if i.code not in DELIBERATE]
    if conv is None and prompt_ok and not any(i.severity == ERROR for i in rest):
        # Its only errors were calls to undeclared functions: legal here. Check it again with a stub
        # declaration for each, so that its shape is still validated and it is normalised.
        declared = {t["function"]["name"] for t in tools or []}
        undeclared = [name for name in dict.fromkeys(_call_names(raw.rejected)) if name not in declared]
        bad = [name for name in undeclared if not _identifier(name)]
        if bad:
            rest.append(Issue(f"messages[{n}].tool_calls", f"calls {bad[0]!r}, which is not a Python identifier: MiniCPM3 "
                              "could not write it as name(arg=value), so no model would produce it", "bad-tool-call"))
            return None, rest, deliberate
        stubs = [{"type": "function", "function": {"name": name}} for name in undeclared]
        conv, again = canonicalize({"messages": [*messages, raw.rejected], "tools": [*(tools or []), *stubs]},
                                   render_check=False)
        rest += [i for i in again if _index(i.path) == n and i.code not in DELIBERATE]
    answer = conv["messages"][n] if conv is not None else None
    if answer is not None:
        try:  # the one part of the rejected conversation that the chosen side did not render
            render_assistant_turn(answer)
        except FormatError as exc:
            rest.append(Issue(f"messages[{n}]", f"MiniCPM3's format cannot render this: {exc.message}", "render-error"))
            answer = None
    return answer, rest, deliberate


def canonicalize_pair(raw: RawPair, *, render_check: bool = True) -> tuple[dict[str, Any] | None, list[PairIssue], Counter[str]]:
    """Validate a converted pair: ``(canonical pair or None, issues, deliberate mistakes of rejected)``."""
    n = len(raw.prompt)
    if n == 0:
        return None, [PairIssue("prompt", "is empty: a pair needs the conversation its answers reply to", "bad-preference")], Counter()
    for side, msg in (("chosen", raw.chosen), ("rejected", raw.rejected)):
        if isinstance(msg, Mapping) and (msg.get("train") is False or msg.get("weight") in (0, False)):
            flag = "train" if msg.get("train") is False else "weight"
            return None, [PairIssue(f"{side}.{flag}", "turns training off, but both answers of a pair are always trained; "
                                    "remove it", "bad-field")], Counter()
    chosen_conv, issues = canonicalize({"messages": [*raw.prompt, raw.chosen], "tools": raw.tools}, render_check=render_check)
    out = _issues(issues, raw, "chosen")
    ok = chosen_conv is not None
    tools = chosen_conv["tools"] if chosen_conv is not None else raw.tools
    messages = chosen_conv["messages"][:n] if chosen_conv is not None else list(raw.prompt)
    rejected, r_issues, deliberate = _rejected(raw, tools, messages, ok)
    out += _issues(r_issues, raw, "rejected")
    if chosen_conv is None or rejected is None or any(i.severity == ERROR for i in out):
        return None, out, deliberate
    chosen = chosen_conv["messages"][n]
    if messages[-1]["role"] not in ("user", "tool"):
        out.append(PairIssue(_where(f"messages[{n - 1}].role", raw, "chosen"),
                             f"the prompt ends with a {messages[-1]['role']} turn; it must end with the user or tool turn "
                             "the answers reply to", "bad-preference"))
    if render_assistant_turn(chosen) == render_assistant_turn(rejected):
        out.append(PairIssue("rejected", "renders to the same text as chosen, so the pair teaches nothing; fix or remove "
                             "the pair", "identical-pair"))
    if any(i.severity == ERROR for i in out):
        return None, out, deliberate
    return {"prompt": messages, "tools": tools, "chosen": chosen, "rejected": rejected}, out, deliberate


# ---------------------------------------------------------------------------------------------
# What is trained


@dataclass(frozen=True)
class PairTexts:
    """The three strings a preference trainer gets: ``prompt`` (no ``<s>``: the tokenizer adds it) ends
    with ``<|im_start|>assistant\\n``; ``chosen`` and ``rejected`` end with one ``<|im_end|>``."""

    prompt: str
    chosen: str
    rejected: str


def pair_texts(pair: Mapping[str, Any], literal_style: LiteralStyle = "json") -> PairTexts:
    """The official render of a canonical pair, split into prompt and answers (see the module doc)."""
    prompt = render_chat(pair["prompt"], pair["tools"], add_generation_prompt=True, literal_style=literal_style)
    return PairTexts(prompt, render_assistant_turn(pair["chosen"], literal_style=literal_style) + IM_END,
                     render_assistant_turn(pair["rejected"], literal_style=literal_style) + IM_END)


def pair_stats(pair: Mapping[str, Any]) -> Counter[str]:
    """Counts for summaries: tools, calls on each side, thoughts, refusals and hallucinated calls."""
    chosen, rejected = pair["chosen"].get("tool_calls", []), pair["rejected"].get("tool_calls", [])
    return Counter(with_tools=bool(pair["tools"]), chosen_calls=len(chosen), rejected_calls=len(rejected),
                   thoughts=sum(bool(pair[k].get("thought")) for k in ("chosen", "rejected")),
                   rejected_without_call=bool(chosen) and not rejected, rejected_extra_call=not chosen and bool(rejected))


# ---------------------------------------------------------------------------------------------
# Files


@dataclass
class PairRow(LocatedRow):
    file: str
    line: int
    pair: dict[str, Any] | None
    problems: list[Problem] = field(default_factory=list)
    deliberate: Counter[str] = field(default_factory=Counter)

    @property
    def ok(self) -> bool:
        return self.pair is not None


@dataclass
class ScannedPairs(ScannedRows[PairRow]):
    file: str
    format: str | None
    rows: list[PairRow] = field(default_factory=list)
    file_problems: list[Problem] = field(default_factory=list)

    def stats(self) -> dict[str, int]:
        """rows, good, bad, with_tools, chosen/rejected calls, thoughts, deliberate mistakes, warnings."""
        out: Counter[str] = Counter(rows=len(self.rows), good=0, bad=0, with_tools=0, chosen_calls=0, rejected_calls=0,
                                    thoughts=0, rejected_without_call=0, rejected_extra_call=0,
                                    rejected_undeclared=0, rejected_bad_arguments=0)
        for r in self.rows:
            if r.pair is None:
                out["bad"] += 1
                continue
            out["good"] += 1
            out.update(pair_stats(r.pair))
            out["rejected_undeclared"] += bool(r.deliberate["unknown-function"])
            out["rejected_bad_arguments"] += bool(r.deliberate["unknown-argument"] or r.deliberate["missing-argument"])
        out["warnings"] = sum(1 for p in self.problems if not p.is_error)
        return dict(out)


def convert_pair_record(fmt: Any, raw: RawRecord, file: str, *, detected: bool = False,
                        render_check: bool = True) -> PairRow:
    """Convert and validate one raw record as a preference pair with ``fmt``."""
    line = raw.line
    if raw.problem is not None:
        return PairRow(file, line, None, [raw.problem])
    value = raw.value
    if not isinstance(value, Mapping):
        return PairRow(file, line, None, [Problem(file, line, "", f"a record must be a JSON object, got {type(value).__name__}",
                                                  "not-an-object")])
    if score(fmt, value) == NO:
        keys = ", ".join(list(value)[:12]) or "none"
        hint = " (the format detected from the file's first records)" if detected else ""
        return PairRow(file, line, None, [Problem(file, line, "", f"this record does not look like {fmt.name}{hint}; its "
                                                  f"keys: {keys}", "wrong-format")])
    try:
        converted = fmt.convert(value)
    except RecordError as exc:
        return PairRow(file, line, None, [Problem(file, line, exc.path, exc.message, exc.code)])
    except Exception as exc:  # a converter bug or an unexpected record: never a traceback
        return PairRow(file, line, None, [Problem(file, line, "", f"the {fmt.name} converter failed: "
                                                  f"{type(exc).__name__}: {exc}", "bad-record")])
    pair, issues, deliberate = canonicalize_pair(converted, render_check=render_check)
    problems = [Problem(file, line, i.path, i.message, i.code, i.severity) for i in issues]
    return PairRow(file, line, pair, problems, deliberate)


def format_names() -> list[str]:
    """Names and aliases of the preference formats (for telling them from SFT format names)."""
    return [n.lower() for f in PREFERENCE_FORMATS for n in (f.name, *f.aliases)]


def scan_pair_records(records: list[RawRecord], file: str, *, format: str = "auto",
                      render_check: bool = True) -> ScannedPairs:
    scanned = ScannedPairs(file, None)
    try:
        fmt = REGISTRY.detect([r.value for r in records if r.problem is None]) if format == "auto" else REGISTRY.get(format)
    except FormatLookupError as exc:
        scanned.rows = [PairRow(file, r.line, None, [r.problem]) for r in records if r.problem is not None]
        scanned.file_problems.append(Problem(file, None, "", str(exc), exc.code))
        return scanned
    scanned.format = fmt.name
    scanned.rows = [convert_pair_record(fmt, r, file, detected=format == "auto", render_check=render_check) for r in records]
    return scanned


def read_records(data: bytes, file: str) -> list[RawRecord]:
    """`parse_records`, with JSON nested too deeply for Python's json reported instead of raised."""
    try:
        return parse_records(data, file)
    except RecursionError:
        raise FileProblem(Problem(file, None, "", "a record is nested too deeply for Python's json reader (thousands of "
                                  "levels); no training data is shaped like that", "invalid-json")) from None


def scan_pairs_bytes(data: bytes, file: str, *, format: str = "auto") -> ScannedPairs:
    try:
        records = read_records(data, file)
    except FileProblem as exc:
        return ScannedPairs(file, None, file_problems=[exc.problem])
    return scan_pair_records(records, file, format=format)


def scan_pairs_file(path: str | Path, *, format: str = "auto", file: str | None = None) -> ScannedPairs:
    """Every record of ``path`` as a canonical pair or as located problems. Never raises for bad data."""
    name = file if file is not None else str(path)
    try:
        data = read_bytes(path, name)
    except FileProblem as exc:
        return ScannedPairs(name, None, file_problems=[exc.problem])
    return scan_pairs_bytes(data, name, format=format)


def is_preference_file(path: str | Path, format: str = "auto", *, sample: int = 20) -> bool:
    """Whether ``path`` holds preference pairs: a preference ``format`` was forced, or its first records
    have chosen/rejected (or rejected_response, preferred_output) keys. False for unreadable files."""
    if format != "auto":
        return format.strip().lower() in format_names()
    try:
        data = read_bytes(path)
        head = data.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
        lines = [line for line in data.split(b"\n", 4 * sample)[: 4 * sample] if line.strip()][:sample]
        records = read_records(b"\n".join(lines), str(path)) if head == b"{" else []
        if not any(r.problem is None for r in records):  # a JSON array, or one pretty-printed object
            records = read_records(data, str(path))
    except FileProblem:
        return False
    values = [r.value for r in records[:sample] if r.problem is None]
    return bool(values) and any(looks_like_pair(v) for v in values)


def raise_for(scanned: ScannedPairs, on_bad_rows: str) -> None:
    """DataError when the file cannot be used as asked (``on_bad_rows`` error or skip)."""
    if scanned.file_problems:
        raise DataError(f"{scanned.file}: cannot be used:", scanned.file_problems, skippable=False)
    stats = scanned.stats()
    errors = scanned.errors
    if errors and on_bad_rows == "error":
        raise DataError(f"{scanned.file}: {stats['bad']} of {stats['rows']} preference pairs have errors (format "
                        f"{scanned.format}):", errors)
    if stats["good"] == 0:
        if errors:
            raise DataError(f"{scanned.file}: every one of its {stats['rows']} pairs has errors (format {scanned.format}), "
                            "nothing left to train on:", errors, skippable=False)
        raise DataError(f"{scanned.file}: has no rows", skippable=False)


def load_pairs(path: str | Path, format: str = "auto", *, on_bad_rows: str = "error") -> list[dict[str, Any]]:
    """The canonical pairs of a file (for the CLI and evaluation); DataError on bad data unless skipping."""
    scanned = scan_pairs_file(path, format=format)
    raise_for(scanned, on_bad_rows)
    return [r.pair for r in scanned.good_rows if r.pair is not None]


__all__ = [
    "DELIBERATE", "PREFERENCE_CODES", "PREFERENCE_FORMATS", "REGISTRY", "PairIssue", "PairRow", "PairTexts", "ScannedPairs",
    "canonicalize_pair", "convert_pair_record", "format_names", "is_preference_file", "load_pairs", "pair_stats",
    "pair_texts", "read_records", "scan_pair_records", "scan_pairs_bytes", "scan_pairs_file",
]
