"""Preprocessing benchmark: conversations -> input_ids/labels, four ways (+ a batched floor), one process.

    .venv/bin/python benchmarks/preprocess.py                 # 2,000 tool-call + 2,000 plain chats, 3 repeats
    .venv/bin/python benchmarks/preprocess.py --n 200 --repeats 1 --json out.json

(a) ours: `minicpm_plugin.strategy.load(...).tokenize_prompt(batch)` on batches of rows as the plugin
    prepares them (`prepare_dataset_file`) and axolotl loads them (Arrow `datasets.Dataset` from JSONL).
(b) axolotl 0.19's built-in `chat_template` strategy with MiniCPM3's template (`chat_template: jinja`),
    on the original JSONL loaded into Arrow by `datasets`, as axolotl loads `ds_type: json`.
(c) the official finetune.py per-message loop (re-implemented from its logic), without the padding.
(d) the floor: one render (`render_conversation`, the code under `render_chat`) plus one tokenizer
    call with offsets per conversation; no labels.
(d') the same renders, tokenized with one tokenizer call per batch (as ours and `datasets.map` batch):
    the floor for any batched strategy, so ours/(d') is our whole labelling and row-handling overhead.

Batches are taken out of Arrow before timing (as `datasets.map` hands them over); the timers cover
only the strategy calls, batch by batch (`--batch-size`, axolotl's 1000; the per-conversation methods
get the same chunks), and each batch's rows are let go as `datasets.map` does. Every method runs once
untimed first (the tokenizer's word cache and transformers' compiled-template cache are warm for all),
then the methods take turns for `--repeats` rounds; the median time counts (wall clock, and process
CPU time, which is steadier on a machine shared with other work). The inputs of all methods are kept
out of the garbage collector's walks (`gc.freeze()`; in axolotl they sit in Arrow, not in Python
objects), so that a method that allocates more is not charged for walking the others' inputs. A
last untimed pass keeps every method's rows for the checks. The tokenizer runs on one thread
(TOKENIZERS_PARALLELISM=false unless the environment says otherwise). Each method's rows are checked
against the official rendering (`render_chat`) and an independent character-mask labelling.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Set by main() only: importing this module (as the tests do) must not change the environment that
#: later subprocesses inherit (no progress bars there would hide what other tests read from logs).
BENCH_ENV = {
    "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "AXOLOTL_DO_NOT_TRACK": "1",
    "WANDB_MODE": "disabled", "TOKENIZERS_PARALLELISM": "false", "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
}

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _data  # noqa: E402
from _checks import IGNORE, FloorRow, Row, axolotl_reasons, check_outputs, reference_labels  # noqa: E402,F401

from minicpm_plugin.chat import render_conversation  # noqa: E402

METHODS = ("ours", "axolotl", "official", "floor", "floor_batched")
LABELS = {
    "ours": "(a) ours: minicpm_plugin.strategy",
    "axolotl": "(b) axolotl chat_template + MiniCPM3 template",
    "official": "(c) official finetune.py loop (no padding)",
    "floor": "(d) floor: render + 1 tokenizer call",
    "floor_batched": "(d') floor, batched: 1 tokenizer call per batch",
}


# ---- the four methods ----------------------------------------------------------------------------

def official_rows(tokenizer: Any, conversations: Sequence[Mapping[str, Any]]) -> list[Row]:
    """The official finetune.py preprocessing for MiniCPM3/4 (eos id 73440 branch), minus the padding.

    Per message: a user turn is the template applied to that one message with the generation prompt
    (tokenized twice: once for the ids, once for the mask length), a system turn is the template
    applied to it, an assistant turn is its `content` encoded twice (ids and labels); any other role
    is skipped. `<s>` first, one EOS at the very end (trained).
    """
    rows = []
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    for conv in conversations:
        ids, labels = [bos], [IGNORE]
        for message in conv["messages"]:
            role = message["role"]
            # The loop tokenizes the message with the template before looking at the role.
            turn_ids = tokenizer.apply_chat_template([message], return_dict=False)
            if role == "user":
                prompt = tokenizer.apply_chat_template([message], add_generation_prompt=True, return_dict=False)
                ids += prompt
                labels += [IGNORE] * len(
                    tokenizer.apply_chat_template([message], add_generation_prompt=True, return_dict=False))
            elif role == "system":
                ids += turn_ids
                labels += [IGNORE] * len(turn_ids)
            elif role == "assistant":
                ids += tokenizer.encode(message["content"], add_special_tokens=False)
                labels += tokenizer.encode(message["content"], add_special_tokens=False)
        ids.append(eos)
        labels.append(eos)
        rows.append((ids, labels))
    return rows


def floor_rows(tokenizer: Any, conversations: Sequence[Mapping[str, Any]]) -> list[FloorRow]:
    """One render and one tokenizer call (with offsets) per conversation: no method can do less."""
    out = []
    for conv in conversations:
        r = render_conversation(conv["messages"], conv.get("tools"))
        enc = tokenizer(r.text, return_offsets_mapping=True, add_special_tokens=True, return_attention_mask=False)
        out.append(FloorRow(r, enc["input_ids"], enc["offset_mapping"]))
    return out


def floor_batched_rows(tokenizer: Any, conversations: Sequence[Mapping[str, Any]]) -> list[FloorRow]:
    """The same renders, tokenized with one tokenizer call for the whole batch."""
    rendered = [render_conversation(c["messages"], c.get("tools")) for c in conversations]
    enc = tokenizer([r.text for r in rendered], return_offsets_mapping=True, add_special_tokens=True,
                    return_attention_mask=False)
    return [FloorRow(r, ids, offs) for r, ids, offs in zip(rendered, enc["input_ids"], enc["offset_mapping"], strict=True)]


def strategy_rows(strategy: Any, batch: dict[str, list[Any]], lists: bool = True) -> list[Row]:
    """What `datasets.map(strategy.tokenize_prompt, batched=True)` gets back for one batch, as lists
    (ours gives numpy arrays; `lists=False` leaves them, for the timed passes)."""
    out = strategy.tokenize_prompt(batch)
    rows = zip(out.get("input_ids", []), out.get("labels", []), strict=True)
    if not lists:
        return list(rows)
    return [(_as_list(ids), _as_list(labels)) for ids, labels in rows]


def _as_list(values: Any) -> list[int]:
    return values.tolist() if hasattr(values, "tolist") else list(values)


def process(fn: Callable[[Any], list[Any]], batches: Sequence[Any], keep: bool) -> tuple[list[Any], int]:
    """Run `fn` batch by batch; count tokens; keep the rows only when asked.

    `datasets.map` writes each batch's output to Arrow and lets the Python objects go; keeping millions of
    rows alive in timed passes would only measure Python's garbage collector walking them.
    """
    kept: list[Any] = []
    tokens = 0
    for batch in batches:
        rows = fn(batch)
        tokens += sum(len(r.input_ids) if isinstance(r, FloorRow) else len(r[0]) for r in rows)
        if keep:
            kept.extend(rows)
    return kept, tokens


# ---- the run --------------------------------------------------------------------------------------

@dataclass
class Timing:
    seconds: list[float] = field(default_factory=list)
    #: process CPU time of each repeat: steadier than wall time on a machine shared with other work
    cpu_seconds: list[float] = field(default_factory=list)
    samples: int = 0
    tokens: int = 0

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def cpu_median(self) -> float:
        return statistics.median(self.cpu_seconds)

    def as_dict(self) -> dict[str, Any]:
        return {"seconds": self.seconds, "cpu_seconds": self.cpu_seconds, "median_s": self.median,
                "cpu_median_s": self.cpu_median, "samples": self.samples, "tokens": self.tokens,
                "samples_per_s": self.samples / self.median, "tokens_per_s": self.tokens / self.median}


def load_tokenizer(path: str | None, workdir: Path, vocab: int | None = None) -> Any:
    """The tokenizer at `path`, or a MiniCPM3-style BPE tokenizer (MiniCPM3's special tokens, BOS/EOS
    settings and template) saved and reloaded as axolotl loads it: the tiny model's (3k pieces), or
    with `vocab` pieces trained on the tiny corpus plus rendered synthetic conversations (seed 101,
    not the benchmark's data)."""
    from transformers import AutoTokenizer

    if path is None:
        from minicpm_plugin.tools.tiny_model import build_tiny_tokenizer, corpus_lines

        path = str(workdir / f"tokenizer{vocab or ''}")
        if vocab is None:
            build_tiny_tokenizer().save_pretrained(path)
        else:
            convs = _data.tool_conversations(400, seed=101) + _data.plain_conversations(400, seed=101)
            texts = [render_conversation(c["messages"], c.get("tools")).text for c in convs]
            lines = corpus_lines() + [line for t in texts for line in t.splitlines(keepends=True)]
            build_tiny_tokenizer(lines=lines, vocab_size=vocab).save_pretrained(path)
    return AutoTokenizer.from_pretrained(path)


def _arrow_batches(jsonl: Path, cache: Path, batch_size: int) -> tuple[Any, list[dict[str, list[Any]]]]:
    import datasets

    ds = datasets.load_dataset("json", data_files=str(jsonl), split="train", cache_dir=str(cache))
    return ds, [ds[i:i + batch_size] for i in range(0, len(ds), batch_size)]


def build_strategies(tokenizer: Any, workdir: Path, sequence_len: int) -> tuple[Any, Any]:
    """(ours, axolotl's built-in) strategies, created through their `load` entry points."""
    from axolotl.prompt_strategies import chat_template
    from axolotl.utils.dict import DictDefault

    from minicpm_plugin import CHAT_TEMPLATE
    from minicpm_plugin import strategy as ours

    cfg = DictDefault({
        "sequence_len": sequence_len, "train_on_inputs": False, "base_model": "tiny-minicpm3",
        "dataset_prepared_path": str(workdir / "prepared_axolotl"),
        "chat_template": "jinja", "chat_template_jinja": CHAT_TEMPLATE,
        "datasets": [{"path": "bench.jsonl", "type": "minicpm_plugin.strategy"}],
    })
    builtin = chat_template.load(tokenizer, cfg, {"type": "chat_template", "field_messages": "messages"})
    return ours.load(tokenizer, cfg), builtin


def run(n: int = 2000, n_plain: int | None = None, repeats: int = 3, batch_size: int = 1000, seed: int = 0,
        sequence_len: int = 32768, tokenizer_path: str | None = None, workdir: str | None = None,
        log: Callable[[str], None] = print, vocab: int | None = None) -> dict[str, Any]:
    """Run the benchmark; return timings, ratios and correctness counts per data set."""
    import logging

    for name in ("axolotl", "datasets"):
        logging.getLogger(name).setLevel(logging.ERROR)
    tmp = tempfile.TemporaryDirectory(prefix="minicpm3-bench-") if workdir is None else None
    wd = Path(workdir or tmp.name)  # type: ignore[union-attr]
    wd.mkdir(parents=True, exist_ok=True)
    try:
        return _run(n, n if n_plain is None else n_plain, repeats, batch_size, seed, sequence_len, tokenizer_path, wd, log,
                    vocab)
    finally:
        if tmp is not None:
            tmp.cleanup()


def _run(n: int, n_plain: int, repeats: int, batch_size: int, seed: int, sequence_len: int,
         tokenizer_path: str | None, wd: Path, log: Callable[[str], None], vocab: int | None) -> dict[str, Any]:
    from minicpm_plugin.formats.prepare import prepare_dataset_file

    tokenizer = load_tokenizer(tokenizer_path, wd, vocab)
    ours, builtin = build_strategies(tokenizer, wd, sequence_len)
    sets = {"tools": _data.tool_conversations(n, seed), "plain": _data.plain_conversations(n_plain, seed)}
    inputs: dict[str, dict[str, Any]] = {}
    for name, convs in sets.items():
        raw = wd / f"{name}.jsonl"
        _data.write_jsonl(raw, convs)
        prepared = prepare_dataset_file(raw, out_dir=wd / "prepared_plugin")
        _, ours_batches = _arrow_batches(Path(prepared.path), wd / "hf_cache", batch_size)
        arrow, builtin_batches = _arrow_batches(raw, wd / "hf_cache", batch_size)
        inputs[name] = {"ours": ours_batches, "axolotl": builtin_batches, "arrow": arrow}

    def call(method: str, name: str, keep: bool) -> tuple[list[Any], int]:
        if method == "ours":
            return process(lambda b: strategy_rows(ours, b, keep), inputs[name]["ours"], keep)
        if method == "axolotl":
            return process(lambda b: strategy_rows(builtin, b, keep), inputs[name]["axolotl"], keep)
        chunks = [sets[name][k:k + batch_size] for k in range(0, len(sets[name]), batch_size)]
        fn = {"official": official_rows, "floor": floor_rows, "floor_batched": floor_batched_rows}[method]
        return process(lambda b: fn(tokenizer, b), chunks, keep)

    log(f"tokenizer: {tokenizer_path or 'tiny MiniCPM3 (built offline)'}, vocab {len(tokenizer)}; "
        f"TOKENIZERS_PARALLELISM={os.environ.get('TOKENIZERS_PARALLELISM')}; batch {batch_size}; "
        f"{repeats} timed repeat(s) after one untimed pass")
    timings = {name: {m: Timing() for m in METHODS} for name in sets}
    # The inputs of all methods stay alive as Python objects for the whole run (in axolotl they sit in
    # Arrow); keep them out of the garbage collector's walks so each method pays for its own objects.
    gc.collect()
    gc.freeze()
    for name in sets:
        for method in METHODS:  # untimed warm-up pass
            _, timings[name][method].tokens = call(method, name, keep=False)
            timings[name][method].samples = len(sets[name])
    for rep in range(repeats):
        for name in sets:
            for method in METHODS:
                gc.collect()
                t0, c0 = time.perf_counter(), time.process_time()
                call(method, name, keep=False)
                timings[name][method].seconds.append(time.perf_counter() - t0)
                timings[name][method].cpu_seconds.append(time.process_time() - c0)
        log(f"repeat {rep + 1}/{repeats} done")
    gc.unfreeze()

    report: dict[str, Any] = {"n": {k: len(v) for k, v in sets.items()}, "repeats": repeats, "sets": {}}
    for name in sets:
        t = timings[name]
        # one more (untimed) pass that keeps every row, for the checks
        outputs = {method: call(method, name, keep=True)[0] for method in METHODS}
        checks = check_outputs(tokenizer, sets[name], inputs[name]["arrow"], outputs)
        del outputs
        report["sets"][name] = {
            "timings": {m: t[m].as_dict() for m in METHODS},
            "ours_vs_axolotl": t["axolotl"].median / t["ours"].median,
            "ours_vs_floor": t["floor"].median / t["ours"].median,
            "ours_vs_floor_batched": t["floor_batched"].median / t["ours"].median,
            "cpu": {k: t[m].cpu_median / t["ours"].cpu_median for k, m in
                    (("ours_vs_axolotl", "axolotl"), ("ours_vs_floor", "floor"), ("ours_vs_floor_batched", "floor_batched"))},
            "checks": checks,
        }
    total = {m: sum(timings[s][m].median for s in sets) for m in METHODS}
    report["all"] = {
        "median_s": total,
        "samples_per_s": {m: sum(len(v) for v in sets.values()) / total[m] for m in METHODS},
        "tokens_per_s": {m: sum(timings[s][m].tokens for s in sets) / total[m] for m in METHODS},
        "ours_vs_axolotl": total["axolotl"] / total["ours"],
        "ours_vs_floor": total["floor"] / total["ours"],
        "ours_vs_floor_batched": total["floor_batched"] / total["ours"],
    }
    cpu = {m: sum(timings[s][m].cpu_median for s in sets) for m in METHODS}
    report["all"]["cpu"] = {k: cpu[m] / cpu["ours"] for k, m in
                            (("ours_vs_axolotl", "axolotl"), ("ours_vs_floor", "floor"), ("ours_vs_floor_batched", "floor_batched"))}
    log(format_report(report))
    return report


def format_report(report: Mapping[str, Any]) -> str:
    """Markdown tables: speed per method and data set, ratios, and what (b) and (c) get wrong."""
    lines = []
    for name, res in report["sets"].items():
        n = report["n"][name]
        lines += [f"\n### {name}: {n} conversations, median of {report['repeats']}", "",
                  "| method | wall s | cpu s | samples/s | tokens/s | tokens |", "|---|---:|---:|---:|---:|---:|"]
        for m in METHODS:
            t = res["timings"][m]
            lines.append(f"| {LABELS[m]} | {t['median_s']:.2f} | {t['cpu_median_s']:.2f} | {t['samples_per_s']:.1f} | "
                         f"{t['tokens_per_s']:,.0f} | {t['tokens']:,} |")
        lines += ["", _ratios(res)]
        c = res["checks"]
        lines.append(f"ours: {c['ours']['ids_differ']} rows with ids and {c['ours']['labels_differ']} with labels "
                     f"different from the official rendering + reference labels (of {c['ours']['rows']})")
        ax = c["axolotl"]
        lines.append(f"(b): {ax['any_wrong']} of {ax['rows']} rows wrong: {ax['missing_bos']} without <s>, "
                     f"{ax['text_differs']} with text different from the official template "
                     f"{ax['text_differs_by_reason']}, {ax['labels_differ_same_text']} with wrong labels on the right text")
        o = c["official"]
        lines.append(f"(c): {o['ids_differ']} of {o['rows']} rows differ from the official template; tool turns dropped "
                     f"in {o['rows_with_tool_turns_dropped']}, calls/thoughts dropped in "
                     f"{o['rows_with_calls_or_thoughts_dropped']}; {o['tokens_vs_official_template']:.2f}x the tokens")
    a = report["all"]
    lines += ["", "### all", "", "| method | samples/s | tokens/s |", "|---|---:|---:|"]
    for m in METHODS:
        lines.append(f"| {LABELS[m]} | {a['samples_per_s'][m]:.1f} | {a['tokens_per_s'][m]:,.0f} |")
    lines += ["", _ratios(a)]
    return "\n".join(lines)


def _ratios(res: Mapping[str, Any]) -> str:
    """Speed of ours relative to (b), (d), (d'): wall-clock medians, CPU-time medians in brackets."""
    return ", ".join(f"ours/{label} = {res[key]:.2f}x ({res['cpu'][key]:.2f}x cpu)" for label, key in
                     (("(b)", "ours_vs_axolotl"), ("(d)", "ours_vs_floor"), ("(d')", "ours_vs_floor_batched")))


def e2e(n: int = 600, n_plain: int | None = None, repeats: int = 3, seed: int = 0, sequence_len: int = 32768,
        tokenizer_path: str | None = None, vocab: int | None = None, workdir: str | None = None,
        log: Callable[[str], None] = print, methods: Sequence[str] | None = None) -> dict[str, Any]:
    """The end-to-end mode (benchmarks/_e2e.py): from the file on disk to the tokenized Arrow dataset."""
    import logging

    import _e2e

    for name in ("axolotl", "datasets"):
        logging.getLogger(name).setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="minicpm3-e2e-", dir=workdir) as tmp:
        wd = Path(tmp)
        tokenizer = load_tokenizer(tokenizer_path, wd, vocab)
        ours, builtin = build_strategies(tokenizer, wd, sequence_len)
        sets = {"tools": _data.tool_conversations(n, seed)}
        if n_plain != 0:
            sets["plain"] = _data.plain_conversations(n if n_plain is None else n_plain, seed)
        log(f"tokenizer: {tokenizer_path or 'MiniCPM3-style BPE (built offline)'}, vocab {len(tokenizer)}; "
            f"TOKENIZERS_PARALLELISM={os.environ.get('TOKENIZERS_PARALLELISM')}; {repeats} timed repeat(s)")
        report = _e2e.run_e2e(tokenizer, ours, builtin, sets, wd, repeats, floor_rows, log,
                              methods or _e2e.E2E_METHODS)
        report["vocab"] = len(tokenizer)
        return report


def main(argv: Sequence[str] | None = None) -> int:
    for key, value in BENCH_ENV.items():
        os.environ.setdefault(key, value)
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=2000, help="tool-call conversations (default 2000)")
    p.add_argument("--n-plain", type=int, default=None, help="plain chats (default: same as --n)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=1000, help="rows per tokenize_prompt call (axolotl: 1000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sequence-len", type=int, default=32768, help="large, so no method drops a row")
    p.add_argument("--tokenizer", default=None, help="a tokenizer directory (default: the tiny MiniCPM3 one)")
    p.add_argument("--workdir", default=None, help="keep data and prepared files here (default: a temp dir)")
    p.add_argument("--json", default=None, help="also write the results here")
    p.add_argument("--mode", choices=("memory", "e2e", "scale"), default="memory",
                   help="memory: the strategies on rows already in Arrow batches (default); e2e: from the file on "
                        "disk to the tokenized Arrow dataset (benchmarks/_e2e.py); scale: prepare large files, time "
                        "per row and peak memory (benchmarks/_scale.py)")
    p.add_argument("--methods", default=None, help="e2e: methods to time, comma-separated (default: all; the floor "
                   "always runs): ours, ours_np1, ours_np2, axolotl")
    p.add_argument("--sizes", default="20000,200000", help="scale: rows of each generated file")
    p.add_argument("--procs", default="1,2", help="scale: prepare processes to try")
    p.add_argument("--vocab", type=int, default=None,
                   help="train a MiniCPM3-style BPE tokenizer of up to this many pieces (default: the tiny one, 3k)")
    args = p.parse_args(argv)
    if args.mode == "scale":
        import _scale

        with tempfile.TemporaryDirectory(prefix="minicpm3-scale-", dir=args.workdir) as tmp:
            report = _scale.run_scale([int(x) for x in args.sizes.split(",")], Path(tmp),
                                      [int(x) for x in args.procs.split(",")])
    elif args.mode == "e2e":
        report = e2e(args.n, args.n_plain, args.repeats, args.seed, args.sequence_len, args.tokenizer, args.vocab,
                     args.workdir, methods=args.methods.split(",") if args.methods else None)
    else:
        report = run(args.n, args.n_plain, args.repeats, args.batch_size, args.seed, args.sequence_len,
                     args.tokenizer, args.workdir, vocab=args.vocab)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1, default=str) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
