"""GPU training benchmark: MiniCPM3-4B (random init, no download), our recipes vs the official one.

    PYTHONPATH=. python benchmarks/gpu_train.py --json gpu_train.json     # one GPU, < 8 min on an H100
    .venv/bin/python benchmarks/gpu_train.py --tiny --cpu                 # the same code on CPU, seconds

Runs (each a few dozen optimizer steps on synthetic token data of chat-like lengths):

* ours_lora: bf16, LoRA r=16 alpha=32 dropout 0.05 on all eight linear layers (examples/minicpm3_lora.yml),
  packing (first-fit into rows of --seq-len, position_ids restarting per sample, our packing guard),
  gradient checkpointing, micro-batch 2, fused AdamW.
* ours_qlora: the same on an NF4 double-quantized base with bf16 compute (examples/minicpm3_qlora.yml),
  micro-batch 1, paged 8-bit AdamW. Needs bitsandbytes; skipped with a message where it is missing.
* official_lora: finetune.py's settings: every sample padded to --seq-len, LoRA r=64 alpha=32 dropout 0.1
  gaussian init on q_a_proj, kv_a_proj_with_mqa, q_b_proj, kv_b_proj, bf16, micro-batch 2, AdamW.
* official_qlora: the same on NF4 with finetune.py's fp16 compute dtype and uint8 storage.

All runs use gradient checkpointing (the official script does not turn it on; here it keeps memory
comparable and isolates padding and LoRA targets) and SDPA attention. One optimizer step per
micro-batch (no accumulation). Reported per run: real (non-pad) tokens/s over the steps after
--warmup, peak GPU memory, MFU, and the loss curve; a run passes when every loss is finite and the
mean of the last 5 losses is below the mean of the first 5. Exit status 1 when a run fails.

MFU counts model FLOPs of real tokens only: 4*N per token for the frozen base (forward + input
gradients; no weight gradients), 6*N_lora for the adapters, and 3x the causal attention forward
(per sample: 2*(qk_dim+v_dim)*heads*layers*l*(l+1)/2), divided by the GPU's dense bf16 peak
(989 TFLOP/s for H100/H200 SXM unless --peak-tflops says otherwise). Recomputation from gradient
checkpointing and padded positions are not counted: they are the waste MFU should show.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import random
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from minicpm_plugin.model.compat import apply_transformers_fixes  # noqa: E402
from minicpm_plugin.model.packing import install_packing_guard  # noqa: E402

IGNORE = -100
ALL_LINEAR = ["q_a_proj", "q_b_proj", "kv_a_proj_with_mqa", "kv_b_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
OFFICIAL_TARGETS = ["q_a_proj", "kv_a_proj_with_mqa", "q_b_proj", "kv_b_proj"]
#: Dense bf16 peak (TFLOP/s) by a substring of torch.cuda.get_device_name().
PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10G": 125.0}
#: A tiny config with MiniCPM3's structure (latent attention, muP scalings, tied embeddings).
TINY = {"hidden_size": 80, "dim_model_base": 8, "intermediate_size": 192, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 4, "q_lora_rank": 48, "kv_lora_rank": 16,
        "qk_nope_head_dim": 16, "qk_rope_head_dim": 8, "v_head_dim": 16, "vocab_size": 2048}


@dataclass(frozen=True)
class RunSpec:
    name: str
    quant: str | None  # None or "nf4"
    compute_dtype: str  # "bf16" or "fp16" (QLoRA compute)
    targets: tuple[str, ...]
    r: int
    alpha: int
    dropout: float
    gaussian_init: bool
    packing: bool
    micro_batch: int
    optimizer: str  # "adamw_fused", "adamw", "paged_adamw_8bit"


RUNS = {
    "ours_lora": RunSpec("ours_lora", None, "bf16", tuple(ALL_LINEAR), 16, 32, 0.05, False, True, 2, "adamw_fused"),
    "ours_qlora": RunSpec("ours_qlora", "nf4", "bf16", tuple(ALL_LINEAR), 16, 32, 0.05, False, True, 1,
                          "paged_adamw_8bit"),
    "official_lora": RunSpec("official_lora", None, "bf16", tuple(OFFICIAL_TARGETS), 64, 32, 0.1, True, False, 2,
                             "adamw"),
    "official_qlora": RunSpec("official_qlora", "nf4", "fp16", tuple(OFFICIAL_TARGETS), 64, 32, 0.1, True, False, 2,
                              "adamw"),
}


@dataclass
class RunResult:
    name: str
    status: str = "ok"  # ok, failed, skipped, oom
    note: str = ""
    steps: int = 0
    real_tokens_per_s: float = 0.0
    padded_fraction: float = 0.0
    peak_mem_gib: float | None = None
    mfu: float | None = None
    seconds: float = 0.0
    losses: list[float] = field(default_factory=list)
    trainable_params: int = 0


# ---- synthetic data ------------------------------------------------------------------------------

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


def load_model(path: Path, spec: RunSpec, device: str, attn: str, dtype: torch.dtype) -> Any:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {"dtype": dtype, "attn_implementation": attn}
    compute = dtype if dtype == torch.float32 else torch.float16 if spec.compute_dtype == "fp16" else torch.bfloat16
    if spec.quant:
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute,
            bnb_4bit_quant_storage=torch.uint8)
    kwargs["device_map"] = {"": 0 if device == "cuda" else "cpu"}
    model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    model.config.use_cache = False
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    lora = LoraConfig(r=spec.r, lora_alpha=spec.alpha, lora_dropout=spec.dropout, target_modules=list(spec.targets),
                      bias="none", task_type="CAUSAL_LM", init_lora_weights="gaussian" if spec.gaussian_init else True)
    model = get_peft_model(model, lora)
    if spec.packing:
        install_packing_guard(model)
    return model


def make_optimizer(spec: RunSpec, params: list[torch.nn.Parameter], lr: float, device: str) -> tuple[Any, str]:
    if spec.optimizer == "paged_adamw_8bit" and device == "cuda":
        import bitsandbytes as bnb

        return bnb.optim.PagedAdamW8bit(params, lr=lr, weight_decay=0.0), "paged_adamw_8bit"
    fused = spec.optimizer == "adamw_fused" and device == "cuda"
    note = "" if spec.optimizer in ("adamw", "adamw_fused") else f"{spec.optimizer} -> torch AdamW on {device}"
    return torch.optim.AdamW(params, lr=lr, weight_decay=0.0, fused=fused), note


# ---- one run -------------------------------------------------------------------------------------

def batches_for(spec: RunSpec, args: argparse.Namespace, vocab: int, pad_id: int) -> list[tuple[dict[str, torch.Tensor], list[int]]]:
    """(batch, real sample lengths) for every step of a run; the same seed for every run."""
    steps = args.steps
    if spec.packing:
        n, rows = 64, []
        while len(rows) < steps * spec.micro_batch:
            n *= 2
            rows = pack(make_samples(n, args.seq_len, vocab, args.seed, args.median_len), args.seq_len)
        out = []
        for i in range(steps):
            chunk = rows[i * spec.micro_batch:(i + 1) * spec.micro_batch]
            out.append((packed_batch(chunk, args.seq_len, pad_id), [len(s.ids) for r in chunk for s in r]))
        return out
    samples = make_samples(steps * spec.micro_batch, args.seq_len, vocab, args.seed, args.median_len)
    return [(padded_batch(samples[i * spec.micro_batch:(i + 1) * spec.micro_batch], args.seq_len, pad_id),
             [len(s.ids) for s in samples[i * spec.micro_batch:(i + 1) * spec.micro_batch]]) for i in range(steps)]


def run_one(spec: RunSpec, path: Path, config: Any, args: argparse.Namespace, device: str,
            dtype: torch.dtype) -> RunResult:
    res = RunResult(spec.name)
    if spec.quant:
        try:
            import bitsandbytes  # noqa: F401
        except ImportError:
            res.status, res.note = "skipped", "bitsandbytes is not installed"
            return res
    cuda = device == "cuda"
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    t_start = time.perf_counter()
    model = load_model(path, spec, device, args.attn, dtype)
    params = [p for p in model.parameters() if p.requires_grad]
    res.trainable_params = sum(p.numel() for p in params)
    opt, res.note = make_optimizer(spec, params, args.lr, device)
    batches = batches_for(spec, args, config.vocab_size, pad_id=2)
    n_base = matmul_params(config)
    timed_tokens, timed_flops, padded, total = 0, 0.0, 0, 0
    t0 = None
    model.train()
    for step, (batch, lengths) in enumerate(batches):
        if step == args.warmup:
            if cuda:
                torch.cuda.synchronize()
            t0 = time.perf_counter()
        lr_scale = min(1.0, (step + 1) / 3)
        for g in opt.param_groups:
            g["lr"] = args.lr * lr_scale
        batch = {k: v.to(device) for k, v in batch.items()}
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        res.losses.append(float(loss.detach().float().cpu()))
        real = sum(lengths)
        padded += batch["input_ids"].numel() - real
        total += batch["input_ids"].numel()
        if t0 is not None:
            timed_tokens += real
            timed_flops += 4 * n_base * real + 6 * res.trainable_params * real + 3 * attention_fwd_flops(config, lengths)
        res.steps = step + 1
    if cuda:
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - (t0 or t_start)
    res.seconds = time.perf_counter() - t_start
    res.real_tokens_per_s = timed_tokens / elapsed if t0 else 0.0
    res.padded_fraction = padded / max(1, total)
    if cuda:
        res.peak_mem_gib = torch.cuda.max_memory_allocated() / 2**30
        peak = args.peak_tflops or next((v for k, v in PEAK_TFLOPS.items() if k in torch.cuda.get_device_name()), None)
        if peak and t0:
            res.mfu = timed_flops / elapsed / (peak * 1e12)
    finite = all(math.isfinite(x) for x in res.losses)
    k = min(5, len(res.losses) // 2)
    falling = k > 0 and sum(res.losses[-k:]) / k < sum(res.losses[:k]) / k
    if not (finite and falling):
        res.status = "failed"
        res.note = (res.note + "; " if res.note else "") + ("non-finite loss" if not finite else "loss did not fall")
    del model, opt, params, batches
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
    return res


def format_results(results: list[RunResult], device_name: str) -> str:
    lines = [f"device: {device_name}", "",
             "| run | status | real tokens/s | pad % | peak GiB | MFU | trainable | loss first -> last | note |",
             "|---|---|---:|---:|---:|---:|---:|---|---|"]
    for r in results:
        mem = f"{r.peak_mem_gib:.1f}" if r.peak_mem_gib is not None else "n/a"
        mfu = f"{100 * r.mfu:.1f}%" if r.mfu is not None else "n/a"
        curve = f"{r.losses[0]:.3f} -> {r.losses[-1]:.3f}" if r.losses else ""
        lines.append(f"| {r.name} | {r.status} | {r.real_tokens_per_s:,.0f} | {100 * r.padded_fraction:.0f} | {mem} | "
                     f"{mfu} | {r.trainable_params:,} | {curve} | {r.note} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tiny", action="store_true", help="tiny MiniCPM3 config, short sequences (a CPU check)")
    p.add_argument("--cpu", action="store_true", help="run on CPU (bitsandbytes' CPU backend for QLoRA)")
    p.add_argument("--runs", default=",".join(RUNS), help=f"comma-separated, from {', '.join(RUNS)}")
    p.add_argument("--steps", type=int, default=None, help="optimizer steps per run (default 40; tiny 20)")
    p.add_argument("--warmup", type=int, default=3, help="steps before the timer starts")
    p.add_argument("--seq-len", type=int, default=None, help="default 2048 (tiny: 256)")
    p.add_argument("--median-len", type=int, default=None, help="median sample length (default 600; tiny: 60)")
    p.add_argument("--lr", type=float, default=None,
                   help="constant after 3 warm-up steps (default 2e-3; tiny 1e-2): higher than the recipes' 1e-4 so "
                        "that a few dozen steps on random weights show the loss falling; throughput does not depend on it")
    p.add_argument("--attn", default="sdpa", help="attn_implementation (sdpa; flash_attention_2 where installed)")
    p.add_argument("--peak-tflops", type=float, default=None, help="dense bf16 peak of this GPU, for MFU")
    p.add_argument("--cpu-threads", type=int, default=1,
                   help="torch threads with --cpu (default 1: the tiny model's ops are too small to share, and "
                        "spinning threads on a busy machine made steps 10x slower)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-minutes", type=float, default=7.5, help="skip runs not started by then")
    p.add_argument("--workdir", default=None, help="where the random checkpoint is written (default: a temp dir)")
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args(argv)
    args.steps = args.steps or (20 if args.tiny else 40)
    args.lr = args.lr or (1e-2 if args.tiny else 2e-3)
    args.seq_len = args.seq_len or (256 if args.tiny else 2048)
    args.median_len = args.median_len or (60 if args.tiny else 600)
    names = [n.strip() for n in args.runs.split(",") if n.strip()]
    unknown = [n for n in names if n not in RUNS]
    if unknown:
        p.error(f"unknown run(s) {', '.join(unknown)}; choose from {', '.join(RUNS)}")
    if not args.cpu and not torch.cuda.is_available():
        p.error("no CUDA device: pass --cpu (with --tiny) to check the script on CPU")
    device = "cpu" if args.cpu else "cuda"
    # bf16 on the GPU (the recipes); fp32 on CPU, where bf16 matmuls are slow and the run only checks the code.
    dtype = torch.float32 if args.cpu else torch.bfloat16
    if args.cpu:
        torch.set_num_threads(args.cpu_threads)
    if device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    device_name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    started = time.perf_counter()
    tmp = tempfile.mkdtemp(prefix="minicpm3-gpu-bench-", dir=args.workdir)
    results: list[RunResult] = []
    try:
        config = write_random_model(Path(tmp), args.tiny, device, dtype)
        print(f"random {'tiny ' if args.tiny else ''}MiniCPM3 written in {time.perf_counter() - started:.0f}s "
              f"({matmul_params(config) / 1e6:,.1f}M matmul params); seq_len {args.seq_len}, {args.steps} steps/run",
              flush=True)
        for name in names:
            if (time.perf_counter() - started) / 60 > args.max_minutes:
                results.append(RunResult(name, "skipped", f"--max-minutes {args.max_minutes} reached"))
                continue
            try:
                res = run_one(RUNS[name], Path(tmp), config, args, device, dtype)
            except torch.OutOfMemoryError as exc:
                res = RunResult(name, "oom", str(exc).splitlines()[0][:120])
                gc.collect()
                torch.cuda.empty_cache()
            results.append(res)
            print(f"{name}: {res.status}, {res.real_tokens_per_s:,.0f} real tokens/s, {res.seconds:.0f}s, "
                  f"losses {[round(x, 3) for x in res.losses]}", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(format_results(results, device_name))
    print(f"total {time.perf_counter() - started:.0f}s")
    if args.json:
        Path(args.json).write_text(json.dumps({"device": device_name, "args": vars(args),
                                               "runs": [asdict(r) for r in results]}, indent=1) + "\n")
    return 0 if all(r.status in ("ok", "skipped") for r in results) else 1


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    raise SystemExit(main())
