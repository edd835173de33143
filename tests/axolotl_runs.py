"""Run the real axolotl CLI on a config dict (subprocess, as a user would), and read the results."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from minicpm_plugin.utils import OFFLINE_ENV, cpu_launch

REPO = Path(__file__).resolve().parents[1]
ENV = {**OFFLINE_ENV, "PYTHONUNBUFFERED": "1"}


def tiny_config(tiny_model_dir: Path, tmp: Path, **overrides: Any) -> dict[str, Any]:
    """A small LoRA config on the tiny MiniCPM3 and the bundled tool-call data."""
    cfg: dict[str, Any] = {
        "base_model": str(tiny_model_dir),
        "plugins": ["minicpm_plugin.MiniCPM3Plugin"],
        "datasets": [{"path": str(REPO / "examples/data/tool_calls.jsonl"), "type": "minicpm_plugin.strategy"}],
        "dataset_prepared_path": str(tmp / "prepared"),
        "output_dir": str(tmp / "out"),
        "sequence_len": 2048,
        "adapter": "lora",
        "lora_r": 16,
        "lora_alpha": 32,
        "lora_dropout": 0.0,
        "lora_target_linear": True,
        "special_tokens": {"pad_token": "</s>"},
        "micro_batch_size": 2,
        "gradient_accumulation_steps": 1,
        "max_steps": 12,
        "num_epochs": 1,
        "learning_rate": 0.02,
        "lr_scheduler": "constant",
        "optimizer": "adamw_torch",
        "logging_steps": 1,
        "save_steps": 12,
        "seed": 7,
        "val_set_size": 0,
        "bf16": True,  # as in the recipes; the plugin turns it off on a CPU-only machine
    }
    cfg.update(overrides)
    return cfg


def run_axolotl(cfg: dict[str, Any], tmp: Path, command: str = "train", launcher: str = "accelerate",
                timeout: int = 900, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    path = tmp / f"{command}.yml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    if launcher == "accelerate":
        cmd = cpu_launch([f"axolotl.cli.{command}", str(path)])
    else:
        cmd = [sys.executable, "-m", f"axolotl.cli.{command}", str(path)]
    env = dict(os.environ, **ENV, **(extra_env or {}))
    return subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True, timeout=timeout)


def losses(output_dir: Path) -> list[float]:
    """Training losses logged at each step, from the last checkpoint's trainer_state.json."""
    checkpoints = sorted(output_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    state = json.loads((checkpoints[-1] / "trainer_state.json").read_text())
    return [entry["loss"] for entry in state["log_history"] if "loss" in entry]


def failure(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\n--- stdout\n{result.stdout[-4000:]}\n--- stderr\n{result.stderr[-6000:]}"
