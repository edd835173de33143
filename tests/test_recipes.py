"""The shipped recipes and DeepSpeed configs: axolotl accepts them unchanged, and each one trains.

The fast tests validate every recipe with axolotl's own `validate_config` (plugins registered, as
`axolotl.cli.train` does) and check the DeepSpeed configs. The slow ones run `minicpm-plugin
smoke` on each recipe: `accelerate launch -m axolotl.cli.train` on CPU with the tiny MiniCPM3, only
the model, output folders and step count overridden; minicpm3_full.yml runs DeepSpeed ZeRO-2 with
CPU optimizer offload in one process.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from minicpm_plugin.integration.validate import validate_recipe
from minicpm_plugin.model.architecture import MINICPM3_LINEAR_MODULES
from minicpm_plugin.tools.convert import convert_script
from minicpm_plugin.tools.recipes import RecipeError, load_recipe
from minicpm_plugin.tools.smoke import (
    _failure_reason,
    build_smoke_model,
    smoke_config,
    smoke_recipe,
)

ROOT = Path(__file__).resolve().parent.parent
# SFT recipes; the preference (rl: dpo) recipe has its own checks in tests/test_dpo_recipe.py
RECIPES = sorted(p for p in (ROOT / "examples").glob("minicpm3_*.yml") if "\nrl: " not in p.read_text("utf-8"))
DS_CONFIGS = sorted((ROOT / "deepspeed_configs").glob("*.json"))


@pytest.fixture
def repo_cwd(tmp_path, monkeypatch):
    """Run from a scratch folder that sees the repository's examples/ and deepspeed_configs/, so the
    recipes' relative paths resolve and the plugin's prepared data lands in the scratch folder."""
    for name in ("examples", "deepspeed_configs"):
        (tmp_path / name).symlink_to(ROOT / name)
    monkeypatch.chdir(tmp_path)
    # Validate for the machine the recipes are written for (one GPU): without this the plugin's
    # CPU fallback would rewrite bf16 and the optimizer on this CPU-only machine first.
    monkeypatch.setattr("minicpm_plugin.integration.plugin.has_gpu", lambda: True)
    return tmp_path


def test_every_recipe_is_shipped():
    assert [p.name for p in RECIPES] == ["minicpm3_full.yml", "minicpm3_lora.yml", "minicpm3_qlora.yml",
                                         "minicpm3_tools_lora.yml"]


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_recipe_passes_axolotl_validation_unchanged(recipe, repo_cwd):
    raw = load_recipe(recipe)
    cfg = validate_recipe(raw, recipe.name)
    assert cfg["base_model"] == "openbmb/MiniCPM3-4B"
    assert cfg["plugins"] == ["minicpm_plugin.MiniCPM3Plugin"]
    assert cfg["bf16"] is True and cfg["gradient_checkpointing"] is True
    assert cfg["trust_remote_code"] is False
    assert cfg["special_tokens"]["pad_token"] == "</s>"
    assert cfg["sample_packing"] is True and cfg["eval_sample_packing"] is False  # the plugin keeps packed rows apart
    assert cfg["chat_template"] == "jinja"  # set by the plugin: MiniCPM3's template goes into the saved tokenizer
    for ds in cfg["datasets"] + (cfg.get("test_datasets") or []):
        assert ds["type"] == "minicpm_plugin.strategy"
    if raw.get("adapter"):
        assert cfg["lora_target_modules"] == list(MINICPM3_LINEAR_MODULES)
        assert not any(cfg[k] for k in ("lora_mlp_kernel", "lora_qkv_kernel", "lora_o_kernel"))


def test_validation_catches_wrong_keys(repo_cwd):
    raw = load_recipe(ROOT / "examples" / "minicpm3_lora.yml")
    with pytest.raises(RecipeError, match=r"unknown key\(s\) lora_dropuot"):
        validate_recipe({**raw, "lora_dropuot": 0.1}, "typo.yml")
    with pytest.raises(RecipeError, match="q_proj"):
        validate_recipe({**raw, "lora_target_modules": ["q_proj", "v_proj"]}, "targets.yml")
    with pytest.raises(RecipeError, match="micro_batch_size"):
        validate_recipe({**raw, "micro_batch_size": "two"}, "types.yml")


@pytest.mark.parametrize("script", sorted((ROOT / "tests" / "fixtures" / "convert_script").rglob("*.sh")),
                         ids=lambda p: p.stem)
def test_converted_scripts_pass_validation_with_the_plugin(script, repo_cwd):
    recipe = yaml.safe_load(convert_script(script.read_text(encoding="utf-8"), script.name).to_yaml())
    cfg = validate_recipe(recipe, script.name)
    assert cfg["plugins"] == ["minicpm_plugin.MiniCPM3Plugin"]


def test_recipe_files_exist_and_qlora_never_meets_zero3():
    for recipe in RECIPES:
        raw = load_recipe(recipe)
        for ds in raw["datasets"] + (raw.get("test_datasets") or []):
            assert (ROOT / ds["path"]).is_file(), f"{recipe.name}: {ds['path']}"
        if raw.get("deepspeed"):
            assert (ROOT / raw["deepspeed"]).is_file()
            if raw.get("adapter") == "qlora":
                stage = json.loads((ROOT / raw["deepspeed"]).read_text())["zero_optimization"]["stage"]
                assert stage < 3, "QLoRA does not work with ZeRO-3"
        for line in recipe.read_text(encoding="utf-8").splitlines():  # commented alternatives too
            if "deepspeed_configs/" in line:
                path = line.split("deepspeed_configs/", 1)[1].split()[0]
                assert (ROOT / "deepspeed_configs" / path).is_file(), line


def test_sample_data_is_what_the_generator_writes():
    import runpy

    generator = runpy.run_path(str(ROOT / "examples" / "data" / "make_sample_data.py"))
    assert generator["main"](["--check"]) == 0
    rows = [json.loads(line) for line in (ROOT / "examples" / "data" / "tool_calls.jsonl").read_text("utf-8").splitlines()]
    held_out = (ROOT / "examples" / "data" / "tool_calls_eval.jsonl").read_text("utf-8").splitlines()
    assert (len(json.loads((ROOT / "examples" / "data" / "chat_seed.json").read_text("utf-8"))), len(rows),
            len(held_out)) == (40, 60, 8)


def test_deepspeed_configs_fill_auto_from_training_arguments():
    """transformers replaces every "auto" from the TrainingArguments (and the model's hidden size)."""
    from types import SimpleNamespace

    from transformers import TrainingArguments
    from transformers.integrations.deepspeed import HfTrainerDeepSpeedConfig

    assert [p.name for p in DS_CONFIGS] == ["zero2.json", "zero2_offload.json", "zero3.json", "zero3_offload.json"]
    args = TrainingArguments(output_dir=str(ROOT / "outputs" / "unused"), per_device_train_batch_size=2,
                             gradient_accumulation_steps=8, learning_rate=1e-5, weight_decay=0.01,
                             max_grad_norm=1.0, use_cpu=True, report_to=[])
    for path in DS_CONFIGS:
        raw = json.loads(path.read_text(encoding="utf-8"))
        zero = raw["zero_optimization"]
        assert zero["stage"] == (3 if "zero3" in path.name else 2)
        offload = "offload" in path.name
        assert ("offload_optimizer" in zero) == offload and ("optimizer" in raw) == offload
        assert ("offload_param" in zero) == (path.name == "zero3_offload.json")
        if zero["stage"] == 3:
            assert zero["stage3_gather_16bit_weights_on_model_save"] is True
        config = HfTrainerDeepSpeedConfig(raw)
        config.trainer_config_process(args)
        config.trainer_config_finalize(args, SimpleNamespace(config=SimpleNamespace(hidden_size=2560)), 100)
        filled = config.config
        assert '"auto"' not in json.dumps(filled), path.name
        assert (filled["train_micro_batch_size_per_gpu"], filled["gradient_accumulation_steps"],
                filled["train_batch_size"], filled["gradient_clipping"]) == (2, 8, 16, 1.0)
        if offload:
            assert filled["optimizer"]["params"]["lr"] == 1e-5
            assert filled["optimizer"]["params"]["weight_decay"] == 0.01


def test_smoke_config_overrides_only_model_outputs_and_steps(tmp_path):
    raw = load_recipe(ROOT / "examples" / "minicpm3_qlora.yml")
    cfg = smoke_config(raw, "/models/tiny", tmp_path, max_steps=2)
    changed = {k for k in cfg if cfg[k] != raw.get(k)}
    assert changed == {"base_model", "output_dir", "dataset_prepared_path", "max_steps", "gradient_accumulation_steps",
                       "dataset_num_proc"}
    assert cfg["gradient_accumulation_steps"] == 1 != raw["gradient_accumulation_steps"]
    kept = smoke_config(raw, "m", tmp_path, gradient_accumulation_steps=None)
    assert kept["gradient_accumulation_steps"] == raw["gradient_accumulation_steps"]
    assert smoke_config(raw, "m", tmp_path, micro_batch_size=1, sequence_len=512)["sequence_len"] == 512


def test_smoke_model_is_built_once_and_equals_a_fresh_build(tmp_path, monkeypatch):
    from minicpm_plugin.tools.smoke import cached_smoke_model

    monkeypatch.setenv("MINICPM_PLUGIN_CACHE", str(tmp_path / "cache"))
    first = cached_smoke_model()
    assert first.parent == tmp_path / "cache" and [p.name for p in first.parent.iterdir()] == [first.name]
    stamp = (first / "model.safetensors").stat().st_mtime_ns
    assert cached_smoke_model() == first and (first / "model.safetensors").stat().st_mtime_ns == stamp
    fresh = build_smoke_model(tmp_path / "fresh")
    for name in ("model.safetensors", "config.json", "tokenizer.json"):
        assert (first / name).read_bytes() == (fresh / name).read_bytes(), name


def test_failure_reason_prefers_the_real_error():
    log = ("Traceback (most recent call last):\n  File x\nValueError: Target modules {'q_proj'} not found\n"
           "Traceback (most recent call last):\n  File y\n"
           "subprocess.CalledProcessError: Command '[...]' returned non-zero exit status 1.\n")
    assert _failure_reason(log, 1) == "ValueError: Target modules {'q_proj'} not found"
    config = "[ERROR] SystemExit: minicpm-plugin: config error: lora_target_modules ['q_proj'] do not exist\n"
    assert _failure_reason(config, 1) == "minicpm-plugin: config error: lora_target_modules ['q_proj'] do not exist"
    assert _failure_reason("", 3) == "exit status 3"


# ---- slow: real training runs on CPU ---------------------------------------------------------------


@pytest.fixture(scope="module")
def smoke_model(tmp_path_factory):
    return build_smoke_model(tmp_path_factory.mktemp("smoke-model"))


@pytest.fixture(scope="module")
def smoke_env():
    # cache DeepSpeed's compiled CPU Adam inside the checkout (gitignored) across runs
    return {"TORCH_EXTENSIONS_DIR": os.environ.get("TORCH_EXTENSIONS_DIR", str(ROOT / ".torch_extensions"))}


@pytest.mark.slow
@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_recipe_trains_on_cpu(recipe, smoke_model, smoke_env, tmp_path):
    result = smoke_recipe(recipe.relative_to(ROOT), model_dir=smoke_model, max_steps=2, workdir=tmp_path,
                          cwd=ROOT, env=smoke_env)
    assert result.ok, f"{result.reason}\n" + "\n".join(result.log.splitlines()[-30:])
    assert len(result.losses) == 2
    raw = load_recipe(recipe)
    assert result.saved == ("adapter_model.safetensors" if raw.get("adapter") else "model.safetensors")
    if raw.get("deepspeed"):  # a DeepSpeed ZeRO checkpoint with the optimizer partition was written
        assert list(tmp_path.glob("output/checkpoint-*/global_step*/zero_pp_rank_0_*optim_states.pt"))


@pytest.mark.slow
def test_smoke_reports_why_a_recipe_fails(smoke_model, tmp_path):
    raw = load_recipe(ROOT / "examples" / "minicpm3_lora.yml")
    broken = tmp_path / "broken.yml"
    broken.write_text(yaml.safe_dump({**raw, "lora_target_modules": ["q_proj", "v_proj"]}), encoding="utf-8")
    result = smoke_recipe(broken, model_dir=smoke_model, workdir=tmp_path / "run", cwd=ROOT)
    assert not result.ok
    assert "config error" in result.reason and "q_proj" in result.reason
