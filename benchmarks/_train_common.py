"""For the GPU training benchmark: synthetic chat-like token rows (packed or padded) and a random MiniCPM3-4B."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from minicpm_plugin.model.compat import apply_transformers_fixes

IGNORE = -100
#: A tiny config with MiniCPM3's structure (latent attention, muP scalings, tied embeddings).
TINY = {"hidden_size": 80, "dim_model_base": 8, "intermediate_size": 192, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 4, "q_lora_rank": 48, "kv_lora_rank": 16,
        "qk_nope_head_dim": 16, "qk_rope_head_dim": 8, "v_head_dim": 16, "vocab_size": 2048}


@dataclass
class Sample:
    ids: list[int]
    labels: list[int]


def make_samples(n: int, seq_len: int, vocab: int, seed: int, median_len: int) -> list[Sample]:
    """Chat-like samples: lognormal lengths (clipped to [32, seq_len]), Zipf-distributed token ids from a
    4k-token slice of the vocabulary (learnable, so the loss falls), the first 30-70% masked as prompt."""
    rng = random.Random(seed)
    k = min(4000, vocab - 100)
    cum, total = [], 0.0
    for i in range(k):
        total += 1.0 / (i + 1) ** 1.1
        cum.append(total)
    population = range(100, 100 + k)
    out = []
    for _ in range(n):
        length = int(min(seq_len, max(32, rng.lognormvariate(math.log(median_len), 0.7))))
        ids = rng.choices(population, cum_weights=cum, k=length)
        ids[0] = 1  # <s>
        prompt = int(length * rng.uniform(0.3, 0.7))
        out.append(Sample(ids, [IGNORE] * prompt + ids[prompt:]))
    return out


def pack(samples: list[Sample], seq_len: int) -> list[list[Sample]]:
    """First-fit decreasing into rows of at most seq_len tokens (what multipack approximates)."""
    bins: list[tuple[int, list[Sample]]] = []
    for s in sorted(samples, key=lambda s: -len(s.ids)):
        for i, (used, row) in enumerate(bins):
            if used + len(s.ids) <= seq_len:
                row.append(s)
                bins[i] = (used + len(s.ids), row)
                break
        else:
            bins.append((len(s.ids), [s]))
    rows = [row for _, row in bins]
    random.Random(0).shuffle(rows)
    return rows


def packed_batch(rows: list[list[Sample]], seq_len: int, pad_id: int) -> dict[str, torch.Tensor]:
    """input_ids/labels/position_ids (restarting per sample; the tail pad is its own segment), mask of ones."""
    ids, labels, pos = [], [], []
    for row in rows:
        r_ids, r_lab, r_pos = [], [], []
        for s in row:
            r_ids += s.ids
            r_lab += s.labels
            r_pos += list(range(len(s.ids)))
        tail = seq_len - len(r_ids)
        ids.append(r_ids + [pad_id] * tail)
        labels.append(r_lab + [IGNORE] * tail)
        pos.append(r_pos + list(range(tail)))
    t = torch.tensor(ids)
    return {"input_ids": t, "labels": torch.tensor(labels), "position_ids": torch.tensor(pos),
            "attention_mask": torch.ones_like(t)}


def padded_batch(samples: list[Sample], seq_len: int, pad_id: int) -> dict[str, torch.Tensor]:
    """finetune.py's layout: each sample right-padded to seq_len, attention mask 0 on the padding."""
    ids = [s.ids + [pad_id] * (seq_len - len(s.ids)) for s in samples]
    labels = [s.labels + [IGNORE] * (seq_len - len(s.ids)) for s in samples]
    mask = [[1] * len(s.ids) + [0] * (seq_len - len(s.ids)) for s in samples]
    return {"input_ids": torch.tensor(ids), "labels": torch.tensor(labels), "attention_mask": torch.tensor(mask)}


# ---- model ---------------------------------------------------------------------------------------

def model_config(tiny: bool) -> Any:
    """MiniCPM3-4B's config (transformers' defaults equal it) with longrope as in the checkpoint."""
    from transformers import MiniCPM3Config

    apply_transformers_fixes()
    fields: dict[str, Any] = dict(TINY) if tiny else {}
    half = (fields.get("qk_rope_head_dim") or 32) // 2
    factors = [round(1.0 + 0.05 * i, 4) for i in range(half)]
    # No `factor`, as in the real config.json: apply_transformers_fixes fills it in.
    fields["rope_parameters"] = {"rope_type": "longrope", "rope_theta": 10000.0, "short_factor": factors,
                                 "long_factor": factors, "original_max_position_embeddings": 32768}
    config = MiniCPM3Config(max_position_embeddings=32768, tie_word_embeddings=True, use_cache=False,
                            bos_token_id=1, eos_token_id=[2, 73440 if not tiny else 3], **fields)
    if not tiny:
        assert (config.hidden_size, config.num_hidden_layers, config.vocab_size) == (2560, 62, 73448), config
    return config


def write_random_model(out: Path, tiny: bool, device: str, dtype: torch.dtype) -> Any:
    """Random-init the model (on `device`) and save it, so every run loads it the way a user would."""
    from transformers import MiniCPM3ForCausalLM

    config = model_config(tiny)
    torch.manual_seed(0)
    with torch.device(device):
        model = MiniCPM3ForCausalLM._from_config(config, dtype=dtype)
        # Tied embeddings with std 10/sqrt(hidden): logits (normed hidden / 10 @ embeddings) start at unit scale,
        # like a trained model's, so LoRA can move the loss within a few dozen steps (at the tiny size the
        # config's std 0.1 leaves them near uniform; cf. minicpm_plugin.tools.tiny_model).
        model.get_input_embeddings().weight.data.normal_(0.0, 10.0 / math.sqrt(config.hidden_size))
    model.save_pretrained(out)
    del model
    return config


def matmul_params(config: Any) -> int:
    """Weights of every linear layer, lm_head (tied to the embeddings) included."""
    h, n = config.hidden_size, config.num_hidden_layers
    qk = config.qk_nope_head_dim + config.qk_rope_head_dim
    heads = config.num_attention_heads
    attn = (h * config.q_lora_rank + config.q_lora_rank * heads * qk
            + h * (config.kv_lora_rank + config.qk_rope_head_dim)
            + config.kv_lora_rank * heads * (config.qk_nope_head_dim + config.v_head_dim)
            + heads * config.v_head_dim * h)
    mlp = 3 * h * config.intermediate_size
    return n * (attn + mlp) + config.vocab_size * h


def attention_fwd_flops(config: Any, lengths: list[int]) -> float:
    qk = config.qk_nope_head_dim + config.qk_rope_head_dim
    per_pair = 2 * (qk + config.v_head_dim) * config.num_attention_heads * config.num_hidden_layers
    return float(per_pair * sum(n * (n + 1) // 2 for n in lengths))
