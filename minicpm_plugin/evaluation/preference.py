"""Does a model prefer the chosen answer of each preference pair? (needs torch)

Each pair is rendered and tokenized exactly as the preference trainers see it (`pair_texts` +
`tokenize_pairs`), and the model's log-probability of the chosen and of the rejected answer tokens
after the prompt is summed. ``preference_acc`` is the share of pairs whose chosen answer is the more
likely one; ``mean_margin`` the mean of log p(chosen) - log p(rejected). Without a reference model
this is the policy's own preference, the quantity DPO's reward margin moves (beta times its change
against the reference).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from minicpm_plugin.chat.tokens import LiteralStyle
from minicpm_plugin.formats.preference import pair_texts
from minicpm_plugin.tokenize import PairTokens, tokenize_pairs


def answer_logprobs(model: Any, tokenizer: Any, tokens: Sequence[PairTokens], *, batch_size: int = 8) -> list[tuple[float, float]]:
    """Summed log-probabilities of (chosen, rejected) answer tokens given the prompt, for each pair."""
    import torch

    device = getattr(model, "device", None) or next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    sequences = [(t.prompt_ids, answer) for t in tokens for answer in (t.chosen_ids, t.rejected_ids)]
    scores: list[float] = []
    for start in range(0, len(sequences), max(1, batch_size)):
        batch = sequences[start : start + max(1, batch_size)]
        width = max(len(p) + len(a) for p, a in batch)
        ids = [p + a + [pad] * (width - len(p) - len(a)) for p, a in batch]
        mask = [[1] * (len(p) + len(a)) + [0] * (width - len(p) - len(a)) for p, a in batch]
        logits = model(input_ids=torch.tensor(ids, device=device), attention_mask=torch.tensor(mask, device=device)).logits
        logps = torch.log_softmax(logits.float(), dim=-1)
        for row, (p, a) in enumerate(batch):
            positions = torch.arange(len(p) - 1, len(p) + len(a) - 1, device=device)
            targets = torch.tensor(a, device=device)
            scores.append(float(logps[row, positions, targets].sum()))
    return [(scores[i], scores[i + 1]) for i in range(0, len(scores), 2)]


def evaluate_pairs(model: Any, tokenizer: Any, pairs: Sequence[Mapping[str, Any]], *, literal_style: LiteralStyle = "json",
                   batch_size: int = 8) -> dict[str, Any]:
    """Preference accuracy and margins of `model` on canonical pairs (eval mode, no gradients)."""
    import torch

    tokens = tokenize_pairs(tokenizer, [pair_texts(p, literal_style) for p in pairs])
    was_training = bool(getattr(model, "training", False))
    model.eval()
    try:
        with torch.no_grad():
            scores = answer_logprobs(model, tokenizer, tokens, batch_size=batch_size)
    finally:
        if was_training:
            model.train()
    samples = [{"pair": i, "chosen_logp": c, "rejected_logp": r, "margin": c - r, "chosen_tokens": len(t.chosen_ids),
                "rejected_tokens": len(t.rejected_ids), "boundary_ok": t.boundary_ok}
               for i, (t, (c, r)) in enumerate(zip(tokens, scores, strict=True))]
    n = len(samples)
    preferred = sum(s["margin"] > 0 for s in samples)
    return {
        "pairs": n,
        "chosen_preferred": preferred,
        "preference_acc": preferred / n if n else 0.0,
        "mean_margin": sum(s["margin"] for s in samples) / n if n else 0.0,
        "mean_chosen_logp": sum(s["chosen_logp"] for s in samples) / n if n else 0.0,
        "mean_rejected_logp": sum(s["rejected_logp"] for s in samples) / n if n else 0.0,
        "boundary_failures": sum(not s["boundary_ok"] for s in samples),
        "settings": {"literal_style": literal_style},
        "samples": samples,
    }


def format_pair_table(report: Mapping[str, Any]) -> str:
    lines = [
        f"preference pairs: {report['pairs']}",
        f"  chosen preferred        {report['chosen_preferred']} / {report['pairs']} ({report['preference_acc']:.1%})",
        f"  mean margin             {report['mean_margin']:+.3f}  (log p(chosen) - log p(rejected), summed over tokens)",
        f"  mean log p chosen       {report['mean_chosen_logp']:.3f}",
        f"  mean log p rejected     {report['mean_rejected_logp']:.3f}",
    ]
    if report["boundary_failures"]:
        lines.append(f"  split not on a token boundary: {report['boundary_failures']} pairs (scored as the trainer splits them)")
    return "\n".join(lines)
