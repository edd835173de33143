"""Estimate the peak GPU memory of a MiniCPM3 training recipe, per device, before it runs.

Pure Python (no torch): the numbers come from MiniCPM3's architecture (latent attention, SwiGLU MLP,
tied 73,448-token embeddings) and the recipe (precision, LoRA/QLoRA, optimizer, DeepSpeed stage and
offload, sequence length, micro batch, gradient checkpointing). docs/memory.md explains each term;
`benchmarks/gpu_memory.py` measures the real peak next to this estimate.

    est = estimate(plan_from_recipe(yaml.safe_load(open("examples/minicpm3_lora.yml"))))
    print(format_report(est))
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from minicpm_plugin.model.architecture import MINICPM3_LINEAR_MODULES as LINEAR_MODULES

GIB = 1024**3
CARDS_GB = (12, 16, 24, 40, 80)


class PlanError(ValueError):
    """The recipe cannot be estimated (message says which key and why)."""


@dataclass(frozen=True)
class ModelShape:
    """The config fields that decide memory. Defaults are openbmb/MiniCPM3-4B (= transformers' defaults)."""

    vocab_size: int = 73448
    hidden_size: int = 2560
    intermediate_size: int = 6400
    num_hidden_layers: int = 62
    num_attention_heads: int = 40
    q_lora_rank: int = 768
    kv_lora_rank: int = 256
    qk_nope_head_dim: int = 64
    qk_rope_head_dim: int = 32
    v_head_dim: int = 64
    tie_word_embeddings: bool = True

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ModelShape:
        """From a config.json dict (missing keys keep the 4B values)."""
        names = cls.__dataclass_fields__
        return cls(**{k: config[k] for k in names if config.get(k) is not None})

    @property
    def qk_head_dim(self) -> int:
        return self.qk_nope_head_dim + self.qk_rope_head_dim

    def linears(self) -> dict[str, tuple[int, int]]:
        """(in_features, out_features) of each linear layer in one decoder layer."""
        h, n = self.hidden_size, self.num_attention_heads
        return {
            "q_a_proj": (h, self.q_lora_rank),
            "q_b_proj": (self.q_lora_rank, n * self.qk_head_dim),
            "kv_a_proj_with_mqa": (h, self.kv_lora_rank + self.qk_rope_head_dim),
            "kv_b_proj": (self.kv_lora_rank, n * (self.qk_nope_head_dim + self.v_head_dim)),
            "o_proj": (n * self.v_head_dim, h),
            "gate_proj": (h, self.intermediate_size),
            "up_proj": (h, self.intermediate_size),
            "down_proj": (self.intermediate_size, h),
        }

    def linear_params_per_layer(self) -> int:
        return sum(i * o for i, o in self.linears().values())

    def norm_params_per_layer(self) -> int:
        return 2 * self.hidden_size + self.q_lora_rank + self.kv_lora_rank

    def embedding_params(self) -> int:
        """Input embeddings plus the output head (shared when tied)."""
        return self.vocab_size * self.hidden_size * (1 if self.tie_word_embeddings else 2)

    def param_count(self) -> int:
        layer = self.linear_params_per_layer() + self.norm_params_per_layer()
        return self.num_hidden_layers * layer + self.embedding_params() + self.hidden_size

    def lora_params(self, rank: int, targets: Sequence[str]) -> int:
        shapes = self.linears()
        return self.num_hidden_layers * sum(rank * (shapes[t][0] + shapes[t][1]) for t in targets)

    def activation_bytes_per_token_layer(self, dtype_bytes: int) -> int:
        """Bytes autograd keeps per token for one decoder layer (no checkpointing), the native
        MiniCPM3 forward with an SDPA kernel that does not store the S x S attention matrix.

        RMSNorm keeps an fp32 copy of its input and its bf16 output; each linear keeps its input;
        latent attention keeps q, the expanded k and v (v is a view of kv_b_proj's output), the
        attention output and its contiguous copy; SwiGLU keeps gate, up, silu(gate) and their product.
        """
        a, h, n = dtype_bytes, self.hidden_size, self.num_attention_heads
        norm = lambda d: 4 * d + 2 * a * d  # noqa: E731  fp32 copy + normalised + output
        attention = (
            norm(h)
            + norm(self.q_lora_rank)
            + a * n * self.qk_head_dim  # query (after rotary + cat)
            + norm(self.kv_lora_rank) + a * self.qk_rope_head_dim
            + a * n * (self.qk_nope_head_dim + self.v_head_dim)  # kv_b_proj output (v is a view of it)
            + a * n * self.qk_head_dim  # key
            + 2 * a * n * self.v_head_dim + 4 * n  # attention output, its contiguous copy, logsumexp
        )
        mlp = norm(h) + 4 * a * self.intermediate_size
        return attention + mlp


MINICPM3_4B = ModelShape()

# Optimizer state bytes per trainable parameter, as a function of the parameter's own bytes.
_EIGHT_BIT = {"adamw_bnb_8bit", "adamw_8bit", "paged_adamw_8bit", "adam8bit", "adamw_torch_8bit", "ademamix_8bit",
              "paged_ademamix_8bit"}
_FP32_STATES = {"paged_adamw_32bit", "paged_adamw", "adamw_32bit"}


def optimizer_state_bytes(optimizer: str, param_bytes: int) -> float:
    """State bytes per parameter: AdamW keeps two moments (in the parameter's dtype for torch's AdamW,
    one byte each for bitsandbytes' 8-bit variants, fp32 for the 32-bit paged ones)."""
    name = optimizer.lower()
    if name in _EIGHT_BIT or name.endswith("8bit"):
        return 2 + 2 * 4 / 256  # two uint8 moments + an fp32 absmax per 256-value block each
    if name in _FP32_STATES:
        return 8
    if name.startswith("lion"):
        return 4 if "32bit" in name else param_bytes
    if name in ("sgd",):
        return 0
    if name.startswith("adafactor"):
        return 0.05 * param_bytes
    return 2 * param_bytes  # adamw_torch(_fused), adamw_hf, and unknown ones counted as AdamW


@dataclass(frozen=True)
class DeepSpeedPlan:
    stage: int = 0
    offload_optimizer: bool = False
    offload_param: bool = False
    own_optimizer: bool = False  # the json has an "optimizer" block (DeepSpeed's own AdamW)
    reduce_bucket_size: float = 5e8  # elements; -1 for "auto" (hidden_size^2)
    allgather_bucket_size: float = 5e8
    path: str | None = None

    @classmethod
    def from_json(cls, config: Mapping[str, Any], path: str | None = None) -> DeepSpeedPlan:
        zero = config.get("zero_optimization") or {}

        def device(key: str) -> bool:
            return str((zero.get(key) or {}).get("device", "none")).lower() in ("cpu", "nvme")

        def size(key: str) -> float:
            value = zero.get(key, 5e8)
            return -1.0 if isinstance(value, str) else float(value)  # "auto"

        return cls(
            stage=int(zero.get("stage", 0)),
            offload_optimizer=device("offload_optimizer"),
            offload_param=device("offload_param"),
            own_optimizer="optimizer" in config,
            reduce_bucket_size=size("reduce_bucket_size"),
            allgather_bucket_size=size("allgather_bucket_size"),
            path=path,
        )


@dataclass(frozen=True)
class Plan:
    """What decides memory, read from a recipe."""

    shape: ModelShape = MINICPM3_4B
    mode: str = "lora"  # full | lora | qlora
    dtype_bytes: int = 2  # bf16/fp16 = 2, fp32 = 4
    lora_r: int = 16
    lora_targets: tuple[str, ...] = LINEAR_MODULES
    lora_dropout: float = 0.0
    double_quant: bool = True
    optimizer: str = "adamw_torch"
    micro_batch_size: int = 1
    sequence_len: int = 2048
    gradient_checkpointing: bool = True
    deepspeed: DeepSpeedPlan = field(default_factory=DeepSpeedPlan)
    world_size: int = 1
    notes: tuple[str, ...] = ()
    #: the plugin's chunked loss (minicpm3_chunked_loss): logits of `loss_chunk_tokens` tokens at a time
    chunked_loss: bool = False
    loss_chunk_tokens: int = 1024

    @property
    def tokens(self) -> int:
        return self.micro_batch_size * self.sequence_len


@dataclass
class Estimate:
    """Peak GPU memory per device, by component (bytes), plus CPU RAM held by DeepSpeed offload."""

    plan: Plan
    parts: dict[str, float]
    cpu_bytes: float
    param_count: int
    trainable: int
    notes: list[str]

    @property
    def total(self) -> float:
        return sum(self.parts.values())

    def fits(self, gpu_gb: float) -> bool:
        """Whether the peak fits a card sold as `gpu_gb` GB (its usable memory is ~`gpu_gb` GiB)."""
        return self.total <= gpu_gb * GIB * 0.98


CONTEXT_BYTES = 0.75 * GIB  # CUDA context, cuBLAS/cuDNN workspaces, kernels (not in torch's counters)
FRAGMENTATION = 0.05  # caching-allocator slack on top of what tensors use


def _nf4_bytes_per_param(double_quant: bool) -> float:
    # 4-bit codes + one absmax per 64 weights: fp32, or 8-bit with an fp32 scale per 256 absmaxes.
    return 0.5 + ((1 + 4 / 256) / 64 if double_quant else 4 / 64)


def estimate(plan: Plan) -> Estimate:
    """Peak memory of one training step on one device."""
    s, ds, n = plan.shape, plan.deepspeed, max(plan.world_size, 1)
    a = plan.dtype_bytes
    total_params = s.param_count()
    linear_params = s.num_hidden_layers * s.linear_params_per_layer()
    other_params = total_params - linear_params  # embeddings (tied head) and norms
    notes = list(plan.notes)

    # -- weights ------------------------------------------------------------------------------------
    # axolotl keeps embeddings and norms in fp32 for full fine-tuning without DeepSpeed.
    other_bytes = 4 if plan.mode == "full" and ds.stage == 0 else a
    if plan.mode == "qlora":
        weights = linear_params * _nf4_bytes_per_param(plan.double_quant) + other_params * a
    else:
        weights = linear_params * a + other_params * other_bytes
    if ds.stage == 3:
        gathered = 2 * s.linear_params_per_layer() * a + s.embedding_params() * a  # layers in flight
        weights = gathered if ds.offload_param else weights / n + gathered

    # -- trainable parameters: adapters, gradients, optimizer states ----------------------------------
    if plan.mode == "full":
        trainable = total_params
        adapters = 0.0  # the trained parameters are the weights above
        grads = linear_params * a + other_params * other_bytes
        states = (linear_params * optimizer_state_bytes(plan.optimizer, a)
                  + other_params * optimizer_state_bytes(plan.optimizer, other_bytes))
    else:
        trainable = s.lora_params(plan.lora_r, plan.lora_targets)
        item = a if ds.stage else 4  # PEFT keeps adapters in fp32; DeepSpeed casts them to bf16
        adapters = trainable * item / (n if ds.stage == 3 else 1)
        grads = trainable * item
        states = trainable * optimizer_state_bytes(plan.optimizer, 4)
    cpu = buffers = 0.0
    if ds.stage >= 1:
        # DeepSpeed: fp32 master copy + moments (its own AdamW, or the recipe's optimizer on fp32)
        per_param = 4 + (8 if ds.own_optimizer else optimizer_state_bytes(plan.optimizer, 4))
        states = 0.0 if ds.offload_optimizer else trainable * per_param / n
        reduce = ds.reduce_bucket_size if ds.reduce_bucket_size > 0 else s.hidden_size**2
        buffers = 2 * min(reduce, trainable) * a  # gradient reduce buckets, double-buffered
        if ds.stage < 3:
            allgather = ds.allgather_bucket_size if ds.allgather_bucket_size > 0 else reduce
            buffers += min(allgather, trainable) * a  # all-gather of the updated weights
        if ds.offload_optimizer:
            grads = 0.0  # gradients stream to CPU RAM as they are reduced
            cpu = trainable * (per_param + 4) / n  # master, moments and fp32 gradients
        elif ds.stage >= 2:
            grads /= n
        if ds.offload_param:
            cpu += total_params * a / n
    elif n > 1:
        grads *= 2  # DDP keeps a second copy of the gradients in its buckets
    if plan.optimizer.lower().startswith("paged_") and not ds.own_optimizer:
        notes.append("paged optimizer: its states move to CPU RAM when the GPU runs short, so a run slightly "
                     "over the limit still trains (slower); they are counted on the GPU here")
    if ds.own_optimizer:
        notes.append(f"DeepSpeed runs its own AdamW ({ds.path or 'deepspeed config'}); the recipe's "
                     f"optimizer ({plan.optimizer}) is not used")

    # -- activations --------------------------------------------------------------------------------
    t = plan.tokens
    layer = s.activation_bytes_per_token_layer(a)
    if plan.mode != "full" and plan.lora_dropout > 0:
        # dropout makes a copy of each adapted layer's input (plus a one-byte mask)
        layer += sum(s.linears()[m][0] * (a + 1) for m in plan.lora_targets)
    final = t * ((4 + 2 * a) * s.hidden_size + a * s.hidden_size)  # final norm + the scaled lm_head input
    mask = plan.micro_batch_size * plan.sequence_len**2  # 4D boolean mask when rows are padded
    logits = t * s.vocab_size * 12.0  # bf16 logits, fp32 copy, log-softmax, and their gradients
    if plan.chunked_loss:  # one chunk's worth at a time (recomputed in backward)
        logits = min(t, plan.loss_chunk_tokens) * s.vocab_size * 12.0
    if plan.gradient_checkpointing:
        kept = s.num_hidden_layers * t * s.hidden_size * a  # each layer's input
        recompute = 1.5 * t * layer  # backward re-runs one layer and holds its activation gradients
    else:
        kept, recompute = s.num_hidden_layers * t * layer, 0.0
    at_loss = kept + final + mask  # the peak is normally right after the forward pass, at the loss
    in_backward = kept + mask + recompute
    if at_loss + logits >= in_backward:
        activations, loss = at_loss, logits
    else:
        activations, loss = in_backward, 0.0

    parts: dict[str, float] = {"weights": weights}
    if plan.mode != "full":
        parts["LoRA adapters"] = adapters
    parts.update({"gradients": grads, "optimizer states": states, "DeepSpeed buffers": buffers,
                  "activations": activations, "logits + loss": loss})
    parts["CUDA context + allocator"] = CONTEXT_BYTES + FRAGMENTATION * sum(parts.values())
    return Estimate(plan, parts, cpu, total_params, trainable, notes)


# --------------------------------------------------------------------------------------------------
# Reading a recipe
# --------------------------------------------------------------------------------------------------


def _candidates(name: str, base_dir: Path) -> list[Path]:
    """Where a relative path in a recipe may point: the current folder, the recipe's folder, its parents."""
    path = Path(name)
    if path.is_absolute():
        return [path]
    return [path] + [folder / path for folder in (base_dir, *base_dir.resolve().parents)]


def _shape_for(recipe: Mapping[str, Any], base_dir: Path) -> tuple[ModelShape, str | None]:
    for key in ("base_model_config", "base_model"):
        name = recipe.get(key)
        if not name:
            continue
        for folder in _candidates(str(name), base_dir)[:2]:
            config = folder / "config.json"
            if config.is_file():
                try:
                    return ModelShape.from_config(json.loads(config.read_text(encoding="utf-8"))), None
                except (OSError, ValueError, TypeError) as exc:
                    raise PlanError(f"{config}: cannot read the model config: {exc}") from None
    name = str(recipe.get("base_model") or "")
    if "minicpm3" not in name.lower().replace("-", ""):
        return MINICPM3_4B, f"base_model {name!r} is not a local MiniCPM3 folder: estimated as MiniCPM3-4B"
    return MINICPM3_4B, None


def _deepspeed(recipe: Mapping[str, Any], base_dir: Path) -> DeepSpeedPlan:
    ds = recipe.get("deepspeed")
    if not ds:
        return DeepSpeedPlan()
    if isinstance(ds, Mapping):
        return DeepSpeedPlan.from_json(ds)
    for path in _candidates(str(ds), base_dir):
        if path.is_file():
            try:
                return DeepSpeedPlan.from_json(json.loads(path.read_text(encoding="utf-8")), str(ds))
            except ValueError as exc:
                raise PlanError(f"deepspeed: {path}: not valid JSON: {exc}") from None
    raise PlanError(f"deepspeed: {ds}: no such file (looked in the current folder and in {base_dir} and "
                    "the folders above it)")


def plan_from_recipe(recipe: Mapping[str, Any], base_dir: str | Path = ".", world_size: int = 1) -> Plan:
    """Turn a recipe (a dict from its YAML) into a `Plan`; relative paths are tried from the current
    folder, then from `base_dir` (the recipe's folder)."""
    base = Path(base_dir)
    shape, shape_note = _shape_for(recipe, base)
    notes = [shape_note] if shape_note else []
    adapter = recipe.get("adapter")
    if adapter not in (None, "lora", "qlora"):
        raise PlanError(f"adapter: {adapter!r}: only lora and qlora (or no adapter: full fine-tuning) are estimated")
    mode = "full" if not adapter else ("qlora" if adapter == "qlora" or recipe.get("load_in_4bit") else "lora")
    if recipe.get("load_in_8bit"):
        raise PlanError("load_in_8bit: 8-bit base weights are not estimated; use QLoRA (load_in_4bit) or LoRA")
    if recipe.get("bf16") in (True, "auto") or recipe.get("fp16") or recipe.get("bfloat16"):
        dtype_bytes = 2
    else:
        dtype_bytes = 4
    if recipe.get("lora_target_linear") or recipe.get("lora_target_modules") in ("all-linear", "all_linear"):
        targets: tuple[str, ...] = LINEAR_MODULES
    else:
        raw = recipe.get("lora_target_modules") or []
        if isinstance(raw, str):
            raw = [m for m in LINEAR_MODULES if m in raw]  # a regular expression: the names it mentions
        targets = tuple(str(t).split(".")[-1] for t in raw)
        unknown = [t for t in targets if t not in LINEAR_MODULES]
        if unknown and mode != "full":
            raise PlanError(f"lora_target_modules: {unknown} are not MiniCPM3 layers (it has {', '.join(LINEAR_MODULES)})")
        if not targets and mode != "full":
            raise PlanError("no LoRA targets: set lora_target_modules or lora_target_linear: true")
    bnb = recipe.get("bnb_config_kwargs") or {}
    # Preference training (rl: dpo, ipo, simpo, orpo) runs chosen and rejected of each pair in one batch.
    rows_per_item = 2 if str(recipe.get("rl") or "").lower() in ("dpo", "ipo", "simpo", "orpo") else 1
    if rows_per_item == 2:
        notes.append("preference pairs: chosen and rejected run in one batch, so activations count 2 x micro_batch_size "
                     "rows (shown as the micro batch); " + ("the reference log-probs come from the same weights with the "
                     "adapter off" if adapter else "full fine-tuning DPO also holds a frozen reference copy of the model "
                     "(not included: add the weights once more, or set precompute_ref_log_probs)"))
    try:
        return Plan(
            shape=shape,
            mode=mode,
            dtype_bytes=dtype_bytes,
            lora_r=int(recipe.get("lora_r") or 8),
            lora_targets=targets,
            lora_dropout=float(recipe.get("lora_dropout") or 0.0),
            double_quant=bool(bnb.get("bnb_4bit_use_double_quant", True)),
            optimizer=str(recipe.get("optimizer") or "adamw_torch_fused"),
            micro_batch_size=int(recipe.get("micro_batch_size") or 1) * rows_per_item,
            sequence_len=int(recipe.get("sequence_len") or 2048),
            gradient_checkpointing=bool(recipe.get("gradient_checkpointing")),
            deepspeed=_deepspeed(recipe, base),
            world_size=world_size,
            notes=tuple(notes),
        )
    except (TypeError, ValueError) as exc:
        raise PlanError(f"a numeric key has a non-numeric value: {exc}") from None


# --------------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------------


def _gib(x: float) -> str:
    return f"{x / GIB:6.2f}"


def describe(plan: Plan) -> str:
    """One line: what is being estimated."""
    ds = plan.deepspeed
    zero = "no DeepSpeed" if ds.stage == 0 else (
        f"ZeRO-{ds.stage}" + (" + optimizer offload" if ds.offload_optimizer else "")
        + (" + parameter offload" if ds.offload_param else ""))
    dtype = {2: "bf16/fp16", 4: "fp32"}[plan.dtype_bytes]
    mode = {"full": "full fine-tuning", "lora": f"LoRA r={plan.lora_r} on {len(plan.lora_targets)} layer types",
            "qlora": f"QLoRA (nf4{' + double quant' if plan.double_quant else ''}) r={plan.lora_r} on "
                     f"{len(plan.lora_targets)} layer types"}[plan.mode]
    return (f"{mode}, {dtype}, {plan.optimizer}, micro batch {plan.micro_batch_size} x {plan.sequence_len} tokens, "
            f"gradient checkpointing {'on' if plan.gradient_checkpointing else 'off'}, {zero}, "
            f"{plan.world_size} GPU{'s' if plan.world_size > 1 else ''}")


def format_report(est: Estimate, extra_gpu_gb: float | None = None, title: str | None = None) -> str:
    """The breakdown table and which cards it fits."""
    lines = []
    if title:
        lines.append(title)
    lines.append(describe(est.plan))
    lines.append(f"parameters: {est.param_count / 1e9:.3f} B, trainable: {est.trainable / 1e6:,.1f} M")
    lines.append("")
    lines.append(f"{'peak GPU memory per device':<32} {'GiB':>6}")
    for name, value in est.parts.items():
        if value:
            lines.append(f"  {name:<30} {_gib(value)}")
    lines.append(f"  {'total':<30} {_gib(est.total)}")
    if est.cpu_bytes:
        lines.append(f"  {'(CPU RAM per process, offload)':<30} {_gib(est.cpu_bytes)}")
    lines.append("")
    cards = sorted(set(CARDS_GB) | ({extra_gpu_gb} if extra_gpu_gb else set()))
    lines.append("fits: " + "  ".join(f"{g:g} GB {'yes' if est.fits(g) else 'no'}" for g in cards))
    for note in est.notes:
        lines.append(f"note: {note}")
    return "\n".join(lines)


def with_overrides(plan: Plan, **changes: Any) -> Plan:
    """A copy of `plan` with some fields changed (e.g. world_size)."""
    return replace(plan, **changes)
