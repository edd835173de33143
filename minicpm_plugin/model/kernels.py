"""liger-kernel's RMSNorm and SwiGLU kernels on MiniCPM3's own modules (axolotl 0.19 applies none to minicpm3).

MiniCPM3RMSNorm is Llama's (fp32 variance, weight times the normalised input cast back: liger's "llama"
casting mode, offset 0) and MiniCPM3MLP is `down(silu(gate(x)) * up(x))`: liger's SwiGLU. The kernels are
bound to the existing module instances, so weights, LoRA layers on gate/up/down and 4-bit linears stay as
they are. Tests compare the patched model with the original on CPU under Triton's interpreter.
"""

from __future__ import annotations

import os
import types

import torch

SWIGLU_ACTS = ("silu", "swish")


def kernels_can_run(device: torch.device | str) -> bool:
    """Triton kernels run on CUDA, or anywhere under TRITON_INTERPRET=1 (slowly: tests only)."""
    return torch.device(device).type == "cuda" or os.environ.get("TRITON_INTERPRET") == "1"


def apply_liger_kernels(model: torch.nn.Module, rms_norm: bool = False, swiglu: bool = False) -> dict[str, int]:
    """Bind liger's RMSNorm / SwiGLU forward to MiniCPM3's norms / MLPs in `model`. Returns counts patched."""
    counts = {"rms_norm": 0, "swiglu": 0}
    if not (rms_norm or swiglu):
        return counts
    from liger_kernel.transformers.rms_norm import LigerRMSNorm
    from liger_kernel.transformers.swiglu import LigerSwiGLUMLP

    for module in model.modules():
        name = type(module).__name__
        if rms_norm and name == "MiniCPM3RMSNorm" and not getattr(module, "_minicpm3_liger", False):
            # The attributes LigerRMSNorm.forward reads; in_place=False keeps the input gradient intact.
            module.offset, module.casting_mode, module.in_place, module.row_mode = 0.0, "llama", False, None
            module.elementwise_affine = True
            module.forward = types.MethodType(LigerRMSNorm.forward, module)
            module._minicpm3_liger = True
            counts["rms_norm"] += 1
        elif swiglu and name == "MiniCPM3MLP" and not getattr(module, "_minicpm3_liger", False):
            config = getattr(module, "config", None)
            if getattr(config, "hidden_act", None) not in SWIGLU_ACTS or getattr(config, "mlp_bias", False):
                raise ValueError(f"liger SwiGLU needs a bias-free silu MLP; this MiniCPM3 has hidden_act="
                                 f"{getattr(config, 'hidden_act', None)!r}, mlp_bias={getattr(config, 'mlp_bias', None)}")
            module.forward = types.MethodType(LigerSwiGLUMLP.forward, module)
            module._minicpm3_liger = True
            counts["swiglu"] += 1
    return counts
