"""convert-script: official finetune.py launch scripts -> axolotl recipes."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from minicpm_plugin.cli import main
from minicpm_plugin.tools.convert import (
    OFFICIAL_LORA,
    ScriptError,
    convert_script,
    find_traps,
    read_launch,
)

FIXTURES = Path(__file__).parent / "fixtures" / "convert_script"


def _convert(name: str, **kwargs):
    return convert_script((FIXTURES / name).read_text(encoding="utf-8"), name, **kwargs)


def _flags(text: str) -> dict:
    launch, _, _ = read_launch(text)
    return {f.name: f.value for f in launch.flags}


def test_lora_script_maps_every_flag():
    conv = _convert("lora_finetune.sh")
    r = conv.recipe
    assert r["base_model"] == "openbmb/MiniCPM3-4B"  # from $MODEL set earlier in the script
    assert r["plugins"] == ["minicpm_plugin.MiniCPM3Plugin"]
    assert r["trust_remote_code"] is False
    assert r["datasets"] == [{"path": "data/AdvertiseGenChatML/train.json", "ds_type": "json",
                              "type": "minicpm_plugin.strategy"}]
    assert r["test_datasets"][0]["path"] == "data/AdvertiseGenChatML/dev.json"
    assert r["output_dir"] == "output/AdvertiseGenLoRA/"  # the $(date) timestamp is left out
    assert (r["learning_rate"], r["micro_batch_size"], r["eval_batch_size"]) == (5e-5, 32, 64)
    assert (r["sequence_len"], r["gradient_accumulation_steps"], r["warmup_steps"]) == (384, 1, 100)
    assert (r["max_steps"], r["weight_decay"], r["seed"], r["logging_steps"]) == (3000, 0.01, 42, 10)
    assert (r["eval_strategy"], r["eval_steps"], r["save_strategy"], r["save_steps"]) == ("steps", 500, "steps", 500)
    assert r["bf16"] is True and r["fp16"] is False
    assert r["adapter"] == "lora" and "load_in_4bit" not in r
    for key, value in OFFICIAL_LORA.items():
        assert r[key] == value
    assert r["deepspeed"] == "deepspeed_configs/zero3_offload.json"
    assert r["special_tokens"] == {"pad_token": "</s>"}
    assert r["sample_packing"] is False
    assert conv.warnings == []
    assert [u.split(": ")[1] for u in conv.unmapped] == ["--log_level info"]
    assert conv.world_size == 1


def test_unset_flags_get_finetune_py_defaults():
    """axolotl's defaults differ (e.g. cosine schedule); the script ran with TrainingArguments'."""
    r = _convert("lora_finetune.sh").recipe
    assert r["lr_scheduler"] == "linear"
    assert r["optimizer"] == "adamw_torch"
    assert r["max_grad_norm"] == 1.0
    assert _convert("lora_finetune.sh").origin["lr_scheduler"].startswith("absent from the script")


def test_ocnli_script_default_expansion_and_master_port():
    conv = _convert("lora_finetune_ocnli.sh")
    r = conv.recipe
    assert r["base_model"] == "/models/MiniCPM3-4B"  # "${MODEL_DIR:-/models/MiniCPM3-4B}"
    assert r["output_dir"] == "output/OCNLILoRA/"
    assert (r["micro_batch_size"], r["eval_batch_size"], r["sequence_len"], r["max_steps"]) == (80, 128, 128, 1000)
    assert any("--master_port 19888: not needed" in u for u in conv.unmapped)
    assert conv.warnings == []
    # a variable given on the command line wins over the script's default
    assert _convert("lora_finetune_ocnli.sh", variables={"MODEL_DIR": "/ckpt/m3"}).recipe["base_model"] == "/ckpt/m3"


def test_full_sft_script_with_comment_lines_is_read_as_meant():
    conv = _convert("sft_finetune.sh")
    r = conv.recipe
    # bash would run `deepspeed --include localhost:0,1 finetune.py` with no flags at all
    assert conv.warnings[0].startswith("sft_finetune.sh:8: bash ends the command here (a comment line")
    assert "drops the 21 flag(s)" in conv.warnings[0]
    assert conv.warnings[1].startswith("sft_finetune.sh:10: the same at line(s) 10, 12, 14")
    assert "adapter" not in r and "lora_r" not in r
    assert r["base_model"] == "openbmb/MiniCPM3-4B"
    assert (r["micro_batch_size"], r["eval_batch_size"], r["gradient_accumulation_steps"]) == (14, 32, 2)
    assert (r["eval_steps"], r["save_steps"], r["logging_steps"]) == (100, 500, 10)
    assert r["sequence_len"] == 512  # no --model_max_length: finetune.py's default
    assert r["deepspeed"] == "deepspeed_configs/zero2.json"
    assert conv.world_size == 2
    assert "--num_processes 2" in conv.to_yaml()


def test_inline_comment_after_backslash_qlora_script():
    conv = _convert("qlora_inline_comments.sh")
    r = conv.recipe
    first = conv.warnings[0]
    assert first.startswith("qlora_inline_comments.sh:15: bash ends the command here (a '# comment' after the "
                            "line-continuation backslash)")
    assert "--gradient_accumulation_steps" in first
    assert conv.warnings[1] == "qlora_inline_comments.sh:19: the same at line(s) 19"
    # flags on and after the trap lines are all read
    assert (r["micro_batch_size"], r["gradient_accumulation_steps"], r["sequence_len"]) == (2, 8, 1024)
    assert r["adapter"] == "qlora" and r["load_in_4bit"] is True
    assert r["bnb_config_kwargs"] == {"bnb_4bit_quant_type": "nf4", "bnb_4bit_use_double_quant": True}
    assert r["learning_rate"] == 2e-4  # --learning_rate=2e-4
    assert r["bf16"] is True  # --bf16 True
    assert (r["num_epochs"], r["warmup_ratio"], r["lr_scheduler"]) == (2, 0.05, "cosine")
    assert r["gradient_checkpointing"] is True and r["use_tensorboard"] is True
    assert r["dataloader_pin_memory"] is False
    assert r["base_model"] == "/data/models/MiniCPM3-4B"  # export MODEL_PATH="..."
    assert r["output_dir"] == "output/qlora run"  # RUN_NAME='qlora run', quoted: one word
    assert r["datasets"][0]["path"] == "data/my_chats/train.json"
    # eval_strategy no: no eval data in the recipe
    assert r["eval_strategy"] == "no" and "test_datasets" not in r
    # QLoRA cannot use ZeRO-3: mapped to the ZeRO-2 offload config, with a warning
    assert r["deepspeed"] == "deepspeed_configs/zero2_offload.json"
    assert any(":26: --deepspeed configs/ds_config_zero3_offload.json: ZeRO-3 does not work with QLoRA" in w
               for w in conv.warnings)
    assert conv.world_size == 1  # CUDA_VISIBLE_DEVICES=0


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
@pytest.mark.parametrize("name", sorted(p.name for p in FIXTURES.glob("*.sh")))
def test_reading_matches_bash(name, tmp_path):
    """Run each fixture under bash with a fake `deepspeed` that prints the words after finetune.py.

    Without a trap bash passes exactly the words we read; with one, it passes only the words up to
    the first trap line (plus the stray " " an escaped space makes), and we report that line."""
    text = (FIXTURES / name).read_text(encoding="utf-8")
    fake = ('deepspeed() { while [ "$1" != finetune.py ]; do shift; done; shift; printf "%s\\0" "$@" > argv.bin; }\n'
            "tee() { cat > /dev/null; }\ndate() { echo 20240101000000; }\n")
    script = tmp_path / "run.sh"
    script.write_text(fake + text, encoding="utf-8")
    subprocess.run(["bash", str(script)], capture_output=True, cwd=tmp_path)
    out = (tmp_path / "argv.bin").read_text(encoding="utf-8")
    bash_argv = [w for w in out.split("\0")[:-1] if w.strip()]
    launch, traps, _ = read_launch(text)
    ours = [w.replace('$(date +"%Y%m%d%H%M%S")', "20240101000000") for w, _ in launch.argv]
    if traps:
        assert bash_argv == [w for w, (_, line) in zip(ours, launch.argv, strict=True) if line <= traps[0].line]
        assert len(bash_argv) < len(ours)
    else:
        assert bash_argv == ours


@pytest.mark.parametrize("script,line,flags", [
    # spaces after the backslash: an escaped space, then the line ends the command
    ("python finetune.py --bf16 \\  \n  --use_lora\n", 1, {"bf16": True, "use_lora": True}),
    # the backslash inside the comment
    ("python finetune.py --seed 1  # seed \\\n  --max_steps 5\n", 1, {"seed": "1", "max_steps": "5"}),
    # an empty line inside the continuation, followed by more flags
    ("python finetune.py --seed 1 \\\n\n  --max_steps 5\n", 2, {"seed": "1", "max_steps": "5"}),
])
def test_other_trap_shapes(script, line, flags):
    assert [t.line for t in find_traps(script)[1]] == [line]
    assert _flags(script) == flags


def test_no_false_trap_at_the_end_of_a_command():
    script = "python finetune.py --seed 1 \\  # trailing\necho done\n"
    assert find_traps(script)[1] == []


def test_shell_details():
    text = (
        'A=1; B="two words"\n'
        "C=${UNSET:-fallback}\n"
        "nohup python3 finetune.py --x $A --y \"$B\" --z $C --w '$A' --v=\"a b\" > log.txt 2>&1 &\n"
    )
    assert _flags(text) == {"x": "1", "y": "two words", "z": "fallback", "w": "$A", "v": "a b"}


def test_undefined_variable_is_reported_with_its_line():
    conv = convert_script("deepspeed finetune.py \\\n  --model_name_or_path $MODEL --output_dir out\n", "s.sh")
    assert conv.recipe["base_model"] == "${MODEL}"
    assert "s.sh:2: $MODEL is not set in the script; the recipe has ${MODEL} in its place " \
           "(pass --var MODEL=VALUE)" in conv.warnings
    assert not any("not a MiniCPM3 checkpoint" in w for w in conv.warnings)


def test_bad_values_name_file_and_line():
    with pytest.raises(ScriptError, match=r"^s\.sh:3: --learning_rate expects a number, got 'fast'"):
        convert_script("python finetune.py \\\n --output_dir o \\\n --learning_rate fast\n", "s.sh")
    with pytest.raises(ScriptError, match=r"^s\.sh: no training command found"):
        convert_script("echo hello\n", "s.sh")
    with pytest.raises(ScriptError, match=r"--bf16 and --fp16"):
        convert_script("python finetune.py --output_dir o --bf16 --fp16\n", "s.sh")


def test_non_minicpm3_model_and_fp32_are_warned():
    conv = convert_script("python finetune.py --model_name_or_path MiniCPM-2B-sft-bf16 --output_dir o\n", "s.sh")
    assert any("not a MiniCPM3 checkpoint" in w for w in conv.warnings)
    assert any("trains in fp32" in w for w in conv.warnings)


def test_base_dir_is_joined_to_relative_paths():
    r = _convert("lora_finetune.sh", base_dir="finetune").recipe
    assert r["datasets"][0]["path"] == "finetune/data/AdvertiseGenChatML/train.json"
    assert r["output_dir"] == "finetune/output/AdvertiseGenLoRA/"


def test_yaml_round_trips_and_carries_the_warnings():
    conv = _convert("qlora_inline_comments.sh")
    text = conv.to_yaml("my.yml")
    assert yaml.safe_load(text) == conv.recipe
    assert "#   qlora_inline_comments.sh:15: bash ends the command here" in text
    assert "accelerate launch -m axolotl.cli.train my.yml" in text


@pytest.mark.parametrize("name", sorted(str(p.relative_to(FIXTURES)) for p in FIXTURES.rglob("*.sh")))
def test_converted_recipes_pass_axolotl_schema(name):
    """Every key the converter writes is one axolotl knows and accepts. The plugin line and the
    plugin's dataset type are swapped out here; tests/test_recipes.py checks recipes with the plugin."""
    from minicpm_plugin.integration.validate import validate_recipe

    recipe = yaml.safe_load(_convert(name).to_yaml())
    recipe.pop("plugins")
    for ds in recipe["datasets"] + recipe.get("test_datasets", []):
        ds["type"] = "chat_template"
    validated = validate_recipe(recipe, name)
    assert validated["micro_batch_size"] == recipe["micro_batch_size"]


def test_cli_writes_recipe_and_reports(tmp_path, capsys):
    out = tmp_path / "r.yml"
    rc = main(["convert-script", str(FIXTURES / "sft_finetune.sh"), "-o", str(out), "--base-dir", "."])
    assert rc == 0
    err = capsys.readouterr().err
    assert "warning: " in err and "sft_finetune.sh:8: bash ends the command here" in err
    assert "not converted: " in err and "--log_level info" in err
    assert yaml.safe_load(out.read_text(encoding="utf-8"))["deepspeed"] == "deepspeed_configs/zero2.json"


def test_cli_errors(tmp_path, capsys):
    assert main(["convert-script", str(tmp_path / "missing.sh")]) == 1
    assert "missing.sh: no such file" in capsys.readouterr().err
    assert main(["convert-script", str(FIXTURES / "lora_finetune.sh"), "--var", "oops"]) == 1
    assert "expected NAME=VALUE" in capsys.readouterr().err
