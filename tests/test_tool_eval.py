"""Tool-call scoring on hand-written model outputs, and the generation plumbing with a scripted model."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from minicpm_plugin import render_chat
from minicpm_plugin.evaluation.scoring import (
    json_equal,
    reference_calls,
    score_turn,
    summarize,
    turn_cases,
)
from minicpm_plugin.formats.prepare import load_conversations

REPO = Path(__file__).resolve().parents[1]
EVAL_DATA = REPO / "examples/data/tool_calls_eval.jsonl"

WEATHER = [{"name": "get_weather", "arguments": {"city": "Paris", "days": 3}}]
TRANSLATE = [{"name": "translate", "arguments": {"text": "thanks", "formal": True, "glossary": None}}]


def calls_text(*lines: str, thought: str | None = None) -> str:
    """An assistant turn as the model would write it (the rendered format)."""
    head = f"<|thought_start|>\n{thought}\n<|thought_end|>\n" if thought else ""
    return head + "<|tool_call_start|>\n```python\n" + "".join(f"{line}\n" for line in lines) + "```\n<|tool_call_end|>\n"


# --- json_equal ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("a", "b", "equal"), [
    (1, 1, True), (1, 1.0, True), (1.5, 1.5, True), (True, True, True), (None, None, True), ("x", "x", True),
    (True, 1, False), (1, True, False), (False, 0, False), ("1", 1, False), (None, "null", False),
    (True, "true", False), (None, 0, False), ("", None, False),
    ([1, 2], [1, 2], True), ([1, 2], [2, 1], False), ([1], (1,), True), ([True], [1], False),
    ({"a": 1, "b": [None]}, {"b": [None], "a": 1}, True), ({"a": 1}, {"a": 1, "b": 2}, False),
    ({"a": {"x": True}}, {"a": {"x": "true"}}, False), (float("nan"), float("nan"), True), ({}, [], False),
])
def test_json_equal_keeps_json_types(a: Any, b: Any, equal: bool) -> None:
    assert json_equal(a, b) is equal
    assert json_equal(b, a) is equal


# --- score_turn ------------------------------------------------------------------------------------

def test_exact_call_scores_everything_right() -> None:
    r = score_turn(WEATHER, calls_text('get_weather(city="Paris",days=3)'))
    assert r["well_formed"] and r["called"] and r["decision_correct"]
    assert r["names_correct"] and r["args_exact"]
    assert (r["args_total"], r["args_correct"], r["args_missing"], r["args_wrong"], r["args_extra"]) == (2, 2, 0, 0, 0)
    assert r["predicted"] == WEATHER and r["error"] is None


def test_python_literals_and_a_thought_are_read() -> None:
    text = calls_text("translate(text='thanks', formal=True, glossary=None)", thought="Translate it.")
    r = score_turn(TRANSLATE, text)
    assert r["args_exact"] and r["thought"] == "Translate it."


def test_json_null_and_true_are_not_strings() -> None:
    """What vLLM's minicpm parser would hand back for `true`/`null` (strings) counts as wrong."""
    r = score_turn(TRANSLATE, calls_text('translate(text="thanks",formal="true",glossary="null")'))
    assert r["well_formed"] and r["names_correct"] and not r["args_exact"]
    assert (r["args_correct"], r["args_wrong"]) == (1, 2)


@pytest.mark.parametrize(("text", "wrong"), [
    ('get_weather(city="Paris",days="3")', 1),   # string for an integer
    ('get_weather(city="Paris",days=3.5)', 1),   # another number
    ('get_weather(city="paris",days=3)', 1),     # case matters
    ('get_weather(city=["Paris"],days=3)', 1),   # list for a string
])
def test_wrong_argument_values(text: str, wrong: int) -> None:
    r = score_turn(WEATHER, calls_text(text))
    assert r["names_correct"] and not r["args_exact"]
    assert r["args_wrong"] == wrong and r["args_correct"] == 2 - wrong


def test_integer_written_as_float_is_the_same_json_number() -> None:
    assert score_turn(WEATHER, calls_text('get_weather(city="Paris",days=3.0)'))["args_exact"]


def test_extra_and_missing_arguments() -> None:
    extra = score_turn(WEATHER, calls_text('get_weather(city="Paris",days=3,unit="celsius")'))
    assert extra["names_correct"] and not extra["args_exact"]
    assert (extra["args_correct"], extra["args_extra"], extra["args_missing"]) == (2, 1, 0)
    missing = score_turn(WEATHER, calls_text('get_weather(city="Paris")'))
    assert not missing["args_exact"] and (missing["args_correct"], missing["args_missing"]) == (1, 1)


def test_wrong_function_name() -> None:
    r = score_turn(WEATHER, calls_text('get_forecast(city="Paris",days=3)'))
    assert r["well_formed"] and r["decision_correct"]
    assert not r["names_correct"] and not r["args_exact"]
    assert (r["args_correct"], r["args_missing"], r["calls_extra"]) == (0, 2, 1)


def test_parallel_calls_in_any_order_but_not_duplicated() -> None:
    expected = WEATHER + [{"name": "get_weather", "arguments": {"city": "北京", "days": 1}}]
    swapped = calls_text('get_weather(city="北京",days=1)', 'get_weather(city="Paris",days=3)')
    r = score_turn(expected, swapped)
    assert r["names_correct"] and r["args_exact"] and r["calls_exact"] == 2 and r["args_correct"] == 4
    twice = score_turn(expected, calls_text('get_weather(city="Paris",days=3)', 'get_weather(city="Paris",days=3)'))
    assert twice["names_correct"] and not twice["args_exact"] and twice["calls_exact"] == 1
    one = score_turn(expected, calls_text('get_weather(city="Paris",days=3)'))
    assert not one["names_correct"] and not one["args_exact"] and one["args_missing"] == 2


def test_answer_instead_of_call() -> None:
    r = score_turn(WEATHER, "It is sunny in Paris.")
    assert r["well_formed"] and not r["called"] and not r["decision_correct"]
    assert not r["names_correct"] and not r["args_exact"] and r["args_missing"] == 2


def test_no_call_turn_answered_or_called() -> None:
    ok = score_turn([], "Hello! How can I help?")
    assert ok["decision_correct"] and ok["wrong_call"] is False and ok["content"] == "Hello! How can I help?"
    assert "names_correct" not in ok
    bad = score_turn([], calls_text('get_weather(city="Paris")'))
    assert bad["wrong_call"] is True and not bad["decision_correct"]


@pytest.mark.parametrize("text", [
    "<|tool_call_start|>\n```python\nget_weather(city=\"Paris\",days=3)\n",                  # never closed
    "<|tool_call_start|>\n```python\nget_weather(city=\"Paris\",\n```\n<|tool_call_end|>\n",  # cut call
    "<|tool_call_start|>\n```python\nget_weather(\"Paris\")\n```\n<|tool_call_end|>\n",       # positional
    "<|tool_call_start|>\n```python\nget_weather(city=os.getcwd())\n```\n<|tool_call_end|>\n",  # expression
    "Sure: <|tool_call_start|>\n```python\nget_weather(city=\"Paris\")\n```\n",  # after text, never closed
    "<|thought_start|>\nhmm",                                                                    # thought never closed
    "<|tool_call_start|>\n```python\nget_weather(city=\"Pa\x00ris\\q)\n```\n",                  # junk
])
def test_malformed_output_is_counted_never_raised(text: str) -> None:
    r = score_turn(WEATHER, text)
    assert not r["well_formed"] and r["error"]
    assert not r["names_correct"] and not r["args_exact"] and r["args_correct"] == 0
    assert r["predicted"] == []
    no_call = score_turn([], text)
    assert not no_call["well_formed"]
    assert no_call["wrong_call"] is ("<|tool_call_start|>" in text)


def test_text_after_im_end_is_ignored() -> None:
    r = score_turn(WEATHER, calls_text('get_weather(city="Paris",days=3)') + "<|im_end|>\ngarbage(")
    assert r["args_exact"] and r["well_formed"]


# --- summarize ------------------------------------------------------------------------------------

def test_summarize_counts_and_rates() -> None:
    records = [
        score_turn(WEATHER, calls_text('get_weather(city="Paris",days=3)')),           # all right
        score_turn(TRANSLATE, calls_text('translate(text="thanks",formal=false,glossary=null)')),  # 1 wrong arg
        score_turn(WEATHER, "<|tool_call_start|>\n```python\nget_weather(city="),      # malformed
        score_turn([], "Bye."),                                                         # right
        score_turn([], calls_text('get_weather(city="Paris")')),                        # wrong call
        score_turn([], "Still going", truncated=True),                                  # right, truncated
    ]
    report = summarize(records)
    c, m = report["counts"], report["metrics"]
    assert (c["turns"], c["call_turns"], c["no_call_turns"]) == (6, 3, 3)
    assert (c["well_formed"], c["malformed"], c["truncated"]) == (5, 1, 1)
    assert (c["names_correct"], c["args_exact"], c["args_total"], c["args_correct"]) == (2, 1, 7, 4)
    assert c["wrong_calls"] == 1 and c["decision_correct"] == 5
    assert m["well_formed_rate"] == pytest.approx(5 / 6)
    assert m["decision_acc"] == pytest.approx(5 / 6)
    assert m["name_acc"] == pytest.approx(2 / 3)
    assert m["exact_args_acc"] == pytest.approx(1 / 3)
    assert m["arg_acc"] == pytest.approx(4 / 7)
    assert m["wrong_call_rate"] == pytest.approx(1 / 3)
    assert report["errors"] == {"tool-call block is not closed with <|tool_call_end|>": 1}
    json.dumps(report)  # JSON-ready


def test_format_drift_is_read_and_reported_as_lenient() -> None:
    """A model that drifts by a newline still gets its calls scored; lenient_rate shows the drift."""
    from minicpm_plugin.evaluation.scoring import dumps_report, format_table

    right = calls_text('get_weather(city="Paris",days=3)')
    records = [
        score_turn(WEATHER, right),                                                   # exact
        score_turn(WEATHER, "Sure.\n" + right),                                       # text before the block
        score_turn(WEATHER, "<|thought_start|>\nhm\n<|thought_end|>\n\n" + right),    # blank line after thought
        score_turn(WEATHER, '<|tool_call_start|>\nget_weather(city="Paris",days=3)\n<|tool_call_end|>\n'),  # no fence
        score_turn(WEATHER, "<|tool_call_start|>\n```python\nget_weather(city=\"Paris\",\n"),  # malformed
        score_turn([], "Bye."),                                                        # exact answer
    ]
    assert [r["lenient"] for r in records] == [[], ["text_before_block"], ["block_whitespace"], ["fence"], [], []]
    assert all(r["args_exact"] for r in records[:4])
    assert records[1]["content"] == "Sure."
    report = summarize(records)
    c, m = report["counts"], report["metrics"]
    assert (c["well_formed"], c["lenient"], c["malformed"]) == (5, 3, 1)
    assert m["lenient_rate"] == pytest.approx(3 / 6) and m["well_formed_rate"] == pytest.approx(5 / 6)
    assert (c["args_exact"], c["names_correct"]) == (4, 4)
    assert report["lenient"] == {"text_before_block": 1, "block_whitespace": 1, "fence": 1}
    table = format_table(report)
    assert "lenient_rate      0.500    3/6" in table
    assert "read leniently (format drift): text_before_block (1); block_whitespace (1); fence (1)" in table
    exact = summarize([records[0], records[5]])
    assert exact["metrics"]["lenient_rate"] == 0.0 and exact["lenient"] == {}
    json.loads(dumps_report(report))


def test_report_with_an_integer_longer_than_pythons_text_limit() -> None:
    from minicpm_plugin.evaluation.scoring import dumps_report

    digits = "7" * 5000
    r = score_turn([{"name": "f", "arguments": {"n": int(digits[:10])}}], calls_text(f"f(n={digits})"))
    assert r["well_formed"] and r["predicted"][0]["arguments"]["n"] % 10**10 == int(digits[:10])
    assert r["args_wrong"] == 1
    report = summarize([r])
    back = json.loads(dumps_report({**report, "samples": [r]}))
    assert back["samples"][0]["predicted"][0]["arguments"]["n"] == digits


def test_summarize_without_call_turns_has_no_call_metrics() -> None:
    from minicpm_plugin.evaluation.scoring import format_table

    report = summarize([score_turn([], "Hi")])
    assert report["metrics"]["name_acc"] is None and report["metrics"]["exact_args_acc"] is None
    assert report["metrics"]["wrong_call_rate"] == 0.0
    table = format_table(report)
    assert "name_acc" in table and " - " in table
    empty = summarize([])
    assert all(v is None for v in empty["metrics"].values())


# --- prompts --------------------------------------------------------------------------------------

def test_prompts_are_the_training_text_up_to_each_assistant_turn() -> None:
    conversations = load_conversations(EVAL_DATA)
    cases = turn_cases(conversations)
    assistant_turns = sum(1 for c in conversations for m in c["messages"] if m["role"] == "assistant")
    assert len(cases) == assistant_turns == 16
    for case in cases:
        conv = conversations[case.conversation]
        full = render_chat(conv["messages"], conv["tools"])
        assert case.prompt.endswith("<|im_start|>assistant\n")
        assert full.startswith(case.prompt)
        assert case.expected_calls == reference_calls(conv["messages"][case.message])
    # Python literal style writes the earlier calls of the conversation with Python literals.
    py = turn_cases(conversations, literal_style="python")
    later = [c for c in py if c.message > 1]
    assert any("=False" in c.prompt or "=None" in c.prompt for c in later)


def test_prompt_tokens_are_a_prefix_of_the_training_tokens(tiny_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    from minicpm_plugin.tokenize import tokenize_conversation

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    conversations = load_conversations(EVAL_DATA)
    for case in turn_cases(conversations):
        full = tokenize_conversation(tokenizer, conversations[case.conversation]).input_ids
        prompt = tokenizer(case.prompt)["input_ids"]
        assert prompt[0] == tokenizer.bos_token_id and prompt.count(tokenizer.bos_token_id) == 1
        assert full[: len(prompt)] == prompt


# --- generation plumbing with a scripted model ----------------------------------------------------

class ScriptedModel:
    """Stands in for a causal LM: answers each prompt with the text scripted for its last user message.

    Checks what `generate_turns` sends (left padding, mask, greedy config, stop tokens).
    """

    def __init__(self, tokenizer: Any, answers: dict[str, str]) -> None:
        import torch

        self.tokenizer = tokenizer
        self.answers = answers
        self.training = True
        self.device = torch.device("cpu")
        self.batches: list[int] = []
        self.grad_enabled: list[bool] = []

    def eval(self) -> ScriptedModel:
        self.training = False
        return self

    def train(self, mode: bool = True) -> ScriptedModel:
        self.training = mode
        return self

    def generate(self, input_ids: Any, attention_mask: Any, generation_config: Any) -> Any:
        import torch

        assert not self.training
        self.grad_enabled.append(torch.is_grad_enabled())
        assert generation_config.do_sample is False
        stops = generation_config.eos_token_id
        self.batches.append(len(input_ids))
        rows = []
        for ids, mask in zip(input_ids.tolist(), attention_mask.tolist(), strict=True):
            n = sum(mask)
            assert mask == [0] * (len(mask) - n) + [1] * n, "left padding expected"
            prompt = self.tokenizer.decode(ids[len(mask) - n :])
            key = next(k for k in self.answers if prompt.rstrip().endswith(f"{k}<|im_end|>\n<|im_start|>assistant"))
            answer = self.answers[key]
            new = self.tokenizer(answer, add_special_tokens=False)["input_ids"][: generation_config.max_new_tokens]
            if len(new) < generation_config.max_new_tokens:
                new = new + [stops[-1]]
            rows.append(ids + new)
        width = max(len(r) for r in rows)
        return torch.tensor([r + [generation_config.pad_token_id] * (width - len(r)) for r in rows])


def scripted_conversations() -> list[dict[str, Any]]:
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}}}}]
    def call(city: str, days: int) -> dict[str, Any]:
        return {"type": "function", "function": {"name": "get_weather", "arguments": {"city": city, "days": days}}}
    return [
        {"messages": [{"role": "user", "content": "Paris, 3 days"},
                      {"role": "assistant", "content": "", "tool_calls": [call("Paris", 3)]},
                      {"role": "tool", "content": "sunny"},
                      {"role": "assistant", "content": "Sunny."}], "tools": tools},
        {"messages": [{"role": "user", "content": "A much longer question about the weather in Rome, 2 days"},
                      {"role": "assistant", "content": "", "tool_calls": [call("Rome", 2)]}], "tools": tools},
        {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}], "tools": tools},
    ]


ANSWERS = {
    "Paris, 3 days": calls_text('get_weather(city="Paris",days=3)') + "<|im_end|>\nnot part of the turn",
    "sunny": "Sunny.",
    "A much longer question about the weather in Rome, 2 days": calls_text('get_weather(city="Rome",days="2")'),
    "Hi": "Hello! " * 40,  # never stops
}


@pytest.mark.parametrize("batch_size", [1, 2, 8])
def test_evaluate_with_a_scripted_model(tiny_model_dir: Path, batch_size: int) -> None:
    from transformers import AutoTokenizer

    from minicpm_plugin.evaluation.generate import evaluate

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = ScriptedModel(tokenizer, ANSWERS)
    report = evaluate(model, tokenizer, scripted_conversations(), max_new_tokens=40, batch_size=batch_size,
                      progress=False)
    assert model.training, "training mode is restored"
    assert model.grad_enabled and not any(model.grad_enabled)
    assert sum(model.batches) == 4 and max(model.batches) == min(batch_size, 4)
    samples = report["samples"]
    assert [(s["conversation"], s["message"]) for s in samples] == [(0, 1), (0, 3), (1, 1), (2, 1)]
    assert samples[0]["generated"] == calls_text('get_weather(city="Paris",days=3)')  # cut at the stop token
    assert samples[0]["args_exact"] and not samples[0]["truncated"]
    assert samples[1]["content"] == "Sunny." and samples[1]["decision_correct"]
    assert samples[2]["names_correct"] and not samples[2]["args_exact"] and samples[2]["args_wrong"] == 1
    assert samples[3]["truncated"] and samples[3]["well_formed"] and samples[3]["decision_correct"]
    assert report["conversations"] == 3
    assert report["metrics"]["exact_args_acc"] == 0.5 and report["metrics"]["decision_acc"] == 1.0
    assert report["counts"]["truncated"] == 1


def test_max_samples_limits_conversations(tiny_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    from minicpm_plugin.evaluation.generate import evaluate

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    report = evaluate(ScriptedModel(tokenizer, ANSWERS), tokenizer, scripted_conversations(), max_samples=1,
                      progress=False)
    assert report["conversations"] == 1 and report["counts"]["turns"] == 2
    with pytest.raises(ValueError, match="literal style"):
        evaluate(ScriptedModel(tokenizer, ANSWERS), tokenizer, scripted_conversations(), literal_style="yaml")


def test_stop_tokens_of_the_tiny_tokenizer(tiny_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    from minicpm_plugin.evaluation.generate import stop_token_ids

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    assert stop_token_ids(tokenizer) == [tokenizer.convert_tokens_to_ids("</s>"), tokenizer.convert_tokens_to_ids("<|im_end|>")]


def test_real_tiny_model_generation_never_crashes(tiny_model_dir: Path) -> None:
    """The untrained tiny model writes junk; the evaluation scores it and restores training mode."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from minicpm_plugin.evaluation.generate import evaluate
    from minicpm_plugin.model.compat import apply_transformers_fixes

    apply_transformers_fixes()
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).train()
    report = evaluate(model, tokenizer, load_conversations(EVAL_DATA), max_samples=2, max_new_tokens=6, progress=False)
    assert model.training
    assert report["counts"]["turns"] == 4 and report["metrics"]["exact_args_acc"] == 0.0
    assert all(isinstance(s["generated"], str) for s in report["samples"])
    assert not math.isnan(report["metrics"]["decision_acc"])
