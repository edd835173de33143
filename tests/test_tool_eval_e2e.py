"""Tool-call accuracy end to end: axolotl trains the tiny MiniCPM3 until it memorises three tool-call
conversations (with the evaluation callback on), then `eval-tools` scores the trained model high and
the untrained one low. Run with ``-s`` to see both reports."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from axolotl_runs import failure, run_axolotl, tiny_config

from minicpm_plugin.cli import main
from minicpm_plugin.evaluation.scoring import format_table

pytestmark = pytest.mark.slow

STEPS = 160
EVAL_EVERY = 80
MAX_NEW_TOKENS = 64

TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "Weather for a city.", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
        "required": ["city"]}}},
    {"type": "function", "function": {"name": "translate", "description": "Translate text.", "parameters": {
        "type": "object", "properties": {"text": {"type": "string"}, "to": {"type": "string"},
                                         "formal": {"type": "boolean"}, "glossary": {"type": "object"}},
        "required": ["text", "to"]}}},
]


def _call(name: str, arguments: dict[str, Any], call_id: str) -> dict[str, Any]:
    # OpenAI wire format: arguments as a JSON string.
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": json.dumps(arguments, ensure_ascii=False)}}


#: Three call turns (an integer, true and null, a non-ASCII string) and three answers.
CONVERSATIONS = [
    [{"role": "user", "content": "Weather in Paris for 3 days?"},
     {"role": "assistant", "content": "", "tool_calls": [_call("get_weather", {"city": "Paris", "days": 3}, "c1")]},
     {"role": "tool", "tool_call_id": "c1", "content": "{\"sky\": \"sunny\"}"},
     {"role": "assistant", "content": "Sunny in Paris."}],
    [{"role": "user", "content": "Say thanks in French, formally."},
     {"role": "assistant", "content": "", "tool_calls": [
         _call("translate", {"text": "thanks", "to": "fr", "formal": True, "glossary": None}, "c2")]},
     {"role": "tool", "tool_call_id": "c2", "content": "merci"},
     {"role": "assistant", "content": "Merci."}],
    [{"role": "user", "content": "北京天气？"},
     {"role": "assistant", "content": "", "tool_calls": [_call("get_weather", {"city": "北京"}, "c3")]},
     {"role": "tool", "tool_call_id": "c3", "content": "{\"sky\": \"cloudy\"}"},
     {"role": "assistant", "content": "北京多云。"}],
]


@pytest.fixture(scope="module")
def memorised(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Full fine-tune through axolotl (high learning rate, every step sees all three conversations)."""
    tmp = tmp_path_factory.mktemp("memorise")
    data = tmp / "tool_calls.jsonl"
    data.write_text("".join(json.dumps({"messages": m, "tools": TOOLS}, ensure_ascii=False) + "\n"
                            for m in CONVERSATIONS), encoding="utf-8")
    cfg = tiny_config(
        tiny_model_dir, tmp, datasets=[{"path": str(data), "type": "minicpm_plugin.strategy"}],
        max_steps=STEPS, save_steps=STEPS, num_epochs=STEPS, micro_batch_size=len(CONVERSATIONS),
        learning_rate=0.01, embedding_lr_scale=5,
        minicpm3_eval_tools_steps=EVAL_EVERY, minicpm3_eval_tools_data=str(data),
        minicpm3_eval_tools_samples=len(CONVERSATIONS), minicpm3_eval_tools_max_new_tokens=MAX_NEW_TOKENS,
    )
    cfg.pop("adapter")
    for key in [k for k in cfg if k.startswith("lora_")]:
        cfg.pop(key)
    result = run_axolotl(cfg, tmp)
    assert result.returncode == 0, failure(result)
    return {"out": tmp / "out", "data": data, "tmp": tmp, "log": result.stdout + result.stderr}


def eval_tools(model: Path, data: Path, out: Path, *extra: str) -> dict[str, Any]:
    argv = ["eval-tools", "--model", str(model), "--data", str(data), "--max-new-tokens", str(MAX_NEW_TOKENS),
            "--json", str(out), "--no-progress", *extra]
    assert main(argv) == 0
    return json.loads(out.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def reports(memorised: dict[str, Any], tiny_model_dir: Path) -> dict[str, dict[str, Any]]:
    tmp = memorised["tmp"]
    return {
        "trained": eval_tools(memorised["out"], memorised["data"], tmp / "trained.json"),
        "untrained": eval_tools(tiny_model_dir, memorised["data"], tmp / "untrained.json"),
    }


def test_trained_model_scores_high_untrained_low(reports: dict[str, dict[str, Any]]) -> None:
    trained, untrained = reports["trained"], reports["untrained"]
    for name, report in (("untrained", untrained), ("trained", trained)):
        print(f"\n== eval-tools, {name} tiny MiniCPM3 on the 3 memorised conversations\n{format_table(report)}")
        print(json.dumps(report["metrics"]))
    assert trained["counts"]["turns"] == untrained["counts"]["turns"] == 6
    assert trained["counts"]["call_turns"] == 3

    u = untrained["metrics"]
    assert u["name_acc"] == 0 and u["exact_args_acc"] == 0 and u["arg_acc"] == 0
    assert u["decision_acc"] <= 0.5  # at most the answer turns, by never calling

    t = trained["metrics"]
    assert t["well_formed_rate"] >= 5 / 6 and t["decision_acc"] >= 5 / 6
    assert t["name_acc"] >= 2 / 3 and t["exact_args_acc"] >= 2 / 3 and t["arg_acc"] >= 5 / 7
    assert t["wrong_call_rate"] <= 1 / 3


def test_batched_and_one_by_one_generation_agree(memorised: dict[str, Any], reports: dict[str, dict[str, Any]]) -> None:
    one = eval_tools(memorised["out"], memorised["data"], memorised["tmp"] / "one.json", "--batch-size", "1")
    assert [s["generated"] for s in one["samples"]] == [s["generated"] for s in reports["trained"]["samples"]]


def test_callback_logged_tool_metrics_beside_the_loss(memorised: dict[str, Any],
                                                      reports: dict[str, dict[str, Any]]) -> None:
    state = json.loads((memorised["out"] / f"checkpoint-{STEPS}" / "trainer_state.json").read_text())
    history = state["log_history"]
    evals = [e for e in history if any(k.startswith("tool_eval/") for k in e)]
    print("\n" + "\n".join(json.dumps({k: v for k, v in e.items() if k.startswith("tool_eval/") or k == "step"})
                           for e in evals))
    assert [e["step"] for e in evals] == [EVAL_EVERY, STEPS]
    loss_steps = {e["step"] for e in history if "loss" in e}
    assert {EVAL_EVERY, STEPS} <= loss_steps
    assert "tool-call evaluation at step 80" in memorised["log"]
    # The last in-training evaluation saw the final weights: it agrees with eval-tools afterwards.
    final = evals[-1]
    for name, value in reports["trained"]["metrics"].items():
        assert final[f"tool_eval/{name}"] == pytest.approx(value, abs=1e-4)
