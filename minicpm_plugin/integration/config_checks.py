"""Checks and fixes of a raw axolotl config for MiniCPM3, run before anything heavy loads.

Each function takes the raw config dict (as axolotl's `register` hook sees it), changes it in
place where a fix is safe, and raises `ConfigError` with what to change where it is not.
"""

from __future__ import annotations

import contextvars
import difflib
import json
import os
import re
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from minicpm_plugin.integration.args import MiniCPM3Args, plugin_options
from minicpm_plugin.model.architecture import MINICPM3_LINEAR_MODULES
from minicpm_plugin.model.hub import looks_like_hub_id, model_unavailable
from minicpm_plugin.utils import get_logger

LOG = get_logger(__name__)


class ConfigError(SystemExit):
    """A config mistake: printed as one message (no traceback), exit status 1."""

    def __init__(self, message: str) -> None:
        super().__init__(f"minicpm-plugin: config error: {message}")
        self.message = message


_ANOTHER_MACHINE = contextvars.ContextVar("minicpm_plugin_another_machine", default=False)
#: Suffixes that make a dataset path a file name rather than a hub dataset id.
DATA_SUFFIXES = (".json", ".jsonl", ".parquet", ".csv", ".tsv", ".txt", ".gz", ".bz2", ".xz", ".zst", ".arrow", ".zip")


def check_plugin_keys(cfg: dict[str, Any]) -> MiniCPM3Args:
    """The plugin's options; ConfigError listing every unknown `minicpm*` key (with the closest known
    one) and every invalid value, one line per key. axolotl drops unknown keys silently when it
    validates, so a typo would otherwise train with the default."""
    from pydantic import ValidationError

    known = list(MiniCPM3Args.model_fields)
    lines = []
    for key in cfg:
        if isinstance(key, str) and key.lower().startswith("minicpm") and key not in known:
            # Compare what follows the shared "minicpm3_" prefix, which would make every key look close.
            tails = {re.sub(r"^minicpm3?_?", "", k): k for k in known}
            close = difflib.get_close_matches(re.sub(r"^minicpm3?_?", "", key.lower()), list(tails), n=1, cutoff=0.6)
            hint = f"did you mean {tails[close[0]]}?" if close else f"the plugin's keys are {', '.join(known)}"
            lines.append(f"{key}: not a key of the plugin (axolotl would drop it and train with the default); {hint}")
    try:
        opts = plugin_options(cfg)
    except ValidationError as exc:
        for err in exc.errors():
            msg = str(err["msg"]).removeprefix("Value error, ")
            lines.append(f"{'.'.join(str(p) for p in err['loc'])}: {msg} (got {err.get('input')!r})")
    if lines:
        head = "invalid minicpm3_* key" + ("s:\n  " if len(lines) > 1 else ": ")
        raise ConfigError(head + "\n  ".join(lines))
    return opts


@contextmanager
def for_another_machine() -> Iterator[None]:
    """Validating a recipe for the machine that will run it: skip the checks of this machine's files
    (is base_model here or downloadable, do the dataset files exist)."""
    token = _ANOTHER_MACHINE.set(True)
    try:
        yield
    finally:
        _ANOTHER_MACHINE.reset(token)


def _recipe_path(cfg: dict[str, Any]) -> str | None:
    for arg in sys.argv[1:]:
        if arg.endswith((".yml", ".yaml")):
            return arg
    path = cfg.get("axolotl_config_path")
    return str(path) if path and not Path(str(path)).name.startswith("axolotl_config_") else None


def check_model_available(cfg: dict[str, Any]) -> None:
    """base_model (and tokenizer_config) must be a local folder, in the hub cache, or reachable: say so
    in one line instead of a transformers traceback after the data is prepared."""
    if _ANOTHER_MACHINE.get():
        return
    checked = set()
    for key, filename in (("base_model", "config.json"), ("tokenizer_config", "tokenizer_config.json")):
        name = cfg.get(key)
        if not isinstance(name, str) or not name or name in checked:
            continue
        checked.add(name)
        revision = cfg.get("revision_of_model") if key == "base_model" else None
        problem = model_unavailable(name, key, _recipe_path(cfg), filename, revision)
        if problem:
            raise ConfigError(problem)


def check_dataset_path(path: str) -> None:
    """A dataset path must be a file, or look like a hub dataset id or a URL; a missing file is an error."""
    local = Path(path).expanduser()
    if local.exists() or "://" in path or _ANOTHER_MACHINE.get():
        return
    first = Path(path).parts[0] if Path(path).parts else ""
    if looks_like_hub_id(path) and not path.lower().endswith(DATA_SUFFIXES) and not Path(first).is_dir():
        return
    hint = ""
    if local.parent.is_dir():
        names = [p.name for p in local.parent.iterdir()]
        close = difflib.get_close_matches(local.name, names, n=1, cutoff=0.6)
        hint = f"; did you mean {str(local.parent / close[0])!r}?" if close else ""
    where = "" if local.is_absolute() else f" (relative paths are read from {os.getcwd()})"
    raise ConfigError(f"dataset path {path!r}: the file does not exist{where}{hint}")


def model_type_of(cfg: dict[str, Any]) -> str | None:
    """`model_type` from a local model directory's config.json; None if it cannot be read offline."""
    for key in ("base_model_config", "base_model"):
        path = cfg.get(key)
        if path and (Path(path) / "config.json").is_file():
            try:
                return json.loads((Path(path) / "config.json").read_text(encoding="utf-8")).get("model_type")
            except (OSError, ValueError, RecursionError, AttributeError):  # unreadable, not JSON, not an object
                return None
    return None


def check_model(cfg: dict[str, Any]) -> None:
    model_type = model_type_of(cfg)
    name = str(cfg.get("base_model") or "")
    if model_type not in (None, "minicpm3"):
        raise ConfigError(
            f"base_model {name!r} is a {model_type!r} model; minicpm_plugin.MiniCPM3Plugin is for MiniCPM3 "
            "(model_type minicpm3). Remove the plugin or point base_model at a MiniCPM3 checkpoint."
        )
    if model_type is None and "minicpm" in name.lower() and "minicpm3" not in name.lower().replace("-", ""):
        raise ConfigError(
            f"base_model {name!r} does not look like MiniCPM3 (e.g. openbmb/MiniCPM3-4B); this plugin supports MiniCPM3 only."
        )


def check_remote_code(cfg: dict[str, Any]) -> None:
    """MiniCPM3 is native in transformers 5; the hub's remote code no longer imports there."""
    if cfg.get("trust_remote_code"):
        LOG.warning(
            "trust_remote_code: true ignored for MiniCPM3: transformers >= 5.13 has the native MiniCPM3ForCausalLM, "
            "and the hub's modeling_minicpm.py fails to import on transformers 5 (is_torch_fx_available was removed). "
            "Remove trust_remote_code from the config to silence this."
        )
        cfg["trust_remote_code"] = False


def check_lora_targets(cfg: dict[str, Any]) -> None:
    if cfg.get("adapter") not in ("lora", "qlora"):
        return
    targets = cfg.get("lora_target_modules")
    real = ", ".join(MINICPM3_LINEAR_MODULES)
    if isinstance(targets, str):
        if targets in ("all-linear", "all_linear"):
            return
        try:
            pattern = re.compile(targets)
        except re.error as exc:
            raise ConfigError(f"lora_target_modules {targets!r} is not a valid regular expression ({exc}).") from None
        if not any(pattern.search(f"model.layers.0.self_attn.{n}") or pattern.search(f"model.layers.0.mlp.{n}")
                   for n in MINICPM3_LINEAR_MODULES):
            raise ConfigError(f"lora_target_modules {targets!r} matches no MiniCPM3 layer. MiniCPM3's linear layers: {real}.")
        return
    if not targets:
        if not cfg.get("lora_target_linear"):
            raise ConfigError(
                f"no LoRA targets: set lora_target_linear: true, or lora_target_modules to some of: {real} "
                "(MiniCPM3 uses latent attention: there is no q_proj, k_proj or v_proj)."
            )
        return
    wrong = [t for t in targets if str(t).split(".")[-1] not in MINICPM3_LINEAR_MODULES]
    if wrong:
        hint = ""
        if any(str(t).split(".")[-1] in ("q_proj", "k_proj", "v_proj") for t in wrong):
            hint = (" MiniCPM3 uses latent attention: q_proj is q_a_proj + q_b_proj, k/v_proj are kv_a_proj_with_mqa + "
                    "kv_b_proj (the official recipe targets q_a_proj, kv_a_proj_with_mqa, q_b_proj, kv_b_proj).")
        raise ConfigError(
            f"lora_target_modules {wrong} do not exist in MiniCPM3. Use some of: {real}, or lora_target_linear: true.{hint}"
        )


def zero_stage(cfg: Any) -> int | None:
    """The ZeRO stage of the config's DeepSpeed file (None without one, or when it cannot be read)."""
    path = cfg.get("deepspeed")
    if not path:
        return None
    try:
        # axolotl replaces the path by the loaded config (a dict) during validation
        config = dict(path) if isinstance(path, Mapping) else json.loads(Path(path).read_text(encoding="utf-8"))
        return config.get("zero_optimization", {}).get("stage")
    except (OSError, ValueError, TypeError, AttributeError, RecursionError):
        return None  # axolotl reports a missing or broken file itself


def check_deepspeed(cfg: dict[str, Any]) -> None:
    """QLoRA's 4-bit weights cannot be partitioned by ZeRO-3 (use ZeRO-2)."""
    path = cfg.get("deepspeed")
    if cfg.get("adapter") != "qlora":
        return
    if zero_stage(cfg) == 3:
        raise ConfigError(
            f"deepspeed: {path} is ZeRO stage 3, which does not work with QLoRA (4-bit weights cannot be "
            "partitioned). Use deepspeed_configs/zero2.json or zero2_offload.json."
        )


def check_lora_kernels(cfg: dict[str, Any]) -> None:
    """axolotl's fused LoRA attention kernels assume q_proj/k_proj/v_proj, which MiniCPM3 lacks."""
    if cfg.get("adapter") not in ("lora", "qlora"):
        return
    for key in ("lora_qkv_kernel", "lora_o_kernel"):
        if cfg.get(key):
            raise ConfigError(f"{key}: true is not supported for MiniCPM3 (its latent attention has no q_proj/k_proj/v_proj); remove it.")
    kernels = ("lora_mlp_kernel", "lora_qkv_kernel", "lora_o_kernel", "lora_embedding_kernel")
    if all(cfg.get(k) is None for k in kernels):
        # Setting any one key stops axolotl from turning all of them on by itself.
        for key in kernels:
            cfg[key] = False


def check_chat_template(cfg: dict[str, Any], template: str) -> None:
    """Training and the saved tokenizer use our template (axolotl writes the top-level choice)."""
    current = cfg.get("chat_template")
    if current not in (None, "jinja", "tokenizer_default"):
        raise ConfigError(
            f"chat_template: {current} would save a non-MiniCPM3 template with the trained model; remove chat_template "
            "(the plugin writes MiniCPM3's own template, matching what minicpm_plugin.strategy trains on)."
        )
    if current == "jinja" and cfg.get("chat_template_jinja") not in (None, template):
        raise ConfigError(
            "chat_template_jinja differs from MiniCPM3's template that the plugin trains with; remove chat_template and "
            "chat_template_jinja so the saved tokenizer renders exactly what training saw."
        )
    cfg["chat_template"] = "jinja"
    cfg["chat_template_jinja"] = template


_SCALING = ("MiniCPM3 divides its final hidden states by logits_scaling (hidden_size / dim_model_base = 10) before "
            "lm_head")


def _plugin_listed(cfg: dict[str, Any], part: str) -> bool:
    return any(part in str(p) for p in cfg.get("plugins") or [])


def check_fused_losses(cfg: dict[str, Any], chunked_loss: bool, on_cpu: bool) -> tuple[str, list[str]]:
    """liger / cut-cross-entropy with MiniCPM3: refuse what would train on wrong logits, say what is not applied.

    Returns the backend for the plugin's chunked loss ("auto", "torch" or "liger") and lines to log.
    axolotl 0.19 applies liger to minicpm3 only through its generic fused-linear-cross-entropy forward and
    cut-cross-entropy only through its generic Llama forward; both call lm_head on the raw hidden states.
    The plugin's own forward (installed on the model instance) replaces them and runs liger's kernel on the
    scaled hidden states; the RMSNorm and SwiGLU kernels it applies itself (see model.kernels).
    """
    notes: list[str] = []
    if cfg.get("cut_cross_entropy") or (_plugin_listed(cfg, "cut_cross_entropy") and cfg.get("cut_cross_entropy") is None):
        raise ConfigError(
            f"cut_cross_entropy is not supported for MiniCPM3: its generic patch (minicpm3 is not among its models) "
            f"skips what {_SCALING}, so it would train on logits 10x too large. Remove "
            "axolotl.integrations.cut_cross_entropy.CutCrossEntropyPlugin from plugins (or set cut_cross_entropy: "
            "false); minicpm3_chunked_loss (on by default) keeps the full logits out of memory with the scaling."
        )
    if cfg.get("dpo_use_liger_kernel"):
        raise ConfigError(
            f"dpo_use_liger_kernel: true is not supported for MiniCPM3: TRL's fused DPO loss multiplies the decoder's "
            f"hidden states by lm_head's weight directly and skips what {_SCALING}. Remove dpo_use_liger_kernel."
        )
    if cfg.get("liger_use_token_scaling"):
        raise ConfigError("liger_use_token_scaling is not supported for MiniCPM3 (the plugin computes MiniCPM3's loss "
                          "itself, without token scaling). Remove liger_use_token_scaling.")
    flce = cfg.get("liger_fused_linear_cross_entropy")
    backend = "auto" if flce is None else "liger" if flce else "torch"
    if flce and not chunked_loss:
        raise ConfigError(
            f"liger_fused_linear_cross_entropy with minicpm3_chunked_loss: false would run axolotl's generic liger "
            f"forward, which skips what {_SCALING} (logits 10x too large). Keep minicpm3_chunked_loss on (the default: "
            "the plugin then runs liger's fused kernel on the scaled hidden states) or remove "
            "liger_fused_linear_cross_entropy."
        )
    if flce:
        notes.append("liger_fused_linear_cross_entropy: the plugin's MiniCPM3 loss runs liger's fused kernel on hidden "
                     "states divided by logits_scaling" + (" (no GPU here: the torch chunked loss instead)" if on_cpu else ""))
    if cfg.get("chunked_cross_entropy") and chunked_loss:
        cfg["chunked_cross_entropy"] = False
        notes.append("chunked_cross_entropy turned off: minicpm3_chunked_loss already chunks the loss and, unlike it, "
                     "never builds the full logits")
    if cfg.get("liger_cross_entropy"):
        notes.append("liger_cross_entropy is not applied to MiniCPM3 (axolotl has no liger mapping for minicpm3); "
                     + ("minicpm3_chunked_loss computes the loss" if chunked_loss else "transformers' loss is used"))
    if cfg.get("liger_rope"):
        notes.append("liger_rope is not applied to MiniCPM3: it rotates only a 32-dim slice of each head with longrope "
                     "factors, which liger's rope kernel does not implement")
    if cfg.get("liger_layer_norm"):
        notes.append("liger_layer_norm has no effect: MiniCPM3 has no LayerNorm (its norms are RMSNorm: liger_rms_norm)")
    if on_cpu and (cfg.get("liger_rms_norm") or cfg.get("liger_glu_activation") or cfg.get("liger_swiglu")):
        notes.append("liger_rms_norm / liger_glu_activation are not applied without a GPU (liger's kernels are Triton)")
    return backend, notes
