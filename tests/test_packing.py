"""Sample packing for MiniCPM3: packed samples must not attend to each other."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from minicpm_plugin.model.packing import install_packing_guard


def _packed_vs_separate(model: torch.nn.Module) -> float:
    torch.manual_seed(0)
    vocab = model.config.vocab_size
    a = torch.randint(11, vocab, (1, 9))
    b = torch.randint(11, vocab, (1, 7))
    with torch.no_grad():
        sep_a = model(input_ids=a).logits
        sep_b = model(input_ids=b).logits
        packed_ids = torch.cat([a, b], dim=1)
        # What axolotl's multipack collator sends: position ids restarting per sample, a 2D mask.
        position_ids = torch.cat([torch.arange(9), torch.arange(7)]).unsqueeze(0)
        mask = torch.ones_like(packed_ids)
        packed = model(input_ids=packed_ids, attention_mask=mask, position_ids=position_ids).logits
    return max((packed[:, :9] - sep_a).abs().max().item(), (packed[:, 9:] - sep_b).abs().max().item())


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_rows_equal_separate_rows_with_the_guard(tiny_model_dir: Path, attn: str) -> None:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, attn_implementation=attn).eval()
    leak = _packed_vs_separate(model)
    assert leak > 1e-3, "without the guard the second sample sees the first (this is what the guard fixes)"
    install_packing_guard(model)
    assert _packed_vs_separate(model) < 1e-5


def test_guard_works_through_peft(tiny_model_dir: Path) -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    peft_model = get_peft_model(model, LoraConfig(r=4, target_modules=["q_a_proj", "kv_b_proj"]))
    install_packing_guard(peft_model)
    assert _packed_vs_separate(peft_model.eval()) < 1e-5
