"""`pip install` is enough: the wheel carries the recipes, DeepSpeed configs and sample data, and
`minicpm-plugin init` writes them into a working folder where they run.

The wheel is built the way `python -m build` builds it (an sdist first, then the wheel from the
unpacked sdist, so MANIFEST.in is checked too) from a copy of the source tree, and installed with
`pip install --target` into a scratch folder: the shared environment is never changed. The slow test
runs `init` from that installation outside the source tree and smoke-trains a written recipe.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from minicpm_plugin.cli import main
from minicpm_plugin.tools import resources
from minicpm_plugin.tools.resources import (
    ResourceError,
    matching_files,
    resource_files,
    write_resources,
)

ROOT = Path(__file__).resolve().parents[1]
PREFIX = "minicpm_plugin/resources/"
# What a wheel is built from (the rest of the repository is not needed for it).
SOURCE = ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "minicpm_plugin", "examples", "deepspeed_configs")


def repo_files() -> dict[str, bytes]:
    """The shipped files as the repository holds them: {relative path: bytes}."""
    return {rel: node.read_bytes() for rel, node in matching_files(ROOT).items()}


def run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{cmd} exit {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """sdist from a copy of the source tree, then the wheel from the unpacked sdist (offline)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    for name in SOURCE:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
        else:
            src.mkdir(exist_ok=True)
            shutil.copy2(ROOT / name, src / name)
    run([sys.executable, "-c", "import sys; from setuptools import build_meta as b; b.build_sdist(sys.argv[1])",
         str(tmp / "sdist")], cwd=src)
    (sdist,) = (tmp / "sdist").glob("*.tar.gz")
    with tarfile.open(sdist) as tar:
        # The "data" filter (no links out, no absolute paths) exists from Python 3.11.4 on.
        tar.extractall(tmp / "unpacked", **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    (unpacked,) = (tmp / "unpacked").iterdir()
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
         "-w", str(tmp / "dist"), str(unpacked)], cwd=tmp)
    (whl,) = (tmp / "dist").glob("minicpm_plugin-*.whl")
    return whl


def test_every_file_in_examples_and_deepspeed_configs_is_shipped() -> None:
    """A file added to examples/ or deepspeed_configs/ with a new extension must be added to the patterns."""
    on_disk = {p.relative_to(ROOT).as_posix() for d in ("examples", "deepspeed_configs") for p in (ROOT / d).rglob("*")
               if p.is_file() and "__pycache__" not in p.parts}
    assert set(matching_files(ROOT)) == on_disk
    assert {"examples/minicpm3_lora.yml", "examples/data/tool_calls.jsonl", "deepspeed_configs/zero2_offload.json"} <= on_disk


def test_recipes_only_point_at_shipped_files() -> None:
    """Every data file and DeepSpeed config a recipe names (as a key or in a comment) is shipped."""
    import re

    shipped = set(repo_files())
    for rel in (r for r in shipped if r.endswith(".yml")):
        named = set(re.findall(r"(?:examples/data|deepspeed_configs)/[\w.-]+\.(?:jsonl?|json)", (ROOT / rel).read_text()))
        assert named and named <= shipped, (rel, named - shipped)


def test_wheel_carries_the_same_bytes_as_the_repository(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        packaged = {n[len(PREFIX):]: zf.read(n) for n in zf.namelist() if n.startswith(PREFIX)}
        names = zf.namelist()
    assert packaged == repo_files()
    assert "minicpm_plugin/data/tiny_corpus.txt" in names  # the tiny model's tokenizer corpus
    assert not any(n.startswith(("examples/", "deepspeed_configs/")) for n in names)  # only inside the package


def test_source_checkout_reads_its_own_files() -> None:
    """On PYTHONPATH (or installed editable) the package reads the checkout: edits there are live."""
    assert resources.checkout_root() == ROOT
    assert {rel: node.read_bytes() for rel, node in resource_files().items()} == repo_files()


def test_editable_install_reads_the_checkout(tmp_path: Path) -> None:
    """`pip install -e` (what the Makefile does) of a copy of the tree: resources come from that copy."""
    src = tmp_path / "src"
    for name in SOURCE:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            src.mkdir(exist_ok=True)
            shutil.copy2(ROOT / name, src / name)
    prefix = tmp_path / "prefix"
    run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index",
         "--ignore-installed", "--prefix", str(prefix), "-e", str(src)], cwd=tmp_path)
    (site_dir,) = prefix.glob("lib/python*/site-packages")
    # -S: no site-packages of this environment (its own editable install would answer first);
    # addsitedir runs the .pth of the scratch install, as Python does at start-up.
    code = ("import site, sys; site.addsitedir(sys.argv[1]); import minicpm_plugin; "
            "from minicpm_plugin.tools.resources import resource_root, resource_files; "
            "print(minicpm_plugin.__file__); print(resource_root()); print(len(resource_files()))")
    out = run([sys.executable, "-S", "-c", code, str(site_dir)], cwd=tmp_path, env={"PATH": os.environ["PATH"]})
    module, root, count = out.stdout.split()
    assert Path(module) == src / "minicpm_plugin" / "__init__.py"
    assert Path(root) == src and int(count) == len(repo_files())


# ---- write_resources / `minicpm-plugin init` -------------------------------------------------------------


def test_init_writes_every_file_with_its_layout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["init", str(tmp_path / "proj")]) == 0
    out = capsys.readouterr().out.splitlines()
    expected = repo_files()
    assert {rel: (tmp_path / "proj" / rel).read_bytes() for rel in expected} == expected
    assert [line.split()[1] for line in out if line.startswith("wrote")] == list(expected)
    assert f"{len(expected)} file(s) written to {tmp_path / 'proj'}" in out
    # again: nothing to do, nothing touched
    mtimes = {rel: (tmp_path / "proj" / rel).stat().st_mtime_ns for rel in expected}
    assert main(["init", str(tmp_path / "proj")]) == 0
    assert capsys.readouterr().out.splitlines()[0] == (
        f"nothing to write: {tmp_path / 'proj'} already holds all {len(expected)} shipped files")
    assert mtimes == {rel: (tmp_path / "proj" / rel).stat().st_mtime_ns for rel in expected}


def test_init_default_is_the_current_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("mine")
    assert main(["init"]) == 0
    assert (tmp_path / "examples" / "minicpm3_qlora.yml").is_file()
    assert (tmp_path / "notes.txt").read_text() == "mine"  # other files are left alone
    assert "next:" in capsys.readouterr().out


def test_init_refuses_to_overwrite_changed_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_resources(tmp_path)
    lora, ds = tmp_path / "examples/minicpm3_lora.yml", tmp_path / "deepspeed_configs/zero2.json"
    lora.write_text("my edits\n")
    ds.write_text("{}\n")
    (tmp_path / "examples/data/chat_seed.json").unlink()
    assert main(["init", str(tmp_path)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [
        f"minicpm-plugin init: error: {lora}: exists and differs from the shipped file (--force replaces it)",
        f"minicpm-plugin init: error: {ds}: exists and differs from the shipped file (--force replaces it)",
    ]
    assert lora.read_text() == "my edits\n" and not (tmp_path / "examples/data/chat_seed.json").exists()  # nothing written

    assert main(["init", str(tmp_path), "--force"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[:3] == ["wrote     examples/data/chat_seed.json", "replaced  examples/minicpm3_lora.yml",
                       "replaced  deepspeed_configs/zero2.json"]
    assert {rel: (tmp_path / rel).read_bytes() for rel in repo_files()} == repo_files()


def test_force_replaces_a_link_instead_of_writing_through_it(tmp_path: Path) -> None:
    outside = tmp_path / "precious.json"
    outside.write_text("keep me")
    (tmp_path / "proj/deepspeed_configs").mkdir(parents=True)
    link = tmp_path / "proj/deepspeed_configs/zero3.json"
    link.symlink_to(outside)
    with pytest.raises(ResourceError, match="zero3.json: exists and differs"):
        write_resources(tmp_path / "proj")
    result = write_resources(tmp_path / "proj", force=True)
    assert "deepspeed_configs/zero3.json" in result.replaced
    assert outside.read_text() == "keep me" and not link.is_symlink()
    assert link.read_bytes() == (ROOT / "deepspeed_configs/zero3.json").read_bytes()


def test_a_broken_link_needs_force(tmp_path: Path) -> None:
    link = tmp_path / "examples/data/tool_calls.jsonl"
    link.parent.mkdir(parents=True)
    link.symlink_to(tmp_path / "gone.jsonl")
    with pytest.raises(ResourceError, match="tool_calls.jsonl: is a link to no file"):
        write_resources(tmp_path)
    assert write_resources(tmp_path, force=True).replaced == ["examples/data/tool_calls.jsonl"]
    assert not link.is_symlink() and not (tmp_path / "gone.jsonl").exists()


def _file(d: Path) -> Path:
    d.write_text("x")
    return d


def _under_a_file(d: Path) -> Path:
    d.write_text("x")
    return d / "sub"


def _examples_is_a_file(d: Path) -> Path:
    d.mkdir()
    (d / "examples").write_text("x")
    return d


def _recipe_is_a_folder(d: Path) -> Path:
    (d / "examples/minicpm3_full.yml").mkdir(parents=True)
    return d


@pytest.mark.parametrize(("setup", "message"), [
    (_file, "{d}: is a file, not a folder"),
    (_under_a_file, "{d}/sub: cannot create the folder: Not a directory"),
    (_examples_is_a_file, "{d}/examples: is a file, but the shipped files need a folder there"),
    (_recipe_is_a_folder, "{d}/examples/minicpm3_full.yml: is a folder, not a file; remove it or choose another DIR"),
], ids=["dir-is-a-file", "dir-under-a-file", "examples-is-a-file", "recipe-is-a-folder"])
def test_init_bad_targets_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str], setup,
                                              message: str) -> None:
    target = tmp_path / "d"
    arg = setup(target)
    for force in ([], ["--force"]):
        assert main(["init", str(arg), *force]) == 1
        assert capsys.readouterr().err == f"minicpm-plugin init: error: {message.format(d=target)}\n"


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write into a read-only folder")
def test_init_unwritable_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "ro"
    target.mkdir()
    target.chmod(0o555)
    try:
        assert main(["init", str(target)]) == 1
    finally:
        target.chmod(0o755)
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "cannot write: Permission denied" in err


def test_init_failed_write_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    """The same path as an unwritable folder, for machines where tests run as root (who may write anywhere)."""
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("minicpm_plugin.tools.resources.tempfile.mkstemp", refuse)
    assert main(["init", str(tmp_path)]) == 1
    first = next(iter(repo_files()))
    assert capsys.readouterr().err == f"minicpm-plugin init: error: {tmp_path / first}: cannot write: Permission denied\n"


# ---- the installed wheel, outside the source tree --------------------------------------------------------


@pytest.mark.slow
def test_installed_wheel_inits_and_smoke_trains_a_recipe(wheel: Path, tmp_path: Path) -> None:
    site_dir = tmp_path / "site"
    run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target", str(site_dir), str(wheel)],
        cwd=tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    # Only the scratch installation on the path; the source tree is neither on it nor the current folder.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {
        "PYTHONPATH": str(site_dir), "MINICPM_PLUGIN_CACHE": str(tmp_path / "cache")}
    where = run([sys.executable, "-c", "import minicpm_plugin; print(minicpm_plugin.__file__)"], cwd=work, env=env)
    assert Path(where.stdout.strip()).is_relative_to(site_dir)

    init = run([sys.executable, "-m", "minicpm_plugin.cli", "init", "proj"], cwd=work, env=env)
    print(init.stdout)
    assert f"{len(repo_files())} file(s) written to proj" in init.stdout
    proj = work / "proj"
    assert {rel: (proj / rel).read_bytes() for rel in repo_files()} == repo_files()

    # The cheapest recipe (LoRA on the 40 seed chats), launched from the folder init wrote, as a user would;
    # one step (smoke's one micro batch per step) on rows packed to 512 tokens (the longest chat has 287).
    smoke = run([sys.executable, "-m", "minicpm_plugin.cli", "smoke", "examples/minicpm3_lora.yml", "--max-steps", "1",
                 "--sequence-len", "512", "--keep", str(tmp_path / "smoke")], cwd=proj, env=env, timeout=900)
    print(smoke.stdout)
    assert any(line.startswith("PASS examples/minicpm3_lora.yml: 1 logged step(s)") for line in smoke.stdout.splitlines())
    log = (tmp_path / "smoke" / "smoke.log").read_text()
    assert "[minicpm-plugin] INFO data: " in log and "chat_seed.json" in log  # the plugin prepared the written data
