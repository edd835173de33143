"""Facts about MiniCPM3's architecture that several parts of the package need (no torch import)."""

from __future__ import annotations

#: Linear layers of a MiniCPM3 decoder layer (latent attention + SwiGLU MLP): LoRA targets.
#: There is no q_proj/k_proj/v_proj.
MINICPM3_LINEAR_MODULES = (
    "q_a_proj", "q_b_proj", "kv_a_proj_with_mqa", "kv_b_proj", "o_proj", "gate_proj", "up_proj", "down_proj",
)
