"""Map finetune.py / DeepSpeed launcher flags to axolotl recipe keys: `convert_script`."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any

from minicpm_plugin.tools.convert.bash import bash_warnings
from minicpm_plugin.tools.convert.launch import BOOL_WORDS, Flag, Launch, read_launch
from minicpm_plugin.tools.convert.recipe import Conversion
from minicpm_plugin.tools.convert.shell import LAUNCH_EXAMPLE, ScriptError, prepare_text, short

# The LoRA that finetune.py hard-codes for MiniCPM3 (its `target_modules` branch for
# MiniCPM3ForCausalLM), so a converted recipe trains the same adapter.
OFFICIAL_LORA: dict[str, Any] = {
    "lora_r": 64,
    "lora_alpha": 32,
    "lora_dropout": 0.1,
    "lora_target_modules": ["q_a_proj", "kv_a_proj_with_mqa", "q_b_proj", "kv_b_proj"],
    "peft_init_lora_weights": "gaussian",
}
DATASET_TYPE = "minicpm_plugin.strategy"
PLUGIN = "minicpm_plugin.MiniCPM3Plugin"

# finetune.py flag -> (recipe key, type)
_DIRECT: dict[str, tuple[str, Any]] = {
    "learning_rate": ("learning_rate", float),
    "per_device_train_batch_size": ("micro_batch_size", int),
    "per_device_eval_batch_size": ("eval_batch_size", int),
    "model_max_length": ("sequence_len", int),
    "gradient_accumulation_steps": ("gradient_accumulation_steps", int),
    "warmup_steps": ("warmup_steps", int),
    "warmup_ratio": ("warmup_ratio", float),
    "max_steps": ("max_steps", int),
    "num_train_epochs": ("num_epochs", "number"),
    "weight_decay": ("weight_decay", float),
    "eval_steps": ("eval_steps", "steps"),
    "save_steps": ("save_steps", "steps"),
    "save_total_limit": ("save_total_limit", int),
    "seed": ("seed", int),
    "logging_steps": ("logging_steps", int),
    "lr_scheduler_type": ("lr_scheduler", str),
    "optim": ("optimizer", str),
    "max_grad_norm": ("max_grad_norm", float),
    "adam_beta1": ("adam_beta1", float),
    "adam_beta2": ("adam_beta2", float),
    "adam_epsilon": ("adam_epsilon", float),
    "dataloader_num_workers": ("dataloader_num_workers", int),
    "resume_from_checkpoint": ("resume_from_checkpoint", str),
    "save_strategy": ("save_strategy", str),
    "eval_strategy": ("eval_strategy", str),
    "evaluation_strategy": ("eval_strategy", str),
    "metric_for_best_model": ("metric_for_best_model", str),
    "gradient_checkpointing": ("gradient_checkpointing", bool),
    "tf32": ("tf32", bool),
    "save_only_model": ("save_only_model", bool),
    "load_best_model_at_end": ("load_best_model_at_end", bool),
    "group_by_length": ("group_by_length", bool),
    "greater_is_better": ("greater_is_better", bool),
    "torch_compile": ("torch_compile", bool),
    "dataloader_pin_memory": ("dataloader_pin_memory", bool),
    "dataloader_prefetch_factor": ("dataloader_prefetch_factor", int),
}
# Flags that need no key: what they do happens anyway (or is irrelevant) under axolotl.
_NOT_NEEDED = {
    "do_train": "axolotl always trains",
    "do_eval": "evaluation follows eval_strategy / the eval data",
    "local_rank": "set by the launcher",
    "overwrite_output_dir": "axolotl writes into output_dir",
    "remove_unused_columns": "axolotl manages dataset columns",
    "save_safetensors": "axolotl saves safetensors",
}
# What finetune.py (and transformers' TrainingArguments) use when a flag is absent; written out so
# the recipe trains the same run (axolotl's own defaults differ for several of them).
_SCRIPT_DEFAULTS: dict[str, Any] = {
    "sequence_len": 512,
    "micro_batch_size": 8,
    "eval_batch_size": 8,
    "gradient_accumulation_steps": 1,
    "num_epochs": 3,
    "learning_rate": 5e-5,
    "lr_scheduler": "linear",
    "optimizer": "adamw_torch",
    "weight_decay": 0.0,
    "max_grad_norm": 1.0,
    "logging_steps": 500,
    "save_strategy": "steps",
    "save_steps": 500,
    "seed": 42,
}
_DEFAULT_TRAIN = "data/AdvertiseGenChatML/train.json"
_DEFAULT_EVAL = "data/AdvertiseGenChatML/dev.json"
_DEFAULT_MODEL = "baichuan-inc/Baichuan2-7B-Base"
# Our configs, by (stage, offload).
_DS_OURS = {
    (2, False): "deepspeed_configs/zero2.json",
    (2, True): "deepspeed_configs/zero2_offload.json",
    (3, False): "deepspeed_configs/zero3.json",
    (3, True): "deepspeed_configs/zero3_offload.json",
}


def _at(flag: Flag) -> str:
    return f"--{flag.name} (line {flag.line})"


def _coerce(conv: Conversion, flag: Flag, kind: Any) -> Any:
    """The flag's value as `kind`: bool, int, float, str, "number" (int when whole) or "steps" (a
    count, or a fraction of the run when below 1)."""
    value = flag.value
    where = f"{conv.source}:{flag.line}"
    if kind is bool:
        if value is True:
            return True
        if isinstance(value, str) and value.lower() in BOOL_WORDS:
            return BOOL_WORDS[value.lower()]
        raise ScriptError(f"{where}: --{flag.name} expects true or false, got {short(repr(value))}")
    if value is True:
        raise ScriptError(f"{where}: --{flag.name} needs a value")
    if kind is str:
        return value
    try:
        number = float(value)
    except ValueError:
        raise ScriptError(f"{where}: --{flag.name} expects a number, got {short(repr(value))}") from None
    if kind == "steps" and number < 1:
        return number  # TrainingArguments reads a value below 1 as a fraction of the run
    if kind in (int, "steps"):
        if not number.is_integer():
            raise ScriptError(f"{where}: --{flag.name} expects a whole number, got {short(repr(value))}")
        return int(number)
    return int(number) if kind == "number" and number.is_integer() else number


def _strip_unresolved(path: str, marked: set[str]) -> str:
    """Drop path components that are unresolved shell text (e.g. a `$(date ...)` timestamp)."""
    keep = [part for part in path.split("/") if not any(m in part for m in marked)]
    out = "/".join(keep)
    return out + "/" if path.endswith("/") and out and not out.endswith("/") else out


_SUBST = re.compile(r"\$\(|`")
_PARENS = re.compile(r"[()]")


def _shell_output_in(value: str, marked: set[str]) -> str | None:
    """The first `$(...)` or backquoted command in `value` that only the shell can run, if any."""
    for start in _SUBST.finditer(value):
        p = start.start()
        if value[p] == "`":
            q = value.find("`", p + 1)
            candidate = value[p:q + 1] if q > p else ""
        else:
            depth, candidate = 0, ""
            for m in _PARENS.finditer(value, p + 1):
                depth += 1 if m.group(0) == "(" else -1
                if depth == 0:
                    candidate = value[p:m.end()]
                    break
        if candidate in marked:
            return candidate
    return None


def _map_deepspeed(conv: Conversion, flag: Flag, qlora: bool) -> None:
    raw = str(flag.value)
    name = PurePosixPath(raw).name.lower()
    m = re.search(r"zero_?([0-3])", name) or re.search(r"stage_?([0-3])", name)
    where = f"{conv.source}:{flag.line}"
    if not m or int(m.group(1)) not in (2, 3):
        conv.set("deepspeed", raw, f"{_at(flag)}: kept as is (not one of the official ZeRO-2/3 configs)")
        conv.warnings.append(f"{where}: --deepspeed {short(raw)}: not an official ZeRO-2/3 config name; kept "
                             "the path as is. Compare it with deepspeed_configs/ (see docs/recipes.md)")
        return
    stage, offload = int(m.group(1)), "offload" in name
    note = f"{_at(flag)}: {PurePosixPath(raw).name}"
    if stage == 3 and qlora:
        stage = 2
        conv.warnings.append(f"{where}: --deepspeed {short(raw)}: ZeRO-3 does not work with QLoRA (its "
                             f"4-bit packed weights cannot be sharded); mapped to ZeRO-2 ({_DS_OURS[(2, offload)]})")
        note += ", ZeRO-3 -> ZeRO-2 for QLoRA"
    conv.set("deepspeed", _DS_OURS[(stage, offload)], note)


def _launch_world_size(conv: Conversion, launch: Launch) -> None:
    gpus: int | None = None
    for name, value, line in launch.launcher_args:
        where = f"{conv.source}:{line}"
        if name == "--include" and value:
            hosts = value.split("@")
            if len(hosts) > 1:
                conv.unmapped.append(f"{where}: {name} {short(value)}: several hosts; use a multi-node accelerate "
                                     "config")
            gpus = sum(len(h.split(":", 1)[1].split(",")) if ":" in h else 1 for h in hosts)
            if len(hosts) == 1 and ":" in value:  # `localhost:1`: deepspeed runs on GPU 1 only
                conv.env["CUDA_VISIBLE_DEVICES"] = value.split(":", 1)[1]
        elif name in ("--num_gpus", "--nproc_per_node", "--nproc-per-node", "--num_processes") and value:
            gpus = int(value) if value.isdigit() else gpus
        elif name in ("--master_port", "--master_addr", "--main_process_port"):
            conv.unmapped.append(f"{where}: {name} {short(str(value))}: not needed (accelerate picks the port; "
                                 "`accelerate launch --main_process_port N` to set one)")
        else:
            conv.unmapped.append(f"{where}: {launch.launcher} {name}{' ' + short(value) if value else ''}: "
                                 "launcher option not converted")
    visible = launch.env.get("CUDA_VISIBLE_DEVICES")
    if gpus is None and visible:
        gpus = len([d for d in visible.split(",") if d.strip()])
    conv.world_size = gpus


def convert_script(text: str, source: str = "script.sh", variables: Mapping[str, str] | None = None,
                   base_dir: str = ".") -> Conversion:
    """Convert the text of an official launch script; `variables` pre-define shell variables.

    `base_dir` is the folder paths in the script are relative to (the script's folder, `finetune/` in
    the official repo), joined onto relative data and output paths unless it is ".".
    """
    text, notes = prepare_text(text, source)
    if not text.strip():
        raise ScriptError(f"{source}:1: the file is empty: expected a launch script with a line like "
                          f"{LAUNCH_EXAMPLE}")
    launch, traps, exp = read_launch(text, variables, source)
    conv = Conversion(source=source)
    conv.warnings += notes
    conv.warnings += bash_warnings(text, launch, traps, variables, source)
    for name, line in dict.fromkeys((u.name, u.line) for u in exp.unresolved if u.kind == "var"):
        conv.warnings.append(f"{source}:{line}: ${name} is not set in the script; the recipe has "
                             f"${{{name}}} in its place (pass --var {name}=VALUE)")
    if PurePosixPath(launch.script).name != "finetune.py":
        conv.warnings.append(f"{source}:{launch.line}: the script runs {short(launch.script)}, not finetune.py; "
                             "flags are read as finetune.py's")
    for name, (value, _) in exp.exported.items():  # exported: the training processes see them
        conv.env[name] = value
    conv.env.update(launch.env)
    _launch_world_size(conv, launch)

    flags: dict[str, Flag] = {}
    for flag in launch.flags:
        if not flag.name:
            conv.unmapped.append(f"{source}:{flag.line}: stray argument {short(repr(flag.value))}: ignored")
            continue
        if flag.name in flags:
            conv.warnings.append(f"{source}:{flag.line}: --{flag.name} given twice; the last one wins "
                                 f"(line {flags[flag.name].line} ignored)")
        flags[flag.name] = flag

    def path_of(flag: Flag | None, default: str) -> str:
        value = default if flag is None else str(flag.value)
        value = _strip_unresolved(value, exp.marked)
        if value and base_dir not in ("", ".") and not value.startswith(("/", "~", "$")):
            value = str(PurePosixPath(base_dir) / value) + ("/" if value.endswith("/") else "")
        return value

    def bool_flag(name: str) -> bool:
        return name in flags and _coerce(conv, flags[name], bool)

    for flag in flags.values():
        shell_output = _shell_output_in(flag.value, exp.marked) if isinstance(flag.value, str) else None
        if shell_output and flag.name != "output_dir":
            conv.warnings.append(f"{source}:{flag.line}: --{flag.name} {short(flag.value)}: contains the output "
                                 f"of {short(shell_output)}, which only the shell knows; edit the recipe")

    # -- model --------------------------------------------------------------------------------------
    model_flag = flags.pop("model_name_or_path", None)
    model = _DEFAULT_MODEL if model_flag is None else str(model_flag.value)
    if model_flag is None:
        conv.warnings.append(f"{source}: no --model_name_or_path: finetune.py would load its default "
                             f"{_DEFAULT_MODEL}; set base_model to your MiniCPM3 checkpoint")
    elif "minicpm3" not in model.lower().replace("-", "").replace("_", "") and model not in exp.marked:
        conv.warnings.append(f"{source}:{model_flag.line}: --model_name_or_path {short(model)}: not a MiniCPM3 "
                             "checkpoint name; the plugin and this recipe are for MiniCPM3 (e.g. "
                             "openbmb/MiniCPM3-4B or its local copy)")
    conv.set("base_model", model, _at(model_flag) if model_flag else "finetune.py default")
    conv.set("trust_remote_code", False, "MiniCPM3 is native in transformers 5; remote code does not load")
    conv.set("plugins", [PLUGIN], "MiniCPM3 chat format, exact label masks, config checks")

    # -- data ---------------------------------------------------------------------------------------
    train_flag = flags.pop("train_data_path", None)
    eval_flag = flags.pop("eval_data_path", None)
    conv.set("datasets", [{"path": path_of(train_flag, _DEFAULT_TRAIN), "ds_type": "json",
                           "type": DATASET_TYPE}],
             (_at(train_flag) if train_flag else "finetune.py default path")
             + "; the seed's JSON array of {messages} is read by the plugin's loader")
    conv.set("test_datasets", [{"path": path_of(eval_flag, _DEFAULT_EVAL), "ds_type": "json",
                                "split": "train", "type": DATASET_TYPE}],
             (_at(eval_flag) if eval_flag else "finetune.py default path") + "; a local file's only split is train")
    conv.set("val_set_size", 0.0, "the eval data comes from test_datasets")
    out_flag = flags.pop("output_dir", None)
    if out_flag is None:
        raise ScriptError(f"{source}:{launch.line}: no --output_dir (finetune.py requires it)")
    out = path_of(out_flag, "")
    note = _at(out_flag)
    if str(out_flag.value) != _strip_unresolved(str(out_flag.value), exp.marked):
        note += ", without the part only the shell knows (e.g. a $(date) timestamp)"
    conv.set("output_dir", out or "./outputs/minicpm3", note)
    conv.set("dataset_prepared_path", "last_run_prepared", "cache of the tokenized data")

    # -- precision ----------------------------------------------------------------------------------
    bf16, fp16 = bool_flag("bf16"), bool_flag("fp16")
    if bf16 and fp16:
        raise ScriptError(f"{source}:{flags['fp16'].line}: both --bf16 and --fp16 are set (finetune.py "
                          "refuses this too)")
    for name in ("bf16", "fp16"):
        flag = flags.pop(name, None)
        conv.set(name, bf16 if name == "bf16" else fp16, _at(flag) if flag else f"no --{name}")
    if not bf16 and not fp16:
        conv.warnings.append(f"{source}: neither --bf16 nor --fp16: the script trains in fp32 and so does "
                             "this recipe; MiniCPM3 is a bf16 model, bf16: true halves the memory")
    elif fp16:
        conv.warnings.append(f"{source}: --fp16: MiniCPM3 was trained in bf16 and its scaled embeddings can "
                             "overflow fp16; prefer bf16: true on GPUs that support it")

    # -- sequence and batches -------------------------------------------------------------------------
    for flag_name, (key, kind) in _DIRECT.items():
        if flag_name in flags:
            flag = flags.pop(flag_name)
            conv.set(key, _coerce(conv, flag, kind), _at(flag))
    for key, value in _SCRIPT_DEFAULTS.items():
        if key == "save_steps" and conv.recipe.get("save_strategy") != "steps":
            continue  # axolotl rejects save_steps beside save_strategy epoch/no
        if key not in conv.recipe:
            conv.set(key, value, "absent from the script: finetune.py / TrainingArguments default")
    conv.set("sample_packing", False, "finetune.py pads each row on its own; packing is off for MiniCPM3")
    conv.set("attn_implementation", "sdpa", "PyTorch fused attention")
    conv.set("special_tokens", {"pad_token": "</s>"},
             "MiniCPM3 has no pad token; </s> is in the vocabulary and never in chat text")
    if conv.recipe.get("eval_strategy") == "no":
        conv.recipe.pop("test_datasets")
        conv.origin.pop("test_datasets")
        conv.origin["val_set_size"] = "no evaluation (eval_strategy no)"

    # -- adapters -----------------------------------------------------------------------------------
    use_lora, qlora = bool_flag("use_lora"), bool_flag("qlora")
    lora_flag, qlora_flag = flags.pop("use_lora", None), flags.pop("qlora", None)
    if qlora and not use_lora:
        conv.warnings.append(f"{source}:{qlora_flag.line if qlora_flag else launch.line}: --qlora without "
                             "--use_lora: finetune.py stops on this (it asserts use_lora); converted as QLoRA")
    if qlora or use_lora:
        where = _at(qlora_flag) if qlora else _at(lora_flag)  # type: ignore[arg-type]
        conv.set("adapter", "qlora" if qlora else "lora", where)
        if qlora:
            conv.set("load_in_4bit", True, where)
            conv.set("bnb_config_kwargs", {"bnb_4bit_quant_type": "nf4", "bnb_4bit_use_double_quant": True},
                     "finetune.py --qlora: nf4 + double quantization; compute dtype follows bf16/fp16 "
                     "(finetune.py hard-codes fp16)")
        for key, value in OFFICIAL_LORA.items():
            conv.set(key, value, "finetune.py's LoRA for MiniCPM3")
        for key in ("lora_mlp_kernel", "lora_qkv_kernel", "lora_o_kernel", "lora_embedding_kernel"):
            conv.set(key, False, "axolotl's fused LoRA kernels expect q_proj/k_proj/v_proj")

    # -- deepspeed ----------------------------------------------------------------------------------
    if "deepspeed" in flags:
        _map_deepspeed(conv, flags.pop("deepspeed"), qlora)

    # -- logging --------------------------------------------------------------------------------------
    strategy = flags.pop("logging_strategy", None)
    if strategy is not None and strategy.value != "steps":
        conv.unmapped.append(f"{source}:{strategy.line}: --logging_strategy {strategy.value}: axolotl logs "
                             "every logging_steps")
    report = flags.pop("report_to", None)
    if report is not None:
        targets = {t.strip() for t in str(report.value).replace(",", " ").split()}
        if "tensorboard" in targets:
            conv.set("use_tensorboard", True, _at(report))
        if "wandb" in targets:
            conv.set("use_wandb", True, _at(report))
        rest = targets - {"tensorboard", "wandb", "none"}
        if rest:
            conv.unmapped.append(f"{source}:{report.line}: --report_to {' '.join(sorted(rest))}: not converted")

    # -- the rest ------------------------------------------------------------------------------------
    for name, flag in flags.items():
        value = "" if flag.value is True else f" {short(str(flag.value))}"
        why = _NOT_NEEDED.get(name)
        if why:
            conv.unmapped.append(f"{source}:{flag.line}: --{name}{value}: not needed ({why})")
        elif name == "log_level":
            conv.unmapped.append(f"{source}:{flag.line}: --{name}{value}: not converted (axolotl sets its own "
                                 "log level; AXOLOTL_LOG_LEVEL=DEBUG for more)")
        elif name == "cache_dir":
            conv.unmapped.append(f"{source}:{flag.line}: --{name}{value}: not converted (set HF_HOME instead)")
        else:
            conv.unmapped.append(f"{source}:{flag.line}: --{name}{value}: no axolotl equivalent converted; "
                                 "add it by hand if it matters")
    return conv

