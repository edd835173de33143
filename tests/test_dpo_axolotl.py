"""`rl: dpo` + `type: minicpm_plugin.dpo` through the real axolotl: how the type resolves, the plugin's
checks, the transform on axolotl's own map and length filter, and the token ids inside the trainers
axolotl builds (DPO, IPO, SimPO, ORPO) against the official render of every fixture row.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from axolotl_runs import ENV, REPO, tiny_config
from test_preference_formats import EXPECTED, FILES, FIXTURES

from minicpm_plugin import render_chat
from minicpm_plugin.integration.config_checks import ConfigError

PAIR_FILES = list(FILES)


def pair_config(tiny_model_dir: Path, tmp: Path, rl: str = "dpo", files: list[str] = PAIR_FILES, **overrides: Any) -> dict:
    cfg = tiny_config(tiny_model_dir, tmp, rl=rl, micro_batch_size=1, max_steps=1, save_steps=1, dataset_num_proc=1,
                      datasets=[{"path": str(FIXTURES / f), "type": "minicpm_plugin.dpo"} for f in files])
    if rl == "orpo":
        cfg["orpo_alpha"] = 0.1
    cfg.update(overrides)
    return cfg


def load(cfg: dict, tmp_path: Path):  # noqa: ANN201 - axolotl's DictDefault
    from axolotl.cli.config import load_cfg

    path = tmp_path / "cfg.yml"
    path.write_text(yaml.safe_dump(cfg))
    return load_cfg(str(path))


def test_type_resolves_through_axolotls_rl_loaders(tiny_model_dir: Path, tmp_path: Path) -> None:
    """axolotl.prompt_strategies.base.load imports `minicpm_plugin` and calls its attribute `dpo`."""
    import importlib.util

    from axolotl.prompt_strategies.dpo import load as load_dpo
    from axolotl.prompt_strategies.orpo import load as load_orpo

    import minicpm_plugin
    from minicpm_plugin.integration.dpo import dpo

    assert minicpm_plugin.dpo is dpo and importlib.util.find_spec("minicpm_plugin.dpo") is None  # no shadowing module
    cfg = load(pair_config(tiny_model_dir, tmp_path), tmp_path)
    for loader in (load_dpo, load_orpo):
        transform, kwargs = loader("minicpm_plugin.dpo", cfg, dataset_idx=0)
        assert callable(transform) and kwargs["remove_columns"] == "__all__" and kwargs["batched"] is True
        assert {k: str(v.dtype) for k, v in kwargs["features"].items()} == dict.fromkeys(("prompt", "chosen", "rejected"),
                                                                                           "string")


@pytest.mark.parametrize(("overrides", "message"), [
    ({"rl": None}, "datasets of type minicpm_plugin.dpo are preference pairs: set `rl: dpo`"),
    ({"rl": "kto"}, "`rl: kto` does not train on preference pairs"),
    ({"minicpm3_overlong": "truncate_turns"}, "minicpm3_overlong: 'truncate_turns' does not apply to preference pairs"),
    ({"minicpm3_train_thought": False}, "minicpm3_train_thought: False does not apply to preference pairs"),
    ({"special_tokens": {"pad_token": "</s>", "eos_token": "</s>"}}, "special_tokens.eos_token is '</s>'"),
    ({"datasets": [{"path": str(REPO / "examples/data/tool_calls.jsonl"), "type": "minicpm_plugin.strategy"}]},
     "`rl: dpo` trains preference pairs but a dataset has type minicpm_plugin.strategy"),
    ({"datasets": [{"path": str(FIXTURES / "trl.jsonl"), "type": "minicpm_plugin.dpo", "format": "swift_rlhf"}]},
     "trl.jsonl:1: this record does not look like swift_rlhf"),
    ({"datasets": [{"path": str(FIXTURES / "trll.jsonl"), "type": "minicpm_plugin.dpo"}]},
     f"dataset path '{FIXTURES / 'trll.jsonl'}': the file does not exist; did you mean '{FIXTURES / 'trl.jsonl'}'?"),
])
def test_config_mistakes_stop_before_anything_loads(tiny_model_dir: Path, tmp_path: Path, overrides: dict,
                                                    message: str) -> None:
    cfg = pair_config(tiny_model_dir, tmp_path, **overrides)
    cfg = {k: v for k, v in cfg.items() if v is not None}
    with pytest.raises(ConfigError, match=None) as exc:
        load(cfg, tmp_path)
    assert message in exc.value.message


def test_prepared_rows_are_strings_with_sources(tiny_model_dir: Path, tmp_path: Path) -> None:
    cfg = load(pair_config(tiny_model_dir, tmp_path, files=["swift.jsonl"]), tmp_path)
    path = Path(cfg.datasets[0].path)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert [set(r) for r in rows] == [{"pair", "source"}] * 3
    assert rows[0]["source"] == f"{FIXTURES / 'swift.jsonl'}:1"


def hub_rows() -> list[dict[str, Any]]:
    """Rows as a hub dataset has them: `prompt` a list of messages, one shape for every row."""
    tools = json.dumps(EXPECTED["A"][1])
    return [{"prompt": [{"role": "user", "content": f"Weather in {city}?"}],
             "chosen": [{"role": "assistant", "content": f"Let me check {city}."}],
             "rejected": [{"role": "assistant", "content": "I don't know."}], "tools": tools}
            for city in ("Paris", "Tokyo", "Lima")]


def test_transform_through_axolotls_map_and_length_filter(tiny_model_dir: Path, tmp_path: Path) -> None:
    """A list-typed `prompt` column becomes a string column (datasets would otherwise keep the list type and
    axolotl's length filter would fail inside the tokenizer); axolotl's filter then keeps every row."""
    from axolotl.utils.data.rl import _drop_long_sequences, _map_dataset
    from datasets import Dataset
    from transformers import AutoTokenizer

    from minicpm_plugin.integration.dpo import dpo

    cfg = load(pair_config(tiny_model_dir, tmp_path), tmp_path)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    dataset = Dataset.from_list(hub_rows())
    assert str(dataset.features["prompt"]).startswith("List")
    transform, kwargs = dpo(cfg, dataset_idx=0)
    kwargs["remove_columns"] = dataset.column_names  # what axolotl does with "__all__"
    mapped = _map_dataset(cfg, dataset, transform, tokenizer, **kwargs)
    assert {k: str(v.dtype) for k, v in mapped.features.items()} == dict.fromkeys(("prompt", "chosen", "rejected"), "string")
    kept = mapped.filter(lambda row: _drop_long_sequences(row, cfg.rl, tokenizer, cfg.sequence_len))
    assert len(kept) == 3
    tools = EXPECTED["A"][1]
    prompt = [{"role": "user", "content": "Weather in Paris?"}]
    assert kept[0]["prompt"] == render_chat(prompt, tools, add_generation_prompt=True)
    assert kept[0]["chosen"] == "Let me check Paris.<|im_end|>" and kept[0]["rejected"] == "I don't know.<|im_end|>"


def test_overlong_pairs_are_left_out_and_reported(tiny_model_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from datasets import load_dataset
    from transformers import AutoTokenizer

    from minicpm_plugin.integration.dpo import dpo, pair_report, report_left_out

    cfg = load(pair_config(tiny_model_dir, tmp_path, files=["trl.jsonl"], sequence_len=400), tmp_path)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    dataset = load_dataset("json", data_files=cfg.datasets[0].path, split="train")
    transform, kwargs = dpo(cfg, dataset_idx=0)
    kwargs["remove_columns"] = dataset.column_names
    out = dataset.map(transform, fn_kwargs={"tokenizer": tokenizer}, **kwargs)
    assert len(out) == 2  # the two tool pairs carry ~700 tokens of tool stubs; the two plain ones fit
    left_out = pair_report(cfg).records()
    source = str(FIXTURES / "trl.jsonl")
    assert sorted(left_out) == [f"{source}:1", f"{source}:2"]
    assert all(r["status"] == "dropped" and r["full"] > 400 for r in left_out.values())
    logging.getLogger("minicpm_plugin").addHandler(caplog.handler)
    try:
        report_left_out(cfg)
    finally:
        logging.getLogger("minicpm_plugin").removeHandler(caplog.handler)
    assert "2 preference pair(s) longer than sequence_len=400 were left out" in caplog.text
    assert f"{source}:1, {source}:2" in caplog.text


class MergingTokenizer:
    """Merges a newline with the character after it, as some tokenizers do: the prompt ends with
    `<|im_start|>assistant\n`, so prompt + answer no longer splits at the prompt's tokens."""

    eos_token, bos_token = "<|im_end|>", "<s>"

    def __call__(self, texts: list[str], **kwargs: Any) -> dict[str, list[list[int]]]:
        def encode(text: str) -> list[int]:
            ids, i = [1], 0
            while i < len(text):
                width = 2 if text[i] == "\n" and i + 1 < len(text) else 1
                ids.append(sum(ord(c) << (21 * k) for k, c in enumerate(text[i:i + width])))
                i += width
            return ids

        return {"input_ids": [encode(t) for t in texts]}


def test_pairs_not_split_on_a_token_boundary_are_left_out_and_reported(tiny_model_dir: Path, tmp_path: Path,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    from minicpm_plugin.integration.dpo import dpo, pair_report, report_left_out

    cfg = load(pair_config(tiny_model_dir, tmp_path, files=["text_pairs.jsonl"]), tmp_path)
    rows = [json.loads(line) for line in Path(cfg.datasets[0].path).read_text().splitlines()]
    transform, _ = dpo(cfg, dataset_idx=0)
    out = transform({k: [r[k] for r in rows] for k in rows[0]}, [0, 1, 2], tokenizer=MergingTokenizer())
    assert out == {"prompt": [], "chosen": [], "rejected": []}
    assert {r["status"] for r in pair_report(cfg).records().values()} == {"token-boundary"}
    logging.getLogger("minicpm_plugin").addHandler(caplog.handler)
    try:
        report_left_out(cfg)
    finally:
        logging.getLogger("minicpm_plugin").removeHandler(caplog.handler)
    assert "3 preference pair(s) were left out because the tokenizer merges the end of the prompt" in caplog.text


def test_a_tokenizer_with_another_eos_is_refused(tiny_model_dir: Path, tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    from minicpm_plugin.integration.dpo import dpo

    cfg = load(pair_config(tiny_model_dir, tmp_path, files=["text_pairs.jsonl"]), tmp_path)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir, eos_token="</s>")
    transform, _ = dpo(cfg, dataset_idx=0)
    row = json.loads(Path(cfg.datasets[0].path).read_text().splitlines()[0])
    with pytest.raises(ValueError, match="eos_token is '</s>', not <|im_end|>"):
        transform({k: [v] for k, v in row.items()}, [0], tokenizer=tokenizer)


# ---- the ids inside the trainers axolotl builds ----------------------------------------------------


def expected_ids(tokenizer: Any, key: str) -> tuple[list[int], list[int], list[int]]:
    """prompt / chosen / rejected ids from the official render of the whole conversations."""
    prompt, tools, chosen, rejected = EXPECTED[key]
    head = render_chat(prompt, tools, add_generation_prompt=True)
    prompt_ids = tokenizer(head)["input_ids"]
    answers = []
    for answer in (chosen, rejected):
        full = render_chat([*prompt, answer], tools)[: -len("\n")]  # through the answer's <|im_end|>
        ids = tokenizer(full)["input_ids"]
        assert ids[: len(prompt_ids)] == prompt_ids, f"{key}: the split is not on a token boundary"
        answers.append(ids[len(prompt_ids):])
    return prompt_ids, answers[0], answers[1]


@pytest.mark.slow
def test_trainer_ids_are_the_official_render_for_every_row(tiny_model_dir: Path, tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    bos, eos = tokenizer.bos_token_id, tokenizer.convert_tokens_to_ids("<|im_end|>")
    expected = Counter()
    for name in PAIR_FILES:
        for key in FILES[name][1]:
            p, c, r = expected_ids(tokenizer, key)
            assert p[0] == bos and p.count(bos) == 1 and c[-1] == eos and c.count(eos) == 1 and r.count(eos) == 1
            expected[(tuple(p), tuple(c), tuple(r))] += 1
    configs = []
    for rl in ("dpo", "ipo", "simpo", "orpo"):
        path = tmp_path / f"{rl}.yml"
        path.write_text(yaml.safe_dump(pair_config(tiny_model_dir, tmp_path / rl, rl=rl)))
        configs.append(str(path))
    out = tmp_path / "ids.json"
    proc = subprocess.run([sys.executable, str(Path(__file__).parent / "preference_trainer_ids.py"), str(out), *configs],
                          cwd=tmp_path, env={**os.environ, **ENV}, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-6000:]
    assert "trainer: 19 preference pairs, prompts start with one <s>, answers end with one <|im_end|>" in proc.stderr
    results = json.loads(out.read_text())
    trainers = {Path(k).stem: v["trainer"] for k, v in results.items()}
    assert trainers == {"dpo": "AxolotlDPOTrainer", "ipo": "AxolotlDPOTrainer", "simpo": "AxolotlCPOTrainer",
                        "orpo": "AxolotlORPOTrainer"}
    for config, result in results.items():
        got = Counter()
        for row in result["rows"]:
            if "chosen" in row:  # TRL DPOTrainer: prompt_ids, chosen_ids, rejected_ids
                got[(tuple(row["prompt"]), tuple(row["chosen"]), tuple(row["rejected"]))] += 1
                continue
            n = len(row["prompt"])  # CPO / ORPO: whole sequences, the prompt masked in the labels
            answers = []
            for side in ("chosen", "rejected"):
                ids, labels = row[f"{side}_input_ids"], row[f"{side}_labels"]
                assert ids[:n] == row["prompt"] and labels == [-100] * n + ids[n:]
                answers.append(tuple(ids[n:]))
            got[(tuple(row["prompt"]), *answers)] += 1
        assert got == expected, f"{config}: the trainer's ids differ from the official render"
        assert sum(got.values()) == 19  # every row of the six files, nothing dropped
