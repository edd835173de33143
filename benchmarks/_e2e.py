"""End-to-end preprocessing (`preprocess.py --mode e2e`): from the data file on disk to the tokenized
Arrow dataset, as a training run waits for it.

- ours: `prepare_dataset_file` (read, detect, validate, render once, write the prepared JSONL) ->
  `datasets.load_dataset("json")` -> axolotl's `TokenizedPromptDataset` (`datasets.map` of
  `minicpm_plugin.strategy`, batches of 1,000) in one process (`num_proc=None`: the map runs here);
- ours, `dataset_num_proc: 1` / `2`: the same as axolotl runs it with that setting: `datasets` maps in
  that many worker processes (forked, plus a manager process), and prepare gets the same number
  (it uses them for files of 4 MiB or more, as the plugin does);
- axolotl built-in: the original JSONL -> `load_dataset("json")` -> `TokenizedPromptDataset` of
  axolotl's `chat_template` strategy with MiniCPM3's template, in one process as ours;
- floor: one render + one tokenizer call (with offsets) per conversation, on conversations already
  in memory (no file, no Arrow, no labels).

Every method starts from nothing cached: each timed run gets fresh prepared/cache folders. The
methods take turns for the repeats after one untimed pass; wall-clock medians count (the 2-process
run does its work in child processes, so CPU time of this process says nothing there). Every row of
every method is checked as in the in-memory mode.
"""

from __future__ import annotations

import gc
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import _data
from _checks import FloorRow, check_outputs

E2E_METHODS = ("ours", "ours_np1", "ours_np2", "axolotl", "floor")
E2E_LABELS = {
    "ours": "ours: file -> prepare -> Arrow -> map, one process",
    "ours_np1": "ours, dataset_num_proc: 1 (map in 1 worker)",
    "ours_np2": "ours, dataset_num_proc: 2",
    "axolotl": "axolotl built-in: file -> Arrow -> map, one process",
    "floor": "floor: render + 1 tokenizer call, in memory",
}
#: dataset_num_proc of each of our runs (None: datasets maps in this process)
NUM_PROC = {"ours": None, "ours_np1": 1, "ours_np2": 2}


def _load_json(path: str | Path, cache: Path) -> Any:
    import datasets

    return datasets.load_dataset("json", data_files=str(path), split="train", cache_dir=str(cache))


def _tokenized(strategy: Any, dataset: Any, num_proc: int | None) -> Any:
    from axolotl.datasets import TokenizedPromptDataset

    return TokenizedPromptDataset(strategy, dataset, process_count=num_proc, keep_in_memory=False)


def ours_e2e(strategy: Any, raw: Path, wd: Path, num_proc: int | None = None,
             stages: dict[str, float] | None = None) -> Any:
    """The plugin's path: prepare (as `MiniCPM3Plugin.register` does), load, map."""
    from minicpm_plugin.formats.prepare import prepare_dataset_file

    t0 = time.perf_counter()
    prepared = prepare_dataset_file(raw, out_dir=wd / "prepared", literal_style=strategy.literal_style,
                                    num_proc=num_proc or 1)
    t1 = time.perf_counter()
    dataset = _load_json(prepared.path, wd / "hf")
    t2 = time.perf_counter()
    out = _tokenized(strategy, dataset, num_proc)
    if stages is not None:
        stages.update(prepare=t1 - t0, arrow=t2 - t1, map=time.perf_counter() - t2)
    return out


def builtin_e2e(strategy: Any, raw: Path, wd: Path) -> Any:
    return _tokenized(strategy, _load_json(raw, wd / "hf"), None)


def _rows(dataset: Any) -> list[tuple[list[int], list[int]]]:
    return list(zip(dataset["input_ids"], dataset["labels"], strict=True))


def run_e2e(tokenizer: Any, ours: Any, builtin: Any, sets: Mapping[str, list[dict[str, Any]]], wd: Path,
            repeats: int, floor_rows: Callable[[Any, Sequence[Any]], list[FloorRow]],
            log: Callable[[str], None] = print, methods: Sequence[str] = E2E_METHODS) -> dict[str, Any]:
    """Time the methods (all of E2E_METHODS by default; "floor" is always run, it is the reference) on
    each data set; return timings, ratios, stage times and checks."""
    methods = [m for m in E2E_METHODS if m in methods or m == "floor"]
    report: dict[str, Any] = {"mode": "e2e", "n": {k: len(v) for k, v in sets.items()}, "repeats": repeats,
                              "sets": {}}
    for name, convs in sets.items():
        raw = wd / f"e2e_{name}.jsonl"
        _data.write_jsonl(raw, convs)

        def once(method: str, keep: bool, stages: dict[str, float] | None = None,
                 convs: list[dict[str, Any]] = convs, raw: Path = raw) -> Any:
            run_dir = Path(tempfile.mkdtemp(prefix=f"{method}-", dir=wd))
            try:
                if method == "floor":
                    result = floor_rows(tokenizer, convs)
                    return result if keep else None
                if method == "axolotl":
                    ds = builtin_e2e(builtin, raw, run_dir)
                else:
                    ds = ours_e2e(ours, raw, run_dir, NUM_PROC[method], stages)
                return _rows(ds) if keep else None
            finally:
                shutil.rmtree(run_dir, ignore_errors=True)

        for method in methods:  # untimed warm-up: imports, tokenizer caches, compiled templates
            once(method, keep=False)
        seconds: dict[str, list[float]] = {m: [] for m in methods}
        stage_runs: list[dict[str, float]] = []
        for _ in range(repeats):
            for method in methods:
                gc.collect()
                stages: dict[str, float] = {}
                t0 = time.perf_counter()
                once(method, keep=False, stages=stages)
                seconds[method].append(time.perf_counter() - t0)
                if method == "ours":
                    stage_runs.append(stages)
        log(f"e2e {name}: {repeats} repeat(s) done")
        outputs = {m: once(m, keep=True) for m in methods}
        checks: dict[str, Any] = {}
        if "axolotl" in outputs:
            checks = check_outputs(tokenizer, convs, _load_json(raw, wd / "hf_check"),
                                   {"floor": outputs["floor"], "axolotl": outputs["axolotl"]})
        for m in ("ours", "ours_np1", "ours_np2"):
            if m in outputs:
                checks[m] = check_outputs(tokenizer, convs, None, {"floor": outputs["floor"], "ours": outputs[m]})["ours"]
        median = {m: statistics.median(s) for m, s in seconds.items()}
        n = len(convs)
        ratios = {"ours_vs_floor": ("floor", "ours"), "ours_vs_axolotl": ("axolotl", "ours"),
                  "np2_vs_np1": ("ours_np1", "ours_np2"), "np2_vs_ours": ("ours", "ours_np2")}
        report["sets"][name] = {
            "seconds": seconds, "median_s": median, "rows_per_s": {m: n / median[m] for m in methods},
            "tokens": sum(len(r.input_ids) for r in outputs["floor"]),
            **{k: median[a] / median[b] for k, (a, b) in ratios.items() if a in median and b in median},
            "ours_stages_median_s": {k: statistics.median(s[k] for s in stage_runs) for k in stage_runs[0]}
            if stage_runs else {},
            "checks": checks,
        }
    log(format_e2e(report))
    return report


def format_e2e(report: Mapping[str, Any]) -> str:
    lines = []
    for name, res in report["sets"].items():
        n = report["n"][name]
        lines += [f"\n### end to end, {name}: {n} conversations ({res['tokens'] / n:,.0f} tokens each), "
                  f"median of {report['repeats']}", "", "| method | wall s | rows/s | rows exact |", "|---|---:|---:|---:|"]
        for m in res["median_s"]:
            c = res["checks"].get(m)
            if m == "floor":
                exact = "reference"
            elif m == "axolotl":
                exact = f"{c['rows'] - c['any_wrong']} of {c['rows']}"
            else:
                exact = f"{c['rows'] - max(c['ids_differ'], c['labels_differ'])} of {c['rows']}"
            lines.append(f"| {E2E_LABELS[m]} | {res['median_s'][m]:.2f} | {res['rows_per_s'][m]:.1f} | {exact} |")
        ratios = [f"{label} = {res[key]:.2f}x" for key, label in (
            ("ours_vs_floor", "ours/floor"), ("ours_vs_axolotl", "ours/axolotl"),
            ("np2_vs_np1", "dataset_num_proc 2 vs 1"), ("np2_vs_ours", "2 vs one process")) if key in res]
        lines += ["", ", ".join(ratios)]
        st = res["ours_stages_median_s"]
        if st:
            lines.append(f"ours by stage: prepare {st['prepare']:.2f} s, Arrow load {st['arrow']:.2f} s, map {st['map']:.2f} s")
        ax = res["checks"].get("axolotl")
        if ax:
            lines.append(f"axolotl built-in: {ax['any_wrong']} of {ax['rows']} rows wrong: {ax['missing_bos']} without <s>, "
                         f"{ax['text_differs']} with text different from the official template {ax['text_differs_by_reason']}")
    return "\n".join(lines)
