"""Tool-call accuracy during training: every `minicpm3_eval_tools_steps` steps, generate on a few
held-out conversations (`minicpm_plugin.evaluation.generate.evaluate`) and log the metrics beside the loss as
``tool_eval/<metric>`` entries of the trainer's log history (and so of trainer_state.json and any
reporter such as wandb). Turned on by the plugin (`MiniCPM3Plugin.add_callbacks_post_trainer`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from minicpm_plugin.chat.tokens import LiteralStyle
from minicpm_plugin.integration.args import plugin_options
from minicpm_plugin.utils import get_logger

LOG = get_logger(__name__)
PREFIX = "tool_eval/"


def load_eval_conversations(path: str | Path, format: str = "auto") -> list[dict[str, Any]]:
    """Conversations of a data file in any supported format, or of a file the plugin prepared
    (rows ``{"conversation": "<json>", "source": ...}``, what test_datasets point at after `register`)."""
    from minicpm_plugin.formats.prepare import is_prepared_row, load_conversations, read_prepared

    with open(path, encoding="utf-8") as fh:
        first = next((line for line in fh if line.strip()), "")
    try:
        row = json.loads(first)
    except ValueError:
        row = None
    if is_prepared_row(row):
        return [conv for conv, _ in read_prepared(path)]
    return load_conversations(path, format=format)


class ToolCallEvalCallback(TrainerCallback):
    """Runs the tool-call evaluation every `every_steps` optimizer steps and logs its metrics."""

    def __init__(
        self,
        conversations: Sequence[Mapping[str, Any]],
        *,
        every_steps: int,
        trainer: Any = None,
        max_new_tokens: int = 128,
        literal_style: LiteralStyle = "json",
    ) -> None:
        if every_steps < 1:
            raise ValueError("every_steps must be a positive number of steps")
        self.conversations = list(conversations)
        self.every_steps = every_steps
        self.trainer = trainer
        self.max_new_tokens = max_new_tokens
        self.literal_style = literal_style
        self.last_report: dict[str, Any] | None = None

    @classmethod
    def from_config(cls, cfg: Any, trainer: Any) -> ToolCallEvalCallback:
        """Build from the axolotl config: `minicpm3_eval_tools_data`, else the first test dataset file."""
        from minicpm_plugin.formats.prepare import DataError
        from minicpm_plugin.integration.config_checks import ConfigError

        opts = plugin_options(cfg)
        path = opts.minicpm3_eval_tools_data
        if not path:
            tests = [ds for ds in (cfg.get("test_datasets") or []) if isinstance(ds, Mapping) and ds.get("path")]
            path = tests[0]["path"] if tests else None
        if not path or not Path(path).is_file():
            raise ConfigError(
                "minicpm3_eval_tools_steps needs held-out conversations: set minicpm3_eval_tools_data to a data file "
                f"(any format the plugin reads), or give a local file in test_datasets (got {path!r})."
            )
        try:
            conversations = load_eval_conversations(path, opts.minicpm3_format)
        except DataError as exc:
            raise ConfigError(f"minicpm3_eval_tools_data: {exc}") from None
        conversations = conversations[: opts.minicpm3_eval_tools_samples]
        if not any(m.get("role") == "assistant" for c in conversations for m in c["messages"][1:]):
            raise ConfigError(f"{path}: the first {len(conversations)} conversation(s) have no assistant turn to evaluate")
        LOG.info(f"tool-call evaluation every {opts.minicpm3_eval_tools_steps} steps on {len(conversations)} "
                 f"conversation(s) of {path}")
        return cls(conversations, every_steps=opts.minicpm3_eval_tools_steps, trainer=trainer,
                   max_new_tokens=opts.minicpm3_eval_tools_max_new_tokens, literal_style=opts.minicpm3_literal_style)

    def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None, processing_class: Any = None,
                    **kwargs: Any) -> None:
        if state.global_step % self.every_steps == 0:
            self.run(state, model, processing_class, control)

    def _model(self, model: Any) -> Any:
        """The module to generate with: accelerate/DeepSpeed wrappers removed, PEFT kept (adapters active)."""
        trainer = self.trainer
        if trainer is not None:
            model = model if model is not None else trainer.model
            accelerator = getattr(trainer, "accelerator", None)
            if accelerator is not None:
                model = accelerator.unwrap_model(model)
        return model

    def run(self, state: Any, model: Any, tokenizer: Any, control: Any = None) -> dict[str, float]:
        """Evaluate now and log the metrics; returns them (``tool_eval/...`` keys, no None values)."""
        from minicpm_plugin.evaluation.generate import evaluate
        from minicpm_plugin.evaluation.scoring import format_table

        trainer = self.trainer
        if trainer is not None and getattr(trainer, "is_fsdp_enabled", False):
            LOG.warning("tool-call evaluation during training is skipped under FSDP; run `minicpm-plugin eval-tools` "
                        "on the saved model instead")
            return {}
        model = self._model(model)
        tokenizer = tokenizer if tokenizer is not None else getattr(trainer, "processing_class", None)
        report = evaluate(model, tokenizer, self.conversations, max_new_tokens=self.max_new_tokens,
                          literal_style=self.literal_style, progress=False)
        self.last_report = report
        metrics = {PREFIX + k: round(v, 4) for k, v in report["metrics"].items() if v is not None}
        metrics[PREFIX + "malformed"] = report["counts"]["malformed"]
        if state.is_world_process_zero:
            LOG.info(f"tool-call evaluation at step {state.global_step}:\n{format_table(report)}")
        if trainer is not None:
            control = getattr(trainer, "control", None) or control
            should_log = getattr(control, "should_log", None)
            trainer.log(dict(metrics))
            if should_log is not None:  # the trainer's on_log clears it: keep this step's loss log
                control.should_log = should_log
        else:
            state.log_history.append({**metrics, "step": state.global_step})
        return metrics
