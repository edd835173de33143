"""`plugins: [minicpm_plugin.MiniCPM3Plugin]`: MiniCPM3 for axolotl. Kept thin: the work lives in
config_checks, cpu, formats.prepare, strategy, model.packing and length_report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from axolotl.integrations.base import BasePlugin

from minicpm_plugin.chat import chat_template_for
from minicpm_plugin.integration.args import plugin_options
from minicpm_plugin.integration.config_checks import (
    ConfigError,
    check_chat_template,
    check_dataset_path,
    check_deepspeed,
    check_lora_kernels,
    check_lora_targets,
    check_model,
    check_model_available,
    check_plugin_keys,
    check_remote_code,
)
from minicpm_plugin.integration.cpu import (
    cpu_fallback,
    has_gpu,
    init_single_process_gloo,
    setup_cpu_processes,
)
from minicpm_plugin.integration.length_report import LengthReport
from minicpm_plugin.model.compat import apply_transformers_fixes
from minicpm_plugin.utils import get_logger

LOG = get_logger(__name__)
STRATEGY = "minicpm_plugin.strategy"


def _ours(ds: Any) -> bool:
    return isinstance(ds, dict) and str(ds.get("type") or "").startswith(STRATEGY)


class MiniCPM3Plugin(BasePlugin):
    """Checks the config before anything heavy loads, prepares the data with Python's json, writes
    MiniCPM3's chat template into the saved tokenizer, and keeps packed samples apart."""

    def __init__(self) -> None:
        super().__init__()
        self.on_cpu = False
        self.prepared: list[Any] = []

    def get_input_args(self) -> str:
        return "minicpm_plugin.integration.args.MiniCPM3Args"

    def register(self, cfg: dict[str, Any]) -> None:
        opts = check_plugin_keys(cfg)  # on the raw dict: axolotl's validation drops unknown keys silently
        apply_transformers_fixes()
        check_model_available(cfg)
        check_model(cfg)
        check_remote_code(cfg)
        check_lora_targets(cfg)
        check_lora_kernels(cfg)
        check_deepspeed(cfg)
        check_chat_template(cfg, chat_template_for(opts.minicpm3_literal_style))
        self.on_cpu = opts.minicpm3_cpu_fallback and not has_gpu()
        if self.on_cpu:
            changed = cpu_fallback(cfg) + setup_cpu_processes(cfg)
            if changed:
                LOG.info("no GPU found: running on CPU with " + "; ".join(changed))
            if cfg.get("deepspeed"):
                init_single_process_gloo()
        if opts.minicpm3_eval_tools_steps and not (opts.minicpm3_eval_tools_data or cfg.get("test_datasets")):
            raise ConfigError(
                "minicpm3_eval_tools_steps is set but there is nothing to evaluate on: set minicpm3_eval_tools_data "
                "to a file of held-out conversations, or add test_datasets."
            )
        if opts.minicpm3_eval_tools_data and not Path(opts.minicpm3_eval_tools_data).is_file():
            raise ConfigError(f"minicpm3_eval_tools_data: {opts.minicpm3_eval_tools_data!r} is not a file.")
        self._prepare_datasets(cfg, opts)
        if cfg.get("merge_lora"):
            from minicpm_plugin.integration.merge import keep_trained_tokenizer_on_merge

            keep_trained_tokenizer_on_merge()

    def _prepare_datasets(self, cfg: dict[str, Any], opts: Any) -> None:
        """Read, convert and validate local files ourselves; axolotl then loads an Arrow-safe copy."""
        from minicpm_plugin.formats.prepare import DataError, prepare_dataset_file

        out_dir = Path(cfg.get("dataset_prepared_path") or "last_run_prepared") / "minicpm3_data"
        for key in ("datasets", "test_datasets"):
            for ds in cfg.get(key) or []:
                if not _ours(ds):
                    continue
                fmt = ds.pop("format", None) or opts.minicpm3_format
                path = ds.get("path")
                if not path or not Path(path).is_file():
                    if path and Path(path).exists():
                        raise ConfigError(f"dataset path {path!r} is a directory; give the data file itself.")
                    if path:
                        check_dataset_path(str(path))
                    LOG.warning(
                        f"dataset {path!r} is not a local file: its rows reach minicpm_plugin.strategy through "
                        "Arrow, which can change float arguments (1.61 -> 1.6099999999999999). Download it to a "
                        "JSON/JSONL file for exact values."
                    )
                    continue
                try:
                    prepared = prepare_dataset_file(path, format=fmt, on_bad_rows=opts.minicpm3_on_bad_rows, out_dir=out_dir)
                except DataError as exc:
                    raise ConfigError(str(exc)) from None
                self.prepared.append(prepared)
                LOG.info("data: " + prepared.summary())
                ds["path"] = str(prepared.path)
                ds["ds_type"] = "json"
                ds.pop("data_files", None)
                ds.setdefault("split", "train")

    def pre_model_load(self, cfg: Any) -> None:
        # Runs right after preprocessing: report rows dropped or truncated for length.
        if not any(_ours(ds) for ds in (cfg.datasets or [])):
            return
        summary = LengthReport.for_config(cfg).summary()
        limit = cfg.sequence_len
        if summary.dropped:
            LOG.warning(
                f"{summary.dropped} conversation(s) longer than sequence_len={limit} were dropped "
                f"({summary.tokens_lost} tokens), e.g. {', '.join(summary.examples)}. Raise sequence_len, or set "
                "minicpm3_overlong: truncate_turns to keep their first turns."
            )
        if summary.truncated:
            LOG.warning(
                f"{summary.truncated} conversation(s) longer than sequence_len={limit} were cut after their last "
                f"assistant turn that fits ({summary.turns_cut} assistant turns left out)."
            )
        if summary.nothing_to_train:
            LOG.warning(f"{summary.nothing_to_train} conversation(s) had no trainable assistant tokens and were left out.")
        if not summary.any:
            LOG.info(f"preprocessing: no conversation exceeded sequence_len={limit}")

    def post_model_build(self, cfg: Any, model: Any) -> None:
        if cfg.sample_packing:
            from minicpm_plugin.model.packing import install_packing_guard

            install_packing_guard(model)
            LOG.info("sample packing: packed samples attend only within themselves (mask from position_ids)")

    def post_model_load(self, cfg: Any, model: Any) -> None:
        self.post_model_build(cfg, model)  # idempotent; covers loaders that skip post_model_build

    def get_training_args(self, cfg: Any) -> dict[str, Any] | None:
        return {"use_cpu": True} if self.on_cpu else None

    def add_callbacks_post_trainer(self, cfg: Any, trainer: Any) -> list[Any]:
        opts = plugin_options(cfg)
        if not opts.minicpm3_eval_tools_steps:
            return []
        from minicpm_plugin.integration.eval_callback import ToolCallEvalCallback

        return [ToolCallEvalCallback.from_config(cfg, trainer)]
