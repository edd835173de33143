r"""convert-script on the MiniCPM cookbook's own script shapes, checked against real bash.

The cookbook's LoRA/QLoRA steps (OpenBMB/MiniCPM-CookBook, md/finetune/minicpm3.0/sft.md) have users
edit finetune/lora_finetune_ocnli.sh into this shape: NCCL exports for RTX 4090 cards,
`--deepspeed configs/ds_config_zero2_offload.json`, a `\ # 中文注释` after every flag (ONE space after
the backslash), and for LoRA/QLoRA `use_lora \` / `qlora \` lines without dashes before the
`--deepspeed` line. The fixtures in fixtures/convert_script/guide/ are written in those shapes (our
own text). BASH is what bash itself runs for each of them, recorded with `run_bash` and checked
against real bash again on every run where bash exists.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from minicpm_plugin.tools.convert import OFFICIAL_LORA, bash_reading, convert_script, read_launch

FIXTURES = Path(__file__).parent / "fixtures" / "convert_script"
GUIDE = FIXTURES / "guide"
DATE = "20240101000000"  # what the stub `date` prints
needs_bash = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")

# What bash runs: ("deepspeed", its arguments) for the training command, ("not found", words) for each
# command bash tries to run that does not exist (recorded by its command_not_found_handle).
_OCNLI_TAIL = [
    ("not found", ["--output_dir", f"output/OCNLILoRA/{DATE}/", " #", "保存模型的目录"]),
    ("not found", ["--train_data_path", "data/ocnli_public_chatml/train.json", " #", "训练集路径"]),
    ("not found", ["--eval_data_path", "data/ocnli_public_chatml/dev.json", " #", "验证集路径"]),
    ("not found", ["--learning_rate", "5e-5", " #", "学习率"]),
    ("not found", ["--per_device_train_batch_size", "16", " #", "单卡训练批大小"]),
    ("not found", ["--per_device_eval_batch_size", "128", " #", "单卡评估批大小"]),
    ("not found", ["--model_max_length", "1024", " #", "最大", "token", "数，更长的会被截断"]),
    ("not found", ["--bf16", " #", "使用", "bf16，不支持的显卡改为", "false"]),
]
_OCNLI_TAIL2 = [
    ("not found", ["--gradient_accumulation_steps", "1", " #", "梯度累积步数"]),
    ("not found", ["--warmup_steps", "100", " #", "预热步数"]),
    ("not found", ["--max_steps", "1000", " #", "训练总步数"]),
    ("not found", ["--weight_decay", "0.01", " #", "权重衰减"]),
    ("not found", ["--evaluation_strategy", "steps", " #", "按步数评估"]),
    ("not found", ["--eval_steps", "500", " #", "每", "500", "步评估一次"]),
    ("not found", ["--save_strategy", "steps", " #", "按步数保存"]),
    ("not found", ["--save_steps", "500", " #", "每", "500", "步保存一次"]),
    ("not found", ["--seed", "42", " #", "随机种子"]),
    ("not found", ["--log_level", "info", "--logging_strategy", "steps", "--logging_steps", "10", " #",
                   "日志设置"]),
]
_OCNLI_LAUNCH = ("deepspeed", ["--include", "localhost:1", "--master_port", "19888", "finetune.py",
                               "--model_name_or_path", "openbmb/MiniCPM3-4B", " #", "模型名称或本地路径"])
BASH: dict[str, list[tuple[str, list[str]]]] = {
    # finetune.py gets " #" and the comment as arguments and no other flag; every later line is a
    # command of its own, the last one too.
    "lora_ocnli.sh": [
        _OCNLI_LAUNCH, *_OCNLI_TAIL, ("not found", ["--use_lora", " #", "使用", "LoRA"]), *_OCNLI_TAIL2,
        ("not found", ["--deepspeed", "configs/ds_config_zero2_offload.json"]),
    ],
    # the same, and the added lines make one more command: `use_lora qlora --deepspeed ...`
    "qlora_ocnli.sh": [
        _OCNLI_LAUNCH, *_OCNLI_TAIL, ("not found", ["--use_lora", " #", "使用", "LoRA（QLoRA", "也要开）"]),
        *_OCNLI_TAIL2,
        ("not found", ["use_lora", "qlora", "--deepspeed", "configs/ds_config_zero2_offload.json"]),
    ],
    "sft_use_lora.sh": [
        ("deepspeed", ["--include", "localhost:0", "--master_port", "29500", "finetune.py",
                       "--model_name_or_path", "openbmb/MiniCPM3-4B", " #", "预训练模型"]),
        ("not found", ["--output_dir", f"output/AdvertiseGenLoRA/{DATE}/", " #", "输出目录（带时间戳）"]),
        ("not found", ["--train_data_path", "data/AdvertiseGenChatML/train.json", " #", "训练数据"]),
        ("not found", ["--eval_data_path", "data/AdvertiseGenChatML/dev.json", " #", "验证数据"]),
        ("not found", ["--learning_rate", "1e-4", " #", "学习率"]),
        ("not found", ["--per_device_train_batch_size", "4", " #", "每卡训练", "batch"]),
        ("not found", ["--per_device_eval_batch_size", "8", " #", "每卡验证", "batch"]),
        ("not found", ["--model_max_length", "2048", " #", "序列长度"]),
        ("not found", ["--bf16", " #", "bf16", "混合精度"]),
        ("not found", ["--gradient_accumulation_steps", "4", " #", "梯度累积"]),
        ("not found", ["--warmup_steps", "50", " #", "预热"]),
        ("not found", ["--num_train_epochs", "2", " #", "训练轮数"]),
        ("not found", ["--evaluation_strategy", "steps", " #", "按步评估"]),
        ("not found", ["--eval_steps", "200", " #", "评估间隔"]),
        ("not found", ["--save_strategy", "steps", " #", "按步保存"]),
        ("not found", ["--save_steps", "200", " #", "保存间隔"]),
        ("not found", ["--seed", "42", " #", "随机种子"]),
        ("not found", ["--logging_steps", "10", " #", "日志间隔"]),
        ("not found", ["use_lora", "--deepspeed", "configs/ds_config_zero2_offload.json"]),
    ],
    # no comments: one command, and finetune.py gets the bare words as stray arguments
    "ocnli_bare_words.sh": [
        ("deepspeed", [
            "--include", "localhost:1", "--master_port", "19888", "finetune.py",
            "--model_name_or_path", "openbmb/MiniCPM3-4B", "--output_dir", f"output/OCNLILoRA/{DATE}/",
            "--train_data_path", "data/ocnli_public_chatml/train.json",
            "--eval_data_path", "data/ocnli_public_chatml/dev.json",
            "--learning_rate", "5e-5", "--per_device_train_batch_size", "80",
            "--per_device_eval_batch_size", "128", "--model_max_length", "128", "--bf16", "--use_lora",
            "--gradient_accumulation_steps", "1", "--warmup_steps", "100",
            "--max_steps", "1000", "--weight_decay", "0.01",
            "--evaluation_strategy", "steps", "--eval_steps", "500",
            "--save_strategy", "steps", "--save_steps", "500", "--seed", "42",
            "--log_level", "info", "--logging_strategy", "steps", "--logging_steps", "10",
            "use_lora", "qlora", "--deepspeed", "configs/ds_config_zero2_offload.json",
        ]),
    ],
}

_LAUNCHERS = ("deepspeed", "torchrun", "python", "python3", "accelerate")
_STUB = ('#!/bin/sh\n{ printf "%s" "$(basename "$0")"; for a in "$@"; do printf "\\037%s" "$a"; done; '
         'printf "\\n"; } >> "$ARGV_LOG"\nenv -0 > "$ARGV_LOG.env"\n')
_HANDLER = ("command_not_found_handle() { { printf 'not found'; printf '\\037%s' \"$@\"; printf '\\n'; } "
            ">> \"$ARGV_LOG\"; return 0; }\n")


def run_bash(script: Path, tmp_path: Path) -> tuple[list[tuple[str, list[str]]], dict[str, str], str]:
    """`bash SCRIPT` as the cookbook runs it, with stub launchers on PATH that record their arguments
    and environment, a fixed `date`, and a command_not_found_handle (from BASH_ENV) that records
    each command bash cannot find and returns 0, so that `set -e` scripts go on."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name in _LAUNCHERS:
        (bin_dir / name).write_text(_STUB)
    (bin_dir / "date").write_text(f"#!/bin/sh\necho {DATE}\n")
    for stub in bin_dir.iterdir():
        stub.chmod(0o755)
    (tmp_path / "harness.sh").write_text(_HANDLER)
    log = tmp_path / "argv.log"
    log.unlink(missing_ok=True)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "BASH_ENV": str(tmp_path / "harness.sh"),
           "ARGV_LOG": str(log), "HOME": str(tmp_path)}
    proc = subprocess.run(["bash", str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=60)
    records = []
    if log.exists():
        for line in log.read_bytes().decode("utf-8").split("\n")[:-1]:  # keep any CR in the words
            kind, *argv = line.split("\x1f")
            records.append((kind, argv))
    env_file = Path(f"{log}.env")
    seen = dict(item.split("=", 1) for item in env_file.read_text().split("\0") if "=" in item) \
        if env_file.exists() else {}
    return records, seen, proc.stderr


def model(text: str, name: str) -> list[tuple[str, list[str]]]:
    """The converter's reading of what bash runs, in run_bash's terms."""
    launch, _, _ = read_launch(text, source=name)
    out = []
    for cmd in bash_reading(text, launch.line, launch.last_line, source=name).commands:
        words = [w.replace('$(date +"%Y%m%d%H%M%S")', DATE) for w, _ in cmd.fields]
        if cmd.launch:
            out.append((words[0], words[1:]))
        elif not shutil.which(words[0], path="/usr/bin:/bin"):  # `| tee train.log` runs for real
            out.append(("not found", words))
    return out


@pytest.mark.parametrize("name", sorted(BASH))
def test_bash_reading_is_the_recorded_bash_run(name):
    assert model((GUIDE / name).read_text(encoding="utf-8"), name) == BASH[name]


@needs_bash
@pytest.mark.parametrize("name", sorted(BASH))
def test_recorded_bash_run_is_what_bash_does(name, tmp_path):
    records, seen, _ = run_bash(GUIDE / name, tmp_path)
    assert records == BASH[name]
    # the exports reach deepspeed; the converter carries them into the train command
    conv = convert_script((GUIDE / name).read_text(encoding="utf-8"), name)
    assert (seen["NCCL_P2P_DISABLE"], seen["NCCL_IB_DISABLE"]) == ("1", "1")
    assert {k: v for k, v in conv.env.items() if k.startswith("NCCL_")} == \
        {"NCCL_P2P_DISABLE": "1", "NCCL_IB_DISABLE": "1"}


TRICKY = {
    # an apostrophe in a `\ #` comment opens a quote that never closes: bash runs nothing
    "apostrophe.sh": "python finetune.py --output_dir o \\ # it's bf16\n  --bf16\n",
    # the comment ends in a backslash: bash goes on, with " #" and the comment as arguments
    "comment_continues.sh": "python finetune.py --output_dir o \\ # 注释 \\\n  --bf16 \\ # c2\n  --seed 3\n",
    "tab.sh": "python finetune.py --output_dir o \\\t# tab\n  --bf16\n",
    "bare_middle.sh": "python finetune.py --output_dir o \\\n  use_lora \\\n    # 注释行\n  qlora \\\n  --bf16\n",
    # Windows line endings: each backslash escapes the CR, every line is a command of its own (the
    # converter warns and reads the file with the CRs removed)
    # bash's blanks are space and tab: a full-width space neither splits words nor starts a comment
    "fullwidth_space.sh": "X='a\u3000b'\npython finetune.py --output_dir o\u3000# 注释 \\\n  --run_name $X\n",
    "crlf.sh": "deepspeed --include localhost:0 finetune.py \\\r\n  --output_dir o \\\r\n  --bf16\r\n",
}


@needs_bash
@pytest.mark.parametrize("name", sorted(p.name for p in FIXTURES.glob("*.sh")) + sorted(TRICKY))
def test_bash_reading_matches_real_bash(name, tmp_path):
    """The older fixtures and a few odd shapes: the converter's model of bash is what bash does."""
    text = TRICKY[name] if name in TRICKY else (FIXTURES / name).read_text(encoding="utf-8")
    script = tmp_path / name
    script.write_text(text, encoding="utf-8")
    records, _, stderr = run_bash(script, tmp_path)
    assert records == model(text, name)
    if name == "apostrophe.sh":
        assert records == [] and "unexpected EOF" in stderr
    if name == "crlf.sh":
        assert records == [("deepspeed", ["--include", "localhost:0", "finetune.py", "\r"]),
                           ("not found", ["--output_dir", "o", "\r"]), ("not found", ["--bf16\r"])]


# -- the conversions ----------------------------------------------------------------------------------

ESC = "'\\ #': the backslash escapes the blank after it, so '#' starts no comment"


def own_command(name: str, line: int, flag: str) -> str:
    return (f"{name}:{line}: {ESC}; bash runs line {line} as a command of its own, `{flag} …`: command not "
            "found; converted as the author meant")


def first(name: str, line: int, comment: str, dropped: int, flags: str) -> str:
    return (f"{name}:{line}: bash ends the command here ({ESC}), passes ' #' '{comment}' to finetune.py as "
            f"extra argument(s) (which its argument parser rejects) and drops the {dropped} flag(s) after "
            f"this line ({flags}, ...); converted as the author meant (all flags)")


_OCNLI_FLAGS = ["--output_dir", "--train_data_path", "--eval_data_path", "--learning_rate",
                "--per_device_train_batch_size", "--per_device_eval_batch_size", "--model_max_length",
                "--bf16", "--use_lora", "--gradient_accumulation_steps", "--warmup_steps", "--max_steps",
                "--weight_decay", "--evaluation_strategy", "--eval_steps", "--save_strategy", "--save_steps",
                "--seed", "--log_level"]  # lines 10-28, one each
_FIRST4 = "--output_dir, --train_data_path, --eval_data_path, --learning_rate"
_PARSER = ("which finetune.py's argument parser rejects (HfArgumentParser: 'Some specified arguments are not "
           "used')")
WARNINGS = {
    "lora_ocnli.sh": [
        first("lora_ocnli.sh", 9, "模型名称或本地路径", 22, _FIRST4),
        *[own_command("lora_ocnli.sh", 10 + k, flag) for k, flag in enumerate(_OCNLI_FLAGS)],
        "lora_ocnli.sh:29: the '\\ #' of line 28 ended the command before; bash runs line 29 as a command of "
        "its own, `--deepspeed …`: command not found; converted as the author meant",
    ],
    "qlora_ocnli.sh": [
        first("qlora_ocnli.sh", 9, "模型名称或本地路径", 24, _FIRST4),
        *[own_command("qlora_ocnli.sh", 10 + k, flag) for k, flag in enumerate(_OCNLI_FLAGS)],
        "qlora_ocnli.sh:29: `use_lora` has no dashes: read as --use_lora true; bash runs lines 29-31 as a "
        "command of its own, `use_lora …`: command not found; converted as the author meant",
        "qlora_ocnli.sh:30: `qlora` has no dashes: read as --qlora true; bash passes 'qlora' to the command "
        "`use_lora` of line 29, which does not exist; converted as the author meant",
        "qlora_ocnli.sh:29: --use_lora given twice; the last one wins (line 18 ignored)",
    ],
    "sft_use_lora.sh": [
        first("sft_use_lora.sh", 10, "预训练模型", 19, _FIRST4),
        *[own_command("sft_use_lora.sh", 11 + k, flag) for k, flag in enumerate([
            "--output_dir", "--train_data_path", "--eval_data_path", "--learning_rate",
            "--per_device_train_batch_size", "--per_device_eval_batch_size", "--model_max_length", "--bf16",
            "--gradient_accumulation_steps", "--warmup_steps", "--num_train_epochs", "--evaluation_strategy",
            "--eval_steps", "--save_strategy", "--save_steps", "--seed", "--logging_steps"])],
        "sft_use_lora.sh:28: `use_lora` has no dashes: read as --use_lora true; bash runs lines 28-29 as a "
        "command of its own, `use_lora …`: command not found; converted as the author meant",
    ],
    "ocnli_bare_words.sh": [
        "ocnli_bare_words.sh:19: `use_lora` has no dashes: read as --use_lora true; bash passes 'use_lora' to "
        f"finetune.py as stray argument(s), {_PARSER}; converted as the author meant",
        "ocnli_bare_words.sh:20: `qlora` has no dashes: read as --qlora true; bash passes 'qlora' to "
        f"finetune.py as stray argument(s), {_PARSER}; converted as the author meant",
        "ocnli_bare_words.sh:19: --use_lora given twice; the last one wins (line 13 ignored)",
    ],
}

_OCNLI = {
    "base_model": "openbmb/MiniCPM3-4B", "output_dir": "output/OCNLILoRA/",
    "datasets": [{"path": "data/ocnli_public_chatml/train.json", "ds_type": "json",
                  "type": "minicpm_plugin.strategy"}],
    "test_datasets": [{"path": "data/ocnli_public_chatml/dev.json", "ds_type": "json", "split": "train",
                       "type": "minicpm_plugin.strategy"}],
    "learning_rate": 5e-5, "micro_batch_size": 16, "eval_batch_size": 128, "sequence_len": 1024,
    "bf16": True, "fp16": False, "gradient_accumulation_steps": 1, "warmup_steps": 100, "max_steps": 1000,
    "weight_decay": 0.01, "eval_strategy": "steps", "eval_steps": 500, "save_strategy": "steps",
    "save_steps": 500, "seed": 42, "logging_steps": 10, "lr_scheduler": "linear",
    "deepspeed": "deepspeed_configs/zero2_offload.json", **OFFICIAL_LORA,
}
_QLORA = {"adapter": "qlora", "load_in_4bit": True,
          "bnb_config_kwargs": {"bnb_4bit_quant_type": "nf4", "bnb_4bit_use_double_quant": True}}
RECIPES = {
    "lora_ocnli.sh": {**_OCNLI, "adapter": "lora"},
    "qlora_ocnli.sh": {**_OCNLI, **_QLORA},
    "sft_use_lora.sh": {
        "base_model": "openbmb/MiniCPM3-4B", "output_dir": "output/AdvertiseGenLoRA/",
        "learning_rate": 1e-4, "micro_batch_size": 4, "eval_batch_size": 8, "sequence_len": 2048,
        "bf16": True, "gradient_accumulation_steps": 4, "warmup_steps": 50, "num_epochs": 2,
        "eval_strategy": "steps", "eval_steps": 200, "save_strategy": "steps", "save_steps": 200,
        "seed": 42, "logging_steps": 10, "weight_decay": 0.0, "adapter": "lora",
        "deepspeed": "deepspeed_configs/zero2_offload.json", **OFFICIAL_LORA,
    },
    "ocnli_bare_words.sh": {**_OCNLI, **_QLORA, "micro_batch_size": 80, "sequence_len": 128},
}
ENV = {
    "lora_ocnli.sh": "1", "qlora_ocnli.sh": "1", "sft_use_lora.sh": "0", "ocnli_bare_words.sh": "1",
}


@pytest.mark.parametrize("name", sorted(BASH))
def test_guide_script_converts_as_meant_with_one_warning_per_line(name):
    conv = convert_script((GUIDE / name).read_text(encoding="utf-8"), name)
    assert conv.warnings == WARNINGS[name]
    assert {key: conv.recipe.get(key) for key in RECIPES[name]} == RECIPES[name]
    if name == "sft_use_lora.sh":
        assert "max_steps" not in conv.recipe
    else:
        assert "max_steps" in conv.recipe
    assert conv.env == {"NCCL_P2P_DISABLE": "1", "NCCL_IB_DISABLE": "1", "CUDA_VISIBLE_DEVICES": ENV[name]}
    assert conv.world_size == 1
    assert conv.train_command("r.yml") == (f"NCCL_P2P_DISABLE=1 NCCL_IB_DISABLE=1 CUDA_VISIBLE_DEVICES={ENV[name]}"
                                          " accelerate launch -m axolotl.cli.train r.yml")
    assert [u.split(": ")[1] for u in conv.unmapped] == (
        ["--master_port 29500"] if name == "sft_use_lora.sh" else ["--master_port 19888", "--log_level info"])


def test_every_guide_line_bash_runs_differently_has_its_warning():
    """Each command bash runs that the author did not mean (BASH) starts on a line with a warning."""
    for name in sorted(BASH):
        text = (GUIDE / name).read_text(encoding="utf-8")
        launch, _, _ = read_launch(text, source=name)
        warned = {int(w.split(":")[1]) for w in WARNINGS[name]}
        reading = bash_reading(text, launch.line, launch.last_line, source=name)
        starts = {cmd.fields[0][1] for cmd in reading.commands if not cmd.launch}
        assert starts <= warned, (name, sorted(starts - warned))
        bare = {f.line for f in launch.flags if f.bare}
        assert bare <= warned
