"""A per-dataset `format:` reaches the strategy for datasets the plugin does not prepare itself (a hub
dataset, a local folder): axolotl's schema drops unknown dataset keys, so the plugin carries it as
`input_format`, which axolotl keeps and passes to `strategy.load` in the dataset config.

Runs axolotl's own config loading (`load_cfg`: plugin register + validation) and its dataset
pipeline (`prepare_datasets`: load_dataset on the folder, the strategy via
`axolotl.prompt_strategies.load`, tokenization) in this process on the tiny tokenizer.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from axolotl_runs import tiny_config

from minicpm_plugin.integration.config_checks import ConfigError

# The same chats in two layouts, as some published exports carry them: OpenAI `messages` and ShareGPT
# `conversations` columns side by side. Auto-detection cannot choose (both formats read every row), so
# the format has to be given per dataset; the texts differ so the test sees which column was read.
ROWS = [
    {"messages": [{"role": "user", "content": f"openai question {i}"}, {"role": "assistant", "content": f"openai answer {i}"}],
     "conversations": [{"from": "human", "value": f"sharegpt question {i}"}, {"from": "gpt", "value": f"sharegpt answer {i}"}]}
    for i in range(6)
]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A local folder of JSONL shards: axolotl loads it with `load_dataset(folder)`, not as one file."""
    out = tmp_path / "hub_like"
    out.mkdir()
    for shard in range(2):
        rows = ROWS[shard * 3:(shard + 1) * 3]
        (out / f"train-0000{shard}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return out


def load(cfg: dict[str, Any], tmp_path: Path) -> Any:
    from axolotl.cli.config import load_cfg

    path = tmp_path / "cfg.yml"
    path.write_text(yaml.safe_dump(cfg))
    return load_cfg(str(path))


def prepared_texts(cfg: Any, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    from axolotl.utils.data.sft import prepare_datasets
    from transformers import AutoTokenizer

    monkeypatch.setenv("AXOLOTL_IS_PREPROCESS", "1")  # stop after preprocessing, as `axolotl preprocess` does
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    train, _, _, _ = prepare_datasets(cfg, tokenizer)
    return [tokenizer.decode(row["input_ids"]) for row in train]


def test_per_dataset_format_reaches_the_strategy_for_a_folder(folder: Path, tiny_model_dir: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    datasets = [{"path": str(folder), "type": "minicpm_plugin.strategy", "split": "train", "format": "sharegpt"},
                {"path": str(folder), "type": "minicpm_plugin.strategy", "split": "train", "format": "OpenAI"}]
    cfg = load(tiny_config(tiny_model_dir, tmp_path, datasets=datasets, sample_packing=False, dataset_num_proc=1), tmp_path)
    assert [(d.get("format"), d.input_format) for d in cfg.datasets] == [(None, "sharegpt"), (None, "OpenAI")]

    texts = prepared_texts(cfg, tiny_model_dir, monkeypatch)
    assert len(texts) == 12
    assert sorted(t for t in texts if "sharegpt answer" in t) == sorted(t for t in texts if "openai" not in t)
    assert sum("sharegpt answer" in t for t in texts) == 6 and sum("openai answer" in t for t in texts) == 6
    # each row whole from one layout: question and answer of the same chat
    read = sorted((layout, i) for t in texts for layout in ("openai", "sharegpt") for i in range(6)
                  if f"{layout} question {i}" in t and f"{layout} answer {i}" in t)
    assert read == [(layout, i) for layout in ("openai", "sharegpt") for i in range(6)]


def test_without_a_format_the_folder_is_ambiguous(folder: Path, tiny_model_dir: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The control: the same data without `format:` cannot be read (what happened when it was lost)."""
    datasets = [{"path": str(folder), "type": "minicpm_plugin.strategy", "split": "train"}]
    cfg = load(tiny_config(tiny_model_dir, tmp_path, datasets=datasets, sample_packing=False, dataset_num_proc=1), tmp_path)
    assert cfg.datasets[0].input_format == "auto"
    with pytest.raises(ValueError, match="matches several formats: openai, sharegpt"):
        prepared_texts(cfg, tiny_model_dir, monkeypatch)


def test_hub_dataset_format_reaches_the_strategy_axolotl_loads(tiny_model_dir: Path, tmp_path: Path) -> None:
    """A hub path (not reachable offline): the validated entry axolotl passes to `load` carries the format."""
    from axolotl.prompt_strategies import load as load_strategy
    from transformers import AutoTokenizer

    datasets = [{"path": "org/chats", "type": "minicpm_plugin.strategy", "format": "sharegpt"}]
    cfg = load(tiny_config(tiny_model_dir, tmp_path, datasets=datasets), tmp_path)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    strategy = load_strategy(cfg.datasets[0].type, tokenizer, cfg, cfg.datasets[0])
    assert strategy.format == "sharegpt"
    batch = {key: [row[key] for row in ROWS[:2]] for key in ROWS[0]}  # columns, as axolotl's map passes them
    texts = [tokenizer.decode(ids) for ids in strategy.tokenize_prompt(batch)["input_ids"]]
    assert [("sharegpt answer 0" in texts[0]), ("sharegpt answer 1" in texts[1])] == [True, True]
    assert not any("openai" in t for t in texts)


def test_global_format_applies_to_non_local_datasets(folder: Path, tiny_model_dir: Path, tmp_path: Path) -> None:
    datasets = [{"path": str(folder), "type": "minicpm_plugin.strategy"},
                {"path": "org/some-hub-dataset", "type": "minicpm_plugin.strategy", "input_format": "openai"}]
    cfg = load(tiny_config(tiny_model_dir, tmp_path, datasets=datasets, minicpm3_format="sharegpt"), tmp_path)
    assert [d.input_format for d in cfg.datasets] == ["sharegpt", "openai"]


@pytest.mark.parametrize(("entry", "message"), [
    ({"format": "dolly"}, "dataset 'org/chats': format: unknown format 'dolly'; known formats: seed, openai"),
    ({"format": "openai", "input_format": "sharegpt"},
     "dataset 'org/chats' sets format: openai and input_format: sharegpt; keep one."),
])
def test_bad_per_dataset_format_for_a_hub_dataset(tiny_model_dir: Path, tmp_path: Path, entry: dict, message: str) -> None:
    datasets = [{"path": "org/chats", "type": "minicpm_plugin.strategy", **entry}]
    with pytest.raises(ConfigError) as info:
        load(tiny_config(tiny_model_dir, tmp_path, datasets=datasets), tmp_path)
    assert message in info.value.message


def test_bad_global_format_names_its_key(tiny_model_dir: Path, tmp_path: Path) -> None:
    datasets = [{"path": "org/chats", "type": "minicpm_plugin.strategy"}]
    with pytest.raises(ConfigError) as info:
        load(tiny_config(tiny_model_dir, tmp_path, datasets=datasets, minicpm3_format="dolly"), tmp_path)
    assert "minicpm3_format: unknown format 'dolly'" in info.value.message
