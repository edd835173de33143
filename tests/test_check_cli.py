"""`minicpm-plugin check` and `minicpm-plugin render`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers import BUILTIN_FORMATS

from minicpm_plugin.cli import main

W = {"type": "function", "function": {"name": "get_weather", "description": "Weather.", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
PLAIN = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
TOOL = {"messages": [
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "content": "", "thought": "Call the tool.", "tool_calls": [
        {"type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
    {"role": "tool", "content": "sunny"},
    {"role": "assistant", "content": "Sunny.", "train": False},
    {"role": "user", "content": "Thanks"},
    {"role": "assistant", "content": "You're welcome."}], "tools": [W]}


def write(tmp_path: Path, name: str, records: list[Any]) -> str:
    path = tmp_path / name
    path.write_text("".join((json.dumps(r) if not isinstance(r, str) else r) + "\n" for r in records), encoding="utf-8")
    return str(path)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_check_clean_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = write(tmp_path, "a.jsonl", [PLAIN, TOOL])
    b = tmp_path / "b.json"
    b.write_text(json.dumps([PLAIN]), encoding="utf-8")
    code, out, _ = run(capsys, "check", a, str(b))
    assert code == 0
    assert out.splitlines() == [
        f"checked 2 files ({a}: openai; {b}: seed): 3 rows, 0 with errors, 0 warnings; 1 conversations with tools, "
        "1 calls, 1 thoughts; token counts need --tokenizer DIR"
    ]


def test_check_reports_every_problem_and_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad_call = json.loads(json.dumps(TOOL))
    bad_call["messages"][1]["tool_calls"][0]["function"]["name"] = "get_wether"
    bad_args = json.loads(json.dumps(TOOL))
    bad_args["messages"][1]["tool_calls"][0]["function"]["arguments"] = '{"city": }'
    warn = json.loads(json.dumps(TOOL))
    warn["messages"][1]["tool_calls"][0]["function"]["arguments"] = '{"city": "Paris", "days": 2}'
    a = write(tmp_path, "a.jsonl", [PLAIN, bad_call, "{oops", bad_args, warn])
    missing = str(tmp_path / "missing.jsonl")
    code, out, err = run(capsys, "check", a, missing)
    assert code == 1 and err == ""
    assert out.splitlines() == [
        f"{a}:2: messages[1].tool_calls[0].function.name: tool call to 'get_wether', which is not in tools (declared: "
        "get_weather) [unknown-function]",
        f"{a}:3: invalid JSON: Expecting property name enclosed in double quotes (column 2); each line of a JSONL file "
        "must hold one whole JSON object [invalid-json]",
        f"{a}:4: messages[1].tool_calls[0].function.arguments: arguments are not valid JSON (Expecting value); write a "
        'JSON object such as {"city": "Paris"} [bad-arguments]',
        f"{a}:5: warning: messages[1].tool_calls[0].function.arguments: argument 'days' is not a parameter of "
        "get_weather (parameters: city) [unknown-argument]",
        f"{missing}: cannot read the file: No such file or directory [unreadable-file]",
        f"checked 2 files ({a}: openai; {missing}: unreadable): 5 rows, 3 with errors, 1 warnings; 1 conversations "
        "with tools, 1 calls, 1 thoughts; token counts need --tokenizer DIR",
    ]


def test_check_warnings_fail_only_with_strict(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    warn = json.loads(json.dumps(TOOL))
    warn["messages"][1]["tool_calls"][0]["function"]["arguments"] = "{}"
    a = write(tmp_path, "w.jsonl", [warn])
    assert run(capsys, "check", a)[0] == 0
    assert run(capsys, "check", "--strict", a)[0] == 1


def test_check_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = write(tmp_path, "a.jsonl", [PLAIN])
    code, out, err = run(capsys, "check", "--format", "dolly", a)
    assert code == 1 and out == ""
    assert err.strip() == f"minicpm-plugin check: error: unknown format 'dolly'; known formats: {', '.join(BUILTIN_FORMATS)}"
    code, _, err = run(capsys, "check", "--sequence-len", "10", a)
    assert code == 1 and "--sequence-len needs --tokenizer DIR" in err
    code, _, err = run(capsys, "check", a, "--tokenizer", str(tmp_path / "nope"))
    assert code == 1 and err.startswith(f"minicpm-plugin check: error: cannot load a tokenizer from {tmp_path / 'nope'}")


def test_check_list_formats(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "check", "--list-formats")
    assert code == 0
    names = [line.split(" ")[0] for line in out.splitlines() if not line.startswith(" ")]
    assert names == BUILTIN_FORMATS


def test_check_bad_data_never_prints_a_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_bytes(b'[{"messages": [1, 2, {"role": []}]}, "x", 3, null, {"conversations": 5}, \xff]')
    proc = subprocess.run([sys.executable, "-m", "minicpm_plugin.cli", "check", str(bad)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr + proc.stdout
    assert proc.stdout.startswith(f"{bad}:1: not UTF-8 text (line 1 of the file) [not-utf8]")


def test_check_counts_tokens_with_a_tokenizer(tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from transformers import AutoTokenizer

    from minicpm_plugin.tokenize import LabelOptions, tokenize_conversation

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    convs = [{"messages": PLAIN["messages"], "tools": None}, {"messages": TOOL["messages"], "tools": [W]}]
    from minicpm_plugin.formats import canonicalize

    tcs = [tokenize_conversation(tok, canonicalize(c)[0], LabelOptions()) for c in convs]
    short, long_ = sorted(t.full_length for t in tcs)
    limit = short + 1
    a = write(tmp_path, "a.jsonl", [PLAIN, TOOL])
    code, out, _ = run(capsys, "check", a, "--tokenizer", str(tiny_model_dir), "--sequence-len", str(limit))
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == f"{a}:2: warning: {long_:,} tokens, {long_ - limit:,} over --sequence-len {limit} [over-length]"
    trained = sum(t.trained_tokens for t in tcs)
    assert lines[1].endswith(
        f"; 1 rows over {limit} tokens ({long_ - limit:,} tokens beyond the limit); {trained:,} trained tokens of "
        f"{short + long_:,} ({tcs[1].trained_tokens:,} of them in rows over the length)")
    assert tcs[1].trained_tokens > tcs[0].trained_tokens > 0


# ---------------------------------------------------------------------------------------------
# render


def test_render_marks_trained_text_when_piped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = write(tmp_path, "a.jsonl", [PLAIN, TOOL])
    code, out, _ = run(capsys, "render", a)
    assert code == 0
    assert out == (f"# {a}:1 (openai): 2 messages, 0 tools, 0 calls; trained text is between [[ and ]]\n"
                   "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n[[hello<|im_end|>]]\n"
                   "# 68 characters, 15 trained; pass --tokenizer DIR for token counts\n")
    code, out, _ = run(capsys, "render", a, "--line", "2", "--no-train-thought")
    assert code == 0
    body = out.split("<|im_start|>user\nWeather in Paris?<|im_end|>\n", 1)[1]
    assert body.startswith('<|im_start|>assistant\n<|thought_start|>\nCall the tool.\n<|thought_end|>\n[[<|tool_call_start|>\n'
                           '```python\nget_weather(city="Paris")\n```\n<|tool_call_end|>\n<|im_end|>]]\n')
    assert "<|im_start|>assistant\nSunny.<|im_end|>\n" in body  # "train": false
    assert "<|im_start|>assistant\n[[You're welcome.<|im_end|>]]\n" in body


def test_render_colour_and_literal_style(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = write(tmp_path, "a.jsonl", [TOOL])
    code, out, _ = run(capsys, "render", a, "--color", "always", "--literal-style", "python")
    assert code == 0
    assert "\x1b[32;1m" in out and "[[" not in out
    assert "get_weather(city='Paris')" in out


def test_render_selection_errors_and_bad_rows(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = write(tmp_path, "a.jsonl", [PLAIN, {"messages": [{"role": "user", "content": "hi"}]}])
    code, _, err = run(capsys, "render", a, "--index", "5")
    assert code == 1 and "has 2 records; --index must be 0..1" in err
    code, _, err = run(capsys, "render", a, "--line", "9")
    assert code == 1 and "has no record at line 9" in err
    code, out, _ = run(capsys, "render", a, "--index", "1")
    assert code == 1
    assert out.strip() == f"{a}:2: messages: no assistant turn to train; add the assistant's reply [no-assistant-turn]"


def test_render_with_tokenizer_marks_labelled_tokens(tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = write(tmp_path, "a.jsonl", [TOOL])
    code, out, _ = run(capsys, "render", a, "--tokenizer", str(tiny_model_dir))
    assert code == 0
    assert "[[<|thought_start|>\nCall the tool." in out
    assert "<|im_start|>assistant\nSunny.<|im_end|>" in out  # not trained: no marks
    assert "[[You're welcome.<|im_end|>]]" in out
    footer = out.splitlines()[-1]
    assert footer.startswith("# ") and "tokens (a leading <s>)" in footer and "trained" in footer


def test_render_file_level_problems(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = str(tmp_path / "missing.jsonl")
    code, out, _ = run(capsys, "render", missing)
    assert code == 1 and out.strip() == f"{missing}: cannot read the file: No such file or directory [unreadable-file]"
    a = write(tmp_path, "pc.jsonl", [{"prompt": "a", "completion": "b"}])
    code, out, _ = run(capsys, "render", a)
    assert code == 1 and out.startswith(f"{a}: no known format reads every record") and out.strip().endswith("[no-format]")
