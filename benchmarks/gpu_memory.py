"""Measured peak GPU memory of each shipped recipe next to `minicpm-plugin memory`'s estimate.

For a GPU machine, offline: builds a randomly initialised full-size MiniCPM3-4B from the real config
(transformers' MiniCPM3Config defaults are the 4B checkpoint's; nothing is downloaded), and for each
recipe in examples/ trains a few steps with the recipe's settings - bf16, LoRA/QLoRA (nf4 + double
quantization) on the recipe's targets, its optimizer (8-bit / paged AdamW from bitsandbytes), gradient
checkpointing, micro batch x sequence_len of random tokens (every row full length: the worst case),
and its DeepSpeed config (ZeRO-2 with CPU optimizer offload for the full recipe). It prints the peak
next to the estimate. Each recipe runs in its own process so one run's cached memory cannot inflate
the next. About 4-6 minutes on one H100 (the first DeepSpeed run compiles its CPU Adam).

    python benchmarks/gpu_memory.py                  # every examples/minicpm3_*.yml, on the GPU
    python benchmarks/gpu_memory.py --only qlora,lora --steps 3 --json out.json
    python benchmarks/gpu_memory.py --tiny --cpu     # the tiny MiniCPM3 on CPU: proves the script runs
    python benchmarks/gpu_memory.py --loss both      # each recipe with the chunked loss on, then off

The plugin's chunked loss (`minicpm3_chunked_loss`, on by default) is applied to the model as the plugin
does (`--loss on`, the default; `off`: transformers' loss; `both`), and the estimate counts the same loss.
Needs torch, transformers and peft; bitsandbytes for QLoRA and 8-bit optimizers; DeepSpeed only for a
recipe's `deepspeed` line: without it that line is ignored, as with --no-deepspeed, and the row says so.

Columns: `estimate` is minicpm_plugin.tools.memory's total (incl. CUDA context); `allocated` is
torch.cuda.max_memory_allocated (tensors only); `reserved` is max_memory_reserved (the caching
allocator's pool); `device` is the device-wide used memory sampled after each step (what nvidia-smi
shows: the pool, the CUDA context, and bitsandbytes' paged optimizer memory, which lives outside
PyTorch's allocator). The estimate should sit between `reserved` and `device`.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

GIB = 1024**3


def _config(tiny: bool) -> Any:
    from transformers import MiniCPM3Config

    if not tiny:
        config = MiniCPM3Config()  # = openbmb/MiniCPM3-4B
    else:
        from minicpm_plugin.tools.smoke import SMOKE_MODEL_OVERRIDES
        from minicpm_plugin.tools.tiny_model import build_tiny_config

        config = build_tiny_config(4096, SMOKE_MODEL_OVERRIDES)
    config._attn_implementation = "sdpa"
    config.use_cache = False
    return config


def _fill_deepspeed(ds: dict[str, Any], recipe: dict[str, Any], hidden: int, bf16: bool) -> dict[str, Any]:
    """Replace the "auto" values the way transformers' Trainer does from the training arguments."""
    ds = json.loads(json.dumps(ds))
    mbs = int(recipe.get("micro_batch_size") or 1)
    ds.update(train_micro_batch_size_per_gpu=mbs, gradient_accumulation_steps=1, train_batch_size=mbs,
              gradient_clipping=float(recipe.get("max_grad_norm") or 1.0))
    ds["bf16"] = {"enabled": bf16}
    ds["fp16"] = {"enabled": False}
    if "optimizer" in ds:
        ds["optimizer"]["params"] = {"lr": float(recipe.get("learning_rate") or 1e-5), "betas": [0.9, 0.999],
                                     "eps": 1e-8, "weight_decay": float(recipe.get("weight_decay") or 0.0)}
    zero = ds.get("zero_optimization", {})
    for key, value in (("reduce_bucket_size", hidden * hidden), ("stage3_prefetch_bucket_size", int(0.9 * hidden * hidden)),
                       ("stage3_param_persistence_threshold", 10 * hidden)):
        if zero.get(key) == "auto":
            zero[key] = value
    return ds


def _quantize_linears(model: Any, device: str, double_quant: bool, compute_dtype: Any) -> None:
    """Swap the decoder's linear layers for bitsandbytes NF4 Linear4bit, one at a time."""
    import bitsandbytes as bnb
    import torch

    for layer in model.model.layers:
        for parent in (layer.self_attn, layer.mlp):
            for name, child in list(parent.named_children()):
                if not isinstance(child, torch.nn.Linear):
                    continue
                q = bnb.nn.Linear4bit(child.in_features, child.out_features, bias=False,
                                      compute_dtype=compute_dtype, compress_statistics=double_quant,
                                      quant_type="nf4", quant_storage=torch.bfloat16, device="meta")
                q.weight = bnb.nn.Params4bit(child.weight.data, requires_grad=False, quant_type="nf4",
                                             compress_statistics=double_quant,
                                             quant_storage=torch.bfloat16).to(device)
                setattr(parent, name, q)
                del child


def _optimizer(name: str, params: list[Any], lr: float, weight_decay: float) -> Any:
    import torch

    name = name.lower()
    if "8bit" in name or name.startswith("paged_"):
        import bitsandbytes as bnb
    if name in ("paged_adamw_8bit",):
        return bnb.optim.PagedAdamW8bit(params, lr=lr, weight_decay=weight_decay)
    if name in ("adamw_bnb_8bit", "adamw_8bit"):
        return bnb.optim.AdamW8bit(params, lr=lr, weight_decay=weight_decay)
    if name in ("paged_adamw_32bit", "paged_adamw"):
        return bnb.optim.PagedAdamW32bit(params, lr=lr, weight_decay=weight_decay)
    fused = name == "adamw_torch_fused" and params and params[0].device.type == "cuda"
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=fused or None)


def run_one(recipe_path: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Train `args.steps` steps with one recipe's settings; return measured and estimated memory."""
    import torch
    import yaml

    from minicpm_plugin.tools.memory import ModelShape, estimate, plan_from_recipe, with_overrides

    recipe = yaml.safe_load(recipe_path.read_text(encoding="utf-8"))
    on_gpu = not args.cpu
    device = "cuda" if on_gpu else "cpu"
    dtype = torch.bfloat16 if on_gpu else torch.float32  # the plugin's CPU fallback trains in fp32
    config = _config(args.tiny)
    notes = []
    if recipe.get("deepspeed") and not args.no_deepspeed and importlib.util.find_spec("deepspeed") is None:
        notes.append("deepspeed is not installed: its config ignored")
        args = argparse.Namespace(**{**vars(args), "no_deepspeed": True})
    if args.no_deepspeed:
        recipe.pop("deepspeed", None)
    plan = plan_from_recipe(recipe, base_dir=recipe_path.parent)
    plan = with_overrides(plan, shape=ModelShape.from_config(config.to_dict()), dtype_bytes=2 if on_gpu else 4,
                          chunked_loss=args.loss == "on")
    if args.sequence_len:
        plan = with_overrides(plan, sequence_len=args.sequence_len)
    est = estimate(plan)
    result: dict[str, Any] = {"recipe": recipe_path.name + ("" if args.loss == "on" else " (loss off)"),
                              "chunked_loss": args.loss == "on", "notes": notes, "estimate_gib": est.total / GIB,
                              "estimate_parts_gib": {k: v / GIB for k, v in est.parts.items()},
                              "estimate_cpu_gib": est.cpu_bytes / GIB, "mode": plan.mode,
                              "deepspeed": plan.deepspeed.path, "tokens": plan.tokens}
    context = 0
    if on_gpu:
        torch.cuda.init()
        torch.zeros(1, device="cuda")
        free, total = torch.cuda.mem_get_info()
        context = total - free  # CUDA context of this process
        result["context_gib"] = context / GIB

    from transformers import MiniCPM3ForCausalLM

    torch.manual_seed(0)
    t0 = time.perf_counter()
    default_dtype = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # build in bf16 directly: no transient fp32 copy of 4B weights
    try:
        with torch.device(device):
            model = MiniCPM3ForCausalLM(config)
    finally:
        torch.set_default_dtype(default_dtype)
    if plan.mode == "qlora":
        _quantize_linears(model, device, plan.double_quant, dtype)
    result["init_s"] = time.perf_counter() - t0

    if plan.mode != "full":
        from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

        if plan.mode == "qlora":
            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=plan.gradient_checkpointing)
            for name, module in model.named_modules():  # axolotl casts norms/embeddings back to bf16
                if "norm" in name or "embed_tokens" in name or "lm_head" in name:
                    module.to(dtype)
        model = get_peft_model(model, LoraConfig(r=plan.lora_r, lora_alpha=int(recipe.get("lora_alpha") or 16),
                                                 lora_dropout=plan.lora_dropout,
                                                 target_modules=list(plan.lora_targets), task_type="CAUSAL_LM"))
    elif plan.deepspeed.stage == 0 and on_gpu:
        for name, module in model.named_modules():  # axolotl keeps these in fp32 for full fine-tuning
            if "norm" in name or "embed_tokens" in name:
                module.to(torch.float32)
    if plan.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": True})
        model.enable_input_require_grads()
    if args.loss == "on":
        from minicpm_plugin.model.loss import install_chunked_loss

        install_chunked_loss(model)
    model.config.use_cache = False
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    lr, wd = float(recipe.get("learning_rate") or 1e-4), float(recipe.get("weight_decay") or 0.0)

    engine = None
    if plan.deepspeed.stage:
        import deepspeed
        import torch.distributed as dist

        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(29500 + os.getpid() % 1000))
        for key, value in (("RANK", "0"), ("LOCAL_RANK", "0"), ("WORLD_SIZE", "1")):
            os.environ.setdefault(key, value)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if on_gpu else "gloo", rank=0, world_size=1)
        ds_path = plan.deepspeed.path or ""
        ds_config = json.loads((ROOT / ds_path).read_text(encoding="utf-8"))
        ds_config = _fill_deepspeed(ds_config, recipe, config.hidden_size, bf16=on_gpu)
        optimizer = None if "optimizer" in ds_config else _optimizer(plan.optimizer, trainable, lr, wd)
        engine, optimizer, _, _ = deepspeed.initialize(model=model, model_parameters=trainable,
                                                       optimizer=optimizer, config=ds_config)
    else:
        model.to(device)
        optimizer = _optimizer(plan.optimizer, trainable, lr, wd)

    if on_gpu:
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    generator = torch.Generator().manual_seed(0)
    device_used = 0
    step_s = []
    for _step in range(args.steps):
        t = time.perf_counter()
        ids = torch.randint(0, config.vocab_size, (plan.micro_batch_size, plan.sequence_len), generator=generator)
        ids = ids.to(device)
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=on_gpu and engine is None):
            loss = (engine or model)(input_ids=ids, labels=ids).loss
        if engine is not None:
            engine.backward(loss)
            engine.step()
        else:
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        if on_gpu:
            torch.cuda.synchronize()
            free, total = torch.cuda.mem_get_info()
            device_used = max(device_used, total - free)
        step_s.append(time.perf_counter() - t)
        result.setdefault("losses", []).append(float(loss.detach()))
    result["step_s"] = step_s
    if on_gpu:
        result["allocated_gib"] = torch.cuda.max_memory_allocated() / GIB
        result["reserved_gib"] = torch.cuda.max_memory_reserved() / GIB
        result["device_gib"] = device_used / GIB
    return result


def torch_device_name() -> str:
    import torch

    return torch.cuda.get_device_name(0)


def _row(r: dict[str, Any]) -> str:
    def g(key: str) -> str:
        return f"{r[key]:9.2f}" if isinstance(r.get(key), (int, float)) else f"{'n/a':>9}"

    if "error" in r:
        return f"{r['recipe']:<36} {g('estimate_gib')}  FAILED: {r['error']}"
    ratio = f"{r['estimate_gib'] / r['device_gib']:6.2f}" if r.get("device_gib") else f"{'n/a':>6}"
    steps = f"{sum(r['step_s']) / len(r['step_s']):6.1f}" if r.get("step_s") else ""
    notes = f"  ({'; '.join(r['notes'])})" if r.get("notes") else ""
    return (f"{r['recipe']:<36} {g('estimate_gib')} {g('allocated_gib')} {g('reserved_gib')} {g('device_gib')} "
            f"{ratio} {steps}{notes}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="the tiny MiniCPM3 instead of the 4B")
    parser.add_argument("--cpu", action="store_true", help="run on CPU (fp32; no memory counters)")
    parser.add_argument("--steps", type=int, help="training steps per recipe (default 3; 2 with --tiny)")
    parser.add_argument("--only", help="comma-separated recipe names, e.g. lora,qlora (default: all)")
    parser.add_argument("--sequence-len", type=int,
                        help="override every recipe's sequence_len (default with --tiny: 256)")
    parser.add_argument("--no-deepspeed", action="store_true",
                        help="ignore the recipes' deepspeed line (full: bf16 weights + its 8-bit AdamW on one GPU)")
    parser.add_argument("--loss", choices=("on", "off", "both"), default="on",
                        help="the plugin's chunked loss (default on, as the plugin trains), off, or both")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    parser.add_argument("--one", type=Path, help=argparse.SUPPRESS)  # internal: run one recipe, print JSON
    args = parser.parse_args(argv)
    if args.tiny and not args.sequence_len:
        args.sequence_len = 256
    if not args.steps:
        args.steps = 2 if args.tiny else 3
    os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(ROOT / ".torch_extensions"))
    for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        os.environ.setdefault(key, "1")

    if args.one:
        print("RESULT " + json.dumps(run_one(args.one, args)), flush=True)
        return 0

    if not args.cpu:
        import torch

        if not torch.cuda.is_available():
            print("no GPU: run with --cpu (and --tiny) to check the script on this machine", file=sys.stderr)
            return 2
    recipes = sorted((ROOT / "examples").glob("minicpm3_*.yml"))
    if args.only:
        wanted = {f"minicpm3_{w.strip()}" for w in args.only.split(",")}
        recipes = [r for r in recipes if r.stem in wanted]
    passthrough = (["--steps", str(args.steps)] + ["--tiny"] * args.tiny + ["--cpu"] * args.cpu
                   + ["--no-deepspeed"] * args.no_deepspeed)
    losses = ["on", "off"] if args.loss == "both" else [args.loss]
    jobs = [(recipe, loss) for recipe in recipes for loss in losses]
    if args.sequence_len:
        passthrough += ["--sequence-len", str(args.sequence_len)]
    results = []
    start = time.perf_counter()
    for recipe, loss in jobs:
        if args.cpu:  # no GPU memory to isolate: one process, imports paid once
            try:
                results.append(run_one(recipe, argparse.Namespace(**{**vars(args), "loss": loss})))
            except Exception as exc:  # report and go on with the next recipe
                results.append({"recipe": recipe.name, "error": f"{type(exc).__name__}: {exc}"[:300]})
        else:
            cmd = [sys.executable, str(Path(__file__).resolve()), *passthrough, "--loss", loss, "--one", str(recipe)]
            proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
            found = [line[7:] for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
            if found:
                results.append(json.loads(found[-1]))
            else:
                errors = [line for line in (proc.stdout + proc.stderr).splitlines() if "Error" in line]
                results.append({"recipe": recipe.name,
                                "error": (errors[-1] if errors else f"exit {proc.returncode}")[:300]})
        print(_row(results[-1]), flush=True)
    model = "tiny MiniCPM3" if args.tiny else "MiniCPM3-4B (random init)"
    where = "CPU" if args.cpu else torch_device_name()
    print()
    print(f"{model} on {where}, {args.steps} steps each, {time.perf_counter() - start:.0f} s"
          + (", DeepSpeed lines ignored" if args.no_deepspeed else ""))
    print(f"{'recipe':<36} {'estimate':>9} {'allocated':>9} {'reserved':>9} {'device':>9} {'est/dev':>6} {'s/step':>6}")
    for r in results:
        print(_row(r))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2), encoding="utf-8")
    return 0 if all("error" not in r for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
