"""Preparing large files (`preprocess.py --mode scale`): time per row and peak memory of
`prepare_dataset_file` on generated tool-call JSONL files of growing size.

Each file is written one conversation at a time (the generator never holds the file's rows). Each
prepare runs in a fresh Python process that imports only `minicpm_plugin.formats` and tqdm (a bar
on stderr, fed by the same `progress` callback the plugin's bar uses); it reports its wall time,
its peak resident memory before and after preparing (VmHWM: the imports alone set the first), and
the largest peak of its worker processes (forked: that counts pages shared with the parent).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import _data

_CHILD = r"""
import json, os, resource, sys, time
from tqdm import tqdm
from minicpm_plugin.formats.prepare import prepare_dataset_file

def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

path, out, num_proc = sys.argv[1], sys.argv[2], int(sys.argv[3])
before = hwm()
t0 = time.perf_counter()
with tqdm(total=os.path.getsize(path), desc="preparing " + os.path.basename(path), unit="B", unit_scale=True,
          mininterval=10) as bar:
    prepared = prepare_dataset_file(path, out_dir=out, num_proc=num_proc, progress=bar.update)
seconds = time.perf_counter() - t0
children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
print(json.dumps({"seconds": seconds, "rows": prepared.rows, "written": prepared.written, "peak_before": before,
                  "peak": hwm(), "worker_peak": children, "out_bytes": os.path.getsize(prepared.path)}))
"""


def write_tool_file(path: Path, n: int, seed: int = 0) -> int:
    """`_data.tool_conversations(n, seed)` written one at a time; returns the file size."""
    rng = random.Random(f"tools-{seed}")
    with open(path, "w", encoding="utf-8") as fh:
        for _ in range(n):
            fh.write(json.dumps(_data.tool_conversation(rng), ensure_ascii=False) + "\n")
    return path.stat().st_size


def run_scale(sizes: Sequence[int], workdir: Path, num_procs: Sequence[int] = (1, 2),
              log: Callable[[str], None] = print) -> dict[str, Any]:
    report: dict[str, Any] = {"mode": "scale", "runs": []}
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).resolve().parents[1]),
                                                        os.environ.get("PYTHONPATH", "")]))
    for n in sizes:
        src = workdir / f"tools_{n}.jsonl"
        size = write_tool_file(src, n)
        for num_proc in num_procs:
            out = workdir / f"prepared_{n}_{num_proc}"
            proc = subprocess.run([sys.executable, "-c", _CHILD, str(src), str(out), str(num_proc)], env=env,
                                  stdout=subprocess.PIPE, text=True, check=True)
            result = json.loads(proc.stdout.strip().splitlines()[-1])
            result.update(n=n, num_proc=num_proc, in_bytes=size, ms_per_row=1000 * result["seconds"] / n)
            report["runs"].append(result)
            log(f"prepare {n:,} rows ({size / 2**20:,.0f} MiB), {num_proc} process(es): {result['ms_per_row']:.3f} ms/row")
            for f in out.iterdir():
                f.unlink()
            out.rmdir()
        src.unlink()
    log(format_scale(report))
    return report


def format_scale(report: dict[str, Any]) -> str:
    mib = 2**20
    lines = ["", "| rows | file MiB | processes | s | ms/row | rows/s | peak RSS MiB (after imports -> end) "
             "| worker peak MiB | prepared MiB |", "|---:|---:|---:|---:|---:|---:|---|---:|---:|"]
    for r in report["runs"]:
        worker = f"{r['worker_peak'] / mib:,.0f}" if r["num_proc"] > 1 else "-"
        lines.append(f"| {r['n']:,} | {r['in_bytes'] / mib:,.0f} | {r['num_proc']} | {r['seconds']:.1f} | "
                     f"{r['ms_per_row']:.3f} | {r['n'] / r['seconds']:,.0f} | {r['peak_before'] / mib:,.0f} -> "
                     f"{r['peak'] / mib:,.0f} | {worker} | {r['out_bytes'] / mib:,.0f} |")
    return "\n".join(lines)
