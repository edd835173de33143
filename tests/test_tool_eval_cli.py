"""`minicpm-plugin eval-tools` and the training callback, on the (untrained) tiny MiniCPM3."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from minicpm_plugin.cli import main
from minicpm_plugin.formats.prepare import load_conversations

REPO = Path(__file__).resolve().parents[1]
EVAL_DATA = REPO / "examples/data/tool_calls_eval.jsonl"


def test_eval_tools_prints_a_table_and_writes_the_report(tiny_model_dir: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "report.json"
    rc = main(["eval-tools", "--model", str(tiny_model_dir), "--data", str(EVAL_DATA), "--max-samples", "2",
               "--max-new-tokens", "4", "--json", str(out), "--no-progress"])
    assert rc == 0
    printed = capsys.readouterr().out
    for name in ("well_formed_rate", "lenient_rate", "decision_acc", "name_acc", "exact_args_acc", "arg_acc", "wrong_call_rate"):
        assert name in printed
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["model"] == str(tiny_model_dir) and report["data"] == str(EVAL_DATA) and report["adapter"] is None
    assert report["conversations"] == 2 and report["counts"]["turns"] == 4 and len(report["samples"]) == 4
    assert report["settings"] == {"max_new_tokens": 4, "literal_style": "json"}
    assert report["metrics"]["exact_args_acc"] == 0.0


@pytest.mark.parametrize(("args", "message"), [
    (["--model", "{missing}"], "is not a directory"),
    (["--data", "{missing}"], "is not a file"),
    (["--adapter", "{tmp}"], "no adapter_config.json"),
    (["--max-samples", "0"], "--max-samples must be a positive number"),
    (["--model", "{tmp}"], "cannot load a tokenizer"),
    (["--format", "nope"], "unknown format 'nope'"),
])
def test_eval_tools_user_errors(tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                args: list[str], message: str) -> None:
    values = {"--model": str(tiny_model_dir), "--data": str(EVAL_DATA)}
    extra: list[str] = []
    for flag, value in zip(args[::2], args[1::2], strict=True):
        value = value.format(missing=tmp_path / "missing", tmp=tmp_path)
        if flag in values:
            values[flag] = value
        else:
            extra += [flag, value]
    argv = ["eval-tools", *[x for kv in values.items() for x in kv], *extra, "--no-progress"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("minicpm-plugin eval-tools: error: ") and message in err
    assert "Traceback" not in err


def test_eval_tools_bad_data_lists_the_problems(tiny_model_dir: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": 3}]}\n')
    assert main(["eval-tools", "--model", str(tiny_model_dir), "--data", str(bad), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "bad.jsonl:1:" in err and "minicpm-plugin check" in err
    only_user = tmp_path / "user.jsonl"
    only_user.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n')
    assert main(["eval-tools", "--model", str(tiny_model_dir), "--data", str(only_user), "--no-progress"]) == 1
    assert "no assistant turn" in capsys.readouterr().err


# --- the training callback ------------------------------------------------------------------------

def callback_cfg(**values: Any) -> dict[str, Any]:
    return {"minicpm3_eval_tools_steps": 2, **values}


def test_from_config_needs_held_out_data(tmp_path: Path) -> None:
    from minicpm_plugin.integration.config_checks import ConfigError
    from minicpm_plugin.integration.eval_callback import ToolCallEvalCallback

    with pytest.raises(ConfigError, match="minicpm3_eval_tools_data"):
        ToolCallEvalCallback.from_config(callback_cfg(), trainer=None)
    with pytest.raises(ConfigError, match="minicpm3_eval_tools_data"):
        ToolCallEvalCallback.from_config(callback_cfg(minicpm3_eval_tools_data=str(tmp_path / "nope.jsonl")), None)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": 3}]}\n')
    with pytest.raises(ConfigError, match="bad.jsonl:1"):
        ToolCallEvalCallback.from_config(callback_cfg(minicpm3_eval_tools_data=str(bad)), None)


def test_from_config_reads_the_data_key_or_the_prepared_test_dataset(tmp_path: Path) -> None:
    from minicpm_plugin.formats.prepare import prepare_dataset_file
    from minicpm_plugin.integration.eval_callback import ToolCallEvalCallback

    expected = load_conversations(EVAL_DATA)
    cb = ToolCallEvalCallback.from_config(
        callback_cfg(minicpm3_eval_tools_data=str(EVAL_DATA), minicpm3_eval_tools_samples=3,
                     minicpm3_eval_tools_max_new_tokens=7, minicpm3_literal_style="python"), trainer=None)
    assert cb.conversations == expected[:3] and cb.every_steps == 2
    assert (cb.max_new_tokens, cb.literal_style) == (7, "python")
    # After MiniCPM3Plugin.register, a test dataset points at the prepared (Arrow-safe) copy.
    prepared = prepare_dataset_file(EVAL_DATA, out_dir=tmp_path)
    cfg = callback_cfg(test_datasets=[{"path": prepared.path, "type": "minicpm_plugin.strategy"}])
    assert ToolCallEvalCallback.from_config(cfg, trainer=None).conversations == expected


def test_callback_evaluates_every_n_steps_and_logs(tiny_model_dir: Path) -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from minicpm_plugin.integration.eval_callback import ToolCallEvalCallback
    from minicpm_plugin.model.compat import apply_transformers_fixes

    apply_transformers_fixes()
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                           LoraConfig(r=4, target_modules=["q_a_proj", "kv_a_proj_with_mqa"]))
    model.train()
    logged: list[dict[str, Any]] = []
    unwrapped: list[Any] = []

    class Accelerator:
        def unwrap_model(self, m: Any) -> Any:
            unwrapped.append(m)
            return m

    control = SimpleNamespace(should_log=True)

    def log(metrics: dict[str, Any]) -> None:  # like Trainer.log: its on_log clears should_log
        logged.append(metrics)
        control.should_log = False

    trainer = SimpleNamespace(model=model, accelerator=Accelerator(), processing_class=tokenizer, log=log,
                              control=control)
    cb = ToolCallEvalCallback(load_conversations(EVAL_DATA)[:1], every_steps=2, trainer=trainer, max_new_tokens=3)
    state = SimpleNamespace(global_step=1, is_world_process_zero=True, log_history=[])
    cb.on_step_end(None, state, None, model=model, processing_class=tokenizer)
    assert logged == []
    state.global_step = 2
    cb.on_step_end(None, state, None, model=model, processing_class=tokenizer)
    assert len(logged) == 1 and unwrapped == [model]
    assert control.should_log, "the loss of this step is still logged"
    metrics = logged[0]
    assert set(metrics) == {"tool_eval/well_formed_rate", "tool_eval/lenient_rate", "tool_eval/decision_acc", "tool_eval/name_acc",
                            "tool_eval/exact_args_acc", "tool_eval/arg_acc", "tool_eval/wrong_call_rate",
                            "tool_eval/malformed"}
    assert model.training and any(p.requires_grad for p in model.parameters())
    assert all(p.grad is None for p in model.parameters())
    assert cb.last_report is not None and cb.last_report["counts"]["turns"] == 2
    # Without a trainer the entry goes straight into the log history.
    bare = ToolCallEvalCallback(load_conversations(EVAL_DATA)[:1], every_steps=1, max_new_tokens=2)
    bare.on_step_end(None, state, None, model=model, processing_class=tokenizer)
    assert state.log_history[-1]["step"] == 2 and "tool_eval/decision_acc" in state.log_history[-1]
