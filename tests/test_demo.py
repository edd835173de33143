"""What `make demo` prints of the training log: our lines, the training progress bar and one clean line
per logged step; third-party import noise stays in demo_out/train.log only."""

from __future__ import annotations

from pathlib import Path

import yaml

from minicpm_plugin.tools.demo import RECIPE, TRAIN_DATA, TrainLogFilter, demo_recipe
from minicpm_plugin.tools.resources import write_resources

SAMPLE = Path(__file__).parent / "fixtures" / "demo" / "train_log_sample.txt"


def shown(lines: list[str], max_steps: int = 30, logging_steps: int = 10) -> list[str]:
    keep = TrainLogFilter(max_steps, logging_steps)
    return [text for text in map(keep, lines) if text is not None]


def test_filter_shows_our_lines_the_bar_and_one_line_per_step() -> None:
    lines = SAMPLE.read_text(encoding="utf-8").splitlines()
    assert shown(lines) == [
        "[minicpm-plugin] no GPU found: running on CPU with bf16: True -> False; fp16: None -> False; tf32: True -> False",
        "[minicpm-plugin] data: /work/demo_out/project/examples/data/tool_calls.jsonl (openai): 60 rows, 60 prepared, "
        "0 skipped; 60 with tools, 71 calls, 25 thoughts",
        "[minicpm-plugin] preprocessing: no conversation exceeded sequence_len=2048",
        "[minicpm-plugin] sample packing: packed samples attend only within themselves (mask from position_ids)",
        "0%|          | 0/30 [00:00<?, ?it/s]",
        "10%|█         | 3/30 [00:03<00:30,  1.05s/it]",
        "20%|██        | 6/30 [00:06<00:26,  1.10s/it]",
        "30%|███       | 9/30 [00:09<00:23,  1.10s/it]",
        "step 10/30  loss 6.214  lr 0.02",
        "40%|████      | 12/30 [00:12<00:20,  1.10s/it]",
        "50%|█████     | 15/30 [00:16<00:16,  1.08s/it]",
        "60%|██████    | 18/30 [00:19<00:13,  1.08s/it]",
        "step 20/30  loss 3.907  lr 0.02",
        "70%|███████   | 21/30 [00:22<00:09,  1.08s/it]",
        "80%|████████  | 24/30 [00:25<00:06,  1.08s/it]",
        "90%|█████████ | 27/30 [00:28<00:03,  1.08s/it]",
        "100%|██████████| 30/30 [00:31<00:00,  1.08s/it]",
        "step 30/30  loss 2.5  lr 0.02",
        "trained in 31.4 s, mean loss 4.207",
    ]


def test_noise_is_dropped_whatever_its_shape() -> None:
    noise = [line for line in SAMPLE.read_text(encoding="utf-8").splitlines()
             if "torchao" in line or "_pytree" in line or "ctive (GiB)" in line.split("'")[0] or "[axolotl" in line
             or "examples/s]" in line or "Loading weights" in line or "[transformers]" in line]
    assert len(noise) >= 15
    assert shown(noise) == []


def test_steps_count_logging_steps_and_stop_at_max_steps() -> None:
    logs = ["{'loss': '1.5', 'learning_rate': '1e-4', 'epoch': '0.5'}"] * 3 + ["{'eval_loss': '1.25', 'epoch': '1'}"]
    assert shown(logs, max_steps=25, logging_steps=10) == [
        "step 10/25  loss 1.5  lr 0.0001", "step 20/25  loss 1.5  lr 0.0001", "step 25/25  loss 1.5  lr 0.0001",
        "eval loss 1.25"]
    assert shown(["{'loss': oops}", "{'loss': '1'"]) == []  # not a readable dict: not shown, no error


def test_demo_recipe_reads_the_written_package_data(tmp_path: Path) -> None:
    project = tmp_path / "project"
    write_resources(project)
    cfg = demo_recipe(project, tmp_path / "model", tmp_path / "out")
    assert cfg["datasets"] == [{"path": str(project / TRAIN_DATA), "type": "minicpm_plugin.strategy"}]
    shipped = yaml.safe_load((project / RECIPE).read_text(encoding="utf-8"))
    assert cfg["lora_target_modules"] == shipped["lora_target_modules"] and cfg["plugins"] == shipped["plugins"]
    assert "test_datasets" not in cfg and cfg["max_steps"] == 150 and cfg["logging_steps"] == 10
