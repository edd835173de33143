"""Config mistakes the plugin catches in `register` (on the raw YAML dict, before axolotl drops anything):
unknown `minicpm3_*` keys, invalid values (one line per key), missing dataset files, and a base_model
that is neither local, cached nor downloadable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from axolotl_runs import REPO, failure, run_axolotl, tiny_config

from minicpm_plugin.integration.config_checks import ConfigError
from minicpm_plugin.model.hub import model_unavailable


def load(cfg: dict, tmp_path: Path):  # noqa: ANN201 - axolotl's DictDefault
    from axolotl.cli.config import load_cfg

    path = tmp_path / "cfg.yml"
    path.write_text(yaml.safe_dump(cfg))
    return load_cfg(str(path))


def refused(cfg: dict, tmp_path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load(cfg, tmp_path)
    return info.value.message


def test_a_typo_in_a_plugin_key_names_the_key_it_meant(tiny_model_dir: Path, tmp_path: Path) -> None:
    message = refused(tiny_config(tiny_model_dir, tmp_path, minicpm3_literal_stlye="python"), tmp_path)
    assert message == ("invalid minicpm3_* key: minicpm3_literal_stlye: not a key of the plugin (axolotl would drop it "
                       "and train with the default); did you mean minicpm3_literal_style?")
    # without the check axolotl keeps the default silently: the key is gone after its validation
    from axolotl.utils.config import validate_config
    from axolotl.utils.dict import DictDefault

    validated = validate_config(DictDefault({**tiny_config(tiny_model_dir, tmp_path), "minicpm3_literal_stlye": "python"}))
    assert "minicpm3_literal_stlye" not in validated


def test_every_bad_key_gets_one_line(tiny_model_dir: Path, tmp_path: Path) -> None:
    cfg = tiny_config(tiny_model_dir, tmp_path, minicpm3_overlong="cut", minicpm3_train_thought="maybe",
                      MiniCPM3_Format="seed", minicpm3_eval_tools_samples=0, minicpm_whatever=1)
    assert refused(cfg, tmp_path).splitlines() == [
        "invalid minicpm3_* keys:",
        "  MiniCPM3_Format: not a key of the plugin (axolotl would drop it and train with the default); did you mean "
        "minicpm3_format?",
        "  minicpm_whatever: not a key of the plugin (axolotl would drop it and train with the default); the plugin's "
        "keys are minicpm3_literal_style, minicpm3_train_last_turn_only, minicpm3_train_thought, minicpm3_overlong, "
        "minicpm3_on_bad_rows, minicpm3_format, minicpm3_cpu_fallback, minicpm3_chunked_loss, minicpm3_eval_tools_steps, "
        "minicpm3_eval_tools_data, minicpm3_eval_tools_samples, minicpm3_eval_tools_max_new_tokens",
        "  minicpm3_train_thought: Input should be a valid boolean, unable to interpret input (got 'maybe')",
        "  minicpm3_overlong: Input should be 'drop' or 'truncate_turns' (got 'cut')",
        "  minicpm3_eval_tools_samples: Input should be greater than or equal to 1 (got 0)",
    ]


def test_a_dataset_file_that_does_not_exist(tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.jsonl").write_text((REPO / "examples/data/tool_calls.jsonl").read_text())
    monkeypatch.chdir(tmp_path)

    def with_path(path: str) -> dict:
        return tiny_config(tiny_model_dir, tmp_path, datasets=[{"path": path, "type": "minicpm_plugin.strategy"}])

    assert refused(with_path("data/trian.jsonl"), tmp_path) == (
        f"dataset path 'data/trian.jsonl': the file does not exist (relative paths are read from {tmp_path}); did you "
        "mean 'data/train.jsonl'?")
    assert refused(with_path(str(tmp_path / "nothing.jsonl")), tmp_path) == (
        f"dataset path '{tmp_path / 'nothing.jsonl'}': the file does not exist")
    assert refused(with_path("data/train"), tmp_path).startswith("dataset path 'data/train': the file does not exist")
    assert refused(with_path("openbmb/chat.parquet"), tmp_path).startswith("dataset path 'openbmb/chat.parquet': the file")
    cfg = load(with_path("data/train.jsonl"), tmp_path)  # the right file is prepared
    assert "minicpm3_data" in cfg.datasets[0].path


def test_a_hub_dataset_id_is_left_to_axolotl(tiny_model_dir: Path, tmp_path: Path) -> None:
    from minicpm_plugin.integration.config_checks import check_dataset_path

    for path in ("openbmb/some-dataset", "glaiveai/glaive-function-calling-v2", "squad", "s3://bucket/train.jsonl"):
        check_dataset_path(path)  # no error: axolotl loads these itself


def _fake_cache(root: Path, repo: str) -> None:
    folder = root / f"models--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text("0123abcd")
    (folder / "snapshots" / "0123abcd").mkdir(parents=True)
    snapshot = folder / "snapshots" / "0123abcd"
    (snapshot / "config.json").write_text('{"model_type": "minicpm3"}')
    index = {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}
    (snapshot / "model.safetensors.index.json").write_text(json.dumps(index))
    (snapshot / "model-00001-of-00002.safetensors").write_bytes(b"")


def test_model_lookup_says_why_and_the_ways_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert model_unavailable("openbmb/MiniCPM3-4B", "base_model", "my.yml") == (
        f"base_model 'openbmb/MiniCPM3-4B' is not in the local Hugging Face cache ({tmp_path / 'hub'}) and the hub "
        "cannot be reached (HF_HUB_OFFLINE=1): download it where there is network (hf download openbmb/MiniCPM3-4B) "
        "into that cache, or set base_model to a local model folder; to try the recipe on CPU without the model: "
        "minicpm-plugin smoke my.yml")
    _fake_cache(tmp_path / "hub", "openbmb/MiniCPM3-4B")  # an interrupted download: one shard of two
    snapshot = tmp_path / "hub" / "models--openbmb--MiniCPM3-4B" / "snapshots" / "0123abcd"
    assert model_unavailable("openbmb/MiniCPM3-4B", "base_model") == (
        f"base_model 'openbmb/MiniCPM3-4B' is only partly in the local Hugging Face cache ({snapshot}: no "
        "model-00002-of-00002.safetensors) and the hub cannot be reached (HF_HUB_OFFLINE=1): download it where there "
        "is network (hf download openbmb/MiniCPM3-4B) into that cache, or set base_model to a local model folder; to "
        "try the recipe on CPU without the model: minicpm-plugin smoke RECIPE.yml")
    (snapshot / "model-00002-of-00002.safetensors").write_bytes(b"")
    assert model_unavailable("openbmb/MiniCPM3-4B", "base_model") is None
    assert model_unavailable(str(tmp_path), "base_model") is None  # a local folder
    assert model_unavailable(str(tmp_path / "models" / "mini"), "base_model") == (
        f"base_model '{tmp_path / 'models' / 'mini'}' does not exist: point base_model at a local model folder (with "
        "config.json) or a hub id such as openbmb/MiniCPM3-4B")
    for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens on the discard port
    message = model_unavailable("openbmb/Other-Model", "base_model")
    assert message is not None and "the hub cannot be reached (no connection to 127.0.0.1: " in message
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    assert model_unavailable("openbmb/Other-Model", "base_model") is None  # a proxy decides, not us


@pytest.mark.slow
def test_readme_command_without_the_model_gives_one_line(tmp_path: Path) -> None:
    """The README's recipe on a machine without the model and without network: one line, exit 1."""
    recipe = yaml.safe_load((REPO / "examples/minicpm3_qlora.yml").read_text())
    for ds in recipe["datasets"]:
        ds["path"] = str(REPO / ds["path"])
    recipe["output_dir"] = str(tmp_path / "out")
    recipe["dataset_prepared_path"] = str(tmp_path / "prepared")
    (tmp_path / "hf").mkdir()
    result = run_axolotl(recipe, tmp_path, launcher="python", timeout=300, extra_env={"HF_HOME": str(tmp_path / "hf")})
    assert result.returncode == 1, failure(result)
    assert "Traceback" not in result.stdout + result.stderr
    ours = [line for line in result.stderr.splitlines() if "minicpm-plugin" in line]
    assert ours == [
        f"minicpm-plugin: config error: base_model 'openbmb/MiniCPM3-4B' is not in the local Hugging Face cache "
        f"({tmp_path / 'hf' / 'hub'}) and the hub cannot be reached (HF_HUB_OFFLINE=1): download it where there is "
        "network (hf download openbmb/MiniCPM3-4B) into that cache, or set base_model to a local model folder; to try "
        f"the recipe on CPU without the model: minicpm-plugin smoke {tmp_path / 'train.yml'}"]
