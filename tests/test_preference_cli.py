"""`check`, `render` and `eval-tools` on preference files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from minicpm_plugin import render_chat
from minicpm_plugin.cli import main

FIXTURES = Path(__file__).parent / "fixtures" / "preference"
SFT = Path(__file__).resolve().parents[1] / "examples" / "data" / "tool_calls.jsonl"


def test_check_counts_pairs_and_deliberate_mistakes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(FIXTURES / "trl.jsonl"), str(FIXTURES / "swift.jsonl")]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out == [f"checked 2 preference files ({FIXTURES / 'trl.jsonl'}: trl; {FIXTURES / 'swift.jsonl'}: swift_rlhf): 7 pairs, "
                   "0 with errors, 0 warnings; 4 with tools, 4 chosen / 4 rejected calls, 4 thoughts; rejected answers wrong "
                   "on purpose: 2 call an undeclared function, 0 pass undeclared or miss required arguments, 0 answer without "
                   "the call chosen makes, 2 call where chosen does not; token counts need --tokenizer DIR"]


def test_check_reports_bad_pairs_with_locations(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.jsonl"
    rows = [{"prompt": "2+2?", "chosen": "4", "rejected": "5"}, {"prompt": "2+2?", "chosen": "4", "rejected": "4"},
            {"prompt": "2+2?", "chosen": "<|im_start|>4", "rejected": "5"}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n{not json\n")
    assert main(["check", str(path)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[:3] == [
        f"{path}:2: rejected: renders to the same text as chosen, so the pair teaches nothing; fix or remove the pair "
        "[identical-pair]",
        f"{path}:3: chosen.content: contains <|im_start|>, which would be read as part of the chat format, not as text; "
        "remove it [special-token]",
        f"{path}:4: invalid JSON: Expecting property name enclosed in double quotes (column 2); each line of a JSONL file "
        "must hold one whole JSON object [invalid-json]"]
    assert "4 pairs, 3 with errors" in out[-1]


def test_check_with_a_tokenizer_counts_tokens_and_overlong_pairs(tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(FIXTURES / "openai_dpo.jsonl"), "--tokenizer", str(tiny_model_dir), "--sequence-len", "500"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 3 and all("over --sequence-len 500; training leaves this pair out [over-length]" in line for line in out[:2])
    assert out[0].startswith(f"{FIXTURES / 'openai_dpo.jsonl'}:1: warning: ")
    assert "2 pairs over 500 tokens" in out[-1] and "longest pair" in out[-1]
    assert main(["check", str(FIXTURES / "openai_dpo.jsonl"), "--tokenizer", str(tiny_model_dir), "--sequence-len", "500",
                 "--strict"]) == 1


def test_check_mixes_sft_and_preference_files_and_forced_formats(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(FIXTURES / "text_pairs.jsonl"), str(SFT)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("checked 1 preference file") and out[1].startswith(f"checked 1 file ({SFT}: openai)")
    assert main(["check", str(SFT), "--format", "trl"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"{SFT}:1: this record does not look like trl; its keys: messages, tools [wrong-format]")


def test_render_shows_the_prompt_and_both_answers_marked(tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", str(FIXTURES / "swift.jsonl"), "--index", "1", "--tokenizer", str(tiny_model_dir)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"# {FIXTURES / 'swift.jsonl'}:2 (swift_rlhf): preference pair, 3 prompt messages, 2 tools; chosen: 0 "
                          "calls; rejected: 1 call; trained text is between [[ and ]]\n## prompt")
    prompt_text = out.split("## prompt (context; the tokenizer adds <s> before it)\n", 1)[1].split("\n## chosen\n", 1)[0]
    assert "[[" not in prompt_text and prompt_text.endswith("<|im_start|>assistant\n")
    assert "\n## chosen\n[[1.61 USD is about 1.48 EUR.<|im_end|>]]\n" in out
    assert ('\n## rejected\n[[<|tool_call_start|>\n```python\nconvert_currency(amount=1.6,from="USD",to=null)\n```\n'
            "<|tool_call_end|>\n<|im_end|>]]\n") in out
    assert "(one leading <s>)" in out and "on a token boundary" in out
    assert main(["render", str(FIXTURES / "trl.jsonl")]) == 0
    assert "(calls an undeclared function: legal in a rejected answer)" in capsys.readouterr().out


def test_render_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", str(FIXTURES / "trl.jsonl"), "--index", "9"]) == 1
    assert "has 4 records; --index must be 0..3" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": [], "chosen": ["a"], "rejected": ["b"]}) + "\n")
    assert main(["render", str(bad)]) == 1
    assert capsys.readouterr().out == f"{bad}:1: prompt: is empty: a pair needs the conversation its answers reply to [bad-preference]\n"
    deep = tmp_path / "deep.jsonl"
    deep.write_text('{"prompt": ' + "[" * 100_000 + "]" * 100_000 + ', "chosen": "a", "rejected": "b"}\n')
    assert main(["render", str(deep), "--format", "trl"]) == 1
    assert "nested more than 100 levels deep" in capsys.readouterr().out


def test_eval_tools_scores_chosen_against_rejected(tiny_model_dir: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "report.json"
    assert main(["eval-tools", "--model", str(tiny_model_dir), "--data", str(FIXTURES / "text_pairs.jsonl"), "--json", str(out),
                 "--no-progress"]) == 0
    assert capsys.readouterr().out.startswith("preference pairs: 3\n  chosen preferred")
    report = json.loads(out.read_text())
    assert report["pairs"] == 3 and report["boundary_failures"] == 0
    # The score of pair 0 is the model's log-probability of the chosen tokens after the prompt, summed.
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    prompt = render_chat([{"role": "user", "content": "What is 2 + 2?"}], add_generation_prompt=True)
    full = render_chat([{"role": "user", "content": "What is 2 + 2?"},
                        {"role": "assistant", "content": "4", "thought": "Simple arithmetic."}])[:-1]
    p_ids, ids = tokenizer(prompt)["input_ids"], tokenizer(full)["input_ids"]
    with torch.no_grad():
        logps = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0].float(), -1)
    expected = sum(float(logps[i - 1, ids[i]]) for i in range(len(p_ids), len(ids)))
    assert report["samples"][0]["chosen_logp"] == pytest.approx(expected, abs=1e-3)
    assert report["samples"][0]["chosen_tokens"] == len(ids) - len(p_ids)
