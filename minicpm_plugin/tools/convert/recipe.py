"""The converted recipe (`Conversion`) and its commented YAML."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from typing import Any

import yaml


@dataclass
class Conversion:
    """A converted recipe with a comment per key and what the user must know."""

    source: str
    recipe: dict[str, Any] = field(default_factory=dict)
    origin: dict[str, str] = field(default_factory=dict)  # key -> "--flag (line N)" or a note
    warnings: list[str] = field(default_factory=list)  # "SCRIPT:LINE: message"
    unmapped: list[str] = field(default_factory=list)  # "SCRIPT:LINE: --flag value: why"
    world_size: int | None = None
    env: dict[str, str] = field(default_factory=dict)  # environment the script gives the training processes

    def set(self, key: str, value: Any, origin: str) -> None:
        self.recipe[key] = value
        self.origin[key] = origin

    def to_yaml(self, recipe_path: str = "RECIPE.yml") -> str:
        """The recipe as commented YAML; `recipe_path` goes into the command in its header."""
        return _emit_yaml(self, recipe_path)

    def train_command(self, recipe_path: str = "RECIPE.yml") -> str:
        """The `accelerate launch` line that runs the recipe as the script ran finetune.py."""
        env = [f"{name}={_env_value(value)}" for name, value in self.env.items()]
        procs = ["--num_processes", str(self.world_size)] if self.world_size and self.world_size > 1 else []
        return " ".join([*env, "accelerate", "launch", *procs, "-m", "axolotl.cli.train",
                         shlex.quote(recipe_path)])


def _env_value(value: str) -> str:
    """A value for the shell. Shell text the converter could not expand (`$(nvidia-smi ...)`) stays
    expandable inside double quotes; control characters get bash's $'...' quoting."""
    if any(c < " " or c in _LINE_BREAKS for c in value):
        return "$'" + value.encode("unicode_escape").decode("ascii").replace("'", "\\'") + "'"
    if "$" in value or "`" in value:
        return f'"{value}"'
    return shlex.quote(value)


# What YAML (and so the recipe's comments) takes as the end of a line.
_LINE_BREAKS = "\r\n\x85\u2028\u2029"
_BREAK_RE = re.compile(f"[{_LINE_BREAKS}]")


def _one_line(text: str) -> str:
    """`text` for a YAML comment: line breaks (which would end the comment) written as escapes."""
    return _BREAK_RE.sub(lambda m: m.group(0).encode("unicode_escape").decode("ascii"), text)


_SECTIONS: list[tuple[str, list[str]]] = [
    ("model", ["base_model", "trust_remote_code", "plugins"]),
    ("data", ["datasets", "test_datasets", "val_set_size", "dataset_prepared_path", "output_dir"]),
    ("sequence length and batches", ["sequence_len", "sample_packing", "micro_batch_size", "eval_batch_size",
                                     "gradient_accumulation_steps", "num_epochs", "max_steps"]),
    ("precision and memory", ["bf16", "fp16", "tf32", "attn_implementation", "gradient_checkpointing"]),
    ("adapter", ["adapter", "load_in_4bit", "bnb_config_kwargs", "lora_r", "lora_alpha", "lora_dropout",
                 "lora_target_modules", "peft_init_lora_weights", "lora_mlp_kernel", "lora_qkv_kernel",
                 "lora_o_kernel", "lora_embedding_kernel"]),
    ("tokens", ["special_tokens"]),
    ("optimizer and schedule", ["optimizer", "learning_rate", "lr_scheduler", "warmup_steps", "warmup_ratio",
                                "weight_decay", "max_grad_norm", "adam_beta1", "adam_beta2", "adam_epsilon"]),
    ("logging, evaluation, checkpoints", ["logging_steps", "eval_strategy", "eval_steps", "save_strategy",
                                          "save_steps", "save_total_limit", "save_only_model",
                                          "load_best_model_at_end", "metric_for_best_model",
                                          "greater_is_better", "seed", "use_tensorboard", "use_wandb"]),
    ("DeepSpeed", ["deepspeed"]),
]


def _scalar(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True, allow_unicode=True, width=10_000) \
        .removesuffix("\n").removesuffix("\n...").strip()


def _emit_yaml(conv: Conversion, recipe_path: str) -> str:
    lines = [_one_line(f"# Converted from {conv.source} by `minicpm-plugin convert-script`."),
             "# Each key says which flag it comes from. Train with:",
             _one_line(f"#   {conv.train_command(recipe_path)}")]
    if conv.warnings:
        lines.append("#")
        lines.append("# Warnings:")
        lines += [_one_line(f"#   {w}") for w in conv.warnings]
    if conv.unmapped:
        lines.append("#")
        lines.append("# Not converted:")
        lines += [_one_line(f"#   {u}") for u in conv.unmapped]
    placed: set[str] = set()
    for title, keys in _SECTIONS + [("other", [k for k in conv.recipe])]:
        keys = [k for k in keys if k in conv.recipe and k not in placed]
        if not keys:
            continue
        lines.append("")
        lines.append(f"# ---- {title} " + "-" * max(4, 92 - len(title)))
        for key in keys:
            placed.add(key)
            value = conv.recipe[key]
            origin = _one_line(conv.origin.get(key, ""))
            if isinstance(value, (dict, list)):
                lines.append(f"# {key}: {origin}" if origin else f"# {key}")
                dumped = yaml.safe_dump({key: value}, allow_unicode=True, sort_keys=False,
                                        default_flow_style=False, width=10_000)
                lines += dumped.rstrip("\n").split("\n")
            else:
                text = f"{key}: {_scalar(value)}"
                lines.append(f"{text:<40} # {origin}" if origin else text)
    return "\n".join(lines) + "\n"
