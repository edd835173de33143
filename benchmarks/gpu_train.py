"""GPU training benchmark: MiniCPM3-4B (random init, no download), no axolotl: transformers + peft (+ bitsandbytes).

    python3 benchmarks/gpu_train.py --json $OUT/gpu_train.json    # one GPU, the whole benchmark, < 9 min (est.)
    python benchmarks/gpu_train.py --tiny --cpu                     # the same code on CPU, about a minute

The plugin's model patches are applied directly (`minicpm_plugin.model`: packing guard, chunked loss), as
the plugin applies them inside axolotl. Two suites (`--suite loss|recipes|all`, default all):

* loss: the chunked loss on and off (`minicpm3_chunked_loss`). LoRA (bf16) and QLoRA (NF4, double quant,
  bf16 compute), r=16 alpha=32 on all eight linear layers, one packed row of 2048 and of 4096 tokens
  per step (position_ids restarting per sample, packing guard), gradient checkpointing; for each
  (adapter, length) the runs start from the same adapter weights and see the same rows, so their
  losses must agree; where liger-kernel is installed, its fused kernel (backend "liger") runs too. Each
  run is shown next to `minicpm_plugin.tools.memory`'s estimate for the same settings.
* recipes: our recipes vs the official finetune.py settings (seq 2048, 40 steps each):
  - ours_lora: bf16, LoRA r=16 alpha=32 dropout 0.05 on all eight linear layers, packing + guard,
    chunked loss, micro-batch 2, fused AdamW; ours_qlora: the same on NF4, micro-batch 1, paged 8-bit AdamW.
  - official_lora: every sample padded to --seq-len, LoRA r=64 alpha=32 dropout 0.1 gaussian init on
    q_a_proj, kv_a_proj_with_mqa, q_b_proj, kv_b_proj, bf16, standard loss, micro-batch 2, AdamW;
    official_qlora: the same on NF4 with finetune.py's fp16 compute dtype and uint8 storage.

QLoRA runs need bitsandbytes and are `skipped` without it. All runs use gradient checkpointing and SDPA,
one optimizer step per micro-batch. Reported per run: real (non-pad) tokens/s after --warmup steps,
peak GPU memory (allocated and reserved), MFU, the planner's estimate, and the loss curve; a recipe
run passes when every loss is finite and the mean of the last 5 is below that of the first 5, a loss
run when its losses are finite and its first loss agrees with the loss-off run's. Exit 1 on a failure.

MFU counts model FLOPs of real tokens only: 4*N per token for the frozen base (forward + input
gradients; no weight gradients), 6*N_lora for the adapters, and 3x the causal attention forward
(per sample: 2*(qk_dim+v_dim)*heads*layers*l*(l+1)/2), divided by the GPU's dense bf16 peak
(989 TFLOP/s for H100/H200 SXM unless --peak-tflops says otherwise). Recomputation (gradient
checkpointing, the chunked loss's lm_head) and padded positions are not counted: that is the waste.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _train_common import (  # noqa: E402
    IGNORE,
    TINY,
    Sample,
    attention_fwd_flops,
    make_samples,
    matmul_params,
    model_config,
    pack,
    packed_batch,
    padded_batch,
    write_random_model,
)

from minicpm_plugin.model.architecture import MINICPM3_LINEAR_MODULES  # noqa: E402
from minicpm_plugin.model.loss import (  # noqa: E402
    chunked_loss_settings,
    install_chunked_loss,
    liger_available,
    remove_chunked_loss,
)
from minicpm_plugin.model.packing import install_packing_guard  # noqa: E402
from minicpm_plugin.tools.memory import CONTEXT_BYTES, GIB, Plan, estimate  # noqa: E402

__all__ = ["IGNORE", "TINY", "Sample", "attention_fwd_flops", "make_samples", "matmul_params", "model_config", "pack",
           "packed_batch", "padded_batch", "write_random_model"]
ALL_LINEAR = list(MINICPM3_LINEAR_MODULES)
OFFICIAL_TARGETS = ["q_a_proj", "kv_a_proj_with_mqa", "q_b_proj", "kv_b_proj"]
#: Dense bf16 peak (TFLOP/s) by a substring of torch.cuda.get_device_name().
PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10G": 125.0}
#: A first loss this far (relative) from the loss-off run's, on the same weights and row, fails the run.
LOSS_MATCH_RTOL = 5e-3


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
    loss: str = "off"  # chunked loss: "off", "torch", "liger"


RUNS = {
    "ours_lora": RunSpec("ours_lora", None, "bf16", tuple(ALL_LINEAR), 16, 32, 0.05, False, True, 2, "adamw_fused",
                         "torch"),
    "ours_qlora": RunSpec("ours_qlora", "nf4", "bf16", tuple(ALL_LINEAR), 16, 32, 0.05, False, True, 1,
                          "paged_adamw_8bit", "torch"),
    "official_lora": RunSpec("official_lora", None, "bf16", tuple(OFFICIAL_TARGETS), 64, 32, 0.1, True, False, 2,
                             "adamw"),
    "official_qlora": RunSpec("official_qlora", "nf4", "fp16", tuple(OFFICIAL_TARGETS), 64, 32, 0.1, True, False, 2,
                              "adamw"),
}
#: The loss suite's base runs (dropout 0, so runs with the loss on and off see the same computation).
LOSS_BASE = {"lora": replace(RUNS["ours_lora"], dropout=0.0, micro_batch=1, optimizer="adamw_fused"),
             "qlora": replace(RUNS["ours_qlora"], dropout=0.0, micro_batch=1)}


@dataclass
class RunResult:
    name: str
    suite: str = "recipes"
    seq_len: int = 0
    loss: str = "off"
    status: str = "ok"  # ok, failed, skipped, oom
    note: str = ""
    steps: int = 0
    real_tokens_per_s: float = 0.0
    padded_fraction: float = 0.0
    peak_mem_gib: float | None = None
    reserved_gib: float | None = None
    estimate_gib: float | None = None
    estimate_loss_gib: float | None = None
    mfu: float | None = None
    seconds: float = 0.0
    losses: list[float] = field(default_factory=list)
    first_loss_rel_diff: float | None = None  # vs the loss-off run of the same (adapter, length)
    trainable_params: int = 0


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




# ---- runs ----------------------------------------------------------------------------------------

def batches_for(spec: RunSpec, args: argparse.Namespace, seq_len: int, vocab: int,
                pad_id: int) -> list[tuple[dict[str, torch.Tensor], list[int]]]:
    """(batch, real sample lengths) for every step of a run; the same seed for every run."""
    steps, median = args.steps, min(args.median_len, seq_len // 2)
    if spec.packing:
        n, rows = 64, []
        while len(rows) < steps * spec.micro_batch:
            n *= 2
            rows = pack(make_samples(n, seq_len, vocab, args.seed, median), seq_len)
        out = []
        for i in range(steps):
            chunk = rows[i * spec.micro_batch:(i + 1) * spec.micro_batch]
            out.append((packed_batch(chunk, seq_len, pad_id), [len(s.ids) for r in chunk for s in r]))
        return out
    samples = make_samples(steps * spec.micro_batch, seq_len, vocab, args.seed, median)
    return [(padded_batch(samples[i * spec.micro_batch:(i + 1) * spec.micro_batch], seq_len, pad_id),
             [len(s.ids) for s in samples[i * spec.micro_batch:(i + 1) * spec.micro_batch]]) for i in range(steps)]


def planner_estimate(spec: RunSpec, config: Any, seq_len: int, dtype_bytes: int) -> tuple[float, float]:
    """minicpm_plugin.tools.memory's (total, logits + loss) in GiB for this run's settings."""
    from minicpm_plugin.tools.memory import ModelShape

    optimizer = {"adamw_fused": "adamw_torch_fused", "adamw": "adamw_torch"}.get(spec.optimizer, spec.optimizer)
    plan = Plan(shape=ModelShape.from_config(config.to_dict()), mode="qlora" if spec.quant else "lora",
                dtype_bytes=dtype_bytes, lora_r=spec.r, lora_targets=spec.targets, lora_dropout=spec.dropout,
                optimizer=optimizer, micro_batch_size=spec.micro_batch, sequence_len=seq_len,
                gradient_checkpointing=True, chunked_loss=spec.loss != "off")
    est = estimate(plan)
    return est.total / GIB, est.parts["logits + loss"] / GIB


def set_loss(model: Any, spec: RunSpec) -> None:
    if spec.loss == "off":
        remove_chunked_loss(model)
    else:
        install_chunked_loss(model, backend=spec.loss)


def train(model: Any, spec: RunSpec, res: RunResult, config: Any, args: argparse.Namespace, device: str) -> None:
    """Train one run's steps on a loaded model; fill `res` (tokens/s, memory, MFU, losses)."""
    cuda = device == "cuda"
    set_loss(model, spec)
    params = [p for p in model.parameters() if p.requires_grad]
    res.trainable_params = sum(p.numel() for p in params)
    opt, note = make_optimizer(spec, params, args.lr, device)
    res.note = "; ".join(x for x in (res.note, note) if x)
    batches = batches_for(spec, args, res.seq_len, config.vocab_size, pad_id=2)
    n_base = matmul_params(config)
    timed_tokens, timed_flops, padded, total, t0 = 0, 0.0, 0, 0, None
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    t_start = time.perf_counter()
    model.train()
    for step, (batch, lengths) in enumerate(batches):
        if step == args.warmup:
            if cuda:
                torch.cuda.synchronize()
            t0 = time.perf_counter()
        for g in opt.param_groups:
            g["lr"] = args.lr * min(1.0, (step + 1) / 3)
        out = model(**{k: v.to(device) for k, v in batch.items()})
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        res.losses.append(float(out.loss.detach().float().cpu()))
        real = sum(lengths)
        padded += batch["input_ids"].numel() - real
        total += batch["input_ids"].numel()
        if t0 is not None:
            timed_tokens += real
            timed_flops += 4 * n_base * real + 6 * res.trainable_params * real + 3 * attention_fwd_flops(config, lengths)
        res.steps = step + 1
        del out
    if cuda:
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - (t0 or t_start)
    res.seconds = time.perf_counter() - t_start
    res.real_tokens_per_s = timed_tokens / elapsed if t0 else 0.0
    res.padded_fraction = padded / max(1, total)
    settings = chunked_loss_settings(model)
    if spec.loss != "off" and settings is not None and settings.used and settings.used != spec.loss:
        res.note = "; ".join(x for x in (res.note, f"loss backend {settings.used}") if x)
    if cuda:
        res.peak_mem_gib = torch.cuda.max_memory_allocated() / GIB
        res.reserved_gib = torch.cuda.max_memory_reserved() / GIB
        peak = args.peak_tflops or next((v for k, v in PEAK_TFLOPS.items() if k in torch.cuda.get_device_name()), None)
        if peak and t0:
            res.mfu = timed_flops / elapsed / (peak * 1e12)
    if not all(math.isfinite(x) for x in res.losses):
        res.status, res.note = "failed", "; ".join(x for x in (res.note, "non-finite loss") if x)
    del opt, params, batches
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()


def _skip_without_bnb(spec: RunSpec, res: RunResult) -> bool:
    if spec.quant:
        try:
            import bitsandbytes  # noqa: F401
        except ImportError:
            res.status, res.note = "skipped", "bitsandbytes is not installed"
            return True
    return False


def run_recipe(spec: RunSpec, path: Path, config: Any, args: argparse.Namespace, device: str,
               dtype: torch.dtype) -> RunResult:
    res = RunResult(spec.name, "recipes", args.seq_len, spec.loss)
    if _skip_without_bnb(spec, res):
        return res
    res.estimate_gib, res.estimate_loss_gib = planner_estimate(spec, config, args.seq_len, 2 if device == "cuda" else 4)
    model = load_model(path, spec, device, args.attn, dtype)
    train(model, spec, res, config, args, device)
    k = min(5, len(res.losses) // 2)
    if res.status == "ok" and not (k > 0 and sum(res.losses[-k:]) / k < sum(res.losses[:k]) / k):
        res.status, res.note = "failed", "; ".join(x for x in (res.note, "loss did not fall") if x)
    del model
    gc.collect()
    return res


def run_loss_suite(adapter: str, path: Path, config: Any, args: argparse.Namespace, device: str,
                   dtype: torch.dtype, deadline: float, log: Any) -> list[RunResult]:
    """One load of the model; for each length the loss off, then on (torch, liger), from the same adapters."""
    base = LOSS_BASE[adapter]
    losses = ["off", "torch"] + (["liger"] if device == "cuda" and liger_available() else [])
    out: list[RunResult] = []
    probe = RunResult(f"{adapter}", "loss")
    if _skip_without_bnb(base, probe):
        return [replace(probe, name=f"{adapter}_{n}_{loss}", seq_len=n, loss=loss) for n in args.loss_seq_lens
                for loss in losses]
    model = load_model(path, base, device, args.attn, dtype)
    start = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    for seq_len in args.loss_seq_lens:
        reference = None
        for loss in losses:
            spec = replace(base, name=f"{adapter}_{seq_len}_{loss}", loss=loss)
            res = RunResult(spec.name, "loss", seq_len, loss)
            if time.perf_counter() > deadline:
                res.status, res.note = "skipped", f"--max-minutes {args.max_minutes} reached"
                out.append(res)
                continue
            with torch.no_grad():
                for n, p in model.named_parameters():
                    if n in start:
                        p.copy_(start[n])
            res.estimate_gib, res.estimate_loss_gib = planner_estimate(spec, config, seq_len,
                                                                       2 if device == "cuda" else 4)
            try:
                train(model, spec, res, config, args, device)
            except torch.OutOfMemoryError as exc:
                res.status, res.note = "oom", str(exc).splitlines()[0][:120]
                gc.collect()
                torch.cuda.empty_cache()
            if loss == "off" and res.losses:
                reference = res.losses[0]
            elif reference is not None and res.losses:
                res.first_loss_rel_diff = abs(res.losses[0] - reference) / abs(reference)
                if res.first_loss_rel_diff > LOSS_MATCH_RTOL and res.status == "ok":
                    res.status, res.note = "failed", f"first loss differs from the loss-off run by {res.first_loss_rel_diff:.1e}"
            log(_progress(res))
            out.append(res)
    remove_chunked_loss(model)
    del model, start
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
    return out


def _progress(r: RunResult) -> str:
    mem = f", peak {r.peak_mem_gib:.2f} GiB" if r.peak_mem_gib is not None else ""
    return (f"{r.name}: {r.status}, {r.real_tokens_per_s:,.0f} real tokens/s{mem}, {r.seconds:.0f}s, "
            f"losses {[round(x, 3) for x in r.losses]}")


def format_results(results: list[RunResult], device_name: str) -> str:
    lines = [f"device: {device_name}", "",
             "| run | suite | seq | chunked loss | status | real tokens/s | pad % | peak alloc GiB | reserved GiB | "
             "planner GiB (loss part) | MFU | trainable | loss first -> last | first loss vs off | note |",
             "|---|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---|"]

    def num(x: float | None, fmt: str) -> str:
        return format(x, fmt) if x is not None else "n/a"

    for r in results:
        est = f"{r.estimate_gib:.1f} ({r.estimate_loss_gib:.2f})" if r.estimate_gib is not None else "n/a"
        mfu = f"{100 * r.mfu:.1f}%" if r.mfu is not None else "n/a"
        curve = f"{r.losses[0]:.3f} -> {r.losses[-1]:.3f}" if r.losses else ""
        lines.append(f"| {r.name} | {r.suite} | {r.seq_len} | {r.loss} | {r.status} | {r.real_tokens_per_s:,.0f} | "
                     f"{100 * r.padded_fraction:.0f} | {num(r.peak_mem_gib, '.2f')} | {num(r.reserved_gib, '.2f')} | "
                     f"{est} | {mfu} | {r.trainable_params:,} | {curve} | {num(r.first_loss_rel_diff, '.1e')} | "
                     f"{r.note} |")
    lines.append("")
    lines.append(f"planner GiB includes {CONTEXT_BYTES / GIB:.2f} GiB of CUDA context and 5% allocator slack "
                 "(compare with reserved); its loss part is the logits term.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tiny", action="store_true", help="tiny MiniCPM3 config, short sequences (a CPU check)")
    p.add_argument("--cpu", action="store_true", help="run on CPU (bitsandbytes' CPU backend for QLoRA)")
    p.add_argument("--suite", choices=("loss", "recipes", "all"), default=None,
                   help="default all (recipes only when --runs is given)")
    p.add_argument("--runs", default=None, help=f"recipe runs, comma-separated, from {', '.join(RUNS)}")
    p.add_argument("--adapters", default="lora,qlora", help="loss suite: lora, qlora or both")
    p.add_argument("--loss-seq-lens", default=None, help="loss suite lengths (default 2048,4096; tiny 256,512)")
    p.add_argument("--steps", type=int, default=None, help="steps per run (recipes 40, loss 10; tiny 20 / 6)")
    p.add_argument("--warmup", type=int, default=3, help="steps before the timer starts")
    p.add_argument("--seq-len", type=int, default=None, help="recipe runs' row length (default 2048; tiny 256)")
    p.add_argument("--median-len", type=int, default=None, help="median sample length (default 600; tiny: 60)")
    p.add_argument("--lr", type=float, default=None,
                   help="constant after 3 warm-up steps (default 2e-3; tiny 1e-2): higher than the recipes' 1e-4 so "
                        "that a few dozen steps on random weights show the loss falling; throughput does not depend on it")
    p.add_argument("--attn", default="sdpa", help="attn_implementation (sdpa; flash_attention_2 where installed)")
    p.add_argument("--peak-tflops", type=float, default=None, help="dense bf16 peak of this GPU, for MFU")
    p.add_argument("--cpu-threads", type=int, default=1,
                   help="torch threads with --cpu (default 1: the tiny model's ops are too small to share)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-minutes", type=float, default=7.0, help="skip runs not started by then")
    p.add_argument("--workdir", default=None, help="where the random checkpoint is written (default: a temp dir)")
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args(argv)
    suite, steps = args.suite or ("recipes" if args.runs else "all"), args.steps
    names = [n.strip() for n in (args.runs or ",".join(RUNS)).split(",") if n.strip()]
    unknown = [n for n in names if n not in RUNS]
    if unknown:
        p.error(f"unknown run(s) {', '.join(unknown)}; choose from {', '.join(RUNS)}")
    adapters = [a.strip() for a in args.adapters.split(",") if a.strip()]
    if any(a not in LOSS_BASE for a in adapters):
        p.error("--adapters: choose from lora, qlora")
    args.loss_seq_lens = [int(x) for x in (args.loss_seq_lens or ("256,512" if args.tiny else "2048,4096")).split(",")]
    args.lr = args.lr or (1e-2 if args.tiny else 2e-3)
    args.seq_len = args.seq_len or (256 if args.tiny else 2048)
    args.median_len = args.median_len or (60 if args.tiny else 600)
    if not args.cpu and not torch.cuda.is_available():
        p.error("no CUDA device: pass --cpu (with --tiny) to check the script on CPU")
    device = "cpu" if args.cpu else "cuda"
    # bf16 on the GPU (the recipes); fp32 on CPU, where bf16 matmuls are slow and the run only checks the code.
    dtype = torch.float32 if args.cpu else torch.bfloat16
    if args.cpu:
        torch.set_num_threads(args.cpu_threads)
    else:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    device_name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    started = time.perf_counter()
    deadline = started + 60 * args.max_minutes
    tmp = tempfile.mkdtemp(prefix="minicpm3-gpu-bench-", dir=args.workdir)
    results: list[RunResult] = []
    try:
        config = write_random_model(Path(tmp), args.tiny, device, dtype)
        print(f"random {'tiny ' if args.tiny else ''}MiniCPM3 written in {time.perf_counter() - started:.0f}s "
              f"({matmul_params(config) / 1e6:,.1f}M matmul params); suite {suite}", flush=True)
        if suite in ("loss", "all"):
            args.steps = steps or (6 if args.tiny else 10)
            for adapter in adapters:
                results += run_loss_suite(adapter, Path(tmp), config, args, device, dtype, deadline, print)
        if suite in ("recipes", "all"):
            args.steps = steps or (20 if args.tiny else 40)
            for name in names:
                if time.perf_counter() > deadline:
                    results.append(RunResult(name, status="skipped", note=f"--max-minutes {args.max_minutes} reached"))
                    continue
                try:
                    res = run_recipe(RUNS[name], Path(tmp), config, args, device, dtype)
                except torch.OutOfMemoryError as exc:
                    res = RunResult(name, "recipes", args.seq_len, RUNS[name].loss, "oom", str(exc).splitlines()[0][:120])
                    gc.collect()
                    torch.cuda.empty_cache()
                results.append(res)
                print(_progress(res), flush=True)
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
