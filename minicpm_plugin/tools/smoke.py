"""Train a recipe for a few steps on CPU on the tiny MiniCPM3, before GPU time is spent on it.

`smoke_recipe` runs the same `accelerate launch -m axolotl.cli.train` a user runs, in a subprocess,
with only the model, the output folders, the step count, gradient accumulation and the number of
preprocessing processes (and optionally micro batch / sequence length) overridden. Gradient accumulation is 1 by default: each micro batch
runs MiniCPM3's full 73,448-token output layer, so a recipe's 16 micro batches per step cost minutes
on CPU while testing nothing more than one does. axolotl's own config validation is `minicpm_plugin.integration.validate`.
"""

from __future__ import annotations

import copy
import math
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from minicpm_plugin.tools.recipes import RecipeError, load_recipe
from minicpm_plugin.utils import OFFLINE_ENV, cpu_launch

# Keys that point at the model: replaced by the tiny model.
_MODEL_KEYS = ("base_model_config", "tokenizer_config", "processor_config")
# The tiny model with every linear layer's input a multiple of 64 and output a multiple of 32, as in
# the real MiniCPM3-4B: bitsandbytes' CPU 4-bit kernel (QLoRA evaluation) needs that.
# hidden_size / dim_model_base stays 10, as in the real model.
SMOKE_MODEL_OVERRIDES: dict[str, Any] = {"hidden_size": 320, "dim_model_base": 32, "q_lora_rank": 64,
                                         "kv_lora_rank": 64, "qk_rope_head_dim": 32}
_SAVED = ("adapter_model.safetensors", "model.safetensors", "pytorch_model.bin", "model.safetensors.index.json")
_LOSS = re.compile(r"\{'loss': '?([0-9.eE+-]+|nan|inf)'?")


@dataclass
class SmokeResult:
    """What a smoke run did."""

    recipe: str
    ok: bool
    reason: str
    seconds: float
    losses: list[float] = field(default_factory=list)
    saved: str | None = None  # name of the weights file written to output_dir
    log: str = ""  # combined stdout/stderr of the run
    workdir: str | None = None

    def summary(self) -> str:
        """One line: PASS/FAIL, the recipe and what happened."""
        if self.ok:
            loss = f", loss {self.losses[0]:.3f} -> {self.losses[-1]:.3f}" if self.losses else ""
            return f"PASS {self.recipe}: {len(self.losses)} logged step(s) in {self.seconds:.0f} s{loss}, saved {self.saved}"
        return f"FAIL {self.recipe}: {self.reason}"


def smoke_config(recipe: Mapping[str, Any], model_dir: str | Path, workdir: str | Path, max_steps: int = 2,
                 micro_batch_size: int | None = None, sequence_len: int | None = None,
                 gradient_accumulation_steps: int | None = 1) -> dict[str, Any]:
    """The recipe with the model, output folders, step count and gradient accumulation (None: the
    recipe's) overridden; nothing else changes."""
    cfg = copy.deepcopy(dict(recipe))
    for key in _MODEL_KEYS:
        cfg.pop(key, None)
    work = Path(workdir)
    cfg["base_model"] = str(model_dir)
    cfg["output_dir"] = str(work / "output")
    cfg["dataset_prepared_path"] = str(work / "prepared")
    cfg["max_steps"] = max_steps
    if micro_batch_size is not None:
        cfg["micro_batch_size"] = micro_batch_size
    if sequence_len is not None:
        cfg["sequence_len"] = sequence_len
    if gradient_accumulation_steps is not None:
        cfg["gradient_accumulation_steps"] = gradient_accumulation_steps
    # A few dozen rows: worker processes for `datasets.map` cost seconds each and save nothing.
    cfg["dataset_num_proc"] = 1
    return cfg


def build_smoke_model(out_dir: str | Path) -> Path:
    """The tiny MiniCPM3 that smoke runs train (see SMOKE_MODEL_OVERRIDES)."""
    from minicpm_plugin.tools.tiny_model import build_tiny_model

    return build_tiny_model(out_dir, seed=0, overwrite=True, config_overrides=SMOKE_MODEL_OVERRIDES)


def smoke_model_cache() -> Path:
    """Where the smoke model is kept between runs: one folder per plugin version (the model is built
    from a fixed seed, so a kept copy equals a new one). ``MINICPM_PLUGIN_CACHE`` moves it."""
    from minicpm_plugin import __version__

    root = os.environ.get("MINICPM_PLUGIN_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") \
        / "minicpm_plugin"
    return Path(root) / f"smoke-model-{__version__}"


def cached_smoke_model() -> Path:
    """The smoke model from the cache, built there first if missing (into a temporary folder renamed
    when complete, so an interrupted build is never used). Falls back to a fresh build in a temporary
    folder when the cache folder cannot be written."""
    target = smoke_model_cache()
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
    except OSError:
        return build_smoke_model(tempfile.mkdtemp(prefix="minicpm3-smoke-model-"))
    build_smoke_model(tmp)
    try:
        tmp.rename(target)
    except OSError:  # another run finished first: use its copy
        shutil.rmtree(tmp, ignore_errors=True)
    return target


_ERROR_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b")


def _failure_reason(log: str, returncode: int | None) -> str:
    """The line that says why a run failed: the plugin's config error, else the training process's
    exception (not the launcher's CalledProcessError that wraps it)."""
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    for line in reversed(lines):
        if "config error:" in line:
            return line[line.find("minicpm-plugin"):] if "minicpm-plugin" in line else line
    errors = [x for x in lines if _ERROR_LINE.match(x) and not x.startswith("subprocess.CalledProcessError")]
    if errors:
        return errors[-1][:500]
    return f"exit status {returncode}" + (f"; last output: {lines[-1][:300]}" if lines else "")


def smoke_recipe(recipe_path: str | Path, *, model_dir: str | Path | None = None, max_steps: int = 2,
                 micro_batch_size: int | None = None, sequence_len: int | None = None,
                 gradient_accumulation_steps: int | None = 1,
                 workdir: str | Path | None = None, timeout: float = 1200, cwd: str | Path | None = None,
                 env: Mapping[str, str] | None = None) -> SmokeResult:
    """Train `recipe_path` for `max_steps` on CPU with the tiny MiniCPM3 (built unless `model_dir`).

    Relative paths in the recipe (data, DeepSpeed config) are read from `cwd` (default: the current
    folder), as `accelerate launch` would. Runs in a temporary folder unless `workdir` is given.
    """
    start = time.perf_counter()
    name = str(recipe_path)
    try:
        recipe = load_recipe(recipe_path)
    except RecipeError as exc:
        return SmokeResult(name, False, str(exc), 0.0)
    own_tmp = None
    if workdir is None:
        own_tmp = tempfile.TemporaryDirectory(prefix="minicpm3-smoke-")
        workdir = own_tmp.name
    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    try:
        if model_dir is None:
            model_dir = cached_smoke_model()
        cfg = smoke_config(recipe, model_dir, work, max_steps, micro_batch_size, sequence_len,
                           gradient_accumulation_steps)
        config_path = work / "smoke.yml"
        config_path.write_text(yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True), encoding="utf-8")
        run_env = {**os.environ, **OFFLINE_ENV, "CUDA_VISIBLE_DEVICES": "", **(env or {})}
        command = cpu_launch(["axolotl.cli.train", str(config_path)], run_env,
                             ["--num_processes", "1", "--num_machines", "1", "--mixed_precision", "no",
                              "--dynamo_backend", "no"])
        try:
            proc = subprocess.run(command, cwd=cwd, env=run_env, capture_output=True, text=True, timeout=timeout)
            log, returncode = proc.stdout + proc.stderr, proc.returncode
        except subprocess.TimeoutExpired as exc:
            out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
            err = exc.stderr.decode() if isinstance(exc.stderr, bytes) else (exc.stderr or "")
            return SmokeResult(name, False, f"timed out after {timeout:.0f} s", time.perf_counter() - start,
                               log=out + err, workdir=None if own_tmp else str(work))
        (work / "smoke.log").write_text(log, encoding="utf-8")
        losses = [float(m.group(1)) for m in _LOSS.finditer(log)]
        out_dir = Path(cfg["output_dir"])
        saved = next((f for f in _SAVED if (out_dir / f).is_file()), None)
        seconds = time.perf_counter() - start
        if returncode != 0:
            reason = _failure_reason(log, returncode)
        elif not losses:
            reason = "the run exited without logging a training loss"
        elif not all(math.isfinite(x) for x in losses):
            reason = f"non-finite training loss: {losses}"
        elif saved is None:
            reason = f"no weights were saved to {out_dir}"
        else:
            reason = ""
        return SmokeResult(name, not reason, reason, seconds, losses, saved, log,
                           None if own_tmp else str(work))
    finally:
        if own_tmp is not None:
            own_tmp.cleanup()

