"""The offline tiny MiniCPM3: architecture, tokenizer behaviour, chat template, determinism, CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from transformers import AutoModelForCausalLM, AutoTokenizer, DynamicCache

import minicpm_plugin
from minicpm_plugin.cli import main as cli_main
from minicpm_plugin.tools.tiny_model import (
    ADDED_SPECIAL_TOKENS,
    BASE_SPECIAL_TOKENS,
    PLAIN_TEXT_MARKERS,
    build_tiny_model,
)

DATA = Path(__file__).parent / "data"
GOLDEN = json.loads((DATA / "minicpm3_template_cases.json").read_text(encoding="utf-8"))
SPECIAL = BASE_SPECIAL_TOKENS + ADDED_SPECIAL_TOKENS
IM_END = 3
IM_START = 4


@pytest.fixture(scope="module")
def tok(tiny_model_dir: Path):
    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture()
def model(tiny_model_dir: Path):
    return AutoModelForCausalLM.from_pretrained(tiny_model_dir)


def _files(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir()) if p.is_file()}


# --- files and config -------------------------------------------------------------------------


def test_files_and_config(tiny_model_dir: Path, tok) -> None:
    names = set(_files(tiny_model_dir))
    assert {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
            "tokenizer_config.json", "chat_template.jinja"} <= names  # fmt: skip
    assert not any(n.endswith((".bin", ".py", ".pt")) for n in names)
    cfg = json.loads((tiny_model_dir / "config.json").read_text())
    assert cfg["model_type"] == "minicpm3" and cfg["architectures"] == ["MiniCPM3ForCausalLM"]
    assert "auto_map" not in cfg and "auto_map" not in (tiny_model_dir / "tokenizer_config.json").read_text()
    assert cfg["dtype"] == "float32"  # transformers 5 writes `dtype` (formerly `torch_dtype`)
    assert cfg["scale_emb"] == 12 and cfg["scale_depth"] == 1.4
    assert cfg["hidden_size"] / cfg["dim_model_base"] == 10
    assert cfg["tie_word_embeddings"] is True
    for key in ("q_lora_rank", "kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim"):
        assert isinstance(cfg[key], int) and cfg[key] > 0
    assert cfg["rope_parameters"]["rope_type"] == "longrope"
    assert cfg["vocab_size"] == len(tok)
    assert cfg["bos_token_id"] == 1 and cfg["eos_token_id"] == [2, IM_END]
    gen = json.loads((tiny_model_dir / "generation_config.json").read_text())
    assert gen["bos_token_id"] == 1 and gen["eos_token_id"] == [2, IM_END]


def test_model_is_native_minicpm3_with_latent_attention(model) -> None:
    assert type(model).__name__ == "MiniCPM3ForCausalLM"
    assert type(model).__module__ == "transformers.models.minicpm3.modeling_minicpm3"
    names = {n.split("layers.0.", 1)[1] for n, _ in model.named_modules() if ".layers.0." in n}
    for expected in ("self_attn.q_a_proj", "self_attn.q_b_proj", "self_attn.kv_a_proj_with_mqa",
                     "self_attn.kv_b_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj",
                     "mlp.down_proj"):  # fmt: skip
        assert expected in names
    assert not {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"} & {
        n for n in names if getattr(model.model.layers[0].get_submodule(n), "weight", None) is not None
    }
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    assert all(p.dtype == torch.float32 for p in model.parameters())
    # muP scalings are live in the module, not just in the config.
    assert model.config.logits_scaling == 10
    assert model.model.layers[0].residual_scale == pytest.approx(
        1.4 / math.sqrt(model.config.num_hidden_layers)
    )
    ids = torch.tensor([[1, 20, 300]])
    emb = model.model.embed_tokens(ids)
    assert torch.allclose(emb, model.model.embed_tokens.weight[ids] * 12)


# --- tokenizer ----------------------------------------------------------------------------------


def test_special_token_layout(tok) -> None:
    assert type(tok).__name__ in {"TokenizersBackend", "PreTrainedTokenizerFast"}
    assert tok.convert_ids_to_tokens(list(range(len(SPECIAL)))) == list(SPECIAL)
    assert (tok.unk_token_id, tok.bos_token_id, tok.eos_token) == (0, 1, "<|im_end|>")
    assert tok.eos_token_id == IM_END and tok.convert_tokens_to_ids("</s>") == 2
    assert tok.pad_token is None  # like the real one; axolotl falls back to the EOS token
    assert all(tok.added_tokens_decoder[i].special for i in range(len(SPECIAL)))
    assert set(range(len(SPECIAL))) - {2} <= set(tok.all_special_ids)  # `</s>` is special, not named
    byte_ids = tok.convert_tokens_to_ids([f"<0x{i:02X}>" for i in range(256)])
    assert byte_ids == list(range(len(SPECIAL), len(SPECIAL) + 256))
    assert 2000 <= len(tok) <= 4000
    added = set(tok.get_added_vocab())
    assert added == set(SPECIAL)
    for marker in PLAIN_TEXT_MARKERS:
        assert marker not in tok.get_vocab()
        ids = tok(marker, add_special_tokens=False).input_ids
        assert len(ids) >= 2 and not set(ids) & set(range(len(SPECIAL)))


def test_bos_once_no_eos(tok) -> None:
    for text in ["hello", "", "<s>hi", "<|im_start|>user\nhi<|im_end|>\n", "  leading spaces"]:
        ids = tok(text).input_ids
        assert ids[0] == 1
        assert ids.count(1) == 1 + text.count("<s>")
        assert ids[-1] != IM_END or text.endswith("<|im_end|>")
        assert 2 not in ids
        assert tok(text, add_special_tokens=False).input_ids == ids[1:]


@pytest.mark.parametrize("special", SPECIAL)
def test_special_tokens_are_atomic(tok, special: str) -> None:
    text = f"a{special}b {special}\n{special}"
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    sid = tok.convert_tokens_to_ids(special)
    assert enc.input_ids.count(sid) == 3
    spans = [span for i, span in zip(enc.input_ids, enc.offset_mapping, strict=True) if i == sid]
    assert all(text[s:e] == special for s, e in spans)


def _check_offsets(tok, text: str) -> list[int]:
    """Encode `text` and check that offsets tile it exactly and agree with the token pieces."""
    enc = tok(text, return_offsets_mapping=True)
    ids, offsets = enc.input_ids[1:], enc.offset_mapping[1:]
    assert enc.offset_mapping[0] == (0, 0)  # BOS covers no text
    pieces = tok.convert_ids_to_tokens(ids)
    pos, i = 0, 0
    while i < len(ids):
        start, end = offsets[i]
        assert start == pos, (text, pieces, offsets)
        if pieces[i].startswith("<0x") and pieces[i].endswith(">") and len(pieces[i]) == 6:
            group = [j for j in range(i, len(ids)) if offsets[j] == (start, end)]
            assert group == list(range(i, i + len(group)))
            data = bytes(int(pieces[j][3:5], 16) for j in group)
            assert data.decode("utf-8") == text[start:end]
            i += len(group)
        else:
            expected = text[start:end] if ids[i] < len(SPECIAL) else text[start:end].replace(" ", "▁")
            assert pieces[i] == expected, (text, pieces, offsets)
            i += 1
        if "\n" in text[start:end]:
            assert text[start:end] == "\n"  # newlines never merge with neighbouring text
        pos = end
    assert pos == len(text)
    return enc.input_ids


_FRAGMENT = st.one_of(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="▁"),
    st.sampled_from(
        list(' \n\t中文北京天气🙂é{}"_=,()0123456789') + ["<|tool_call_start|>", "<|im", "  ", "\n\n"]
    ),
)
_NO_SPECIAL = st.lists(_FRAGMENT, max_size=60).map("".join).filter(lambda s: not any(t in s for t in SPECIAL))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=_NO_SPECIAL)
def test_any_text_round_trips_with_exact_offsets(tok, text: str) -> None:
    ids = _check_offsets(tok, text)
    assert 0 not in ids  # byte fallback: never <unk>
    assert tok.decode(ids[1:]) == text
    assert tok.decode(ids, skip_special_tokens=True) == text


@pytest.mark.parametrize("case", sorted(GOLDEN))
def test_offsets_and_round_trip_on_chat_text(tok, case: str) -> None:
    text = GOLDEN[case]["text"]
    ids = _check_offsets(tok, text)
    assert tok.decode(ids[1:]) == text
    assert 0 not in ids


# --- chat template ------------------------------------------------------------------------------


def test_chat_template_is_the_plugins(tok, tiny_model_dir: Path) -> None:
    assert minicpm_plugin.CHAT_TEMPLATE, "format core not wired in"
    assert tok.chat_template == minicpm_plugin.CHAT_TEMPLATE
    assert (tiny_model_dir / "chat_template.jinja").read_text(
        encoding="utf-8"
    ) == minicpm_plugin.CHAT_TEMPLATE


@pytest.mark.parametrize("case", sorted(GOLDEN))
def test_apply_chat_template_equals_render_chat(tok, case: str) -> None:
    c = GOLDEN[case]
    kwargs = {"tools": c["tools"]} if c["tools"] else {}
    text = tok.apply_chat_template(
        c["messages"], tokenize=False, add_generation_prompt=c["add_generation_prompt"], **kwargs
    )
    assert text == minicpm_plugin.render_chat(
        c["messages"], tools=c["tools"], add_generation_prompt=c["add_generation_prompt"]
    )
    assert text == c["text"]


def test_apply_chat_template_tokenize_and_generation_prompt(tok) -> None:
    messages = [{"role": "user", "content": "你好, what's the weather?"}]
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text.endswith("<|im_start|>assistant\n")
    enc = tok.apply_chat_template(messages, tokenize=True, add_generation_prompt=True)
    # apply_chat_template(tokenize=True) does not run the BOS post-processor (the template writes
    # no <s>): callers that want MiniCPM3's training layout tokenize the rendered text instead.
    assert enc["input_ids"] == tok(text, add_special_tokens=False).input_ids
    assert enc["input_ids"][0] == IM_START
    assert tok(text).input_ids == [1] + enc["input_ids"]
    tail = tok("<|im_start|>assistant\n", add_special_tokens=False).input_ids
    assert enc["input_ids"][-len(tail) :] == tail


# --- model: forward, loss, backward, cache, generate --------------------------------------------


def test_forward_loss_backward_and_a_few_steps(model, tok) -> None:
    text = GOLDEN["tools_single_call_with_thought"]["text"]
    ids = torch.tensor([tok(text).input_ids])
    model.train()
    out = model(input_ids=ids, labels=ids)
    assert out.logits.shape == (1, ids.shape[1], len(tok))
    assert math.isfinite(out.loss.item()) and abs(out.loss.item() - math.log(len(tok))) < 1.5
    out.loss.backward()
    attn = model.model.layers[0].self_attn
    for proj in (attn.q_a_proj, attn.q_b_proj, attn.kv_a_proj_with_mqa, attn.kv_b_proj, attn.o_proj):
        assert proj.weight.grad is not None and proj.weight.grad.abs().sum() > 0
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = out.loss.item()
    for _ in range(10):
        opt.step()
        opt.zero_grad()
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
    assert loss.item() < first - 0.5


def test_kv_cache_matches_full_forward_and_generate(model, tok) -> None:
    model.eval()
    prompt = tok.apply_chat_template(
        [{"role": "user", "content": "北京天气"}], tokenize=False, add_generation_prompt=True
    )
    ids = torch.tensor([tok(prompt).input_ids])
    with torch.no_grad():
        full = model(input_ids=ids).logits
        first = model(input_ids=ids[:, :-1], use_cache=True)
        assert isinstance(first.past_key_values, DynamicCache)
        step = model(input_ids=ids[:, -1:], past_key_values=first.past_key_values, use_cache=True).logits
        assert torch.allclose(step[:, -1], full[:, -1], atol=1e-5)
        cached = model.generate(ids, max_new_tokens=6, do_sample=False, min_new_tokens=6)
        uncached = model.generate(ids, max_new_tokens=6, do_sample=False, min_new_tokens=6, use_cache=False)
    assert cached.shape == (1, ids.shape[1] + 6)
    assert torch.equal(cached, uncached)
    assert isinstance(tok.decode(cached[0, ids.shape[1] :]), str)
    assert model.generation_config.eos_token_id == [2, IM_END]


# --- determinism and CLI ------------------------------------------------------------------------


def test_build_is_deterministic(tiny_model_dir: Path, tmp_path: Path) -> None:
    again = build_tiny_model(tmp_path / "again", seed=0)
    assert _files(again) == _files(tiny_model_dir)
    other = _files(build_tiny_model(tmp_path / "seed1", seed=1))
    base = _files(tiny_model_dir)
    assert other["model.safetensors"] != base["model.safetensors"]
    assert {k: v for k, v in other.items() if k != "model.safetensors"} == {
        k: v for k, v in base.items() if k != "model.safetensors"
    }


def test_build_refuses_non_empty_dir(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError):
        build_tiny_model(tmp_path)
    assert build_tiny_model(tmp_path, overwrite=True) == tmp_path
    assert (tmp_path / "keep.txt").read_text() == "x"


def test_cli_make_tiny_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "tiny"
    assert cli_main(["make-tiny-model", str(out), "--seed", "3"]) == 0
    printed = capsys.readouterr().out
    assert str(out) in printed and "parameters" in printed and "model.safetensors" in printed
    assert AutoModelForCausalLM.from_pretrained(out).num_parameters() > 0
    assert cli_main(["make-tiny-model", str(out)]) == 1
    err = capsys.readouterr().err
    assert "not empty" in err and "--force" in err and "Traceback" not in err
    assert cli_main(["make-tiny-model", str(out), "--force"]) == 0
    (tmp_path / "file").write_text("")
    assert cli_main(["make-tiny-model", str(tmp_path / "file")]) == 1
