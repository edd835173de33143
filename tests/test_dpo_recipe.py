"""examples/minicpm3_dpo_tools.yml and its sample pairs: generated as committed, accepted by axolotl
unchanged, estimated by the memory planner as its header says, and trained by `minicpm-plugin smoke`."""

from __future__ import annotations

import json
import runpy
from collections import Counter
from pathlib import Path

import pytest

from minicpm_plugin.formats.preference import scan_pairs_file
from minicpm_plugin.integration.validate import validate_recipe
from minicpm_plugin.model.architecture import MINICPM3_LINEAR_MODULES
from minicpm_plugin.tools.memory import GIB, estimate, plan_from_recipe
from minicpm_plugin.tools.recipes import load_recipe

ROOT = Path(__file__).resolve().parent.parent
RECIPE = ROOT / "examples" / "minicpm3_dpo_tools.yml"
DATA = ROOT / "examples" / "data"


def test_sample_pairs_are_what_the_generator_writes() -> None:
    generator = runpy.run_path(str(DATA / "make_preference_data.py"))
    assert generator["main"](["--check"]) == 0
    rows = [json.loads(line) for line in (DATA / "tool_preferences.jsonl").read_text("utf-8").splitlines()]
    kinds = Counter(r["kind"] for r in rows)
    assert set(kinds) == {"wrong_name", "other_tool", "wrong_value", "missing_arg", "drop_parallel", "refusal", "extra_call"}
    for name in ("tool_preferences.jsonl", "tool_preferences_eval.jsonl"):
        scanned = scan_pairs_file(DATA / name)
        stats = scanned.stats()
        assert scanned.format == "trl" and stats["bad"] == 0 and stats["warnings"] == 0, [str(p) for p in scanned.problems]
    assert (len(rows), len((DATA / "tool_preferences_eval.jsonl").read_text().splitlines())) == (61, 5)
    # No held-out prompt is a training prompt.
    train_prompts = {json.dumps(r["prompt"], sort_keys=True) for r in rows}
    held_out = [json.loads(line) for line in (DATA / "tool_preferences_eval.jsonl").read_text().splitlines()]
    assert not train_prompts & {json.dumps(r["prompt"], sort_keys=True) for r in held_out}


@pytest.fixture
def repo_cwd(tmp_path, monkeypatch):
    for name in ("examples", "deepspeed_configs"):
        (tmp_path / name).symlink_to(ROOT / name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("minicpm_plugin.integration.plugin.has_gpu", lambda: True)
    return tmp_path


def test_recipe_passes_axolotl_validation_unchanged(repo_cwd) -> None:
    raw = load_recipe(RECIPE)
    cfg = validate_recipe(raw, RECIPE.name)
    assert str(cfg["rl"].value) == "dpo" and cfg["rl_beta"] == 0.1
    assert cfg["plugins"] == ["minicpm_plugin.MiniCPM3Plugin"] and cfg["trust_remote_code"] is False
    assert cfg["sample_packing"] is False and cfg["bf16"] is True and cfg["chat_template"] == "jinja"
    assert cfg["lora_target_modules"] == list(MINICPM3_LINEAR_MODULES)
    assert cfg["special_tokens"] == {"pad_token": "</s>"}
    for ds in cfg["datasets"] + cfg["test_datasets"]:
        assert ds["type"] == "minicpm_plugin.dpo" and ".pairs." in ds["path"]


def test_memory_header_holds() -> None:
    est = estimate(plan_from_recipe(load_recipe(RECIPE), base_dir=ROOT / "examples"))
    assert f"about {est.total / GIB:.0f} GB" in RECIPE.read_text(encoding="utf-8")
    assert est.fits(16) and est.plan.micro_batch_size == 2  # chosen and rejected in one batch
    assert any("preference pairs" in note for note in est.notes)


@pytest.mark.slow
def test_smoke_trains_the_recipe(tmp_path: Path) -> None:
    from minicpm_plugin.tools.smoke import build_smoke_model, smoke_recipe

    model = build_smoke_model(tmp_path / "model")
    result = smoke_recipe(RECIPE.relative_to(ROOT), model_dir=model, max_steps=2, workdir=tmp_path / "run", cwd=ROOT)
    assert result.ok, f"{result.reason}\n" + "\n".join(result.log.splitlines()[-30:])
    assert len(result.losses) == 2 and result.saved == "adapter_model.safetensors"
    assert "tool_preferences.jsonl (trl, preference pairs): 61 rows, 61 prepared, 0 skipped" in result.log
    assert "tool_preferences_eval.jsonl (trl, preference pairs): 5 rows, 5 prepared, 0 skipped" in result.log
    # The check after the trainer is built counts its train and eval pairs: 61 + 5, none lost.
    assert "trainer: 66 preference pairs, prompts start with one <s>" in result.log
