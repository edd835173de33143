"""The plugin checks and fixes the config before anything heavy loads (axolotl's load_cfg)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from axolotl_runs import REPO, failure, run_axolotl, tiny_config

from minicpm_plugin import CHAT_TEMPLATE, CHAT_TEMPLATE_PYTHON
from minicpm_plugin.integration.config_checks import ConfigError


def load(cfg: dict, tmp_path: Path):  # noqa: ANN201 - axolotl's DictDefault
    from axolotl.cli.config import load_cfg

    path = tmp_path / "cfg.yml"
    path.write_text(yaml.safe_dump(cfg))
    return load_cfg(str(path))


def test_valid_config_is_fixed_for_cpu_and_gets_our_template(tiny_model_dir: Path, tmp_path: Path) -> None:
    cfg = load(tiny_config(tiny_model_dir, tmp_path, minicpm3_literal_style="python", tf32=True), tmp_path)
    assert cfg.chat_template_jinja == CHAT_TEMPLATE_PYTHON
    assert (cfg.bf16, cfg.fp16, cfg.tf32) == (False, False, False)
    assert cfg.lora_mlp_kernel is False and cfg.lora_qkv_kernel is False
    assert cfg.datasets[0].path.endswith(".jsonl") and "minicpm3_data" in cfg.datasets[0].path
    assert cfg.minicpm3_literal_style == "python" and cfg.minicpm3_overlong == "drop"
    rows = [json.loads(line) for line in Path(cfg.datasets[0].path).read_text().splitlines()]
    # The prepared-row contract: strings and a flat list of ints (Arrow infers no schema for the arguments).
    assert set(rows[0]) == {"conversation", "source", "text", "literal_style", "spans"}
    assert all(isinstance(rows[0][k], str) for k in ("conversation", "source", "text", "literal_style"))
    assert rows[0]["literal_style"] == "python" and all(isinstance(v, int) for v in rows[0]["spans"])
    assert rows[0]["source"].endswith("tool_calls.jsonl:1")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"lora_target_linear": None, "lora_target_modules": ["q_proj", "v_proj"]},
         "['q_proj', 'v_proj'] do not exist in MiniCPM3. Use some of: q_a_proj, q_b_proj, kv_a_proj_with_mqa"),
        ({"lora_target_linear": None, "lora_target_modules": None}, "no LoRA targets"),
        ({"lora_qkv_kernel": True}, "lora_qkv_kernel: true is not supported for MiniCPM3"),
        ({"chat_template": "chatml"}, "chat_template: chatml would save a non-MiniCPM3 template"),
        ({"minicpm3_overlong": "cut"}, "invalid minicpm3_* key"),
        ({"minicpm3_eval_tools_steps": 5}, "minicpm3_eval_tools_steps is set but there is nothing to evaluate on"),
        ({"minicpm3_eval_tools_steps": 5, "minicpm3_eval_tools_data": "nope.jsonl"}, "is not a file"),
        ({"adapter": "qlora", "load_in_4bit": True, "deepspeed": str(REPO / "deepspeed_configs/zero3.json")},
         "is ZeRO stage 3, which does not work with QLoRA"),
    ],
)
def test_config_mistakes_are_refused_with_what_to_change(tiny_model_dir: Path, tmp_path: Path, overrides: dict,
                                                         message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(tiny_config(tiny_model_dir, tmp_path, **overrides), tmp_path)
    assert message in info.value.message


def test_not_a_minicpm3_model(tiny_model_dir: Path, tmp_path: Path) -> None:
    other = tmp_path / "llama"
    shutil.copytree(tiny_model_dir, other)
    config = json.loads((other / "config.json").read_text())
    config["model_type"] = "llama"
    (other / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match="is a 'llama' model"):
        load(tiny_config(other, tmp_path), tmp_path)


def test_trust_remote_code_is_handled(tiny_model_dir: Path, tmp_path: Path) -> None:
    cfg = load(tiny_config(tiny_model_dir, tmp_path, trust_remote_code=True), tmp_path)
    assert cfg.trust_remote_code is False


def test_bad_data_stops_the_run_before_loading_anything(tiny_model_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    good = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}
    bad.write_text(json.dumps(good) + "\n" + '{"messages": [{"role": "user", "content": "x"}, {"role": "wizard"\n')
    with pytest.raises(ConfigError) as info:
        load(tiny_config(tiny_model_dir, tmp_path, datasets=[{"path": str(bad), "type": "minicpm_plugin.strategy"}]), tmp_path)
    assert f"{bad}:2" in info.value.message or "bad.jsonl:2" in info.value.message
    cfg = load(tiny_config(tiny_model_dir, tmp_path, minicpm3_on_bad_rows="skip",
                           datasets=[{"path": str(bad), "type": "minicpm_plugin.strategy"}]), tmp_path)
    assert len(Path(cfg.datasets[0].path).read_text().splitlines()) == 1


def test_user_mistake_prints_one_message_not_a_traceback(tiny_model_dir: Path, tmp_path: Path) -> None:
    cfg = tiny_config(tiny_model_dir, tmp_path, lora_target_linear=None, lora_target_modules=["q_proj", "v_proj"])
    result = run_axolotl(cfg, tmp_path, launcher="python", timeout=300)
    assert result.returncode == 1, failure(result)
    assert "minicpm-plugin: config error: lora_target_modules ['q_proj', 'v_proj'] do not exist" in result.stderr
    assert "Traceback" not in result.stderr


def test_longrope_config_without_factor_loads(tiny_model_dir: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    from minicpm_plugin.model.compat import apply_transformers_fixes

    model_dir = tmp_path / "nofactor"
    shutil.copytree(tiny_model_dir, model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    del config["rope_parameters"]["factor"]  # as in MiniCPM3-4B's config.json
    (model_dir / "config.json").write_text(json.dumps(config))
    apply_transformers_fixes()
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    assert model.config.rope_parameters["factor"] == 1.0


def test_default_template_is_json_style(tiny_model_dir: Path, tmp_path: Path) -> None:
    assert load(tiny_config(tiny_model_dir, tmp_path), tmp_path).chat_template_jinja == CHAT_TEMPLATE
