"""Generate each assistant turn of held-out conversations with a model and score it (needs torch).

Scoring itself is pure Python (`minicpm_plugin.evaluation.scoring`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from minicpm_plugin.chat.tokens import STOP_TOKENS, LiteralStyle, check_literal_style
from minicpm_plugin.evaluation.scoring import score_turn, summarize, turn_cases


def stop_token_ids(tokenizer: Any) -> list[int]:
    """Ids of `</s>` and `<|im_end|>` (and the tokenizer's EOS), those the tokenizer knows."""
    ids: list[int] = []
    for token in (*STOP_TOKENS, getattr(tokenizer, "eos_token", None)):
        if token is None:
            continue
        tid = tokenizer.convert_tokens_to_ids(token)
        if isinstance(tid, int) and tid != getattr(tokenizer, "unk_token_id", None) and tid not in ids:
            ids.append(tid)
    if not ids:
        raise ValueError("the tokenizer knows neither </s> nor <|im_end|>: is it a MiniCPM3 tokenizer?")
    return ids


def _model_device(model: Any) -> Any:
    device = getattr(model, "device", None)
    if device is None:
        device = next(model.parameters()).device
    return device


def generate_turns(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    *,
    max_new_tokens: int = 128,
    batch_size: int = 8,
    progress: bool = True,
) -> list[tuple[str, bool]]:
    """Greedy completions of rendered prompts: ``(text before the stop token, truncated)`` each.

    Each prompt is tokenized as in training (the tokenizer adds `<s>`); batches are left-padded and
    sorted by length. The caller sets eval mode and disables gradients (`evaluate` does).
    """
    import torch
    from tqdm.auto import tqdm
    from transformers import GenerationConfig

    stops = stop_token_ids(tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stops[0]
    encoded = [list(tokenizer(p, add_special_tokens=True)["input_ids"]) for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: -len(encoded[i]))  # longest first: OOM shows early
    config = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=stops, pad_token_id=pad,
                              use_cache=True)
    device = _model_device(model)
    results: list[tuple[str, bool]] = [("", False)] * len(prompts)
    with tqdm(total=len(prompts), desc="eval-tools", unit="turn", disable=not progress) as bar:
        for start in range(0, len(order), max(1, batch_size)):
            batch = order[start : start + max(1, batch_size)]
            width = max(len(encoded[i]) for i in batch)
            ids = [[pad] * (width - len(encoded[i])) + encoded[i] for i in batch]
            mask = [[0] * (width - len(encoded[i])) + [1] * len(encoded[i]) for i in batch]
            out = model.generate(
                input_ids=torch.tensor(ids, device=device),
                attention_mask=torch.tensor(mask, device=device),
                generation_config=config,
            )
            for i, row in zip(batch, out[:, width:].tolist(), strict=True):
                cut = next((j for j, t in enumerate(row) if t in stops), None)
                new = row if cut is None else row[:cut]
                results[i] = (_decode_continuation(tokenizer, encoded[i], new), cut is None)
            bar.update(len(batch))
    return results


def _decode_continuation(tokenizer: Any, prompt_ids: list[int], new_ids: list[int]) -> str:
    """The text the new tokens add to the prompt (decoded together, so no piece loses a space)."""
    head = tokenizer.decode(prompt_ids, skip_special_tokens=False)
    full = tokenizer.decode(prompt_ids + new_ids, skip_special_tokens=False)
    if full.startswith(head):
        return full[len(head) :]
    return tokenizer.decode(new_ids, skip_special_tokens=False)


def evaluate(
    model: Any,
    tokenizer: Any,
    conversations: Sequence[Mapping[str, Any]],
    *,
    max_samples: int | None = None,
    max_new_tokens: int = 128,
    literal_style: LiteralStyle = "json",
    batch_size: int = 8,
    progress: bool = True,
) -> dict[str, Any]:
    """Generate and score every assistant turn of the first `max_samples` conversations.

    The model is put in eval mode (and back into training mode if it was training) and nothing
    records gradients. Returns `summarize`'s report plus ``"conversations"`` and per-turn
    ``"samples"`` (conversation/message index, generated text, parsed calls, flags).
    """
    import torch

    check_literal_style(literal_style)
    convs = list(conversations)[: max_samples if max_samples is not None else None]
    cases = turn_cases(convs, literal_style)
    was_training = bool(getattr(model, "training", False))
    model.eval()
    try:
        with torch.no_grad():
            outputs = generate_turns(model, tokenizer, [c.prompt for c in cases], max_new_tokens=max_new_tokens,
                                     batch_size=batch_size, progress=progress)
    finally:
        if was_training:
            model.train()
    samples = []
    for case, (text, truncated) in zip(cases, outputs, strict=True):
        record = score_turn(case.expected_calls, text, truncated=truncated)
        samples.append({"conversation": case.conversation, "message": case.message, **record})
    report = summarize(samples)
    report["conversations"] = len(convs)
    report["settings"] = {"max_new_tokens": max_new_tokens, "literal_style": literal_style}
    report["samples"] = samples
    return report
