"""The memory planner: parameter counts from MiniCPM3's config, and the direction of every term."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from minicpm_plugin.cli import main
from minicpm_plugin.tools.memory import (
    GIB,
    LINEAR_MODULES,
    MINICPM3_4B,
    DeepSpeedPlan,
    ModelShape,
    Plan,
    PlanError,
    estimate,
    format_report,
    plan_from_recipe,
)

ROOT = Path(__file__).resolve().parent.parent
# SFT recipes; the preference (rl: dpo) recipe has its own checks in tests/test_dpo_recipe.py
RECIPES = sorted(p for p in (ROOT / "examples").glob("minicpm3_*.yml") if "\nrl: " not in p.read_text("utf-8"))
ZERO2 = DeepSpeedPlan(stage=2)
ZERO3 = DeepSpeedPlan(stage=3, reduce_bucket_size=-1)


def _recipe(name: str) -> dict:
    return yaml.safe_load((ROOT / "examples" / name).read_text(encoding="utf-8"))


def test_parameter_count_of_minicpm3_4b():
    n = MINICPM3_4B.param_count()
    assert n == 4_073_875_968  # "about 4.1 B"
    per_layer = MINICPM3_4B.linear_params_per_layer()
    assert per_layer == 62_668_800
    # the MLP holds ~78% of each layer: why the recipes adapt all linear layers
    assert 3 * 2560 * 6400 / per_layer == pytest.approx(0.784, abs=0.001)


def test_shapes_match_transformers_minicpm3():
    """Our layer shapes and count equal the native class built from transformers' default config
    (which is the 4B checkpoint's), on the meta device: nothing is allocated or downloaded."""
    torch = pytest.importorskip("torch")
    from transformers import MiniCPM3Config, MiniCPM3ForCausalLM

    config = MiniCPM3Config()
    assert ModelShape.from_config(config.to_dict()) == MINICPM3_4B
    with torch.device("meta"):
        model = MiniCPM3ForCausalLM(config)
    assert sum(p.numel() for p in model.parameters()) == MINICPM3_4B.param_count()
    layer = model.model.layers[0]
    for name, (fan_in, fan_out) in MINICPM3_4B.linears().items():
        module = getattr(layer.self_attn, name, None) or getattr(layer.mlp, name)
        assert (module.in_features, module.out_features) == (fan_in, fan_out), name


def test_activation_bytes_match_autograd_for_one_layer():
    """Count what autograd really keeps for one full-width MiniCPM3 layer in bf16, with an attention
    kernel that keeps q, k, v, the output and the logsumexp (as flash / memory-efficient SDPA do)."""
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F
    from transformers import AttentionInterface, MiniCPM3Config, MiniCPM3ForCausalLM

    class FlashLike(torch.autograd.Function):
        @staticmethod
        def forward(ctx, q, k, v, scaling):
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scaling)
            lse = torch.empty(q.shape[:-1], dtype=torch.float32)
            ctx.save_for_backward(q, k, v, out, lse)
            return out

    def attention(module, query, key, value, attention_mask, scaling=None, **kwargs):
        return FlashLike.apply(query, key, value, scaling).transpose(1, 2).contiguous(), None

    AttentionInterface.register("keeps_qkv_out_lse", attention)
    config = MiniCPM3Config(num_hidden_layers=1, vocab_size=256)
    config._attn_implementation = "keeps_qkv_out_lse"
    torch.manual_seed(0)
    model = MiniCPM3ForCausalLM(config).to(torch.bfloat16)
    tokens = 64
    x = torch.randn(1, tokens, config.hidden_size, dtype=torch.bfloat16, requires_grad=True)
    position_ids = torch.arange(tokens)[None]
    embeddings = model.model.rotary_emb(x, position_ids)
    owned = {t.untyped_storage().data_ptr() for t in [*model.parameters(), *model.buffers(), x]}
    kept: dict[int, int] = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in owned:
            kept[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model.model.layers[0](x, attention_mask=None, position_ids=position_ids, position_embeddings=embeddings)
    measured = sum(kept.values()) / tokens
    assert measured == pytest.approx(MINICPM3_4B.activation_bytes_per_token_layer(2), rel=0.01)


def test_qlora_below_lora_below_full():
    base = dict(micro_batch_size=1, sequence_len=2048, gradient_checkpointing=True, optimizer="adamw_torch")
    qlora, lora, full = (estimate(Plan(mode=m, **base)).total for m in ("qlora", "lora", "full"))
    assert qlora < lora < full
    # 4-bit weights: ~0.52 byte per linear weight with double quantization, ~0.56 without
    w = {dq: estimate(Plan(mode="qlora", double_quant=dq)).parts["weights"] for dq in (True, False)}
    assert w[True] < w[False]
    linear = MINICPM3_4B.num_hidden_layers * MINICPM3_4B.linear_params_per_layer()
    other = MINICPM3_4B.param_count() - linear
    assert w[True] == pytest.approx(linear * (0.5 + (1 + 4 / 256) / 64) + other * 2)


def test_lora_trainable_parameters():
    all_linear = MINICPM3_4B.lora_params(16, LINEAR_MODULES)
    assert all_linear == 62 * 16 * sum(i + o for i, o in MINICPM3_4B.linears().values()) == 47_774_720
    official = MINICPM3_4B.lora_params(64, ("q_a_proj", "kv_a_proj_with_mqa", "q_b_proj", "kv_b_proj"))
    assert official == 64_122_880


def test_gradient_checkpointing_lowers_activations():
    on = estimate(Plan(gradient_checkpointing=True, sequence_len=4096))
    off = estimate(Plan(gradient_checkpointing=False, sequence_len=4096))
    assert on.parts["activations"] * 10 < off.parts["activations"]
    # with checkpointing, each layer keeps only its bf16 input
    assert on.parts["activations"] == pytest.approx(62 * 4096 * 2560 * 2 + 4096 * 10 * 2560 + 4096**2)


def test_activations_and_logits_scale_with_tokens():
    one, two = (estimate(Plan(micro_batch_size=b, sequence_len=1024)) for b in (1, 2))
    assert two.parts["logits + loss"] == pytest.approx(2 * one.parts["logits + loss"])
    assert one.parts["logits + loss"] == pytest.approx(1024 * 73448 * 12)  # fp32 logits of a 73,448 vocab
    assert two.parts["weights"] == one.parts["weights"]


def test_lora_dropout_costs_activation_memory():
    with_dropout = estimate(Plan(lora_dropout=0.05, gradient_checkpointing=False))
    without = estimate(Plan(lora_dropout=0.0, gradient_checkpointing=False))
    assert with_dropout.parts["activations"] > without.parts["activations"]


def test_optimizer_states():
    full = dict(mode="full", gradient_checkpointing=True)
    adamw = estimate(Plan(optimizer="adamw_torch", **full)).parts["optimizer states"]
    eight = estimate(Plan(optimizer="adamw_bnb_8bit", **full)).parts["optimizer states"]
    paged32 = estimate(Plan(optimizer="paged_adamw_32bit", **full)).parts["optimizer states"]
    assert eight < adamw < paged32
    n = MINICPM3_4B.param_count()
    assert eight == pytest.approx(n * 2.03, rel=0.01)  # two 1-byte moments (+ block scales)
    assert paged32 == pytest.approx(n * 8)  # two fp32 moments
    assert any("paged optimizer" in note for note in estimate(Plan(optimizer="paged_adamw_8bit")).notes)


def test_zero3_divides_weights_by_world_size():
    one = estimate(Plan(mode="full", deepspeed=ZERO3, world_size=1))
    eight = estimate(Plan(mode="full", deepspeed=ZERO3, world_size=8))
    gathered = 2 * MINICPM3_4B.linear_params_per_layer() * 2 + MINICPM3_4B.embedding_params() * 2
    assert (one.parts["weights"] - gathered) == pytest.approx(8 * (eight.parts["weights"] - gathered))
    assert one.parts["optimizer states"] == pytest.approx(8 * eight.parts["optimizer states"])
    assert one.parts["gradients"] == pytest.approx(8 * eight.parts["gradients"])


def test_zero2_shards_optimizer_and_gradients_not_weights():
    one = estimate(Plan(mode="full", deepspeed=ZERO2, world_size=1))
    four = estimate(Plan(mode="full", deepspeed=ZERO2, world_size=4))
    assert one.parts["weights"] == four.parts["weights"]
    assert one.parts["optimizer states"] == pytest.approx(4 * four.parts["optimizer states"])
    # fp32 master weights + two fp32 moments: 12 bytes per parameter, sharded
    assert one.parts["optimizer states"] == pytest.approx(MINICPM3_4B.param_count() * 12)


def test_offload_moves_optimizer_to_cpu():
    plain = estimate(Plan(mode="full", deepspeed=ZERO2))
    offload = estimate(Plan(mode="full", deepspeed=DeepSpeedPlan(stage=2, offload_optimizer=True, own_optimizer=True)))
    assert offload.parts["optimizer states"] == 0 and offload.parts["gradients"] == 0
    assert plain.cpu_bytes == 0 and offload.cpu_bytes == pytest.approx(MINICPM3_4B.param_count() * 16)
    assert offload.total < plain.total
    params = estimate(Plan(mode="full", deepspeed=DeepSpeedPlan(stage=3, offload_optimizer=True,
                                                                offload_param=True, own_optimizer=True)))
    assert params.parts["weights"] < offload.parts["weights"] / 5


def test_shipped_recipes(capsys):
    """Each recipe is estimated; the numbers quoted in the recipes' headers hold."""
    results = {p.stem: estimate(plan_from_recipe(_recipe(p.name), base_dir=ROOT / "examples")) for p in RECIPES}
    assert set(results) == {"minicpm3_lora", "minicpm3_qlora", "minicpm3_full", "minicpm3_tools_lora"}
    assert results["minicpm3_qlora"].fits(12)
    assert results["minicpm3_lora"].fits(24) and results["minicpm3_tools_lora"].fits(24)
    assert results["minicpm3_full"].fits(24) and results["minicpm3_full"].cpu_bytes > 40 * GIB
    assert results["minicpm3_qlora"].total < results["minicpm3_lora"].total
    for name, est in results.items():
        text = (ROOT / "examples" / f"{name}.yml").read_text(encoding="utf-8")
        assert f"about {est.total / GIB:.0f} GB" in text, f"{name}: header says otherwise than the estimate"


def test_recipe_reading():
    plan = plan_from_recipe(_recipe("minicpm3_qlora.yml"))
    assert (plan.mode, plan.double_quant, plan.lora_r, plan.optimizer) == ("qlora", True, 16, "paged_adamw_8bit")
    assert plan.lora_targets == LINEAR_MODULES
    full = plan_from_recipe(_recipe("minicpm3_full.yml"), base_dir=ROOT / "examples")
    assert (full.mode, full.deepspeed.stage, full.deepspeed.offload_optimizer) == ("full", 2, True)
    assert plan_from_recipe({"base_model": "x", "adapter": "lora", "lora_target_linear": True,
                             "bf16": False}).dtype_bytes == 4
    with pytest.raises(PlanError, match="q_proj"):
        plan_from_recipe({"adapter": "lora", "lora_target_modules": ["q_proj", "v_proj"]})
    with pytest.raises(PlanError, match="deepspeed: nowhere.json: no such file"):
        plan_from_recipe({"deepspeed": "nowhere.json"})


def test_local_model_config_is_used(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "minicpm3", "num_hidden_layers": 2, "hidden_size": 80,'
                                          ' "vocab_size": 500}', encoding="utf-8")
    plan = plan_from_recipe({"base_model": str(tmp_path), "adapter": "lora", "lora_target_linear": True})
    assert (plan.shape.num_hidden_layers, plan.shape.hidden_size, plan.shape.vocab_size) == (2, 80, 500)


def test_report_and_cli(capsys):
    text = format_report(estimate(plan_from_recipe(_recipe("minicpm3_lora.yml"))), extra_gpu_gb=20)
    assert "total" in text and "logits + loss" in text and "20 GB" in text
    assert main(["memory", str(ROOT / "examples" / "minicpm3_qlora.yml"), "--gpu-gb", "8"]) == 0
    out = capsys.readouterr().out
    assert "12 GB yes" in out and "8 GB yes" in out and "parameters: 4.074 B" in out
    assert main(["memory", str(ROOT / "examples" / "minicpm3_full.yml"), "--world-size", "0"]) == 1
    assert "--world-size must be positive" in capsys.readouterr().err
