"""parse_assistant on pathological model output: the parser before this work vs now, one run each.

    .venv/bin/python benchmarks/parse_pathological.py                  # full sizes, 60 s per case
    .venv/bin/python benchmarks/parse_pathological.py --scale 0.01 --timeout 10 --json out.json

"before" is `minicpm_plugin/chat/parse.py` as it was at `--before` (default: the last commit with the
old parser), read with `git show` from this checkout into a temporary module; "after" is the file on
disk, in its default (lenient) reading and with ``strict=True``. Each case runs once, in its own
process (a fresh interpreter, so one case cannot slow the next), under a time limit: the old parser
takes minutes on some of them. The table shows process CPU time (the steadier measure on a shared
machine; the JSON has wall-clock time too) and "ratio", before / after (lenient). The outcome columns
say what each returned: the number of calls read, the error (first words) or the exception raised.
The last line times an empty Python loop, to compare runs made on different machines.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # this checkout's minicpm_plugin, also in the child processes
#: The last commit whose parse.py is the parser this work replaced (quadratic, could raise).
BEFORE_REF = "d69e864"
BLOCK = "<|tool_call_start|>\n```python\n"
END = "```\n<|tool_call_end|>\n"
LINE_JSON = 'search(q="天气 Paris",flag=true,limit=null,price=1.61,tags=["x", "y"],opts={"deep": false})\n'
LINE_PY = "search(q='天气 Paris',flag=True,limit=None,price=1.61,tags=['x', 'y'],opts={'deep': False})\n"


def _random_text(n: int) -> str:
    rng = random.Random(0)
    alphabet = [chr(c) for c in range(32, 127)] + list("\n\t中文é€") + ["<|tool_call_start|>", "```", "<|tool_call_end|>"]
    return "".join(rng.choice(alphabet) for _ in range(n))[:n]


#: name -> builder of the input for a size scale (1.0: the sizes in the name).
CASES: dict[str, Callable[[float], str]] = {
    "unclosed string, 8,000 x \\'": lambda s: BLOCK + "f(a='" + "\\'" * max(1, int(8_000 * s)),
    "unclosed string, 200 KB of \\'": lambda s: BLOCK + "f(a='" + "\\'" * max(1, int(100_000 * s)),
    "unclosed JSON string, 200 KB of \\\"": lambda s: BLOCK + 'f(a="' + '\\"' * max(1, int(100_000 * s)),
    "1 MB random text (with markers)": lambda s: _random_text(max(1, int(1_000_000 * s))),
    "1 MB random text in a call block": lambda s: BLOCK + _random_text(max(1, int(1_000_000 * s))),
    "1 MB of ((((( in a call block": lambda s: BLOCK + "(" * max(1, int(1_000_000 * s)),
    "deep brackets: 500k [ then 500k ]": lambda s: BLOCK + "f(a=" + "[" * int(500_000 * s) + "]" * int(500_000 * s) + ")\n" + END,
    "1 MB well-formed block (JSON literals)": lambda s: BLOCK + LINE_JSON * max(1, int(1_000_000 * s) // len(LINE_JSON)) + END,
    "1 MB well-formed block (Python literals)": lambda s: BLOCK + LINE_PY * max(1, int(1_000_000 * s) // len(LINE_PY)) + END,
    "1 MB of f() calls (densest)": lambda s: BLOCK + "f()\n" * max(1, int(250_000 * s)) + END,
    "5,000-digit integer": lambda s: BLOCK + f"f(n={'7' * 5000})\n" + END,
    "1 MB of 20,000-digit integers": lambda s: BLOCK + "f(" + ",".join(
        f"a{i}={'7' * 20_000}" for i in range(max(1, int(50 * s)))) + ")\n" + END,
}


def _load_before(ref: str, where: Path) -> Path | None:
    """The old parse.py written to `where`, or None when git or the commit is not there."""
    try:
        source = subprocess.run(["git", "-C", str(REPO), "show", f"{ref}:minicpm_plugin/chat/parse.py"],
                                capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    path = where / "parse_before.py"
    path.write_text(source, encoding="utf-8")
    return path


def _outcome(result: Any) -> str:
    if result["error"]:
        return "error: " + result["error"][:40]
    return f"{len(result['tool_calls'])} calls" + (f", lenient {result['lenient']}" if result.get("lenient") else "")


def run_one(case: str, scale: float, parser: str, strict: bool) -> dict[str, Any]:
    """Time one parse in this process (what the child process runs)."""
    sys.set_int_max_str_digits(4300)  # Python's default: the limit the old parser ran into
    if parser == "after":
        from minicpm_plugin.chat.parse import parse_assistant
    else:
        spec = importlib.util.spec_from_file_location("parse_before", parser)
        module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        spec.loader.exec_module(module)  # type: ignore[union-attr]
        parse_assistant = module.parse_assistant
    text = CASES[case](scale)
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        outcome = _outcome(parse_assistant(text, strict=strict))
    except Exception as exc:  # the old parser raised on some inputs: that is the finding
        outcome = f"raised {type(exc).__name__}"
    return {"wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu, "outcome": outcome,
            "chars": len(text)}


def _child(case: str, scale: float, parser: str, strict: bool, timeout: float) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--one", case, "--scale", str(scale), "--parser", parser]
    if strict:
        cmd.append("--strict")
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO)
    except subprocess.TimeoutExpired:
        return {"wall_s": None, "cpu_s": None, "outcome": f"not done after {timeout:g} s (stopped)"}
    if done.returncode != 0:
        return {"wall_s": None, "cpu_s": None, "outcome": f"crashed: {done.stderr.strip().splitlines()[-1:]}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def _machine_speed() -> float:
    """CPU seconds for 10 million empty Python loop iterations: to compare runs on other machines."""
    cpu = time.process_time()
    for _ in range(10_000_000):
        pass
    return time.process_time() - cpu


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0, help="input sizes relative to the names (default 1)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per case and parser (default 60)")
    parser.add_argument("--before", default=BEFORE_REF, help=f"git commit of the old parser (default {BEFORE_REF})")
    parser.add_argument("--json", metavar="OUT", help="write the results as JSON")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--parser", default="after", help=argparse.SUPPRESS)
    parser.add_argument("--strict", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(run_one(args.one, args.scale, args.parser, args.strict)))
        return {}
    results: dict[str, Any] = {"scale": args.scale, "timeout_s": args.timeout, "before": args.before,
                               "machine_loop_10m_cpu_s": _machine_speed(), "cases": {}}
    with tempfile.TemporaryDirectory() as tmp:
        before = _load_before(args.before, Path(tmp))
        if before is None:
            print(f"note: no parser at {args.before} (git show failed): the before column is empty", file=sys.stderr)
        for case in CASES:
            row = {
                "before": _child(case, args.scale, str(before), False, args.timeout) if before else None,
                "after": _child(case, args.scale, "after", False, args.timeout),
                "after_strict": _child(case, args.scale, "after", True, args.timeout),
            }
            results["cases"][case] = row
            print(f"done: {case}", file=sys.stderr)
    print(format_table(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    return results


def format_table(results: dict[str, Any]) -> str:
    head = ("case", "chars", "before cpu s", "after cpu s", "strict cpu s", "ratio", "before: outcome", "after: outcome")
    rows = [head]
    for case, row in results["cases"].items():
        before, after, strict = row["before"] or {}, row["after"], row["after_strict"]
        ratio = "-"
        if before.get("cpu_s") is not None and after["cpu_s"]:
            ratio = f"{before['cpu_s'] / after['cpu_s']:.1f}x"
        elif row["before"] and before.get("cpu_s") is None and after["cpu_s"]:
            ratio = f">{results['timeout_s'] / after['cpu_s']:.0f}x"
        rows.append((case, str(after.get("chars", "")), _seconds(before.get("cpu_s")), _seconds(after["cpu_s"]),
                     _seconds(strict["cpu_s"]), ratio, before.get("outcome", "-"), after["outcome"]))
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) if i in (0, 6, 7) else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
             for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    lines.append(f"(this machine: 10M empty Python loop iterations in {results['machine_loop_10m_cpu_s']:.2f} CPU s; "
                 f"stopped after {results['timeout_s']:g} s per case)")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
