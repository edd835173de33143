"""`axolotl merge_lora` keeps the trained tokenizer (with MiniCPM3's chat template) in `merged/`.

axolotl 0.19's default (memory-efficient) merge copies the *base* model's tokenizer files into
`output_dir/merged`, so the merged model would be served with whatever template the base carries.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from minicpm_plugin.utils import get_logger, patch_once

LOG = get_logger(__name__)


def save_trained_tokenizer(cfg: Any) -> None:
    source = Path(str(cfg.lora_model_dir or cfg.output_dir))
    target = Path(str(cfg.output_dir)) / "merged"
    if not (source / "tokenizer_config.json").is_file() or not target.is_dir():
        return
    from transformers import AutoTokenizer

    AutoTokenizer.from_pretrained(source).save_pretrained(target)
    LOG.info(f"merged model: tokenizer with MiniCPM3's chat template copied from {source} to {target}")


def keep_trained_tokenizer_on_merge() -> None:
    """Wrap axolotl's merge entry point, which its CLI looks up at call time. Idempotent.

    `python -m axolotl.cli.merge_lora` runs that module as `__main__`, so both copies are wrapped.
    """
    import sys

    import axolotl.cli.merge_lora as merge_cli

    for module in (merge_cli, sys.modules.get("__main__")):
        if getattr(module, "do_merge_lora", None) is not None:
            patch_once(module, "do_merge_lora", _wrap)


def _wrap(original: Any) -> Any:
    def do_merge_lora(*, cfg: Any) -> None:
        original(cfg=cfg)
        save_trained_tokenizer(cfg)

    return do_merge_lora
