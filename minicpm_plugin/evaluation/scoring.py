"""Tool-call accuracy of a MiniCPM3 model: generate each assistant turn of held-out conversations
from the conversation before it, parse it with `parse_assistant`, and score it against the data.

This module (`score_turn`, `summarize`) is pure Python and tested on hand-written outputs;
generation (`minicpm_plugin.evaluation.generate`) needs torch and a model.

Definitions (one *turn* = one assistant message of the data; *call turns* have `tool_calls`):

* ``well_formed_rate``: turns whose output parses (`parse_assistant` reports no error) / turns.
* ``lenient_rate``: well-formed turns that parsed only thanks to a lenient reading (the output drifted
  from the template's exact layout: a blank line before the call block, no code fence, text before
  the block, ...; `parse_assistant`'s ``lenient``) / turns. A format-drift signal: the turns that
  parse exactly are ``well_formed_rate - lenient_rate``.
* ``decision_acc``: turns where the model called (wrote ``<|tool_call_start|>``, parsable or not)
  exactly when the reference calls / turns.
* ``name_acc``: call turns whose called function names equal the reference's (as a multiset, so the
  order of parallel calls does not matter) / call turns.
* ``exact_args_acc``: call turns whose calls equal the reference's, names and every argument value /
  call turns.
* ``arg_acc``: reference arguments given with the right value / reference arguments (each reference
  call is paired with the predicted call of the same name that gets most of its arguments right).
* ``wrong_call_rate``: turns that should not call but did / turns that should not call.

Values are compared as JSON values with their types kept: ``true`` is not ``1``, ``"1"`` is not
``1``, ``null`` is only ``null``; numbers compare by value (JSON has one number type: ``1 == 1.0``);
lists in order, objects by key set. Malformed output is counted as malformed (and wrong), never
raised; a turn that ran out of new tokens before a stop token is counted in ``truncated``.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from minicpm_plugin.chat import call_arguments, parse_assistant, render_chat
from minicpm_plugin.chat.literals import int_text
from minicpm_plugin.chat.tokens import TOOL_CALL_START, LiteralStyle

#: metric name -> (numerator count, denominator count); the order is the table's order.
METRICS: dict[str, tuple[str, str]] = {
    "well_formed_rate": ("well_formed", "turns"),
    "lenient_rate": ("lenient", "turns"),
    "decision_acc": ("decision_correct", "turns"),
    "name_acc": ("names_correct", "call_turns"),
    "exact_args_acc": ("args_exact", "call_turns"),
    "arg_acc": ("args_correct", "args_total"),
    "wrong_call_rate": ("wrong_calls", "no_call_turns"),
}


@dataclass(frozen=True)
class TurnCase:
    """One assistant turn to generate: the prompt before it and the calls it should make."""

    conversation: int
    message: int
    prompt: str
    expected_calls: list[dict[str, Any]]


def json_equal(a: Any, b: Any) -> bool:
    """Equal as JSON values, types kept (bool is not a number, a string is not a number)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))
    if isinstance(a, str) or isinstance(b, str):
        return isinstance(a, str) and isinstance(b, str) and a == b
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    return False


def reference_calls(message: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The calls of a canonical (or OpenAI-shaped) assistant message as ``{"name", "arguments"}``."""
    calls = []
    for i, call in enumerate(message.get("tool_calls") or []):
        name, args = call_arguments(call, f"tool_calls[{i}]")
        calls.append({"name": name, "arguments": args})
    return calls


def turn_cases(conversations: Iterable[Mapping[str, Any]], literal_style: LiteralStyle = "json") -> list[TurnCase]:
    """A case for every assistant message that has at least one message before it."""
    cases = []
    for ci, conv in enumerate(conversations):
        messages, tools = conv["messages"], conv.get("tools") or None
        for mi, msg in enumerate(messages):
            if msg.get("role") != "assistant" or mi == 0:
                continue
            prompt = render_chat(messages[:mi], tools, add_generation_prompt=True, literal_style=literal_style)
            cases.append(TurnCase(ci, mi, prompt, reference_calls(msg)))
    return cases


def _pair_calls(expected: list[dict[str, Any]], predicted: list[dict[str, Any]]) -> list[tuple[int, int | None]]:
    """Pair each expected call with an unused predicted call of the same name (most right arguments)."""
    used: set[int] = set()
    pairs = []
    for ei, exp in enumerate(expected):
        best, best_score = None, -1
        for pi, pred in enumerate(predicted):
            if pi in used or pred["name"] != exp["name"]:
                continue
            score = sum(1 for k, v in exp["arguments"].items() if k in pred["arguments"] and json_equal(v, pred["arguments"][k]))
            if score > best_score:
                best, best_score = pi, score
        if best is not None:
            used.add(best)
        pairs.append((ei, best))
    return pairs


def _exact_match(expected: list[dict[str, Any]], predicted: list[dict[str, Any]]) -> bool:
    if len(expected) != len(predicted):
        return False
    left = list(predicted)
    for exp in expected:
        for i, pred in enumerate(left):
            if pred["name"] == exp["name"] and json_equal(pred["arguments"], exp["arguments"]):
                del left[i]
                break
        else:
            return False
    return True


def score_turn(expected_calls: Sequence[Mapping[str, Any]], generated: str, *, truncated: bool = False) -> dict[str, Any]:
    """Score one generated assistant turn against the calls it should make (none: a plain answer).

    Returns a JSON-ready record with the parsed output and the per-turn counts `summarize` adds up.
    """
    expected = [{"name": c["name"], "arguments": dict(c["arguments"])} for c in expected_calls]
    parsed = parse_assistant(generated)
    predicted = parsed["tool_calls"]
    should_call = bool(expected)
    called = bool(predicted) or TOOL_CALL_START in generated
    well_formed = parsed["error"] is None
    record: dict[str, Any] = {
        "expected_call": should_call,
        "called": called,
        "well_formed": well_formed,
        "error": parsed["error"],
        "lenient": parsed["lenient"],
        "truncated": truncated,
        "decision_correct": called == should_call,
        "expected": expected,
        "predicted": predicted,
        "thought": parsed["thought"],
        "content": parsed["content"],
        "generated": generated,
    }
    if not should_call:
        record["wrong_call"] = called
        return record
    pairs = _pair_calls(expected, predicted)
    correct = missing = wrong = extra = 0
    for ei, pi in pairs:
        exp_args = expected[ei]["arguments"]
        pred_args = predicted[pi]["arguments"] if pi is not None else {}
        for key, value in exp_args.items():
            if key not in pred_args:
                missing += 1
            elif json_equal(value, pred_args[key]):
                correct += 1
            else:
                wrong += 1
        extra += sum(1 for key in pred_args if key not in exp_args)
    paired = {pi for _, pi in pairs if pi is not None}
    record.update(
        names_correct=well_formed and sorted(c["name"] for c in predicted) == sorted(c["name"] for c in expected),
        args_exact=well_formed and _exact_match(expected, predicted),
        args_total=sum(len(c["arguments"]) for c in expected),
        args_correct=correct,
        args_missing=missing,
        args_wrong=wrong,
        args_extra=extra,
        calls_extra=len(predicted) - len(paired),
        calls_exact=sum(
            1 for ei, pi in pairs if pi is not None and json_equal(expected[ei]["arguments"], predicted[pi]["arguments"])
        ),
    )
    return record


def _error_kind(error: str) -> str:
    """A parse error without the quoted call text, for counting by kind."""
    return error.split(": '", 1)[0].split(': "', 1)[0]


def summarize(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Add up per-turn records into ``{"metrics", "counts", "errors", "lenient"}``.

    ``errors`` counts parse errors by kind; ``lenient`` counts, by name, what the well-formed turns
    needed beyond the exact layout.

    A metric whose denominator is 0 is None (e.g. ``wrong_call_rate`` when every turn should call).
    """
    call = [r for r in records if r["expected_call"]]
    counts = {
        "turns": len(records),
        "call_turns": len(call),
        "no_call_turns": len(records) - len(call),
        "well_formed": sum(r["well_formed"] for r in records),
        "lenient": sum(bool(r["well_formed"] and r.get("lenient")) for r in records),
        "malformed": sum(not r["well_formed"] for r in records),
        "truncated": sum(r["truncated"] for r in records),
        "decision_correct": sum(r["decision_correct"] for r in records),
        "names_correct": sum(r["names_correct"] for r in call),
        "args_exact": sum(r["args_exact"] for r in call),
        "args_total": sum(r["args_total"] for r in call),
        "args_correct": sum(r["args_correct"] for r in call),
        "args_missing": sum(r["args_missing"] for r in call),
        "args_wrong": sum(r["args_wrong"] for r in call),
        "args_extra": sum(r["args_extra"] for r in call),
        "calls_expected": sum(len(r["expected"]) for r in call),
        "calls_predicted": sum(len(r["predicted"]) for r in records),
        "calls_exact": sum(r["calls_exact"] for r in call),
        "wrong_calls": sum(r["wrong_call"] for r in records if not r["expected_call"]),
    }
    metrics = {
        name: (counts[num] / counts[den] if counts[den] else None) for name, (num, den) in METRICS.items()
    }
    errors = Counter(_error_kind(r["error"]) for r in records if r["error"])
    drift = Counter(name for r in records if r["well_formed"] for name in r.get("lenient") or ())
    return {"metrics": metrics, "counts": counts, "errors": dict(errors.most_common()),
            "lenient": dict(drift.most_common())}


def format_table(report: Mapping[str, Any]) -> str:
    """The metrics as a small aligned table (value and the counts behind it)."""
    counts = report["counts"]
    rows = [("metric", "value", "count")]
    for name, (num, den) in METRICS.items():
        value = report["metrics"][name]
        rows.append((name, "-" if value is None else f"{value:.3f}", f"{counts[num]}/{counts[den]}"))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = [f"{a:<{widths[0]}}  {b:>{widths[1]}}  {c:>{widths[2]}}" for a, b, c in rows]
    lines.insert(1, "-" * len(lines[0]))
    extra = (f"{report.get('conversations', '?')} conversations, {counts['turns']} turns ({counts['call_turns']} with calls); "
             f"{counts['malformed']} malformed, {counts['truncated']} truncated; arguments: {counts['args_missing']} missing, "
             f"{counts['args_wrong']} wrong, {counts['args_extra']} extra")
    lines.append(extra)
    if report.get("errors"):
        lines.append("parse errors: " + "; ".join(f"{k} ({v})" for k, v in report["errors"].items()))
    if report.get("lenient"):
        lines.append("read leniently (format drift): " + "; ".join(f"{k} ({v})" for k, v in report["lenient"].items()))
    return "\n".join(lines)


def _big_ints_as_text(value: Any) -> Any:
    """`value` with integers too long for Python's int-to-text limit written as strings of digits."""
    if isinstance(value, Mapping):
        return {k: _big_ints_as_text(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_big_ints_as_text(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 14_000:
        return int_text(value)
    return value


def dumps_report(report: Mapping[str, Any]) -> str:
    """The report as JSON text (non-ASCII kept).

    A model can write an integer of more than 4,300 digits, which `parse_assistant` reads exactly but
    Python's `json` cannot write: such values are written as strings of their digits.
    """
    try:
        return json.dumps(report, ensure_ascii=False, indent=1)
    except ValueError:
        return json.dumps(_big_ints_as_text(report), ensure_ascii=False, indent=1)
