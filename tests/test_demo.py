"""What `make demo` prints of the training log: our lines, the training progress bar and one clean line
per logged step; third-party import noise stays in demo_out/train.log only."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from minicpm_plugin.tools.demo import RECIPE, TRAIN_DATA, TrainLogFilter, demo_recipe
from minicpm_plugin.tools.resources import write_resources

# Lines of a real `make demo` training log (demo_out/train.log: accelerate launch -m axolotl.cli.train, stdout
# and stderr in one pipe, carriage returns read as line ends), 150 steps, logging_steps 10. Left out: most of
# the config dump and the progress-bar lines between the ones the filter shows; every metrics line is kept.
SAMPLE = Path(__file__).parent / "fixtures" / "demo" / "train_log_sample.txt"
BAR = "|          | 0/150 [00:00<?, ?it/s]"


def shown(lines: list[str], max_steps: int = 150, logging_steps: int = 10) -> list[str]:
    keep = TrainLogFilter(max_steps, logging_steps)
    return [text for text in map(keep, lines) if text is not None]


def test_filter_shows_our_lines_the_bar_and_one_line_per_step() -> None:
    lines = SAMPLE.read_text(encoding="utf-8").splitlines()
    out = shown(lines)
    assert out[:4] == [
        "[minicpm-plugin] no GPU found: running on CPU with bf16: True -> False; fp16: None -> False; tf32: True -> False",
        "[minicpm-plugin] data: /work/wt/package/demo_out/project/examples/data/tool_calls.jsonl (openai): 60 rows, "
        "60 prepared, 0 skipped; 60 with tools, 80 calls, 48 thoughts",
        "[minicpm-plugin] preprocessing: no conversation exceeded sequence_len=2048",
        "[minicpm-plugin] sample packing: packed samples attend only within themselves (mask from position_ids)",
    ]  # the sample packing line is in the log twice (two hooks), shown once
    assert out[4:9] == ["0%" + BAR, "step  10/150  loss 7.715  lr 0.02", "10%|█         | 15/150 [00:33<04:39,  2.07s/it]",
                        "step  20/150  loss 6.764  lr 0.02", "20%|██        | 30/150 [01:00<03:29,  1.75s/it]"]
    steps = [line for line in out if line.startswith("step ")]
    assert [line.split()[1] for line in steps] == [f"{n:>3}/150".strip() for n in range(10, 151, 10)]
    assert [line.split("|")[0] for line in out if "%|" in line] == [f"{p}%" for p in range(0, 101, 10)]
    assert out[-3:] == ["100%|██████████| 150/150 [06:18<00:00,  1.91s/it]", "step 150/150  loss 5.132  lr 0.02",
                        "trained in 378.8 s, mean loss 5.787"]
    assert len(out) == 4 + 11 + 15 + 1


def test_noise_is_dropped() -> None:
    lines = SAMPLE.read_text(encoding="utf-8").splitlines()
    noise = [line for line in lines if any(k in line for k in (
        "torchao", "_pytree", "[axolotl.", "examples/s]", "Loading weights", "[transformers]", "trainable params",
        "real_accelerator", "accelerate launch", '"base_model"')) and "/150 [" not in line]
    assert len(noise) >= 25
    assert shown(noise) == []


def test_split_lines_of_the_merged_stream() -> None:
    """stdout and stderr share one pipe: a bar can run into a log message or a metrics line."""
    bar = "100%|██████████| 150/150 [06:18<00:00,  1.91s/it]"
    assert shown([bar + "[2026-11-28 19:45:13,997] [INFO] [axolotl.core.trainers.base] Saving model checkpoint"]) == [bar]
    assert shown([" 13%|█▎        | 20/150 [00:42<04:59,  2.31s/it]{'loss': '6.764', 'learning_rate': '0.02'}"]) == [
        "step  10/150  loss 6.764  lr 0.02"]
    # a metrics line cut at the front cannot be read: not shown (the full line stays in train.log)
    assert shown(["ctive (GiB)': '0', 'memory/max_allocated (GiB)': '0', 'epoch': '0.7'}"]) == []


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


def test_output_to_sends_library_writes_to_the_log(tmp_path: Path) -> None:
    """The demo's own process (tiny model, generation) writes torch/torchao/DeepSpeed noise to the log."""
    log = tmp_path / "train.log"
    log.write_text("before\n")
    code = ("import os, sys; from pathlib import Path; from minicpm_plugin.tools.demo import output_to\n"
            "with output_to(Path(sys.argv[1])):\n"
            "    print('python print'); sys.stderr.write('python stderr\\n'); os.write(2, b'C-level write\\n')\n"
            "print('ours')")
    result = subprocess.run([sys.executable, "-c", code, str(log)], capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stdout, result.stderr) == (0, "ours\n", "")
    assert log.read_text() == "before\npython print\npython stderr\nC-level write\n"
