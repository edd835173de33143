"""Smoke tests of benchmarks/: they run and check correctness; no wall-clock time is asserted."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


def bench_module(name: str) -> Any:
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    return importlib.import_module(name)


def test_synthetic_data_is_deterministic_and_has_the_promised_shapes() -> None:
    data = bench_module("_data")
    convs = data.tool_conversations(60, seed=3)
    assert convs == data.tool_conversations(60, seed=3)
    assert convs != data.tool_conversations(60, seed=4)
    assert all(1 <= len(c["tools"]) <= 4 for c in convs)
    msgs = [m for c in convs for m in c["messages"]]
    calls = [m["tool_calls"] for m in msgs if m.get("tool_calls")]
    args = [call["function"]["arguments"] for cs in calls for call in cs]
    assert any(len(cs) > 1 for cs in calls), "parallel calls"
    assert any(m.get("thought") for m in msgs)
    assert any(None in a.values() for a in args), "null arguments"
    assert any(isinstance(v, float) for a in args for v in a.values())
    assert any(isinstance(v, (dict, list)) and v for a in args for v in a.values()), "nested values"
    assert any("\u4e00" <= ch <= "\u9fff" for m in msgs for ch in (m.get("content") or ""))
    plain = data.plain_conversations(30)
    assert all("tools" not in c and {m["role"] for m in c["messages"]} <= {"system", "user", "assistant"} for c in plain)


def test_preprocess_benchmark_runs_and_ours_matches_the_reference_labels(tmp_path: Path) -> None:
    pre = bench_module("preprocess")
    lines: list[str] = []
    report = pre.run(n=20, n_plain=12, repeats=1, batch_size=8, workdir=str(tmp_path), log=lines.append)
    assert "ours/(b)" in lines[-1] and "ours/(d)" in lines[-1]
    for name, n in (("tools", 20), ("plain", 12)):
        res = report["sets"][name]
        for t in res["timings"].values():
            assert t["samples"] == n and t["tokens"] > 0 and len(t["seconds"]) == 1
        checks = res["checks"]
        # ours = the official rendering, labelled exactly where an independent character mask says
        assert checks["ours"] == {"rows": n, "ids_differ": 0, "labels_differ": 0}
        # axolotl's built-in path: every row lacks <s> (apply_chat_template skips the tokenizer's BOS)
        assert checks["axolotl"]["rows"] == n and checks["axolotl"]["missing_bos"] == n
        assert checks["axolotl"]["labels_differ_same_text"] == 0
    tools = report["sets"]["tools"]["checks"]
    assert tools["axolotl"]["text_differs"] > 0
    assert "null argument deleted" in tools["axolotl"]["text_differs_by_reason"]
    assert tools["official"]["ids_differ"] == 20 and tools["official"]["tokens_vs_official_template"] < 0.5


def test_floor_rows_carry_the_spans_ours_labels_from(tmp_path: Path) -> None:
    """A few rows by hand: ours' labels = tokens overlapping assistant output spans of one render."""
    pre = bench_module("preprocess")
    data = bench_module("_data")
    tokenizer = pre.load_tokenizer(None, tmp_path)
    ours, _ = pre.build_strategies(tokenizer, tmp_path, 32768)
    convs = data.tool_conversations(4, seed=1)
    import json

    batch = {"conversation": [json.dumps(c, ensure_ascii=False) for c in convs], "source": [f"x:{i}" for i in range(4)]}
    rows = pre.strategy_rows(ours, batch)
    for (ids, labels), floor, conv in zip(rows, pre.floor_rows(tokenizer, convs), convs, strict=True):
        assert ids == floor.input_ids and ids[0] == tokenizer.bos_token_id
        assert labels == pre.reference_labels(floor, conv["messages"])
        trained = tokenizer.decode([t for t, lab in zip(ids, labels, strict=True) if lab != -100])
        assert "<|im_end|>" in trained and "<|im_start|>" not in trained


def test_gpu_train_helpers() -> None:
    gt = bench_module("gpu_train")
    samples = gt.make_samples(200, 256, 2048, seed=0, median_len=60)
    assert all(32 <= len(s.ids) <= 256 and len(s.ids) == len(s.labels) for s in samples)
    rows = gt.pack(samples, 256)
    assert sorted(id(s) for r in rows for s in r) == sorted(id(s) for s in samples)
    assert all(sum(len(s.ids) for s in r) <= 256 for r in rows)
    batch = gt.packed_batch(rows[:2], 256, pad_id=2)
    first = rows[0]
    pos = batch["position_ids"][0].tolist()
    assert pos[: len(first[0].ids)] == list(range(len(first[0].ids)))
    assert pos[len(first[0].ids)] == 0  # restarts for the second sample
    padded = gt.padded_batch(samples[:3], 256, pad_id=2)
    assert padded["attention_mask"].sum().item() == sum(len(s.ids) for s in samples[:3])


def test_gpu_train_flop_count_matches_the_real_config() -> None:
    """The MFU numerator counts exactly the linear weights of MiniCPM3-4B (lm_head tied, counted once)."""
    import torch
    from transformers import MiniCPM3ForCausalLM

    gt = bench_module("gpu_train")
    config = gt.model_config(tiny=False)
    with torch.device("meta"):
        model = MiniCPM3ForCausalLM(config)
    linear = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    assert gt.matmul_params(config) == linear
    assert 4.0e9 < linear < 4.2e9


@pytest.mark.slow
def test_gpu_train_tiny_cpu_run(tmp_path: Path) -> None:
    gt = bench_module("gpu_train")
    out = tmp_path / "r.json"
    code = gt.main(["--tiny", "--cpu", "--runs", "ours_lora,official_lora", "--steps", "14",
                    "--workdir", str(tmp_path), "--json", str(out)])
    import json

    runs = {r["name"]: r for r in json.loads(out.read_text())["runs"]}
    assert code == 0, runs
    assert runs["ours_lora"]["padded_fraction"] < 0.2 < runs["official_lora"]["padded_fraction"]


def test_end_to_end_mode_checks_every_row(tmp_path: Path) -> None:
    """File -> prepare -> Arrow -> map, in one process and with dataset_num_proc 1 and 2: every row of
    ours equals the official rendering with the reference labels; axolotl's built-in rows are counted."""
    pre = bench_module("preprocess")
    lines: list[str] = []
    report = pre.e2e(n=12, n_plain=6, repeats=1, workdir=str(tmp_path), log=lines.append)
    assert "ours/floor" in lines[-1] and "dataset_num_proc 2 vs 1" in lines[-1]
    for name, n in (("tools", 12), ("plain", 6)):
        res = report["sets"][name]
        assert set(res["median_s"]) == {"ours", "ours_np1", "ours_np2", "axolotl", "floor"}
        for method in ("ours", "ours_np1", "ours_np2"):
            assert res["checks"][method] == {"rows": n, "ids_differ": 0, "labels_differ": 0}, method
        assert res["checks"]["axolotl"]["rows"] == n and res["checks"]["axolotl"]["missing_bos"] == n
        assert set(res["ours_stages_median_s"]) == {"prepare", "arrow", "map"}
    assert "null argument deleted" in report["sets"]["tools"]["checks"]["axolotl"]["text_differs_by_reason"]
