"""The prompt strategy: exact labels from spans, options, and overlong rows counted."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from axolotl_runs import REPO
from helpers import load_json

from minicpm_plugin import render_chat
from minicpm_plugin.formats.prepare import load_conversations
from minicpm_plugin.integration.length_report import LengthReport
from minicpm_plugin.strategy import load
from minicpm_plugin.tokenize import IGNORE_INDEX

GOLDEN = load_json("minicpm3_template_cases.json")


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def make_cfg(tmp_path: Path, **keys: Any) -> Any:
    from axolotl.utils.dict import DictDefault

    return DictDefault({"sequence_len": 4096, "dataset_prepared_path": str(tmp_path), "datasets": [], **keys})


def rows(*conversations: dict) -> dict[str, list]:
    return {
        "conversation": [json.dumps(c) for c in conversations],
        "source": [f"data.jsonl:{i + 1}" for i in range(len(conversations))],
    }


def tokenize(strategy: Any, batch: dict[str, list]) -> dict[str, list[list[int]]]:
    """The strategy's output for a batch, with each row's numpy array as a list."""
    return {k: [row.tolist() for row in v] for k, v in strategy.tokenize_prompt(batch).items()}


def trained_pieces(tokenizer: Any, ids: list[int], labels: list[int]) -> list[str]:
    pieces, cur = [], []
    for tid, lab in zip(ids, labels, strict=True):
        if lab == IGNORE_INDEX:
            if cur:
                pieces.append(tokenizer.decode(cur))
            cur = []
        else:
            assert lab == tid
            cur.append(tid)
    if cur:
        pieces.append(tokenizer.decode(cur))
    return pieces


def conv(name: str) -> dict:
    return {"messages": GOLDEN[name]["messages"], "tools": GOLDEN[name]["tools"]}


def test_labels_are_exactly_the_assistant_outputs(tokenizer: Any, tmp_path: Path) -> None:
    out = tokenize(load(tokenizer, make_cfg(tmp_path)), rows(conv("tools_nested_types_and_literals")))
    ids, labels = out["input_ids"][0], out["labels"][0]
    assert ids[0] == tokenizer.bos_token_id and ids.count(tokenizer.bos_token_id) == 1
    assert trained_pieces(tokenizer, ids, labels) == [
        '<|thought_start|>\nNeed search_flights first.\n<|thought_end|>\n<|tool_call_start|>\n```python\n'
        'search_flights(origin="PEK",destination="SHA",date="2024-10-01",passengers={"adults": 2, "children": 0},'
        'cabins=["economy", "business"],flexible=true,max_price=null)\n```\n<|tool_call_end|>\nSearching now.<|im_end|>',
        '<|tool_call_start|>\n```python\nbook_trip(legs=[{"from_city": "PEK", "to_city": "SHA"}])\n```\n'
        "<|tool_call_end|>\n<|im_end|>",
        "Booked MU5101 for 1200.5.<|im_end|>",
    ]
    assert out["attention_mask"][0] == [1] * len(ids)


def test_options_thought_last_turn_and_per_message_train(tokenizer: Any, tmp_path: Path) -> None:
    c = conv("tools_parallel_calls_no_thought")
    no_thought = tokenize(load(tokenizer, make_cfg(tmp_path, minicpm3_train_thought=False)), rows(c))
    pieces = trained_pieces(tokenizer, no_thought["input_ids"][0], no_thought["labels"][0])
    assert pieces[-1] == "Paris is sunny, Rome rainy, it is 12:00 UTC.<|im_end|>"
    assert "<|thought_start|>\nAll results are in." in tokenizer.decode(no_thought["input_ids"][0])

    last = tokenize(load(tokenizer, make_cfg(tmp_path, minicpm3_train_last_turn_only=True)), rows(c))
    assert trained_pieces(tokenizer, last["input_ids"][0], last["labels"][0]) == [
        "<|thought_start|>\nAll results are in.\n<|thought_end|>\nParis is sunny, Rome rainy, it is 12:00 UTC.<|im_end|>"
    ]

    c2 = json.loads(json.dumps(conv("plain_system_multi_turn")))
    c2["messages"][2]["train"] = False
    out = tokenize(load(tokenizer, make_cfg(tmp_path)), rows(c2))
    assert trained_pieces(tokenizer, out["input_ids"][0], out["labels"][0]) == ["6<|im_end|>"]


def test_values_reach_the_tokens_exactly(tokenizer: Any, tmp_path: Path) -> None:
    c = {"messages": [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": {
            "name": "f", "arguments": '{"price": 1.61, "cap": null, "deep": {"x": [true, 0.1]}}'}}]},
    ], "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}]}
    out = tokenize(load(tokenizer, make_cfg(tmp_path)), rows(c))
    pieces = trained_pieces(tokenizer, out["input_ids"][0], out["labels"][0])
    assert 'f(price=1.61,cap=null,deep={"x": [true, 0.1]})' in pieces[0]


def test_overlong_rows_are_dropped_and_counted(tokenizer: Any, tmp_path: Path) -> None:
    long = conv("plain_system_multi_turn")
    cfg = make_cfg(tmp_path, sequence_len=30)
    report = LengthReport.for_config(cfg)
    report.reset()
    out = tokenize(load(tokenizer, cfg), rows(long, conv("generation_prompt") | {"messages": [
        {"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}))
    assert len(out["input_ids"]) == 1  # the long one is gone, the short one kept
    summary = report.summary()
    assert (summary.dropped, summary.truncated) == (1, 0)
    assert summary.tokens_lost > 30 and summary.examples == ["data.jsonl:1"]


def test_truncate_turns_cuts_at_a_turn_boundary(tokenizer: Any, tmp_path: Path) -> None:
    c = conv("plain_system_multi_turn")
    full = tokenize(load(tokenizer, make_cfg(tmp_path)), rows(c))["input_ids"][0]
    first_turn_end = tokenizer.decode(full).index("<|im_start|>user\nand 3+3?")
    limit = len(tokenizer(tokenizer.decode(full)[:first_turn_end])["input_ids"]) + 2
    cfg = make_cfg(tmp_path, sequence_len=limit, minicpm3_overlong="truncate_turns")
    report = LengthReport.for_config(cfg)
    report.reset()
    out = tokenize(load(tokenizer, cfg), rows(c))
    ids, labels = out["input_ids"][0], out["labels"][0]
    assert len(ids) <= limit
    assert tokenizer.decode(ids).endswith("<|im_start|>assistant\n4<|im_end|>\n")
    assert trained_pieces(tokenizer, ids, labels) == ["4<|im_end|>"]
    summary = report.summary()
    assert (summary.truncated, summary.turns_cut) == (1, 1)


def test_rows_not_prepared_by_the_plugin_are_converted(tokenizer: Any, tmp_path: Path) -> None:
    raw = json.loads((REPO / "examples/data/tool_calls.jsonl").read_text().splitlines()[0])
    batch = {k: [v] for k, v in raw.items()}
    out = tokenize(load(tokenizer, make_cfg(tmp_path)), batch)
    prepared = tokenize(load(tokenizer, make_cfg(tmp_path)), rows(load_conversations(REPO / "examples/data/tool_calls.jsonl")[0]))
    assert out["labels"] == prepared["labels"]


def test_plain_chat_labels_equal_axolotls_builtin_strategy(tokenizer: Any, tmp_path: Path) -> None:
    """On plain chats (where axolotl's built-in chat_template strategy is right) labels agree,
    except that ours starts with <s> (the built-in path leaves it out)."""
    from axolotl.prompt_strategies.chat_template import load as builtin_load
    from axolotl.utils.dict import DictDefault

    from minicpm_plugin import CHAT_TEMPLATE

    chats = load_conversations(REPO / "examples/data/chat_seed.json")
    cfg = DictDefault({"sequence_len": 4096, "chat_template": "jinja", "chat_template_jinja": CHAT_TEMPLATE,
                       "train_on_inputs": False})
    ds_cfg = {"type": "chat_template", "chat_template": "jinja", "chat_template_jinja": CHAT_TEMPLATE,
              "field_messages": "messages", "roles_to_train": ["assistant"], "train_on_eos": "turn"}
    builtin = builtin_load(tokenizer, cfg, ds_cfg)
    ours = tokenize(load(tokenizer, make_cfg(tmp_path)), rows(*chats))
    for i, chat in enumerate(chats):
        theirs = builtin.tokenize_prompt({"messages": chat["messages"]})
        assert ours["input_ids"][i][0] == tokenizer.bos_token_id
        assert ours["input_ids"][i][1:] == theirs["input_ids"], i
        assert ours["labels"][i][1:] == theirs["labels"], i
    assert len(chats) == 40


# ---- rows the plugin prepared: text and label spans stored, only tokenized and labelled here --------

OPTIONS = [
    {},
    {"minicpm3_train_last_turn_only": True},
    {"minicpm3_train_thought": False},
    {"minicpm3_literal_style": "python"},
    {"sequence_len": 700},
    {"sequence_len": 700, "minicpm3_overlong": "truncate_turns", "minicpm3_train_last_turn_only": True},
    {"sequence_len": 1500, "minicpm3_overlong": "truncate_turns", "minicpm3_train_thought": False},
]


def prepared_batch(tmp_path: Path, conversations: list[dict], literal_style: str = "json") -> dict[str, list]:
    from minicpm_plugin.formats.prepare import prepare_dataset_file

    src = tmp_path / "data.jsonl"
    src.write_text("".join(json.dumps(c, ensure_ascii=False) + "\n" for c in conversations), encoding="utf-8")
    prepared = prepare_dataset_file(src, out_dir=tmp_path / "prepared", literal_style=literal_style)
    lines = [json.loads(line) for line in Path(prepared.path).read_text(encoding="utf-8").splitlines()]
    return {k: [r[k] for r in lines] for k in lines[0]}


def test_prepared_rows_give_exactly_the_rows_of_the_rendering_path(tokenizer: Any, tmp_path: Path) -> None:
    """Stored text + spans -> the same input_ids and labels as rendering the conversation here, for every
    option (label options, literal style, overlong rows dropped or cut at a turn)."""
    convs = [conv(name) for name in GOLDEN if any(m["role"] == "assistant" for m in GOLDEN[name]["messages"])]
    convs += [json.loads(line) for line in (REPO / "examples/data/tool_calls.jsonl").read_text().splitlines()[:20]]
    untrained = json.loads(json.dumps(conv("plain_system_multi_turn")))
    untrained["messages"][2]["train"] = False
    convs.append(untrained)
    for keys in OPTIONS:
        cfg = make_cfg(tmp_path, **keys)
        report = LengthReport.for_config(cfg)
        report.reset()
        batch = prepared_batch(tmp_path, convs, keys.get("minicpm3_literal_style", "json"))
        assert set(batch) == {"conversation", "source", "text", "literal_style", "spans"}
        fast = tokenize(load(tokenizer, cfg), batch)
        first = report.summary()
        report.reset()
        rendering = tokenize(load(tokenizer, cfg), {k: batch[k] for k in ("conversation", "source")})
        assert fast == rendering, keys
        assert report.summary() == first, keys
        assert len(fast["input_ids"]) == len(convs) - first.dropped > 0
    # the option cases really differ from each other (each one was exercised)
    outs = {str(k): tokenize(load(tokenizer, make_cfg(tmp_path, **k)), prepared_batch(
        tmp_path, convs, k.get("minicpm3_literal_style", "json")))["labels"] for k in OPTIONS[:4]}
    assert len({json.dumps(v) for v in outs.values()}) == 4


def test_a_row_prepared_in_another_literal_style_is_rendered_in_the_runs(tokenizer: Any, tmp_path: Path) -> None:
    c = conv("tools_nested_types_and_literals")
    as_json = prepared_batch(tmp_path, [c], "json")
    out = tokenize(load(tokenizer, make_cfg(tmp_path, minicpm3_literal_style="python")), as_json)
    text = tokenizer.decode(out["input_ids"][0])
    assert "flexible=True,max_price=None" in text and "flexible=true" not in text
    assert out == tokenize(load(tokenizer, make_cfg(tmp_path, minicpm3_literal_style="python")),
                           prepared_batch(tmp_path, [c], "python"))


def test_arrow_columns_are_those_of_python_lists(tokenizer: Any, tmp_path: Path) -> None:
    """The int64 arrays become the same Arrow columns `datasets` makes from lists of ints."""
    import numpy as np
    from datasets import Dataset

    batch = prepared_batch(tmp_path, [conv("tools_parallel_calls_no_thought"), conv("plain_system_multi_turn")])
    strategy = load(tokenizer, make_cfg(tmp_path))
    out = strategy.tokenize_prompt(batch)
    assert all(isinstance(a, np.ndarray) and a.dtype == np.int64 for v in out.values() for a in v)
    mapped = Dataset.from_dict(batch).map(strategy.tokenize_prompt, batched=True, remove_columns=list(batch))
    from_lists = Dataset.from_dict({k: [a.tolist() for a in v] for k, v in out.items()})
    assert mapped.features == from_lists.features
    assert {k: str(v) for k, v in mapped.features.items()} == {
        "input_ids": "List(Value('int32'))", "attention_mask": "List(Value('int8'))", "labels": "List(Value('int64'))"}
    assert mapped.to_dict() == from_lists.to_dict()


def test_encode_equals_the_tokenizer_call(tiny_model_dir: Path) -> None:
    """The strategy's one tokenizer call per batch gives what `tokenizer(texts, return_offsets_mapping=True)`
    gives, also when the tokenizer carries settings that make it fall back to that call."""
    from transformers import AutoTokenizer

    from minicpm_plugin.integration.strategy import _plain_backend, encode

    texts = [render_chat(conv(name)["messages"], conv(name)["tools"]) for name in list(GOLDEN)[:12]] + ["", " x  \n\t"]

    def reference(tok: Any) -> tuple[list, list]:
        enc = tok(texts, return_offsets_mapping=True, add_special_tokens=True)
        return enc["input_ids"], [[tuple(o) for o in offs] for offs in enc["offset_mapping"]]

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    assert _plain_backend(tok)
    ids, offsets = encode(tok, texts)
    assert (ids, [[tuple(o) for o in offs] for offs in offsets]) == reference(tok)
    assert all(i[0] == tok.bos_token_id for i in ids)
    truncating = AutoTokenizer.from_pretrained(tiny_model_dir)
    truncating.backend_tokenizer.enable_truncation(max_length=5)  # e.g. set in a tokenizer.json: the call resets it
    ids, offsets = encode(truncating, texts)
    assert (ids, [[tuple(o) for o in offs] for offs in offsets]) == reference(tok) and max(map(len, ids)) > 5
    splitting = AutoTokenizer.from_pretrained(tiny_model_dir, split_special_tokens=True)
    ids, _ = encode(splitting, texts)
    assert ids == splitting(texts)["input_ids"] != reference(tok)[0]
