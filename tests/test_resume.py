"""Resume: a run stopped after a checkpoint and resumed with `resume_from_checkpoint` continues exactly
as the uninterrupted run does (same losses, same adapter), on CPU with a fixed seed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from axolotl_runs import failure, run_axolotl, tiny_config

pytestmark = pytest.mark.slow

STEPS, STOP = 6, 3


def logged(output_dir: Path, step: int) -> dict[int, float]:
    state = json.loads((output_dir / f"checkpoint-{step}" / "trainer_state.json").read_text())
    return {e["step"]: e["loss"] for e in state["log_history"] if "loss" in e}


def test_resumed_run_matches_uninterrupted_run(tiny_model_dir: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    # Everything that carries state across the stop: shuffled data order (sampler position), LoRA dropout
    # (RNG state), warmup + cosine schedule (scheduler state) and AdamW moments (optimizer state).
    common = dict(max_steps=STEPS, save_steps=STOP, lora_dropout=0.1, lr_scheduler="cosine", warmup_steps=2,
                  learning_rate=0.01, dataset_prepared_path=str(tmp_path / "prepared"))
    full = tmp_path / "full"
    full.mkdir()
    result = run_axolotl(tiny_config(tiny_model_dir, full, **common), full)
    assert result.returncode == 0, failure(result)
    uninterrupted = logged(full / "out", STEPS)
    assert sorted(uninterrupted) == list(range(1, STEPS + 1))

    # The stopped run: its output directory holds only what it had saved at step STOP.
    resumed_dir = tmp_path / "resumed"
    shutil.copytree(full / "out" / f"checkpoint-{STOP}", resumed_dir / "out" / f"checkpoint-{STOP}")
    cfg = tiny_config(tiny_model_dir, resumed_dir, resume_from_checkpoint=str(resumed_dir / "out" / f"checkpoint-{STOP}"), **common)
    result = run_axolotl(cfg, resumed_dir)
    assert result.returncode == 0, failure(result)
    resumed = logged(resumed_dir / "out", STEPS)

    print("uninterrupted:", uninterrupted, "\nresumed:      ", resumed)
    assert sorted(resumed) == list(range(1, STEPS + 1))  # steps 1-3 come from the checkpoint's history
    for step in range(STOP + 1, STEPS + 1):
        assert resumed[step] == pytest.approx(uninterrupted[step], rel=1e-6, abs=1e-6), step
    # Losses change from step to step, so a resume that replayed or skipped batches would not match.
    assert len({round(uninterrupted[s], 6) for s in range(STOP + 1, STEPS + 1)}) == STEPS - STOP
    a = load_file(full / "out" / "adapter_model.safetensors")
    b = load_file(resumed_dir / "out" / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    assert worst <= 1e-6, worst
