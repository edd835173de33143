"""The YAML keys the plugin adds (documented in README.md, "Keys the plugin adds")."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, field_validator

from minicpm_plugin.chat.tokens import LiteralStyle
from minicpm_plugin.formats.prepare import OnBadRows
from minicpm_plugin.tokenize import OverlongMode


class MiniCPM3Args(BaseModel):
    """Input args of `minicpm_plugin.MiniCPM3Plugin`; every key is optional."""

    minicpm3_literal_style: LiteralStyle = Field(
        default="json",
        json_schema_extra={"description": "How tool-call argument values are written: json (true, null, \"x\": "
                           "MiniCPM3's own template) or python (True, None, 'x': what vLLM's minicpm parser reads "
                           "back with types)."},
    )
    minicpm3_train_last_turn_only: bool = Field(default=False, json_schema_extra={
        "description": "Train only the last assistant turn of each conversation."})
    minicpm3_train_thought: bool = Field(default=True, json_schema_extra={
        "description": "Keep assistant thoughts (<|thought_start|>...) in the loss."})
    minicpm3_overlong: OverlongMode = Field(default="drop", json_schema_extra={
        "description": "Rows longer than sequence_len: drop them, or cut them after the last assistant turn "
                       "that fits. Either way they are counted and reported after preprocessing."})
    minicpm3_on_bad_rows: OnBadRows = Field(default="error", json_schema_extra={
        "description": "Rows that fail validation: refuse to train (error) or skip them, counted by reason."})
    minicpm3_format: str = Field(default="auto", json_schema_extra={
        "description": "Dataset format for minicpm_plugin.strategy datasets without their own `format:` "
                       "(auto, seed, openai, sharegpt, glaive, xlam, hermes, or a plugin format)."})
    minicpm3_cpu_fallback: bool = Field(default=True, json_schema_extra={
        "description": "With no GPU present, adjust the run so it works on CPU (fp32, no Triton LoRA kernels, "
                       "no flash attention, gloo for DeepSpeed). Changes nothing when a GPU is present."})
    minicpm3_chunked_loss: bool = Field(default=True, json_schema_extra={
        "description": "Compute the training loss in chunks of tokens, never holding the full [tokens, 73448] "
                       "logits or their gradient; the same loss and gradients as transformers' (hidden states "
                       "divided by logits_scaling, num_items_in_batch normalisation). liger's fused kernel runs "
                       "it on a GPU where installed. false: transformers' standard loss."})
    minicpm3_eval_tools_steps: int | None = Field(default=None, json_schema_extra={
        "description": "Every N steps, generate on a few eval conversations and log tool-call accuracy."})
    minicpm3_eval_tools_data: str | None = Field(default=None, json_schema_extra={
        "description": "File with held-out conversations for the tool-call evaluation during training."})
    minicpm3_eval_tools_samples: int = Field(default=8, ge=1)
    minicpm3_eval_tools_max_new_tokens: int = Field(default=128, ge=1)

    @field_validator("minicpm3_eval_tools_steps")
    @classmethod
    def _positive_steps(cls, value: int | None) -> int | None:
        if value is not None and value < 1:
            raise ValueError("minicpm3_eval_tools_steps must be a positive number of steps (or leave it unset)")
        return value


def plugin_options(cfg: Any) -> MiniCPM3Args:
    """The plugin's keys from an axolotl config (dict or DictDefault), defaults filled in."""
    values = {name: cfg.get(name) for name in MiniCPM3Args.model_fields if cfg.get(name) is not None}
    return MiniCPM3Args(**values)
