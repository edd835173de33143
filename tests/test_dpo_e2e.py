"""End to end: DPO on tool-call preference pairs through `accelerate launch -m axolotl.cli.train` on CPU
with the tiny MiniCPM3. The reward margin (chosen minus rejected) rises, and `eval-tools` on the pairs
prefers the chosen calls more often after training than before.

Kept small for CI: 8 pairs with one short tool (each prompt ~560 tokens, mostly the fixed tool-call
instructions), 24 LoRA steps, reference log-probs computed once.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from axolotl_runs import failure, run_axolotl, tiny_config

from minicpm_plugin.cli import main

pytestmark = pytest.mark.slow

WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Get the weather for a city.",
                                            "parameters": {"type": "object", "properties": {
                                                "city": {"type": "string"},
                                                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
                                                "required": ["city"]}}}
CITIES = ["Paris", "Tokyo", "北京", "London", "Berlin", "上海", "Madrid", "Seoul"]
STEPS = 24


def call(name: str, **args: Any) -> dict[str, Any]:
    return {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": {
        "name": name, "arguments": json.dumps(args, ensure_ascii=False)}}]}


def weather_pairs() -> list[dict[str, Any]]:
    """The right call against a hallucinated name, a wrong value, a refusal and a missing argument."""
    rows = []
    for i, city in enumerate(CITIES):
        wrong = [call("weather_now", city=city), call("get_weather", city=CITIES[(i + 3) % len(CITIES)]),
                 {"role": "assistant", "content": "Sorry, I cannot check the weather."}, call("get_weather")][i % 4]
        rows.append({"prompt": [{"role": "user", "content": f"What's the weather in {city}?"}],
                     "chosen": [call("get_weather", city=city)], "rejected": [wrong], "tools": [WEATHER]})
    return rows


def margins(output_dir: Path) -> list[float]:
    checkpoints = sorted(output_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    state = json.loads((checkpoints[-1] / "trainer_state.json").read_text())
    return [entry["rewards/margins"] for entry in state["log_history"] if "rewards/margins" in entry]


def eval_pairs(model: Path, data: Path, out: Path, adapter: Path | None = None) -> dict[str, Any]:
    args = ["eval-tools", "--model", str(model), "--data", str(data), "--json", str(out), "--no-progress"]
    assert main(args + (["--adapter", str(adapter)] if adapter else [])) == 0
    return json.loads(out.read_text())


def test_dpo_raises_the_margin_and_the_preference_for_chosen_calls(tiny_model_dir: Path, tmp_path: Path) -> None:
    data = tmp_path / "weather_pairs.jsonl"
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in weather_pairs()), encoding="utf-8")
    cfg = tiny_config(tiny_model_dir, tmp_path, rl="dpo", rl_beta=0.1, datasets=[{"path": str(data), "type": "minicpm_plugin.dpo"}],
                      micro_batch_size=1, max_steps=STEPS, save_steps=STEPS, learning_rate=0.01,
                      precompute_ref_log_probs=True)
    before = eval_pairs(tiny_model_dir, data, tmp_path / "before.json")
    start = time.perf_counter()
    result = run_axolotl(cfg, tmp_path)
    seconds = time.perf_counter() - start
    assert result.returncode == 0, failure(result)
    log = result.stdout + result.stderr
    assert "8 rows, 8 prepared, 0 skipped" in log and "2 call an undeclared function" in log
    assert "trainer: 8 preference pairs, prompts start with one <s>, answers end with one <|im_end|>" in log
    curve = margins(tmp_path / "out")
    assert len(curve) == STEPS
    first, last = sum(curve[:6]) / 6, sum(curve[-6:]) / 6
    after = eval_pairs(tiny_model_dir, data, tmp_path / "after.json", adapter=tmp_path / "out")
    print(f"DPO e2e: {STEPS} steps in {seconds:.0f} s (whole axolotl run); reward margin first 6 steps {first:.3f} -> "
          f"last 6 steps {last:.3f}; eval-tools chosen preferred {before['chosen_preferred']}/8 -> "
          f"{after['chosen_preferred']}/8, mean log-prob margin {before['mean_margin']:.2f} -> {after['mean_margin']:.2f}")
    assert last > first + 0.5, f"the reward margin did not rise: {curve}"
    assert after["chosen_preferred"] > before["chosen_preferred"]
    assert after["mean_margin"] > before["mean_margin"]
