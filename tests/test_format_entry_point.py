"""A third-party format, installed from tests/format_plugin_pkg, found through the entry point.

The package is installed with pip (offline: --no-index --no-deps --no-build-isolation) into a
temporary target directory that is put on sys.path, so the venv is never changed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import BUILTIN_FORMATS

from minicpm_plugin.formats import ENTRY_POINT_GROUP, get_registry, prepare_dataset_file, read_prepared

PKG = Path(__file__).parent / "format_plugin_pkg"
DOLLY = [
    {"instruction": "Translate to French", "context": "The cat sleeps.", "response": "Le chat dort.", "category": "open_qa"},
    {"instruction": "Name a prime number above 10.", "context": "", "response": "11", "system": "Answer briefly."},
]


@pytest.fixture(scope="module")
def plugin_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    src = tmp_path_factory.mktemp("pkg-src") / "pkg"
    shutil.copytree(PKG, src, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))  # build out of tree
    target = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(src)], check=True, capture_output=True, timeout=120)
    sys.path.insert(0, str(target))
    try:
        yield target
    finally:
        sys.path.remove(str(target))
        for name in [m for m in sys.modules if m.startswith("minicpm_format_example")]:
            del sys.modules[name]
        get_registry(reload=True)


def test_entry_point_adds_a_format_and_reports_a_broken_one(plugin_target: Path) -> None:
    import importlib.metadata

    eps = {ep.name: ep.value for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}
    assert eps["dolly"] == "minicpm_format_example" and eps["builtin"] == "minicpm_plugin.formats.builtin"
    reg = get_registry(reload=True)
    assert reg.names()[-1] == "dolly" and reg.origins["dolly"] == "dolly"
    assert reg.names()[:-1] == BUILTIN_FORMATS
    assert reg.load_errors == ["broken_example = minicpm_format_example.broken: ImportError: this example plugin is "
                               "broken on purpose"]
    with pytest.raises(ValueError, match="format plugins that failed to load: broken_example"):
        reg.get("nope")


def test_prepare_and_tokenize_with_the_plugin_format(plugin_target: Path, tmp_path: Path, tiny_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    from minicpm_plugin.tokenize import tokenize_conversation

    get_registry(reload=True)
    src = tmp_path / "dolly.json"
    src.write_text(json.dumps(DOLLY, ensure_ascii=False), encoding="utf-8")
    prepared = prepare_dataset_file(src, out_dir=tmp_path / "out")
    assert (prepared.format, prepared.rows, prepared.written) == ("dolly", 2, 2)
    convs = [c for c, _ in read_prepared(prepared.path)]
    assert convs[0] == {"messages": [{"role": "user", "content": "Translate to French\n\nThe cat sleeps."},
                                     {"role": "assistant", "content": "Le chat dort."}], "tools": None}
    assert convs[1]["messages"][0] == {"role": "system", "content": "Answer briefly."}
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    tc = tokenize_conversation(tok, convs[0])
    trained = [i for i, lab in zip(tc.input_ids, tc.labels, strict=True) if lab != -100]
    assert tok.decode(trained) == "Le chat dort.<|im_end|>"


def test_cli_check_sees_the_plugin_format(plugin_target: Path, tmp_path: Path) -> None:
    src = tmp_path / "dolly.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in DOLLY) + json.dumps({"instruction": 3, "response": "x"}) + "\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(plugin_target), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-m", "minicpm_plugin.cli", "check", str(src)], capture_output=True,
                          text=True, env=env, timeout=60)
    assert proc.returncode == 1
    assert proc.stdout.splitlines() == [
        f"{src}:3: instruction: must be a string [bad-content]",
        f"checked 1 file ({src}: dolly): 3 rows, 1 with errors, 0 warnings; 0 conversations with tools, 0 calls, "
        "0 thoughts; token counts need --tokenizer DIR",
    ]
    assert "warning: format plugin failed to load: broken_example" in proc.stderr
