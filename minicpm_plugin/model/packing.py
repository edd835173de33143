"""Sample packing without attention across packed samples, for the native MiniCPM3 class.

axolotl packs several samples into one row and sends `position_ids` that restart at 0 for each
sample, together with a 2D attention mask that is all ones (or segment ids). Given such a mask,
transformers treats the row as one sequence, so samples attend to each other. Given no mask and
restarting `position_ids`, transformers builds a block-diagonal causal mask (SDPA, eager, flex) or
uses variable-length kernels (flash attention). This hook drops the mask for packed rows.
"""

from __future__ import annotations

from typing import Any

import torch


def _is_packed(position_ids: torch.Tensor) -> bool:
    return bool((position_ids[..., 1:] - position_ids[..., :-1] != 1).any())


def _drop_packed_mask(module: torch.nn.Module, args: tuple, kwargs: dict[str, Any]) -> tuple[tuple, dict[str, Any]]:
    position_ids = kwargs.get("position_ids")
    mask = kwargs.get("attention_mask")
    if (
        position_ids is not None
        and mask is not None
        and mask.dim() == 2
        and kwargs.get("past_key_values") is None
        and _is_packed(position_ids)
    ):
        kwargs["attention_mask"] = None
        # transformers only derives the per-sample mask when no cache is in play.
        kwargs["use_cache"] = False
    return args, kwargs


def find_decoder(model: torch.nn.Module) -> torch.nn.Module:
    """The MiniCPM3Model inside a CausalLM, a PeftModel or a DeepSpeed engine."""
    for module in model.modules():
        if type(module).__name__ == "MiniCPM3Model":
            return module
    raise ValueError("no MiniCPM3Model found in this model")


def install_packing_guard(model: torch.nn.Module) -> torch.utils.hooks.RemovableHandle:
    """Make packed rows attend only within their own sample. Returns the hook handle."""
    decoder = find_decoder(model)
    if getattr(decoder, "_minicpm3_packing_guard", None) is not None:
        return decoder._minicpm3_packing_guard
    handle = decoder.register_forward_pre_hook(_drop_packed_mask, with_kwargs=True)
    decoder._minicpm3_packing_guard = handle
    return handle
