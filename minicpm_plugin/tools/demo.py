"""`make demo`: build the tiny MiniCPM3 offline, train a tool-call LoRA on the bundled data through
axolotl on CPU, then generate for a held-out prompt and parse the result.

Everything goes to ./demo_out (override with MINICPM_DEMO_DIR). Takes a few minutes on 2 cores.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from minicpm_plugin.utils import OFFLINE_ENV

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "examples" / "minicpm3_tools_lora.yml"
DATA = REPO / "examples" / "data"
STEPS = 150


def demo_recipe(model_dir: Path, out: Path) -> dict[str, Any]:
    """The shipped tool-calling recipe, with only what a CPU demo on the tiny model needs changed."""
    cfg = yaml.safe_load(RECIPE.read_text(encoding="utf-8"))
    cfg.update(
        base_model=str(model_dir),
        datasets=[{"path": str(DATA / "tool_calls.jsonl"), "type": "minicpm_plugin.strategy"}],
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
        logging_steps=10,
        gradient_checkpointing=False,  # the tiny model needs no memory saving; faster on CPU
    )
    return {k: v for k, v in cfg.items() if v is not None}


def train(cfg: dict[str, Any], out: Path) -> float:
    path = out / "demo_recipe.yml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "-m", "axolotl.cli.train", str(path)]
    print(f"$ accelerate launch -m axolotl.cli.train {path}  (log: {out / 'train.log'})", flush=True)
    start = time.time()
    with open(out / "train.log", "w", encoding="utf-8") as log:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env=dict(os.environ, **OFFLINE_ENV))
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(line)
            if "[minicpm-plugin]" in line or "'loss'" in line or "Error" in line:
                print("  " + line.rstrip()[-200:], flush=True)
        if proc.wait() != 0:
            raise SystemExit(f"training failed (exit {proc.returncode}); see {out / 'train.log'}")
    return time.time() - start


def loss_curve(run_dir: Path) -> list[float]:
    ckpt = max(run_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    state = json.loads((ckpt / "trainer_state.json").read_text())
    return [e["loss"] for e in state["log_history"] if "loss" in e]


def generate_one(model_dir: Path, adapter: Path) -> tuple[str, dict[str, Any], dict[str, Any]]:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from minicpm_plugin import parse_assistant, render_chat
    from minicpm_plugin.formats.prepare import load_conversations
    from minicpm_plugin.model.compat import apply_transformers_fixes

    apply_transformers_fixes()
    conv = load_conversations(DATA / "tool_calls_eval.jsonl")[0]
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
    from minicpm_plugin.tools.tiny_model import build_tiny_model

    out = Path(os.environ.get("MINICPM_DEMO_DIR", "demo_out")).resolve()
    out.mkdir(parents=True, exist_ok=True)
    model_dir = out / "tiny-minicpm3"
    print(f"1/3 building the tiny MiniCPM3 (offline) in {model_dir}", flush=True)
    build_tiny_model(model_dir, overwrite=True)
    print(f"2/3 training a tool-call LoRA for {STEPS} steps on {DATA / 'tool_calls.jsonl'} through axolotl (CPU)", flush=True)
    seconds = train(demo_recipe(model_dir, out), out)
    curve = loss_curve(out / "lora")
    print("3/3 generating for a held-out prompt (examples/data/tool_calls_eval.jsonl, first turn)", flush=True)
    text, parsed, reference = generate_one(model_dir, out / "lora")
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
