"""`make demo`: write the shipped recipes and sample data from the installed package (what
`minicpm-plugin init` does), build the tiny MiniCPM3 offline, train a tool-call LoRA through axolotl on
CPU, then generate for a held-out prompt and parse the result.

Everything goes to ./demo_out (override with MINICPM_DEMO_DIR). Takes a few minutes on 2 cores. The
training log is kept whole in demo_out/train.log; the terminal gets our lines, the training progress
bar and one line per logged step (TrainLogFilter).
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from minicpm_plugin.utils import OFFLINE_ENV, cpu_launch

RECIPE = "examples/minicpm3_tools_lora.yml"
TRAIN_DATA = "examples/data/tool_calls.jsonl"
EVAL_DATA = "examples/data/tool_calls_eval.jsonl"
STEPS = 150
LOGGING_STEPS = 10

# HF Trainer's training bar has no description: " 50%|█████     | 75/150 [00:50<00:50,  1.50it/s]".
# Only the bar is kept of a line: another message can follow it on the same line.
_BAR = re.compile(r"^\s*(\d+%\|[^|]*\|\s*(\d+)/(\d+) \[[^\]]*\])")
# The metrics dict HF Trainer prints per logged step (values as strings), at eval, and at the end.
_METRICS = re.compile(r"\{'(?:loss|eval_loss|train_runtime)'.*\}")


def _num(value: Any) -> str:
    try:
        return f"{float(value):.4g}"
    except (TypeError, ValueError):
        return str(value)


@dataclass
class TrainLogFilter:
    """Which lines of an axolotl training log the demo prints, and how.

    Call it with each line of the log (carriage returns already turned into line ends); it returns
    the text to print or None. Kept: the plugin's own lines (each once), the training progress bar
    (at every tenth of the run), and one clean line per logged step. Dropped: third-party import noise
    (torchao library loads, torch pytree deprecations), axolotl's INFO lines and config dump, the
    preprocessing bars. HF prints no step number, so a step is counted as logged lines x logging_steps.
    """

    max_steps: int
    logging_steps: int
    logged: int = 0
    bar_shown: int = -1
    seen: set[str] = field(default_factory=set)

    def __call__(self, line: str) -> str | None:
        text = line.rstrip()
        if "[minicpm-plugin]" in text:
            ours = text[text.index("[minicpm-plugin]"):].replace("] INFO ", "] ", 1)
            if ours in self.seen:
                return None
            self.seen.add(ours)
            return ours
        metrics = _METRICS.search(text)
        if metrics:
            try:
                logs = ast.literal_eval(metrics.group(0))
            except (ValueError, SyntaxError):
                return None
            return self._metrics(logs) if isinstance(logs, dict) else None
        bar = _BAR.match(text)
        if bar and int(bar.group(3)) == self.max_steps:
            done = int(bar.group(2))
            if done != self.bar_shown and (done % max(1, self.max_steps // 10) == 0 or done == self.max_steps):
                self.bar_shown = done
                return bar.group(1)
        return None

    def _metrics(self, logs: dict[str, Any]) -> str | None:
        if "loss" in logs:
            self.logged += 1
            step = min(self.logged * self.logging_steps, self.max_steps)
            width = len(str(self.max_steps))
            lr = f"  lr {_num(logs['learning_rate'])}" if "learning_rate" in logs else ""
            return f"step {step:>{width}}/{self.max_steps}  loss {_num(logs['loss'])}{lr}"
        if "eval_loss" in logs:
            return f"eval loss {_num(logs['eval_loss'])}"
        if "train_runtime" in logs:
            return f"trained in {_num(logs['train_runtime'])} s, mean loss {_num(logs.get('train_loss'))}"
        return None


@contextmanager
def output_to(path: Path) -> Iterator[None]:
    """Send this process's stdout and stderr (file descriptors, so C-level and library writes too)
    to `path` for the block: the import noise of torch, torchao and DeepSpeed goes to the log."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(path, "a", encoding="utf-8") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, copy in zip((1, 2), saved, strict=True):
                os.dup2(copy, fd)
                os.close(copy)


def demo_recipe(project: Path, model_dir: Path, out: Path) -> dict[str, Any]:
    """The shipped tool-calling recipe, with only what a CPU demo on the tiny model needs changed."""
    cfg = yaml.safe_load((project / RECIPE).read_text(encoding="utf-8"))
    cfg.update(
        base_model=str(model_dir),
        datasets=[{"path": str(project / TRAIN_DATA), "type": "minicpm_plugin.strategy"}],
        test_datasets=None,
        val_set_size=0,
        dataset_prepared_path=str(out / "prepared"),
        output_dir=str(out / "lora"),
        sequence_len=2048,
        micro_batch_size=2,
        gradient_accumulation_steps=1,
        max_steps=STEPS,
        num_epochs=2,
        learning_rate=0.02,  # the tiny random model needs a large step to show learning quickly
        lr_scheduler="constant",
        warmup_ratio=0.0,
        optimizer="adamw_torch",
        evals_per_epoch=None,
        saves_per_epoch=None,
        save_steps=STEPS,
        logging_steps=LOGGING_STEPS,
        gradient_checkpointing=False,  # the tiny model needs no memory saving; faster on CPU
    )
    return {k: v for k, v in cfg.items() if v is not None}


def train(cfg: dict[str, Any], out: Path) -> float:
    path = out / "demo_recipe.yml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    cmd = cpu_launch(["axolotl.cli.train", str(path)])
    print(f"$ accelerate launch -m axolotl.cli.train {path}  (full log: {out / 'train.log'})", flush=True)
    show = TrainLogFilter(cfg["max_steps"], cfg["logging_steps"])
    start = time.time()
    # Unbuffered: the child's stdout (metrics) and stderr (bars, warnings) share one pipe; buffered
    # stdout would be flushed in blocks that split lines.
    env = dict(os.environ, **OFFLINE_ENV, PYTHONUNBUFFERED="1")
    with open(out / "train.log", "a", encoding="utf-8") as log:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(line)
            text = show(line)
            if text is not None:
                print("  " + text, flush=True)
        if proc.wait() != 0:
            log.flush()
            tail = [x for x in (out / "train.log").read_text(encoding="utf-8").splitlines() if x.strip()][-40:]
            print("\n".join(tail), file=sys.stderr)
            raise SystemExit(f"training failed (exit {proc.returncode}); the end of {out / 'train.log'} is above")
    return time.time() - start


def loss_curve(run_dir: Path) -> list[float]:
    ckpt = max(run_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    state = json.loads((ckpt / "trainer_state.json").read_text())
    return [e["loss"] for e in state["log_history"] if "loss" in e]


def generate_one(model_dir: Path, adapter: Path, eval_data: Path) -> tuple[str, dict[str, Any], dict[str, Any]]:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from minicpm_plugin import parse_assistant, render_chat
    from minicpm_plugin.formats.prepare import load_conversations
    from minicpm_plugin.model.compat import apply_transformers_fixes

    apply_transformers_fixes()
    conv = load_conversations(eval_data)[0]
    turn = next(i for i, m in enumerate(conv["messages"]) if m["role"] == "assistant")
    prompt = render_chat(conv["messages"][:turn], conv["tools"], add_generation_prompt=True)
    tokenizer = AutoTokenizer.from_pretrained(adapter)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(model_dir), adapter).eval()
    ids = tokenizer(prompt, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=60, do_sample=False,
                             eos_token_id=[tokenizer.convert_tokens_to_ids("<|im_end|>"), 2])
    text = tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=False)
    return text, parse_assistant(text), conv["messages"][turn]


def main() -> int:
    from minicpm_plugin.tools.resources import resource_root, write_resources
    from minicpm_plugin.tools.tiny_model import build_tiny_model

    out = Path(os.environ.get("MINICPM_DEMO_DIR", "demo_out")).resolve()
    out.mkdir(parents=True, exist_ok=True)
    project = out / "project"
    print(f"1/4 writing the recipes and sample data this package ships ({resource_root()}) into {project}, "
          "as `minicpm-plugin init` does", flush=True)
    write_resources(project, force=True)
    log = out / "train.log"
    log.write_text("", encoding="utf-8")
    model_dir = out / "tiny-minicpm3"
    print(f"2/4 building the tiny MiniCPM3 (offline) in {model_dir}", flush=True)
    with output_to(log):
        build_tiny_model(model_dir, overwrite=True)
    print(f"3/4 training a tool-call LoRA for {STEPS} steps on {TRAIN_DATA} ({RECIPE}) through axolotl (CPU)", flush=True)
    seconds = train(demo_recipe(project, model_dir, out), out)
    curve = loss_curve(out / "lora")
    print(f"4/4 generating for a held-out prompt ({EVAL_DATA}, first turn)", flush=True)
    with output_to(log):
        text, parsed, reference = generate_one(model_dir, out / "lora", project / EVAL_DATA)
    print("\n--- generated ---\n" + text)
    print("--- parsed by minicpm_plugin.parse_assistant ---")
    print(json.dumps(parsed, ensure_ascii=False, indent=2))
    ref_calls = [c["function"] for c in reference.get("tool_calls", [])]
    print("--- reference turn ---")
    print(json.dumps({"thought": reference.get("thought"), "tool_calls": ref_calls, "content": reference.get("content")},
                     ensure_ascii=False, indent=2))
    print("\n=== summary ===")
    print(f"steps: {STEPS}   loss: {sum(curve[:1]):.3f} (first log) -> {curve[-1]:.3f} (last log)   train time: {seconds:.0f}s")
    print("(a 330k-parameter random model after a few minutes on CPU: the loss falls, but it is far too small to\n"
          " write the right call yet; tests/test_tool_eval_e2e.py trains one until eval-tools scores its calls 1.0)")
    print(f"tiny model: {model_dir}\nadapter + tokenizer (with MiniCPM3's chat template): {out / 'lora'}")
    print(f"recipe used: {out / 'demo_recipe.yml'}   full log: {out / 'train.log'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
