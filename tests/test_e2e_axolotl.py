"""End to end through the real axolotl CLI on CPU with the tiny MiniCPM3 (accelerate launch)."""

from __future__ import annotations

from pathlib import Path

import pytest
from axolotl_runs import REPO, failure, losses, run_axolotl, tiny_config
from helpers import hf_render, load_json

from minicpm_plugin import CHAT_TEMPLATE, render_chat
from minicpm_plugin.formats.prepare import load_conversations

pytestmark = pytest.mark.slow


def check_trained_run(out: Path, tiny_model_dir: Path) -> list[float]:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    curve = losses(out)
    assert len(curve) >= 10
    first, last = sum(curve[:3]) / 3, sum(curve[-3:]) / 3
    assert last < first - 0.3, f"loss did not go down: {curve}"
    # The adapter was saved and reloads with PEFT.
    assert (out / "adapter_model.safetensors").is_file()
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), out)
    assert any("lora_A" in name for name, _ in model.named_parameters())
    # The saved tokenizer carries our template and renders exactly what training saw.
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert tokenizer.chat_template == CHAT_TEMPLATE
    for case in load_json("minicpm3_template_cases.json").values():
        args = (case["messages"], case["tools"], case["add_generation_prompt"])
        assert tokenizer.apply_chat_template(case["messages"], tools=case["tools"], tokenize=False,
                                             add_generation_prompt=case["add_generation_prompt"]) == render_chat(*args)
        assert hf_render(tokenizer.chat_template, *args) == case["text"]
    return curve


def test_lora_trains_with_packing(tiny_model_dir: Path, tmp_path: Path) -> None:
    cfg = tiny_config(tiny_model_dir, tmp_path, sample_packing=True, micro_batch_size=1, sequence_len=4096,
                      gradient_checkpointing=True)
    result = run_axolotl(cfg, tmp_path)
    assert result.returncode == 0, failure(result)
    log = result.stdout + result.stderr
    assert "packed samples attend only within themselves" in log
    assert "no GPU found: running on CPU" in log
    assert "60 prepared, 0 skipped" in log
    curve = check_trained_run(tmp_path / "out", tiny_model_dir)
    print("lora+packing losses:", curve)


def test_qlora_trains(tiny_model_dir: Path, tmp_path: Path) -> None:
    cfg = tiny_config(tiny_model_dir, tmp_path, adapter="qlora", load_in_4bit=True, bnb_4bit_use_double_quant=True)
    result = run_axolotl(cfg, tmp_path)
    assert result.returncode == 0, failure(result)
    curve = check_trained_run(tmp_path / "out", tiny_model_dir)
    print("qlora losses:", curve)


def test_preprocessed_labels_are_exactly_the_assistant_spans(tiny_model_dir: Path, tmp_path: Path) -> None:
    """Through axolotl's own preprocess pipeline: decode the trained tokens of known samples."""
    from datasets import load_from_disk
    from transformers import AutoTokenizer

    cfg = tiny_config(tiny_model_dir, tmp_path)
    result = run_axolotl(cfg, tmp_path, command="preprocess", launcher="python")
    assert result.returncode == 0, failure(result)
    prepared = [p for p in (tmp_path / "prepared").iterdir() if (p / "dataset_info.json").exists() or list(p.glob("*.arrow"))]
    dataset = load_from_disk(str(prepared[0]))
    conversations = load_conversations(REPO / "examples/data/tool_calls.jsonl")
    assert len(dataset) == len(conversations) == 60
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    by_text = {tuple(r["input_ids"]): r for r in dataset}
    checked = 0
    for conv in conversations[:20]:
        text = render_chat(conv["messages"], conv["tools"])
        ids = tokenizer(text)["input_ids"]
        sample = by_text[tuple(ids)]
        assert ids[0] == tokenizer.bos_token_id and ids.count(tokenizer.bos_token_id) == 1
        trained = [[]]
        for tid, lab in zip(sample["input_ids"], sample["labels"], strict=True):
            if lab == -100:
                if trained[-1]:
                    trained.append([])
            else:
                assert lab == tid
                trained[-1].append(tid)
        pieces = [tokenizer.decode(t) for t in trained if t]
        expected = []
        for m in conv["messages"]:
            if m["role"] == "assistant":
                full = render_chat([{"role": "user", "content": ""}, m])
                expected.append(full.split("<|im_start|>assistant\n", 1)[1][: -len("\n")])
        assert pieces == expected
        checked += 1
    assert checked == 20
