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
    check_fused_losses,
    check_lora_kernels,
    check_lora_targets,
    check_model,
    check_model_available,
    check_plugin_keys,
    check_remote_code,
    zero_stage,
)
from minicpm_plugin.integration.cpu import (
    cpu_fallback,
    has_gpu,
    init_single_process_gloo,
    setup_cpu_processes,
    skip_deepspeed_shm_op,
)
from minicpm_plugin.integration.length_report import LengthReport
from minicpm_plugin.model.compat import apply_transformers_fixes
from minicpm_plugin.utils import get_logger

LOG = get_logger(__name__)
STRATEGY = "minicpm_plugin.strategy"


def _ours(ds: Any) -> bool:
    return isinstance(ds, dict) and str(ds.get("type") or "").startswith(STRATEGY)


def _dataset_format(ds: dict[str, Any], default: str) -> str:
    """The data format of one dataset entry: its `format:` (or `input_format:`), else minicpm3_format."""
    from minicpm_plugin.formats import FormatLookupError, get_registry

    own, kept = ds.pop("format", None), ds.get("input_format")
    if own and kept and str(own).lower() != str(kept).lower():
        raise ConfigError(f"dataset {ds.get('path')!r} sets format: {own} and input_format: {kept}; keep one.")
    fmt = str(own or kept or default)
    if fmt != "auto":
        try:
            get_registry().get(fmt)
        except FormatLookupError as exc:
            where = f"dataset {ds.get('path')!r}: format" if own or kept else "minicpm3_format"
            raise ConfigError(f"{where}: {exc}") from None
    return fmt


class MiniCPM3Plugin(BasePlugin):
    """Checks the config before anything heavy loads, prepares the data with Python's json, writes
    MiniCPM3's chat template into the saved tokenizer, and keeps packed samples apart."""

    def __init__(self) -> None:
        super().__init__()
        self.on_cpu = False
        self.prepared: list[Any] = []
        self.prepared_pairs: list[Any] = []
        self.loss_backend = "auto"

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
            if cfg.get("deepspeed"):
                skip_deepspeed_shm_op()  # before any process group reaches DeepSpeed (one process or several)
            changed = cpu_fallback(cfg) + setup_cpu_processes(cfg)
            if changed:
                LOG.info("no GPU found: running on CPU with " + "; ".join(changed))
            if cfg.get("deepspeed"):
                init_single_process_gloo()
        self.loss_backend, notes = check_fused_losses(cfg, opts.minicpm3_chunked_loss, self.on_cpu)
        for note in notes:
            LOG.info(note)
        if opts.minicpm3_eval_tools_steps and not (opts.minicpm3_eval_tools_data or cfg.get("test_datasets")):
            raise ConfigError(
                "minicpm3_eval_tools_steps is set but there is nothing to evaluate on: set minicpm3_eval_tools_data "
                "to a file of held-out conversations, or add test_datasets."
            )
        if opts.minicpm3_eval_tools_data and not Path(opts.minicpm3_eval_tools_data).is_file():
            raise ConfigError(f"minicpm3_eval_tools_data: {opts.minicpm3_eval_tools_data!r} is not a file.")
        self._prepare_preference_datasets(cfg, opts)
        self._prepare_datasets(cfg, opts)
        if cfg.get("merge_lora"):
            from minicpm_plugin.integration.merge import keep_trained_tokenizer_on_merge

            keep_trained_tokenizer_on_merge()

    def _prepare_datasets(self, cfg: dict[str, Any], opts: Any) -> None:
        """Read, convert and validate local files ourselves; axolotl then loads an Arrow-safe copy.

        Other datasets (hub, a local folder, remote storage) are loaded by axolotl and converted row by
        row in the strategy. Their per-dataset `format:` travels as `input_format`: axolotl's schema
        drops unknown dataset keys, but keeps this one (a string it never reads itself, and part of
        its prepared-data hash); `strategy.load` reads it from the dataset config axolotl passes.
        """
        from minicpm_plugin.formats.prepare import DataError, prepare_dataset_file
        from minicpm_plugin.integration.progress import file_progress, prepare_processes

        out_dir = Path(cfg.get("dataset_prepared_path") or "last_run_prepared") / "minicpm3_data"
        num_proc = prepare_processes(cfg)
        for key in ("datasets", "test_datasets"):
            for ds in cfg.get(key) or []:
                if not _ours(ds):
                    continue
                fmt = _dataset_format(ds, opts.minicpm3_format)
                path = ds.get("path")
                if not path or not Path(path).is_file():
                    if path:
                        check_dataset_path(str(path))  # an error only where no file, folder or hub id fits
                    ds["input_format"] = fmt
                    what = "a folder, not a single file" if path and Path(path).is_dir() else "not a local file"
                    LOG.warning(
                        f"dataset {path!r} is {what}: axolotl loads it and its rows reach minicpm_plugin.strategy "
                        f"(format: {fmt}) through Arrow, which can change float arguments (1.61 -> "
                        "1.6099999999999999). Save it as a JSON/JSONL file for exact values."
                    )
                    continue
                try:
                    with file_progress(path, f"minicpm3: preparing {Path(path).name}") as progress:
                        prepared = prepare_dataset_file(path, format=fmt, on_bad_rows=opts.minicpm3_on_bad_rows,
                                                        out_dir=out_dir, literal_style=opts.minicpm3_literal_style,
                                                        progress=progress, num_proc=num_proc)
                except DataError as exc:
                    raise ConfigError(str(exc)) from None
                self.prepared.append(prepared)
                LOG.info("data: " + prepared.summary())
                ds["path"] = str(prepared.path)
                ds["ds_type"] = "json"
                ds.pop("data_files", None)
                ds.setdefault("split", "train")

    def _prepare_preference_datasets(self, cfg: dict[str, Any], opts: Any) -> None:
        """`rl: dpo` + `type: minicpm_plugin.dpo`: checks, then the same Arrow-safe preparation as SFT data."""
        from minicpm_plugin.integration.dpo import check_preference_config, prepare_preference_datasets

        if check_preference_config(cfg, opts):
            out_dir = Path(cfg.get("dataset_prepared_path") or "last_run_prepared") / "minicpm3_data"
            self.prepared_pairs = prepare_preference_datasets(cfg, opts, out_dir)

    def post_trainer_create(self, cfg: Any, trainer: Any) -> None:
        from minicpm_plugin.integration.dpo import check_trainer, is_preference_dataset

        if any(is_preference_dataset(ds) for ds in (cfg.datasets or [])):
            check_trainer(cfg, trainer, self.prepared_pairs)

    def pre_model_load(self, cfg: Any) -> None:
        from minicpm_plugin.integration.dpo import is_preference_dataset, report_left_out

        if any(is_preference_dataset(ds) for ds in (cfg.datasets or [])):
            report_left_out(cfg)
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

        self._install_model_patches(cfg, model)

    def _install_model_patches(self, cfg: Any, model: Any) -> None:
        """The chunked loss and liger's RMSNorm/SwiGLU kernels on the model instance (idempotent)."""
        chunked = plugin_options(cfg).minicpm3_chunked_loss
        if chunked and zero_stage(cfg) == 3:
            # ZeRO-3 partitions lm_head's weight; the chunked loss recomputes each chunk in backward, when the
            # weight is no longer gathered. Not supported yet: transformers' loss is used.
            LOG.warning("chunked loss: off under DeepSpeed ZeRO-3 (transformers' standard loss is used)")
        elif chunked:
            from minicpm_plugin.model.loss import chunked_loss_settings, install_chunked_loss

            first = chunked_loss_settings(model) is None
            install_chunked_loss(model, backend=self.loss_backend)
            if first:
                LOG.info("chunked loss: the training loss never holds the full [tokens, vocab] logits "
                         "(minicpm3_chunked_loss: false turns it off)")
        if (cfg.liger_rms_norm or cfg.liger_glu_activation) and not self.on_cpu:
            from minicpm_plugin.model.kernels import apply_liger_kernels

            counts = apply_liger_kernels(model, rms_norm=bool(cfg.liger_rms_norm), swiglu=bool(cfg.liger_glu_activation))
            if any(counts.values()):
                LOG.info(f"liger kernels on MiniCPM3: {counts['rms_norm']} RMSNorm, {counts['swiglu']} SwiGLU MLP modules")

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
