"""Write the sample preference pairs the DPO recipe trains on. Deterministic: same files on every run.

    python examples/data/make_preference_data.py            # (re)writes the two files next to this script
    python examples/data/make_preference_data.py --check    # exit 1 if the files on disk differ

The pairs are cut from the tool-calling conversations of make_sample_data.py: the prompt is the
conversation up to an assistant turn (with its tools), `chosen` is that turn, and `rejected` is the
same turn made wrong in one of the ways tool-calling models go wrong:

- wrong_name:    calls a function that is not declared (a hallucinated name)
- other_tool:    calls another declared function with the same arguments
- wrong_value:   right function, one argument value changed (a city, a number, a flag, a nested field)
- missing_arg:   a required argument left out
- drop_parallel: one of several parallel calls left out
- refusal:       answers in text instead of calling
- extra_call:    calls a function where the right answer needs none

Files (TRL's conversational preference format, one JSON object per line: `prompt` messages, `chosen` and
`rejected` as one-message lists, `tools`; arguments are JSON strings as OpenAI sends them, thoughts are
`reasoning_content`):
- tool_preferences.jsonl       pairs from the 60 training conversations
- tool_preferences_eval.jsonl  pairs from the 8 held-out conversations whose prompt is not a training prompt
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import runpy
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SEED = 20241115
SFT = runpy.run_path(str(HERE / "make_sample_data.py"))  # the conversations (and their tools) to cut pairs from

HALLUCINATED = {"get_weather": "weather_now", "convert_currency": "exchange_money", "search_flights": "find_flights",
                "create_event": "add_calendar_entry", "send_email": "email_send", "search_products": "shop_search",
                "calculate_bmi": "bmi", "set_thermostat": "thermostat_set", "translate_text": "translate",
                "lookup_order": "get_order_status"}
REFUSALS = {"en": "Sorry, I can't do that for you; I have no access to live services.",
            "zh": "抱歉，我无法帮你完成这个操作。"}
OTHER_CITIES = ["Berlin", "Sydney", "广州", "Madrid", "Seoul"]


def _args(call: dict[str, Any]) -> dict[str, Any]:
    return json.loads(call["function"]["arguments"])


def _with_args(call: dict[str, Any], args: dict[str, Any], name: str | None = None) -> dict[str, Any]:
    out = copy.deepcopy(call)
    out["function"]["arguments"] = json.dumps(args, ensure_ascii=False)
    if name is not None:
        out["function"]["name"] = name
    return out


def _changed(value: Any, rng: random.Random) -> Any:
    """A different value of the same kind (what a model gets wrong when it picks the wrong value)."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + rng.choice([1, 10, -1]) if value != 0 else 1
    if isinstance(value, float):
        return round(value * 10, 2)
    if isinstance(value, str):
        return rng.choice([c for c in OTHER_CITIES if c != value]) if len(value) < 20 else value[: len(value) // 2]
    if value is None:
        return "none"
    if isinstance(value, list):
        return value[:-1] if value else ["unknown"]
    if isinstance(value, dict):
        key = sorted(value)[0] if value else "x"
        return {**value, key: _changed(value.get(key), rng)}
    return value


def _language(text: str) -> str:
    return "zh" if any("\u4e00" <= ch <= "\u9fff" for ch in text) else "en"


def _required(tools: list[dict[str, Any]], name: str) -> list[str]:
    for tool in tools:
        if tool["function"]["name"] == name:
            return list(tool["function"]["parameters"].get("required", []))
    return []


def rejected_for(chosen: dict[str, Any], tools: list[dict[str, Any]], user: str, kind: str,
                 rng: random.Random) -> dict[str, Any]:
    """`chosen` made wrong in the way `kind` names (see the module doc)."""
    out: dict[str, Any] = {"role": "assistant", "content": chosen.get("content", "")}
    if chosen.get("reasoning_content"):
        out["reasoning_content"] = chosen["reasoning_content"]
    calls = chosen.get("tool_calls") or []
    first = calls[0] if calls else None
    if kind == "refusal":
        return {"role": "assistant", "content": REFUSALS[_language(user)]}
    if kind == "extra_call":
        return {"role": "assistant", "content": "", "tool_calls": [
            {"id": "call_x", "type": "function", "function": {"name": tools[0]["function"]["name"],
                                                               "arguments": json.dumps({"city": "Beijing"})}}]}
    assert first is not None, kind
    name = first["function"]["name"]
    if kind == "wrong_name":
        out["tool_calls"] = [_with_args(first, _args(first), HALLUCINATED[name]), *calls[1:]]
    elif kind == "other_tool":
        other = next(t["function"]["name"] for t in tools if t["function"]["name"] != name)
        out["tool_calls"] = [_with_args(first, _args(first), other), *calls[1:]]
    elif kind == "wrong_value":
        args = _args(first)
        key = rng.choice(sorted(args))
        out["tool_calls"] = [_with_args(first, {**args, key: _changed(args[key], rng)}), *calls[1:]]
    elif kind == "missing_arg":
        args = _args(first)
        required = [k for k in _required(tools, name) if k in args]
        drop = rng.choice(required or sorted(args))
        out["tool_calls"] = [_with_args(first, {k: v for k, v in args.items() if k != drop}), *calls[1:]]
    elif kind == "drop_parallel":
        out["tool_calls"] = copy.deepcopy(calls[:-1])
    else:  # pragma: no cover
        raise ValueError(kind)
    return out


CALL_KINDS = ["wrong_name", "wrong_value", "refusal", "other_tool", "missing_arg", "wrong_value"]


def pairs_of(row: dict[str, Any], rng: random.Random) -> list[dict[str, Any]]:
    """One pair per assistant turn that calls, and per direct answer to a user turn."""
    messages, tools = row["messages"], row["tools"]
    out = []
    for i, msg in enumerate(messages):
        if msg["role"] != "assistant" or messages[i - 1]["role"] != "user":
            continue
        user = messages[i - 1]["content"]
        calls = msg.get("tool_calls") or []
        if len(calls) > 1:
            kind = rng.choice(["drop_parallel", "wrong_value", "wrong_name"])
        elif calls:
            kind = CALL_KINDS[rng.randrange(len(CALL_KINDS))]
        else:
            kind = "extra_call"
            if tools[0]["function"]["name"] != "get_weather":
                continue
        rejected = rejected_for(msg, tools, user, kind, rng)
        out.append({"prompt": messages[:i], "chosen": [msg], "rejected": [rejected], "tools": tools, "kind": kind})
    return out


def make_pairs() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    train_rows, eval_rows = SFT["make_tool_rows"]()
    rng = random.Random(SEED)
    train = [p for row in train_rows for p in pairs_of(row, rng)]
    seen = {json.dumps(p["prompt"], sort_keys=True) for p in train}
    # The SFT generator keeps held-out conversations apart by their first request; a few still repeat a
    # training prompt word for word (fixed questions), and those pairs would not be held out.
    held_out = [p for row in eval_rows for p in pairs_of(row, rng)
                if json.dumps(p["prompt"], sort_keys=True) not in seen]
    return train, held_out


def render_files() -> dict[str, str]:
    train, held_out = make_pairs()

    def jsonl(rows: list[dict[str, Any]]) -> str:
        return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)

    return {"tool_preferences.jsonl": jsonl(train), "tool_preferences_eval.jsonl": jsonl(held_out)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare with the files on disk")
    parser.add_argument("--out", type=Path, default=HERE, help="output folder (default: next to this script)")
    args = parser.parse_args(argv)
    stale = []
    for name, text in render_files().items():
        path = args.out / name
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path} ({text.count(chr(10))} pairs)")
    if stale:
        print("out of date: " + ", ".join(stale) + " (run examples/data/make_preference_data.py)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
