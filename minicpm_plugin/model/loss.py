"""A memory-efficient training loss for MiniCPM3: transformers' loss and gradients, without the full logits.

MiniCPM3's vocabulary has 73,448 tokens: at 4,096 tokens the fp32 logits of one row are 1.2 GB, and the
standard path holds several tensors of that size (the logits, their fp32 copy, the log-softmax, their
gradient). Here the loss runs over the tokens that have a label, `chunk_tokens` at a time, and each
chunk's logits are recomputed in backward (`torch.utils.checkpoint`), so the peak holds one chunk.

What it keeps exactly (tests compare it with the standard path):

* MiniCPM3's muP output scaling: the hidden states are divided by `config.logits_scaling`
  (hidden_size / dim_model_base, 10 for the 4B model) before `lm_head`. A fused linear + cross-entropy
  that skips it trains on logits ten times too large.
* `ForCausalLMLoss`'s normalisation: labels shifted left by one (or `shift_labels` as given), `-100`
  ignored, the logits upcast to fp32, sum / `num_items_in_batch` when the Trainer passes it (gradient
  accumulation), else the mean over labelled tokens.
* `lm_head` is called as a module, so LoRA on it, PEFT's modules_to_save and DeepSpeed's parameter
  gathering work, and the tied embedding gets its gradient as before.

On CUDA, where liger-kernel is installed and `lm_head` is a plain linear layer, its fused linear
cross-entropy runs on the scaled hidden states instead; the first batch is computed both ways and a
mismatch falls back to the torch path with a warning. The patched forward computes the standard
logits whenever it is not training (evaluation, generation), when logits are asked for
(`skip_logits=False`, `logits_to_keep`), or when the model's loss function is not transformers'
`ForCausalLMLoss`.
"""

from __future__ import annotations

import math
import types
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from minicpm_plugin.model.kernels import kernels_can_run
from minicpm_plugin.utils import get_logger

LOG = get_logger(__name__)

IGNORE_INDEX = -100
#: Tokens per chunk: 1,024 x 73,448 fp32 logits are 0.3 GB (the whole loss peaks at a few times that).
DEFAULT_CHUNK_TOKENS = 1024
BACKENDS = ("auto", "torch", "liger")
#: Relative tolerance of the one-time check of a fused kernel against the torch path.
_FUSED_CHECK_RTOL = 2e-3


@dataclass
class ChunkedLossSettings:
    chunk_tokens: int = DEFAULT_CHUNK_TOKENS
    backend: str = "auto"  # auto: liger on CUDA where usable, else torch
    checked: bool = False  # the fused kernel was compared with the torch path once
    used: str = ""  # backend of the last chunked call (for logs and benchmarks)
    calls: int = 0  # chunked calls so far


def shifted_targets(labels: torch.Tensor, ignore_index: int = IGNORE_INDEX,
                    shift_labels: torch.Tensor | None = None) -> torch.Tensor:
    """Flat targets as ForCausalLMLoss builds them: position i predicts label i + 1."""
    if shift_labels is None:
        shift_labels = F.pad(labels, (0, 1), value=ignore_index)[..., 1:]
    return shift_labels.reshape(-1)


def _chunk_loss(lm_head: torch.nn.Module, hidden: torch.Tensor, targets: torch.Tensor, scale: float,
                ignore_index: int) -> torch.Tensor:
    logits = lm_head(hidden / scale).float()
    return F.cross_entropy(logits, targets, ignore_index=ignore_index, reduction="sum")


def _plain_linear(lm_head: torch.nn.Module) -> torch.nn.Linear | None:
    """lm_head as a bias-free nn.Linear whose full weight is present (not LoRA, not ZeRO-3-partitioned)."""
    inner = getattr(lm_head, "modules_to_save", None)  # PEFT's ModulesToSaveWrapper
    if inner is not None and hasattr(lm_head, "active_adapters"):
        names = lm_head.active_adapters
        lm_head = inner[names[0]] if len(names) == 1 and names[0] in inner else lm_head
    if type(lm_head) is not torch.nn.Linear or lm_head.bias is not None:
        return None
    weight = lm_head.weight
    if hasattr(weight, "ds_id") or weight.dim() != 2:  # DeepSpeed ZeRO-3 keeps a partition only
        return None
    return lm_head


def liger_available() -> bool:
    try:
        from liger_kernel.transformers.functional import liger_fused_linear_cross_entropy  # noqa: F401
    except Exception:  # ImportError, or triton failing to initialise
        return False
    return True


def _liger_sum(linear: torch.nn.Linear, hidden: torch.Tensor, targets: torch.Tensor, scale: float,
               ignore_index: int) -> torch.Tensor:
    from liger_kernel.transformers.functional import liger_fused_linear_cross_entropy

    out = liger_fused_linear_cross_entropy(hidden / scale, linear.weight, targets, ignore_index=ignore_index,
                                           reduction="sum")
    return (out[0] if isinstance(out, tuple) else out).float()


def _torch_sum(lm_head: torch.nn.Module, hidden: torch.Tensor, targets: torch.Tensor, scale: float,
               ignore_index: int, chunk_tokens: int) -> torch.Tensor:
    recompute = torch.is_grad_enabled() and (hidden.requires_grad
                                             or any(p.requires_grad for p in lm_head.parameters()))
    total: torch.Tensor | None = None
    for start in range(0, max(hidden.shape[0], 1), chunk_tokens):
        args = (lm_head, hidden[start:start + chunk_tokens], targets[start:start + chunk_tokens], scale, ignore_index)
        part = checkpoint(_chunk_loss, *args, use_reentrant=False) if recompute else _chunk_loss(*args)
        total = part if total is None else total + part
    assert total is not None
    return total


def linear_cross_entropy_sum(hidden: torch.Tensor, lm_head: torch.nn.Module, targets: torch.Tensor, *,
                             scale: float, ignore_index: int = IGNORE_INDEX,
                             chunk_tokens: int = DEFAULT_CHUNK_TOKENS, backend: str = "torch") -> torch.Tensor:
    """fp32 sum over rows of cross_entropy(lm_head(hidden / scale), targets); rows with ignore_index add 0.

    `hidden` is `[n, hidden_size]`, `targets` `[n]`. backend "torch" never holds more than
    `chunk_tokens` rows of logits; "liger" runs liger-kernel's fused kernel (lm_head must be plain).
    """
    if backend == "liger":
        linear = _plain_linear(lm_head)
        if linear is None:
            raise ValueError("the liger backend needs lm_head to be a plain bias-free nn.Linear with its full weight")
        return _liger_sum(linear, hidden, targets, scale, ignore_index)
    return _torch_sum(lm_head, hidden, targets, scale, ignore_index, max(1, int(chunk_tokens)))


def _pick_backend(settings: ChunkedLossSettings, lm_head: torch.nn.Module, hidden: torch.Tensor) -> str:
    if settings.backend == "torch":
        return "torch"
    usable = kernels_can_run(hidden.device) and _plain_linear(lm_head) is not None and liger_available()
    if settings.backend == "liger" and not usable:
        if settings.calls == 0:
            LOG.warning("chunked loss: liger's fused kernel cannot run here (it needs CUDA, liger-kernel and a plain "
                        "lm_head); using the torch chunked loss")
        return "torch"
    return "liger" if usable else "torch"


def _check_fused_once(settings: ChunkedLossSettings, lm_head: torch.nn.Module, hidden: torch.Tensor,
                      targets: torch.Tensor, scale: float, ignore_index: int) -> str:
    """Compare the fused kernel with the torch path on the first batch; keep torch if they disagree."""
    settings.checked = True
    with torch.no_grad():
        fused = float(linear_cross_entropy_sum(hidden, lm_head, targets, scale=scale, ignore_index=ignore_index,
                                               backend="liger"))
        plain = float(linear_cross_entropy_sum(hidden, lm_head, targets, scale=scale, ignore_index=ignore_index,
                                               chunk_tokens=settings.chunk_tokens, backend="torch"))
    if math.isfinite(fused) and abs(fused - plain) <= _FUSED_CHECK_RTOL * max(1.0, abs(plain)):
        LOG.info(f"chunked loss: liger's fused linear cross-entropy matches the torch path on the first batch "
                 f"({fused:.6g} vs {plain:.6g}); using it")
        return "liger"
    LOG.warning(f"chunked loss: liger's fused linear cross-entropy gave {fused:.6g} where the torch path gives "
                f"{plain:.6g} on the first batch; using the torch chunked loss")
    settings.backend = "torch"
    return "torch"


def causal_lm_loss(hidden_states: torch.Tensor, lm_head: torch.nn.Module, labels: torch.Tensor | None, *,
                   logits_scaling: float, num_items_in_batch: torch.Tensor | int | None = None,
                   ignore_index: int = IGNORE_INDEX, shift_labels: torch.Tensor | None = None,
                   settings: ChunkedLossSettings | None = None) -> torch.Tensor:
    """ForCausalLMLoss(lm_head(hidden_states / logits_scaling), labels) without the full logits."""
    settings = settings or ChunkedLossSettings(backend="torch")
    hidden = hidden_states.reshape(-1, hidden_states.shape[-1])
    targets = shifted_targets(labels, ignore_index, shift_labels).to(hidden.device)
    if targets.shape[0] != hidden.shape[0]:
        raise ValueError(f"{targets.shape[0]} targets for {hidden.shape[0]} hidden states")
    keep = (targets != ignore_index).nonzero().squeeze(1)
    count = int(keep.numel())
    if count < targets.shape[0]:  # only labelled positions reach lm_head (prompt tokens cost nothing)
        hidden, targets = hidden.index_select(0, keep), targets.index_select(0, keep)
    backend = _pick_backend(settings, lm_head, hidden) if count else "torch"
    if backend == "liger" and not settings.checked:
        backend = _check_fused_once(settings, lm_head, hidden, targets, logits_scaling, ignore_index)
    total = linear_cross_entropy_sum(hidden, lm_head, targets, scale=logits_scaling, ignore_index=ignore_index,
                                     chunk_tokens=settings.chunk_tokens, backend=backend)
    settings.used, settings.calls = backend, settings.calls + 1
    if num_items_in_batch is None:
        return total / count  # 0 / 0 = nan when nothing is labelled, as cross_entropy's mean gives
    if torch.is_tensor(num_items_in_batch):
        num_items_in_batch = num_items_in_batch.to(total.device)
    return total / num_items_in_batch


def _is_standard_loss(fn: Any) -> bool:
    # Identity by name: axolotl's chunked_cross_entropy replaces LOSS_MAPPING["ForCausalLM"] in place.
    return getattr(fn, "__name__", "") == "ForCausalLMLoss" and getattr(fn, "__module__", "") == "transformers.loss.loss_utils"


def chunked_causal_lm_forward(
    self: Any,
    input_ids: torch.LongTensor | None = None,
    attention_mask: torch.Tensor | None = None,
    position_ids: torch.LongTensor | None = None,
    past_key_values: Any = None,
    inputs_embeds: torch.FloatTensor | None = None,
    labels: torch.LongTensor | None = None,
    use_cache: bool | None = None,
    logits_to_keep: int | torch.Tensor = 0,
    skip_logits: bool | None = None,
    **kwargs: Any,
) -> Any:
    """MiniCPM3ForCausalLM.forward with the chunked loss while training (logits=None then)."""
    from transformers.modeling_outputs import CausalLMOutputWithPast

    outputs = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                         past_key_values=past_key_values, inputs_embeds=inputs_embeds, use_cache=use_cache, **kwargs)
    hidden = outputs.last_hidden_state
    settings: ChunkedLossSettings = self._minicpm3_chunked_loss
    if skip_logits is None:
        skip_logits = self.training and torch.is_grad_enabled()
    chunked = (labels is not None and skip_logits and isinstance(logits_to_keep, int) and logits_to_keep == 0)
    if chunked and not _is_standard_loss(self.loss_function):
        if settings.calls == 0:
            LOG.warning(f"chunked loss: the model's loss function is {getattr(self.loss_function, '__name__', '?')}, "
                        "not transformers' ForCausalLMLoss; computing full logits for it")
        settings.calls += 1
        chunked = False
    if chunked:
        loss = causal_lm_loss(hidden, self.lm_head, labels, logits_scaling=self.config.logits_scaling,
                              num_items_in_batch=kwargs.get("num_items_in_batch"),
                              ignore_index=kwargs.get("ignore_index", IGNORE_INDEX),
                              shift_labels=kwargs.get("shift_labels"), settings=settings)
        logits = None
    else:
        keep = slice(-logits_to_keep, None) if isinstance(logits_to_keep, int) else logits_to_keep
        logits = self.lm_head((hidden / self.config.logits_scaling)[:, keep, :])
        loss = None
        if labels is not None:
            loss = self.loss_function(logits=logits, labels=labels, vocab_size=self.config.vocab_size, **kwargs)
    return CausalLMOutputWithPast(loss=loss, logits=logits, past_key_values=outputs.past_key_values,
                                  hidden_states=outputs.hidden_states, attentions=outputs.attentions)


def _with_tuple_output(fn: Any) -> Any:
    try:
        from transformers.utils.generic import can_return_tuple
    except ImportError:  # older transformers: return_dict handling is absent, outputs stay dataclasses
        return fn
    return can_return_tuple(fn)


_FORWARD = _with_tuple_output(chunked_causal_lm_forward)


def find_causal_lm(model: torch.nn.Module) -> torch.nn.Module:
    """The MiniCPM3ForCausalLM inside a PeftModel, a DeepSpeed engine or itself."""
    for module in model.modules():
        if any(cls.__name__ == "MiniCPM3ForCausalLM" for cls in type(module).__mro__):
            return module
    raise ValueError("no MiniCPM3ForCausalLM found in this model")


def install_chunked_loss(model: torch.nn.Module, chunk_tokens: int = DEFAULT_CHUNK_TOKENS,
                         backend: str = "auto") -> torch.nn.Module:
    """Give the model's MiniCPM3ForCausalLM the chunked loss (idempotent; settings updated). Returns it."""
    if backend not in BACKENDS:
        raise ValueError(f"backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    if chunk_tokens < 1:
        raise ValueError(f"chunk_tokens must be positive, not {chunk_tokens}")
    lm = find_causal_lm(model)
    existing = lm.__dict__.get("_minicpm3_chunked_loss")
    if existing is not None:
        existing.chunk_tokens, existing.backend, existing.checked = chunk_tokens, backend, False
        return lm
    lm._minicpm3_chunked_loss = ChunkedLossSettings(chunk_tokens, backend)
    bound = types.MethodType(_FORWARD, lm)
    if hasattr(lm, "_hf_hook") and "_old_forward" in lm.__dict__:
        lm._old_forward = bound  # accelerate's hook wraps forward: replace what it calls
    else:
        lm.forward = bound
    return lm


def remove_chunked_loss(model: torch.nn.Module) -> bool:
    """Back to the class's forward; False if the chunked loss was not installed."""
    lm = find_causal_lm(model)
    if lm.__dict__.pop("_minicpm3_chunked_loss", None) is None:
        return False
    key = "_old_forward" if hasattr(lm, "_hf_hook") and "_old_forward" in lm.__dict__ else "forward"
    if key == "_old_forward":
        lm._old_forward = types.MethodType(type(lm).forward, lm)
    else:
        lm.__dict__.pop("forward", None)
    return True


def chunked_loss_settings(model: torch.nn.Module) -> ChunkedLossSettings | None:
    return find_causal_lm(model).__dict__.get("_minicpm3_chunked_loss")
