"""Correctness checks shared by the preprocessing benchmarks: the official rendering tokenized once
(the floor's rows) is the reference for ids, and an independent character mask for labels; what
axolotl's built-in path trains differently is counted by reason."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from minicpm_plugin.chat.spans import Rendered

IGNORE = -100
Row = tuple[list[int], list[int]]  # (input_ids, labels); labels empty where a method gives none


@dataclass
class FloorRow:
    rendered: Rendered
    input_ids: list[int]
    offsets: list[tuple[int, int]]



# ---- reference labels (independent of minicpm_plugin.tokenize) ----------------------------------

def reference_labels(row: FloorRow, messages: Sequence[Mapping[str, Any]]) -> list[int]:
    """A token is trained iff one of its characters lies in an assistant thought/calls/content/end."""
    mask = bytearray(len(row.rendered.text))
    for span in row.rendered.spans:
        m = span.message_index
        if span.is_assistant_output and m is not None and messages[m].get("train", True) is not False:
            mask[span.start:span.end] = b"\x01" * (span.end - span.start)
    labels = []
    for tid, (s, e) in zip(row.input_ids, row.offsets, strict=True):
        labels.append(tid if e > s and any(mask[s:e]) else IGNORE)
    return labels


# ---- what axolotl's built-in path gets wrong ------------------------------------------------------

def _floats(value: Any, path: str = "") -> Iterator[tuple[str, float]]:
    if isinstance(value, float):
        yield path, value
    elif isinstance(value, Mapping):
        for k, v in value.items():
            yield from _floats(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _floats(v, f"{path}[{i}]")


def _lookup(value: Any, path: str) -> Any:
    for key, index in re.findall(r"\.([^.\[]+)|\[(\d+)\]", path):
        if value is None:
            return None
        value = value[int(index)] if index else value.get(key) if isinstance(value, Mapping) else None
    return value


def _has_null(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, Mapping):
        return any(_has_null(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_null(v) for v in value)
    return False


def _calls(messages: Sequence[Mapping[str, Any]]) -> Iterator[tuple[int, int, Any]]:
    for i, m in enumerate(messages):
        for j, call in enumerate(m.get("tool_calls") or []):
            yield i, j, (call.get("function") or call).get("arguments")


def axolotl_reasons(original: Mapping[str, Any], arrow_row: Mapping[str, Any], text: str, ref_text: str) -> list[str]:
    """Why the text axolotl trained differs from the official rendering of the original data."""
    reasons = []
    if any(_has_null(args) for _, _, args in _calls(original["messages"])):
        reasons.append("null argument deleted")
    arrow_msgs = arrow_row["messages"]
    for i, j, args in _calls(original["messages"]):
        got = (arrow_msgs[i]["tool_calls"][j].get("function") or {}).get("arguments")
        if isinstance(got, str):
            got = json.loads(got)
        if any(json.dumps(_lookup(got, p)) != json.dumps(v) for p, v in _floats(args)):
            reasons.append("float changed by the JSON/Arrow load")
            break
    for marker, reason in (("<|im_start|>", "turn dropped"), ("<|tool_call_start|>", "tool calls dropped"),
                           ("<|thought_start|>", "thought dropped")):
        if text.count(marker) < ref_text.count(marker):
            reasons.append(reason)
    return reasons or ["other"]


def check_outputs(tokenizer: Any, convs: Sequence[Mapping[str, Any]], arrow: Any,
                  outputs: Mapping[str, Any]) -> dict[str, Any]:
    """Compare each method's rows (those of `outputs` besides "floor", the reference) with the official
    rendering and the reference labels."""
    floor: list[FloorRow] = outputs["floor"]
    refs = [(r.input_ids, reference_labels(r, c["messages"])) for r, c in zip(floor, convs, strict=True)]
    out: dict[str, Any] = {}

    if "ours" in outputs:
        ours = outputs["ours"]
        out["ours"] = {
            "rows": len(ours),
            "ids_differ": sum(1 for (a, _), (b, _) in zip(ours, refs, strict=True) if a != b),
            "labels_differ": sum(1 for (_, a), (_, b) in zip(ours, refs, strict=True) if a != b),
        }

    if "axolotl" not in outputs:
        return out
    reasons: Counter[str] = Counter()
    ax = {"rows": len(outputs["axolotl"]), "missing_bos": 0, "text_differs": 0, "labels_differ_same_text": 0,
          "any_wrong": 0}
    bos = tokenizer.bos_token_id
    for i, ((ids, labels), (ref_ids, ref_labels)) in enumerate(zip(outputs["axolotl"], refs, strict=True)):
        wrong = False
        if not ids or ids[0] != bos:
            ax["missing_bos"] += 1
            wrong = True
        body, ref_body, ref_lab = (ids[1:], ref_ids[1:], ref_labels[1:]) if ids[:1] == [bos] else (ids, ref_ids[1:], ref_labels[1:])
        if body != ref_body:
            ax["text_differs"] += 1
            wrong = True
            text = tokenizer.decode(body, skip_special_tokens=False)
            ref_text = floor[i].rendered.text
            reasons.update(axolotl_reasons(convs[i], arrow[i], text, ref_text))
        elif (labels[1:] if ids[:1] == [bos] else labels) != ref_lab:
            ax["labels_differ_same_text"] += 1
            wrong = True
        ax["any_wrong"] += wrong
    ax["text_differs_by_reason"] = dict(sorted(reasons.items()))
    out["axolotl"] = ax

    if "official" not in outputs:
        return out
    off = outputs["official"]
    out["official"] = {
        "rows": len(off),
        "ids_differ": sum(1 for (a, _), (b, _) in zip(off, refs, strict=True) if a != b),
        "rows_with_tool_turns_dropped": sum(1 for c in convs if any(m["role"] == "tool" for m in c["messages"])),
        "rows_with_calls_or_thoughts_dropped": sum(
            1 for c in convs if any(m.get("tool_calls") or m.get("thought") for m in c["messages"])),
        "tokens_vs_official_template": sum(len(a) for a, _ in off) / max(1, sum(len(b) for b, _ in refs)),
    }
    return out
