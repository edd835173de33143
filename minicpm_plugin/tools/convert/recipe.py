"""The converted recipe (`Conversion`) and its commented YAML."""

from __future__ import annotations

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

    def set(self, key: str, value: Any, origin: str) -> None:
        self.recipe[key] = value
        self.origin[key] = origin

    def to_yaml(self, recipe_path: str = "RECIPE.yml") -> str:
        """The recipe as commented YAML; `recipe_path` goes into the command in its header."""
        return _emit_yaml(self, recipe_path)



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
    lines = [f"# Converted from {conv.source} by `minicpm-plugin convert-script`.",
             "# Each key says which flag it comes from. Train with:",
             "#   accelerate launch"
             + (f" --num_processes {conv.world_size}" if conv.world_size and conv.world_size > 1 else "")
             + f" -m axolotl.cli.train {recipe_path}"]
    if conv.warnings:
        lines.append("#")
        lines.append("# Warnings:")
        lines += [f"#   {w}" for w in conv.warnings]
    if conv.unmapped:
        lines.append("#")
        lines.append("# Not converted:")
        lines += [f"#   {u}" for u in conv.unmapped]
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
            origin = conv.origin.get(key, "")
            if isinstance(value, (dict, list)):
                lines.append(f"# {key}: {origin}" if origin else f"# {key}")
                dumped = yaml.safe_dump({key: value}, allow_unicode=True, sort_keys=False,
                                        default_flow_style=False, width=10_000)
                lines += dumped.rstrip("\n").split("\n")
            else:
                text = f"{key}: {_scalar(value)}"
                lines.append(f"{text:<40} # {origin}" if origin else text)
    return "\n".join(lines) + "\n"
