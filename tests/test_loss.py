"""The chunked MiniCPM3 loss equals transformers' standard loss and gradients, and never builds the full logits."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch

from minicpm_plugin.model.loss import (
    chunked_loss_settings,
    install_chunked_loss,
    linear_cross_entropy_sum,
    remove_chunked_loss,
)

REPO = Path(__file__).resolve().parents[1]
CHUNK = 16  # small, so every batch below spans several chunks


def _batch(vocab: int, rows: int = 2, length: int = 50, prompt: int = 17, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(11, vocab, (rows, length), generator=g)
    labels = ids.clone()
    labels[:, :prompt] = -100
    labels[0, -5:] = -100  # padding-like tail
    return {"input_ids": ids, "labels": labels}


def _loss_and_grads(model: torch.nn.Module, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    out = model(**batch)
    out.loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    return out.loss.detach(), grads


def _compare(model: torch.nn.Module, batch: dict[str, Any], rtol: float = 1e-6) -> tuple[float, float]:
    """Standard vs chunked on the same model and batch: (loss difference, max gradient difference)."""
    remove_chunked_loss(model)
    std_loss, std_grads = _loss_and_grads(model, batch)
    install_chunked_loss(model, chunk_tokens=CHUNK, backend="torch")
    ch_loss, ch_grads = _loss_and_grads(model, batch)
    assert chunked_loss_settings(model).used == "torch"
    assert set(std_grads) == set(ch_grads) and std_grads, "the same parameters get gradients"
    assert math.isfinite(std_loss.item())
    assert ch_loss.item() == pytest.approx(std_loss.item(), rel=rtol)
    scale = max(g.abs().max().item() for g in std_grads.values())
    diff = max((std_grads[n] - ch_grads[n]).abs().max().item() for n in std_grads)
    assert diff <= 1e-5 * scale, f"max gradient difference {diff} (largest gradient {scale})"
    return abs(ch_loss.item() - std_loss.item()), diff


@pytest.fixture()
def tiny(tiny_model_dir: Path) -> Any:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).train()


@pytest.mark.parametrize("num_items", [None, 123])
def test_full_finetuning_equal_loss_and_gradients(tiny: Any, num_items: int | None) -> None:
    batch = _batch(tiny.config.vocab_size)
    if num_items is not None:
        batch["num_items_in_batch"] = torch.tensor(num_items)
    _compare(tiny, batch)
    # The tied embedding / lm_head weight is one parameter and got both gradients.
    assert tiny.lm_head.weight is tiny.model.embed_tokens.weight


def test_loss_applies_logits_scaling(tiny: Any) -> None:
    """The chunked loss is cross-entropy of lm_head(h / logits_scaling); without the /10 it is far off."""
    batch = _batch(tiny.config.vocab_size)
    install_chunked_loss(tiny, chunk_tokens=CHUNK, backend="torch")
    loss = tiny(**batch).loss.item()
    with torch.no_grad():
        hidden = tiny.model(input_ids=batch["input_ids"]).last_hidden_state
    targets = torch.nn.functional.pad(batch["labels"], (0, 1), value=-100)[:, 1:].reshape(-1)
    h = hidden.reshape(-1, hidden.shape[-1])
    with torch.no_grad():
        scaled = linear_cross_entropy_sum(h, tiny.lm_head, targets, scale=tiny.config.logits_scaling).item()
        unscaled = linear_cross_entropy_sum(h, tiny.lm_head, targets, scale=1.0).item()
    count = int((targets != -100).sum())
    assert tiny.config.logits_scaling == 10
    assert loss == pytest.approx(scaled / count, rel=1e-6)
    assert abs(unscaled / count - loss) > 0.5


def test_gradient_accumulation_with_num_items_in_batch(tiny: Any) -> None:
    """Two micro-batches normalised by the tokens of both (the Trainer's num_items_in_batch): same sums."""
    a, b = _batch(tiny.config.vocab_size, seed=1), _batch(tiny.config.vocab_size, seed=2, prompt=30)
    total = sum(int((x["labels"][:, 1:] != -100).sum()) for x in (a, b))

    def accumulate() -> tuple[float, dict[str, torch.Tensor]]:
        tiny.zero_grad(set_to_none=True)
        loss = 0.0
        for x in (a, b):
            out = tiny(**x, num_items_in_batch=torch.tensor(total))
            out.loss.backward()
            loss += out.loss.item()
        return loss, {n: p.grad.clone() for n, p in tiny.named_parameters() if p.grad is not None}

    std_loss, std_grads = accumulate()
    install_chunked_loss(tiny, chunk_tokens=CHUNK, backend="torch")
    ch_loss, ch_grads = accumulate()
    assert ch_loss == pytest.approx(std_loss, rel=1e-6)
    assert max((std_grads[n] - ch_grads[n]).abs().max().item() for n in std_grads) < 1e-6


def test_lora_equal_loss_and_gradients(tiny: Any) -> None:
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(tiny, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules="all-linear",
                                            init_lora_weights="gaussian"))
    batch = _batch(tiny.config.vocab_size)
    batch["num_items_in_batch"] = torch.tensor(60)
    _compare(model, batch)
    assert any("lora_A" in n for n, p in model.named_parameters() if p.requires_grad)


def test_lora_on_lm_head_goes_through_the_module(tiny: Any) -> None:
    """lm_head is called as a module: a LoRA adapter on it is part of the chunked loss."""
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(tiny, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, init_lora_weights="gaussian",
                                            target_modules=["q_a_proj", "lm_head"]))
    _compare(model, _batch(tiny.config.vocab_size))
    trained = [n for n, p in model.named_parameters() if p.requires_grad and "lm_head" in n]
    assert trained


def test_qlora_equal_loss_and_gradients(tmp_path_factory: pytest.TempPathFactory) -> None:
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    from minicpm_plugin.tools.smoke import build_smoke_model

    path = build_smoke_model(tmp_path_factory.mktemp("smoke-model"))
    quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                               bnb_4bit_compute_dtype=torch.float32)
    model = AutoModelForCausalLM.from_pretrained(path, quantization_config=quant, device_map={"": "cpu"},
                                                 dtype=torch.float32)
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=True)
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules="all-linear"))
    model.train()
    assert type(model.base_model.model.model.layers[0].mlp.up_proj.base_layer).__name__ == "Linear4bit"
    batch = _batch(model.config.vocab_size, length=40, prompt=9)
    batch["num_items_in_batch"] = torch.tensor(55)
    _compare(model, batch)


def test_packing_with_the_guard(tiny: Any) -> None:
    """Packed rows (position_ids restarting per sample, a mask of ones) with the packing guard installed."""
    from minicpm_plugin.model.packing import install_packing_guard

    install_packing_guard(tiny)
    g = torch.Generator().manual_seed(5)
    lengths = [[13, 21, 9], [30, 12]]
    ids, labels, pos = [], [], []
    for row in lengths:
        r_ids, r_lab, r_pos = [], [], []
        for n in row:
            s = torch.randint(11, tiny.config.vocab_size, (n,), generator=g).tolist()
            r_ids += s
            r_lab += [-100] * (n // 3) + s[n // 3:]
            r_pos += list(range(n))
        tail = 45 - len(r_ids)
        ids.append(r_ids + [2] * tail)
        labels.append(r_lab + [-100] * tail)
        pos.append(r_pos + list(range(tail)))
    batch = {"input_ids": torch.tensor(ids), "labels": torch.tensor(labels), "position_ids": torch.tensor(pos),
             "attention_mask": torch.ones(2, 45, dtype=torch.long), "num_items_in_batch": torch.tensor(70)}
    _compare(tiny, batch)


def test_never_builds_full_logits(tiny: Any) -> None:
    """Every lm_head call of a training step (forward and the recomputation in backward) sees <= one chunk."""
    batch = _batch(tiny.config.vocab_size, rows=3, length=60, prompt=5)
    rows: list[int] = []
    tiny.lm_head.register_forward_hook(lambda m, i, o: rows.append(o.reshape(-1, o.shape[-1]).shape[0]))
    tiny(**batch).loss.backward()
    assert rows == [3 * 60], "standard path: one call on all positions"
    rows.clear()
    install_chunked_loss(tiny, chunk_tokens=CHUNK, backend="torch")
    out = tiny(**batch)
    assert out.logits is None
    labelled = int((torch.nn.functional.pad(batch["labels"], (0, 1), value=-100)[:, 1:] != -100).sum())
    forward_rows = list(rows)
    out.loss.backward()
    assert max(rows) <= CHUNK and sum(forward_rows) == labelled, (forward_rows, rows)
    assert sum(rows) == 2 * labelled, "each chunk recomputed once in backward"


def test_eval_and_generation_keep_logits(tiny: Any) -> None:
    batch = _batch(tiny.config.vocab_size)
    with torch.no_grad():
        ref = tiny.eval()(**batch)
    install_chunked_loss(tiny, chunk_tokens=CHUNK)
    with torch.no_grad():
        out = tiny(**batch)
        assert out.logits is not None and torch.equal(out.logits, ref.logits) and torch.equal(out.loss, ref.loss)
        # return_dict=False gives a tuple, as the original forward does
        loss, logits = tiny(**batch, return_dict=False)[:2]
        assert torch.equal(logits, ref.logits)
        # skip_logits=True asks for the chunked loss outside training too
        skipped = tiny(**batch, skip_logits=True)
        assert skipped.logits is None and skipped.loss.item() == pytest.approx(ref.loss.item(), rel=1e-6)
        generated = tiny.generate(batch["input_ids"][:1, :10], max_new_tokens=4, do_sample=False)
    assert generated.shape == (1, 14)
    tiny.train()
    assert tiny(**batch).logits is None


def test_install_is_idempotent_and_reversible(tiny: Any) -> None:
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(tiny, LoraConfig(r=4, target_modules=["q_a_proj"]))
    lm = install_chunked_loss(model, chunk_tokens=CHUNK)
    assert lm is tiny and install_chunked_loss(model, chunk_tokens=8) is lm
    assert chunked_loss_settings(model).chunk_tokens == 8
    assert model(**_batch(tiny.config.vocab_size)).logits is None
    assert remove_chunked_loss(model) and not remove_chunked_loss(model)
    assert model(**_batch(tiny.config.vocab_size)).logits is not None
    with pytest.raises(ValueError, match="backend"):
        install_chunked_loss(model, backend="cce")
    with pytest.raises(ValueError, match="no MiniCPM3ForCausalLM"):
        install_chunked_loss(torch.nn.Linear(2, 2))


def test_accelerate_hook_is_kept(tiny: Any) -> None:
    """A module under an accelerate hook (device_map dispatch) keeps the hook and runs the chunked loss."""
    from accelerate.hooks import ModelHook, add_hook_to_module

    calls = []

    class Count(ModelHook):
        def pre_forward(self, module: Any, *args: Any, **kwargs: Any) -> Any:
            calls.append(1)
            return args, kwargs

    add_hook_to_module(tiny, Count())
    install_chunked_loss(tiny, chunk_tokens=CHUNK)
    assert tiny(**_batch(tiny.config.vocab_size)).logits is None and calls == [1]


def test_nothing_labelled_gives_the_standard_result(tiny: Any) -> None:
    batch = _batch(tiny.config.vocab_size)
    batch["labels"][:] = -100
    std = tiny(**batch).loss
    install_chunked_loss(tiny, chunk_tokens=CHUNK)
    assert math.isnan(std.item()) and math.isnan(tiny(**batch).loss.item())
    assert tiny(**batch, num_items_in_batch=torch.tensor(4)).loss.item() == 0.0


def test_other_loss_functions_are_respected(tiny: Any) -> None:
    """A custom loss_function (axolotl's chunked_cross_entropy, say) gets full logits, as before."""
    seen = []

    def custom(logits: torch.Tensor, labels: torch.Tensor, vocab_size: int, **kwargs: Any) -> torch.Tensor:
        seen.append(logits.shape)
        return logits.float().mean()

    tiny.loss_function = custom
    install_chunked_loss(tiny, chunk_tokens=CHUNK)
    out = tiny(**_batch(tiny.config.vocab_size))
    assert seen and out.logits is not None


_LIGER_SCRIPT = textwrap.dedent("""
    import json, sys, torch
    import triton, triton.language as tl
    import liger_kernel.ops.rms_norm as rms_ops

    # libdevice's rsqrt has no implementation in Triton's CPU interpreter; the same math in triton.language:
    @triton.jit
    def _rsqrt(x):
        return 1.0 / tl.sqrt(x)

    rms_ops.rsqrt = _rsqrt
    from transformers import AutoModelForCausalLM
    from minicpm_plugin.model.kernels import apply_liger_kernels
    from minicpm_plugin.model.loss import chunked_loss_settings, install_chunked_loss

    model = AutoModelForCausalLM.from_pretrained(sys.argv[1], dtype=torch.float32).train()
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(11, model.config.vocab_size, (1, 24), generator=g)
    labels = ids.clone(); labels[:, :8] = -100

    def run():
        model.zero_grad(set_to_none=True)
        out = model(input_ids=ids, labels=labels, num_items_in_batch=torch.tensor(20))
        out.loss.backward()
        return out.loss.item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    std_loss, std = run()
    counts = apply_liger_kernels(model, rms_norm=True, swiglu=True)
    install_chunked_loss(model, backend="liger")
    loss, grads = run()
    print(json.dumps({"counts": counts, "std": std_loss, "liger": loss, "used": chunked_loss_settings(model).used,
                      "grad_diff": max((std[n] - grads[n]).abs().max().item() for n in std),
                      "grad_scale": max(x.abs().max().item() for x in std.values())}))
""")


@pytest.mark.slow
def test_liger_kernels_match_minicpm3_under_the_triton_interpreter(tiny_model_dir: Path) -> None:
    """liger's fused linear cross-entropy on scaled hidden states, RMSNorm and SwiGLU kernels, run by
    Triton's CPU interpreter: the same loss and gradients as MiniCPM3's own modules and loss."""
    pytest.importorskip("liger_kernel")
    import json

    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-c", _LIGER_SCRIPT, str(tiny_model_dir)], capture_output=True, text=True,
                          env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    layers = 2
    assert result["counts"] == {"rms_norm": 4 * layers + 1, "swiglu": layers}
    assert result["used"] == "liger"
    assert result["liger"] == pytest.approx(result["std"], rel=1e-5)
    assert result["grad_diff"] <= 1e-5 * result["grad_scale"]


# ---- liger / cut-cross-entropy decisions (integration.config_checks.check_fused_losses) ------------------------

LIGER = "axolotl.integrations.liger.LigerPlugin"
CCE = "axolotl.integrations.cut_cross_entropy.CutCrossEntropyPlugin"
OURS = "minicpm_plugin.MiniCPM3Plugin"


@pytest.mark.parametrize(
    ("cfg", "chunked", "message"),
    [
        ({"plugins": [OURS, CCE]}, True, "cut_cross_entropy is not supported for MiniCPM3"),
        ({"plugins": [OURS, CCE], "cut_cross_entropy": True}, False, "logits 10x too large"),
        ({"cut_cross_entropy": True}, True, "Remove axolotl.integrations.cut_cross_entropy.CutCrossEntropyPlugin"),
        ({"plugins": [OURS, LIGER], "liger_fused_linear_cross_entropy": True}, False,
         "Keep minicpm3_chunked_loss on"),
        ({"rl": "dpo", "dpo_use_liger_kernel": True}, True, "Remove dpo_use_liger_kernel"),
        ({"plugins": [OURS, LIGER], "liger_fused_linear_cross_entropy": True, "liger_use_token_scaling": True}, True,
         "Remove liger_use_token_scaling"),
    ],
)
def test_fused_losses_that_would_skip_logits_scaling_are_refused(cfg: dict, chunked: bool, message: str) -> None:
    from minicpm_plugin.integration.config_checks import ConfigError, check_fused_losses

    with pytest.raises(ConfigError) as info:
        check_fused_losses(dict(cfg), chunked, on_cpu=False)
    assert message in info.value.message and "\n" not in info.value.message


@pytest.mark.parametrize(
    ("cfg", "chunked", "on_cpu", "backend", "note"),
    [
        ({"plugins": [OURS]}, True, False, "auto", None),
        ({"plugins": [OURS, CCE], "cut_cross_entropy": False}, True, False, "auto", None),
        ({"plugins": [OURS, LIGER], "liger_fused_linear_cross_entropy": True}, True, False, "liger",
         "runs liger's fused kernel on hidden states divided by logits_scaling"),
        ({"plugins": [OURS, LIGER], "liger_fused_linear_cross_entropy": True}, True, True, "liger",
         "the torch chunked loss instead"),
        ({"plugins": [OURS, LIGER], "liger_fused_linear_cross_entropy": False}, False, False, "torch", None),
        ({"plugins": [OURS, LIGER], "liger_rms_norm": True, "liger_glu_activation": True}, True, False, "auto", None),
        ({"plugins": [OURS, LIGER], "liger_rms_norm": True}, True, True, "auto", "not applied without a GPU"),
        ({"plugins": [OURS, LIGER], "liger_cross_entropy": True}, True, False, "auto", "liger_cross_entropy is not applied"),
        ({"plugins": [OURS, LIGER], "liger_rope": True}, True, False, "auto", "liger_rope is not applied"),
        ({"plugins": [OURS, LIGER], "liger_layer_norm": True}, True, False, "auto", "MiniCPM3 has no LayerNorm"),
        ({"chunked_cross_entropy": True}, True, False, "auto", "chunked_cross_entropy turned off"),
        ({"chunked_cross_entropy": True}, False, False, "auto", None),
    ],
)
def test_fused_loss_decisions(cfg: dict, chunked: bool, on_cpu: bool, backend: str, note: str | None) -> None:
    from minicpm_plugin.integration.config_checks import check_fused_losses

    cfg = dict(cfg)
    got, notes = check_fused_losses(cfg, chunked, on_cpu)
    assert got == backend
    assert (note is None and not notes) or any(note in n for n in notes), notes
    if "chunked_cross_entropy" in cfg:
        assert cfg["chunked_cross_entropy"] is (not chunked)


def test_refusal_reaches_the_user_through_axolotl(tiny_model_dir: Path, tmp_path: Path) -> None:
    """axolotl's own config loading, with liger's plugin listed: one config error, nothing loaded."""
    import yaml
    from axolotl.cli.config import load_cfg
    from axolotl_runs import tiny_config

    from minicpm_plugin.integration.config_checks import ConfigError

    def load(cfg: dict, tmp: Path) -> Any:
        (tmp / "cfg.yml").write_text(yaml.safe_dump(cfg))
        return load_cfg(str(tmp / "cfg.yml"))

    cfg = tiny_config(tiny_model_dir, tmp_path, plugins=[OURS, LIGER], liger_fused_linear_cross_entropy=True,
                      minicpm3_chunked_loss=False)
    with pytest.raises(ConfigError, match="liger_fused_linear_cross_entropy with minicpm3_chunked_loss: false"):
        load(cfg, tmp_path)
    cfg = tiny_config(tiny_model_dir, tmp_path, plugins=[OURS, CCE])
    with pytest.raises(ConfigError, match="cut_cross_entropy is not supported"):
        load(cfg, tmp_path)
    cfg = load(tiny_config(tiny_model_dir, tmp_path, plugins=[OURS, LIGER], liger_fused_linear_cross_entropy=True),
               tmp_path)
    assert cfg.minicpm3_chunked_loss is True and cfg.liger_fused_linear_cross_entropy is True


@pytest.mark.slow
def test_axolotl_run_chunked_loss_equals_standard_and_neutralises_liger(tiny_model_dir: Path, tmp_path: Path) -> None:
    """Two short axolotl runs (packing, gradient accumulation): transformers' loss (minicpm3_chunked_loss: false)
    and the chunked loss with axolotl's liger plugin asked for its fused loss (whose generic MiniCPM3 forward
    skips logits_scaling). The first step's loss is the same: the plugin's forward, not liger's, computes it.
    Later steps are not compared: two identical standard runs already differ there (1.5e-2 at step 2 when
    measured; CPU reductions and packing vary run to run)."""
    from axolotl_runs import failure, losses, run_axolotl, tiny_config

    curves, logs = {}, {}
    for name, extra in (("standard", {"minicpm3_chunked_loss": False}),
                        ("chunked+liger", {"plugins": [OURS, LIGER], "liger_fused_linear_cross_entropy": True})):
        run_dir = tmp_path / name
        run_dir.mkdir()
        cfg = tiny_config(tiny_model_dir, run_dir, max_steps=2, save_steps=2, gradient_accumulation_steps=2,
                          sample_packing=True, sequence_len=1024, micro_batch_size=1, **extra)
        result = run_axolotl(cfg, run_dir, launcher="python", timeout=600)
        assert result.returncode == 0, failure(result)
        curves[name], logs[name] = losses(run_dir / "out"), result.stdout + result.stderr
    assert "chunked loss: the training loss never holds" in logs["chunked+liger"]
    assert "chunked loss" not in logs["standard"]
    # axolotl did apply liger's generic fused-loss forward to the class; the plugin's instance forward won.
    assert "Applied ONLY liger_fused_linear_cross_entropy generic" in logs["chunked+liger"]
    assert len(curves["standard"]) == len(curves["chunked+liger"]) == 2
    assert all(math.isfinite(x) for x in curves["chunked+liger"])
    assert curves["chunked+liger"][0] == pytest.approx(curves["standard"][0], rel=1e-6), curves
