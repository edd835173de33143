"""Deterministic preprocessing: `python -m axolotl.cli.preprocess` writes the same token ids, labels and
row order on every run, with one or several preprocessing processes (`dataset_num_proc`)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from axolotl_runs import REPO, failure, run_axolotl, tiny_config

pytestmark = pytest.mark.slow

DATASETS = [
    {"path": str(REPO / "examples/data/tool_calls.jsonl"), "type": "minicpm_plugin.strategy"},  # OpenAI tool calls, JSONL
    {"path": str(REPO / "examples/data/chat_seed.json"), "type": "minicpm_plugin.strategy"},  # official seed format, JSON array
]


def sha(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def preprocess(tiny_model_dir: Path, tmp: Path, num_proc: int, hash_seed: str) -> tuple[Path, str]:
    """Run axolotl's preprocess CLI in a fresh directory; returns the prepared dataset and the log."""
    tmp.mkdir()
    cfg = tiny_config(tiny_model_dir, tmp, datasets=[dict(d) for d in DATASETS], dataset_num_proc=num_proc)
    result = run_axolotl(cfg, tmp, command="preprocess", launcher="python", extra_env={"PYTHONHASHSEED": hash_seed,
                         # a cache of its own: otherwise the second run loads the first run's map output
                         # (datasets leaves num_proc out of the fingerprint) and nothing is re-tokenized
                         "HF_DATASETS_CACHE": str(tmp / "hf_datasets_cache"),
                         # the "(num_proc=3)" progress lines are how the test sees several processes ran
                         "HF_DATASETS_DISABLE_PROGRESS_BARS": "0"})
    assert result.returncode == 0, failure(result)
    prepared = [p for p in (tmp / "prepared").iterdir() if (p / "dataset_info.json").exists()]
    assert len(prepared) == 1, prepared
    return prepared[0], result.stdout + result.stderr


def fingerprint(prepared: Path) -> tuple[str, list[str], list[str]]:
    """(whole dataset in row order, one hash per row, column names)."""
    from datasets import load_from_disk

    dataset = load_from_disk(str(prepared))
    rows = [sha({c: row[c] for c in dataset.column_names}) for row in dataset]
    return sha(rows), rows, dataset.column_names


def test_preprocessing_is_deterministic_across_runs_and_processes(tiny_model_dir: Path, tmp_path: Path) -> None:
    one, log_one = preprocess(tiny_model_dir, tmp_path / "one", num_proc=1, hash_seed="1")
    three, log_three = preprocess(tiny_model_dir, tmp_path / "three", num_proc=3, hash_seed="2")
    assert "(num_proc=3)" in log_three and "(num_proc=3)" not in log_one

    fp_one, rows_one, columns = fingerprint(one)
    fp_three, rows_three, _ = fingerprint(three)
    print(f"fingerprint num_proc=1: {fp_one}\nfingerprint num_proc=3: {fp_three}  ({len(rows_one)} rows, {columns})")
    assert {"input_ids", "labels", "attention_mask"} <= set(columns)
    assert len(rows_one) == 100  # 60 tool-call rows + 40 seed rows, none dropped
    assert rows_one == rows_three  # same rows, same order
    assert fp_one == fp_three

    # The plugin's own prepared copies of the data files are byte-identical too (same content-hash names).
    def copies(root: Path) -> dict[str, str]:
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((root.parent / "minicpm3_data").glob("*.jsonl"))}

    assert copies(one) == copies(three) and len(copies(one)) == 2
