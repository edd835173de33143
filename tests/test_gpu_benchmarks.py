"""The GPU benchmarks run where only torch, transformers, peft, accelerate (+ bitsandbytes) are installed.

The lent GPU machine has no axolotl, datasets, DeepSpeed, TRL, pydantic or liger-kernel. Here they are
installed, so each script runs in a Python whose site-packages is a copy of ours without them (a folder
of links, `python -S` + `site.addsitedir`): `import axolotl` there fails as it would on that machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ABSENT = ("axolotl", "datasets", "deepspeed", "trl", "pydantic", "pydantic_core", "liger_kernel", "torchao",
          "flash_attn", "fla")


def _is_absent(entry: str) -> bool:
    name = entry.split("-")[0].split(".")[0].lower()
    return name in ABSENT or any(entry.lower().startswith(f"{a}-") for a in ABSENT)


@pytest.fixture(scope="module")
def bare_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    site = Path(sysconfig.get_paths()["purelib"])
    out = tmp_path_factory.mktemp("bare-site")
    for entry in site.iterdir():
        if not _is_absent(entry.name):
            (out / entry.name).symlink_to(entry)
    return out


def _run(bare_site: Path, script: str, *args: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    boot = ("import runpy, site, sys; site.addsitedir(sys.argv[1]); "
            "sys.argv = [sys.argv[2]] + sys.argv[3:]; runpy.run_path(sys.argv[0], run_name='__main__')")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.update(PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    return subprocess.run([sys.executable, "-S", "-c", boot, str(bare_site), str(REPO / "benchmarks" / script), *args],
                          capture_output=True, text=True, env=env, cwd=tmp, timeout=900)


def test_the_bare_site_lacks_axolotl(bare_site: Path, tmp_path: Path) -> None:
    code = ("import importlib.util as u, site, sys; site.addsitedir(sys.argv[1]); "
            f"print([m for m in {ABSENT!r} if u.find_spec(m)]); import torch, transformers, peft, bitsandbytes")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    proc = subprocess.run([sys.executable, "-S", "-c", code, str(bare_site)], capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.slow
def test_gpu_train_tiny_cpu_runs_without_axolotl(bare_site: Path, tmp_path: Path) -> None:
    out = tmp_path / "train.json"
    proc = _run(bare_site, "gpu_train.py", "--tiny", "--cpu", "--suite", "all", "--runs", "ours_lora,ours_qlora",
                "--steps", "5", "--workdir", str(tmp_path), "--json", str(out), tmp=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    runs = {r["name"]: r for r in json.loads(out.read_text())["runs"]}
    loss_runs = [r for r in runs.values() if r["suite"] == "loss"]
    # lora and qlora x 2 lengths x loss off / chunked (no liger here)
    assert len(loss_runs) == 8 and {r["loss"] for r in loss_runs} == {"off", "torch"}
    for r in loss_runs:
        assert r["status"] == "ok" and len(r["losses"]) == 5, r
        assert r["estimate_gib"] is not None and r["estimate_gib"] > 0
        if r["loss"] == "torch":
            assert r["first_loss_rel_diff"] < 1e-5, r  # fp32 on CPU: the same first loss
            off = runs[r["name"].replace("_torch", "_off")]
            assert r["estimate_loss_gib"] <= off["estimate_loss_gib"]  # rows shorter than a chunk: equal
    assert runs["ours_lora"]["status"] == "ok" and runs["ours_lora"]["loss"] == "torch"
    assert "| lora_512_torch | loss | 512 | torch | ok |" in proc.stdout


@pytest.mark.slow
def test_gpu_memory_tiny_cpu_runs_without_axolotl_or_deepspeed(bare_site: Path, tmp_path: Path) -> None:
    out = tmp_path / "memory.json"
    # rows of 1536 tokens: longer than one 1,024-token chunk, so the estimate differs with the loss on and off
    proc = _run(bare_site, "gpu_memory.py", "--tiny", "--cpu", "--steps", "1", "--only", "qlora,full", "--loss", "both",
                "--sequence-len", "1536", "--json", str(out), tmp=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = json.loads(out.read_text())
    assert len(rows) == 4 and all("error" not in r for r in rows), rows
    full = [r for r in rows if r["recipe"].startswith("minicpm3_full")]
    assert all("deepspeed is not installed" in " ".join(r["notes"]) for r in full)
    on, off = (next(r for r in rows if r["recipe"].startswith("minicpm3_qlora") and r["chunked_loss"] is flag)
               for flag in (True, False))
    assert on["estimate_parts_gib"]["logits + loss"] < off["estimate_parts_gib"]["logits + loss"]


def test_planner_counts_one_chunk_of_logits_with_the_chunked_loss() -> None:
    from minicpm_plugin.tools.memory import Plan, estimate

    off = estimate(Plan(sequence_len=4096)).parts["logits + loss"]
    on = estimate(Plan(sequence_len=4096, chunked_loss=True)).parts["logits + loss"]
    assert off == 4096 * 73448 * 12 and on == 1024 * 73448 * 12
    assert estimate(Plan(sequence_len=512, chunked_loss=True)).parts["logits + loss"] == 512 * 73448 * 12
