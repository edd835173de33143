"""Serving parity after `axolotl merge_lora`: the merged model must render prompts exactly as training
did (our chat template, the golden cases) and compute what base + adapter computed.

The base here is a copy of the tiny MiniCPM3 whose tokenizer carries another chat template (plain
ChatML, as many base checkpoints do), so a merged tokenizer that merely inherits the base's files
is caught. axolotl 0.19.0's default (memory-efficient) merge copies the tokenizer files from the
base model directory, not the trained tokenizer; the plugin then writes the trained tokenizer into
`merged/` (minicpm_plugin/merge.py). `merge_method: legacy` saves the trained tokenizer itself.
"""

from __future__ import annotations

import ast
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from axolotl_runs import failure, run_axolotl, tiny_config
from helpers import load_json

from minicpm_plugin import CHAT_TEMPLATE, parse_assistant, render_chat
from minicpm_plugin.chat import render_assistant_turn
from minicpm_plugin.cli import main

REPO = Path(__file__).resolve().parents[1]
EVAL_DATA = REPO / "examples/data/tool_calls_eval.jsonl"
PLAIN_CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


ARGUMENTS = {"text": "thanks", "formal": False, "urgent": True, "glossary": None, "opts": {"strict": True, "n": [1, None]}}


@pytest.mark.parametrize("style", ["json", "python"])
def test_what_an_ast_based_parser_sees_in_each_literal_style(style: str) -> None:
    """vLLM's `minicpm` tool parser reads the call lines with Python's ast and turns a bare name into
    its text. JSON's true/false/null are bare names to ast (so they reach a client as strings);
    Python literals are constants. Our parse_assistant reads both styles exactly."""
    text = render_assistant_turn({"tool_calls": [{"function": {"name": "translate", "arguments": ARGUMENTS}}]},
                                 literal_style=style)
    line = text.split("```python\n", 1)[1].split("\n```", 1)[0]
    call = ast.parse(line).body[0].value
    assert isinstance(call, ast.Call) and [k.arg for k in call.keywords] == list(ARGUMENTS)
    names = {n.id for k in call.keywords for n in ast.walk(k.value) if isinstance(n, ast.Name)}
    if style == "json":
        assert names == {"true", "false", "null"}
    else:
        assert names == set()
        assert {k.arg: ast.literal_eval(k.value) for k in call.keywords} == ARGUMENTS
    assert parse_assistant(text)["tool_calls"] == [{"name": "translate", "arguments": ARGUMENTS}]


@pytest.fixture(scope="module")
def trained(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A short LoRA run (json literals) on a base whose tokenizer has a plain ChatML template."""
    tmp = tmp_path_factory.mktemp("serving")
    base = tmp / "base"
    shutil.copytree(tiny_model_dir, base)
    (base / "chat_template.jinja").write_text(PLAIN_CHATML, encoding="utf-8")
    cfg = tiny_config(base, tmp, max_steps=2, save_steps=2)
    result = run_axolotl(cfg, tmp)
    assert result.returncode == 0, failure(result)
    return {"cfg": cfg, "tmp": tmp, "base": base, "out": tmp / "out"}


def merge(trained: dict[str, Any], method: str) -> Path:
    tmp = trained["tmp"]
    out = tmp / f"merge-{method}"
    merged = out / "merged"
    if not merged.is_dir():
        cfg = dict(trained["cfg"], lora_model_dir=str(trained["out"]), output_dir=str(out), merge_method=method)
        result = run_axolotl(cfg, tmp, command="merge_lora", launcher="python")
        assert result.returncode == 0, failure(result)
    assert (merged / "model.safetensors").is_file()
    return merged


def check_template(directory: Path) -> None:
    """The tokenizer in `directory` carries our template and renders every golden case exactly."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(directory)
    assert tokenizer.chat_template == CHAT_TEMPLATE
    # The file to give vLLM as --chat-template.
    assert (directory / "chat_template.jinja").read_text(encoding="utf-8") == CHAT_TEMPLATE
    for name, case in load_json("minicpm3_template_cases.json").items():
        text = tokenizer.apply_chat_template(case["messages"], tools=case["tools"], tokenize=False,
                                             add_generation_prompt=case["add_generation_prompt"])
        assert text == render_chat(case["messages"], case["tools"], case["add_generation_prompt"]), name
        assert text == case["text"], name


@pytest.mark.slow
def test_training_output_carries_our_template(trained: dict[str, Any]) -> None:
    from transformers import AutoTokenizer

    assert AutoTokenizer.from_pretrained(trained["base"]).chat_template == PLAIN_CHATML
    check_template(trained["out"])


@pytest.mark.slow
@pytest.mark.parametrize("method", ["memory_efficient", "legacy"])
def test_merged_model_renders_what_training_saw(trained: dict[str, Any], method: str) -> None:
    check_template(merge(trained, method))


@pytest.mark.slow
@pytest.mark.parametrize("method", ["memory_efficient", "legacy"])
def test_merged_weights_compute_what_base_plus_adapter_computed(trained: dict[str, Any], method: str,
                                                               tmp_path: Path) -> None:
    import torch
    from transformers import AutoTokenizer

    from minicpm_plugin.cli.eval_tools import load_model

    merged = merge(trained, method)
    tokenizer = AutoTokenizer.from_pretrained(trained["out"])
    adapted, _ = load_model(str(trained["base"]), str(trained["out"]), None, "cpu", "float32")
    plain, _ = load_model(str(merged), None, str(trained["out"]), "cpu", "float32")
    lora_b = [p for n, p in adapted.named_parameters() if "lora_B" in n]
    assert lora_b and any(p.abs().max() > 0 for p in lora_b), "the adapter changed nothing: the check would be empty"
    case = load_json("minicpm3_template_cases.json")
    messages = next(c for c in case.values() if c["tools"])
    ids = tokenizer(render_chat(messages["messages"], messages["tools"], True), return_tensors="pt")["input_ids"]
    with torch.no_grad():
        a, b = adapted(input_ids=ids).logits, plain(input_ids=ids).logits
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    # And eval-tools reports the same generations for the merged model and for base + adapter.
    reports = []
    for name, extra in (("adapter", ["--model", str(trained["base"]), "--adapter", str(trained["out"])]),
                        ("merged", ["--model", str(merged), "--tokenizer", str(trained["out"])])):
        out = tmp_path / f"{name}.json"
        argv = ["eval-tools", *extra, "--data", str(EVAL_DATA), "--max-samples", "2", "--max-new-tokens", "8",
                "--json", str(out), "--no-progress"]
        assert main(argv) == 0
        reports.append(json.loads(out.read_text(encoding="utf-8")))
    assert [s["generated"] for s in reports[0]["samples"]] == [s["generated"] for s in reports[1]["samples"]]
