"""Peak memory of one training step, chunked loss on and off, on CPU: a narrow MiniCPM3 with the real vocabulary.

    python benchmarks/loss_memory.py                       # LoRA and full fine-tuning, seq 4096, one row
    python benchmarks/loss_memory.py --modes lora --seq-len 2048 --json out.json

The model has MiniCPM3-4B's vocabulary (73,448 tokens, tied embeddings) and output scaling
(logits_scaling 10), but is narrow (hidden 320, 2 layers), so the loss's logits dominate memory the way
they do for a QLoRA run of the 4B model. Each (mode, loss) pair runs in its own process: build the
model, one untimed warm-up step on a short row, then one step (forward, backward, AdamW) on a row of
--seq-len random tokens whose first 30% are masked as prompt. Memory is the process's peak resident set
(`ru_maxrss`) minus its resident set just before the step: glibc serves large tensors with mmap and
returns them at free, so this follows live tensor bytes. The two processes of a mode start from the
same weights and data; the parent compares their loss and every gradient. fp32, as the plugin trains
on a CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MIB = 1024**2
VOCAB = 73448
NARROW = {"hidden_size": 320, "dim_model_base": 32, "intermediate_size": 768, "num_hidden_layers": 2,
          "num_attention_heads": 4, "num_key_value_heads": 4, "q_lora_rank": 64, "kv_lora_rank": 64,
          "qk_nope_head_dim": 32, "qk_rope_head_dim": 32, "v_head_dim": 32}


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux


def build(mode: str) -> Any:
    import torch
    from transformers import MiniCPM3Config, MiniCPM3ForCausalLM

    from minicpm_plugin.model.compat import apply_transformers_fixes

    apply_transformers_fixes()
    config = MiniCPM3Config(vocab_size=VOCAB, tie_word_embeddings=True, use_cache=False, max_position_embeddings=32768,
                            **NARROW)
    config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    model = MiniCPM3ForCausalLM(config).float()
    model.get_input_embeddings().weight.data.normal_(0.0, 10.0 / config.hidden_size**0.5)
    if mode == "lora":
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear",
                                                 init_lora_weights="gaussian"))
    return model.train()


def batch(seq_len: int, seed: int) -> dict[str, Any]:
    import torch

    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(11, VOCAB, (1, seq_len), generator=g)
    labels = ids.clone()
    labels[:, : int(0.3 * seq_len)] = -100
    return {"input_ids": ids, "labels": labels}


def child(mode: str, chunked: bool, seq_len: int, grads_out: Path) -> dict[str, Any]:
    import torch

    from minicpm_plugin.model.loss import chunked_loss_settings, install_chunked_loss

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    model = build(mode)
    if chunked:
        install_chunked_loss(model, backend="torch")
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    warm = model(**batch(64, seed=1)).loss  # allocator, kernels and optimizer state warmed, then dropped
    warm.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    del warm
    data = batch(seq_len, seed=0)
    base, t0 = _rss(), time.perf_counter()
    out = model(**data)
    out.loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    opt.step()
    opt.zero_grad(set_to_none=True)
    seconds = time.perf_counter() - t0
    peak = _peak_rss()
    torch.save(grads, grads_out)
    settings = chunked_loss_settings(model)
    return {"mode": mode, "chunked": chunked, "loss": float(out.loss), "logits_returned": out.logits is not None,
            "peak_above_start_mib": (peak - base) / MIB, "rss_before_mib": base / MIB, "step_s": seconds,
            "backend": settings.used if settings else "standard",
            "trainable": sum(p.numel() for p in params), "labelled": int((data["labels"][:, 1:] != -100).sum())}


def run(modes: list[str], seq_len: int, log: Any = print) -> dict[str, Any]:
    import torch

    report: dict[str, Any] = {"seq_len": seq_len, "vocab": VOCAB, "model": NARROW, "rows": []}
    with tempfile.TemporaryDirectory(prefix="loss-mem-") as tmp:
        for mode in modes:
            pair = {}
            for chunked in (False, True):
                grads = Path(tmp) / f"{mode}-{chunked}.pt"
                cmd = [sys.executable, str(Path(__file__).resolve()), "--child", mode, "--seq-len", str(seq_len),
                       "--grads", str(grads)] + (["--chunked"] if chunked else [])
                proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
                lines = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
                if proc.returncode or not lines:
                    raise RuntimeError(f"{mode} chunked={chunked} failed:\n{proc.stderr[-3000:]}")
                pair[chunked] = json.loads(lines[-1][7:])
            std, ch = (torch.load(Path(tmp) / f"{mode}-{c}.pt") for c in (False, True))
            scale = max(g.abs().max().item() for g in std.values())
            diff = max((std[n] - ch[n]).abs().max().item() for n in std)
            row = {"mode": mode, "standard": pair[False], "chunked": pair[True],
                   "ratio": pair[True]["peak_above_start_mib"] / pair[False]["peak_above_start_mib"],
                   "loss_diff": abs(pair[True]["loss"] - pair[False]["loss"]), "max_grad_diff": diff,
                   "max_grad": scale, "same_params": sorted(std) == sorted(ch)}
            report["rows"].append(row)
            log(f"{mode}: standard {pair[False]['peak_above_start_mib']:,.0f} MiB, chunked "
                f"{pair[True]['peak_above_start_mib']:,.0f} MiB ({row['ratio']:.2f}x); loss {pair[False]['loss']:.6f} vs "
                f"{pair[True]['loss']:.6f}; max grad diff {diff:.2e} (largest grad {scale:.2e})")
    return report


def format_table(report: dict[str, Any]) -> str:
    lines = [f"seq_len {report['seq_len']}, vocab {report['vocab']:,}, hidden {report['model']['hidden_size']}, "
             f"{report['model']['num_hidden_layers']} layers, fp32, one row, 30% of tokens masked", "",
             "| mode | loss | step peak above start (MiB) | chunked/standard | loss | max abs grad diff | step s |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for r in report["rows"]:
        for key, name in (("standard", "transformers (off)"), ("chunked", "chunked (on)")):
            x = r[key]
            ratio = f"{r['ratio']:.2f}" if key == "chunked" else "1.00"
            diff = f"{r['max_grad_diff']:.1e} (of {r['max_grad']:.1e})" if key == "chunked" else ""
            lines.append(f"| {r['mode']} | {name} | {x['peak_above_start_mib']:,.0f} | {ratio} | {x['loss']:.6f} | "
                         f"{diff} | {x['step_s']:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--modes", default="lora,full", help="comma-separated: lora, full")
    p.add_argument("--seq-len", type=int, default=4096)
    p.add_argument("--json", default=None)
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--chunked", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--grads", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        os.environ.setdefault(key, "1")
    if args.child:
        print("RESULT " + json.dumps(child(args.child, args.chunked, args.seq_len, Path(args.grads))), flush=True)
        return 0
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    bad = [m for m in modes if m not in ("lora", "full")]
    if bad:
        p.error(f"unknown mode(s) {bad}: choose lora, full")
    report = run(modes, args.seq_len)
    print(format_table(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
