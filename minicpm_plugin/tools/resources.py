"""The recipes, DeepSpeed configs and sample data the package ships, and `minicpm-plugin init`.

The repository keeps one copy of them where users look (`examples/`, `deepspeed_configs/`);
`setup.py` copies the files named by RESOURCE_PATTERNS into the wheel under
`minicpm_plugin/resources/`. An installed wheel reads them from there through
`importlib.resources`; a source checkout (editable install, or the repository on PYTHONPATH)
reads the checkout's own folders, so an edit there is live at once.

Standard library only: `setup.py` loads this file on its own, before the package is importable.
"""

from __future__ import annotations

import fnmatch
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

#: The shipped files, relative to the repository root (and to `minicpm_plugin/resources/` in a wheel).
#: A pattern is a folder path and one shell-style file name pattern.
RESOURCE_PATTERNS = (
    "examples/*.yml",
    "examples/data/*.json",
    "examples/data/*.jsonl",
    "examples/data/*.py",
    "deepspeed_configs/*.json",
)
#: Where the files sit inside the installed package.
PACKAGE_SUBDIR = "resources"


class ResourceError(RuntimeError):
    """The shipped files cannot be found or written (the message says which and why)."""


def _matches(root: Traversable, pattern: str) -> Iterator[tuple[str, Traversable]]:
    *folders, name = pattern.split("/")
    node = root
    for part in folders:
        node = node / part
        if not node.is_dir():
            return
    for child in sorted(node.iterdir(), key=lambda c: c.name):
        if fnmatch.fnmatchcase(child.name, name) and child.is_file():
            yield "/".join([*folders, child.name]), child


def matching_files(root: Traversable) -> dict[str, Traversable]:
    """{relative path: file} for every file under `root` that RESOURCE_PATTERNS names."""
    return {rel: node for pattern in RESOURCE_PATTERNS for rel, node in _matches(root, pattern)}


def checkout_root() -> Path | None:
    """The source checkout this package is imported from, or None for an installed wheel."""
    root = Path(__file__).resolve().parents[2]
    if (root / "pyproject.toml").is_file() and (root / "examples").is_dir() and (root / "deepspeed_configs").is_dir():
        return root
    return None


def resource_root() -> Traversable:
    """Where the shipped files are read from: the wheel's package data, else the source checkout."""
    packaged = resources.files("minicpm_plugin") / PACKAGE_SUBDIR
    if packaged.is_dir():
        return packaged
    root = checkout_root()
    if root is None:
        raise ResourceError(
            f"the recipes and sample data are missing from this installation (no minicpm_plugin/{PACKAGE_SUBDIR}/ "
            "and no source checkout): reinstall minicpm-plugin from a wheel or from the repository"
        )
    return root


def resource_files() -> dict[str, Traversable]:
    """{relative path: file} of every shipped recipe, DeepSpeed config and sample data file."""
    files = matching_files(resource_root())
    if not files:
        raise ResourceError(f"no recipes or sample data found under {resource_root()}")
    return files


def read_resource(rel: str) -> bytes:
    """The bytes of one shipped file, e.g. `read_resource("examples/minicpm3_lora.yml")`."""
    files = resource_files()
    if rel not in files:
        raise ResourceError(f"{rel} is not a shipped file; shipped: {', '.join(files)}")
    return files[rel].read_bytes()


@dataclass
class InitResult:
    """What `write_resources` did, by relative path."""

    dest: Path
    written: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)


def _blocker(dest: Path, rel: str) -> str | None:
    """Why `rel` cannot be written under `dest` even with --force (a folder in the way), or None."""
    target = dest / rel
    for parent in reversed(target.relative_to(dest).parents):
        path = dest / parent
        if parent != Path(".") and path.exists() and not path.is_dir():
            return f"{path}: is a file, but the shipped files need a folder there"
    if target.is_dir() and not target.is_symlink():
        return f"{target}: is a folder, not a file; remove it or choose another DIR"
    return None


def _write_file(target: Path, data: bytes) -> None:
    """Write atomically: a link at `target` is replaced, never followed into another file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_resources(dest: str | Path, *, force: bool = False) -> InitResult:
    """Write the shipped files into `dest`, keeping their layout, so the recipes' relative paths
    (`examples/data/...`, `deepspeed_configs/...`) work when a run is launched from `dest`.

    Files already there with the same bytes are left alone. Nothing is written when a file
    differs and `force` is false: ResourceError lists every such file, one per line.
    """
    dest = Path(dest)
    if dest.exists() and not dest.is_dir():
        raise ResourceError(f"{dest}: is a file, not a folder")
    files = resource_files()
    result = InitResult(dest)
    blocked, differ, plan = [], [], []
    for rel, node in files.items():
        data = node.read_bytes()
        target = dest / rel
        reason = _blocker(dest, rel)
        if reason:
            if reason not in blocked:
                blocked.append(reason)
            continue
        if target.is_file():
            try:
                same = target.read_bytes() == data
            except OSError as exc:
                blocked.append(f"{target}: cannot read it to compare: {exc.strerror or exc}")
                continue
            if same:
                result.unchanged.append(rel)
                continue
            differ.append(f"{target}: exists and differs from the shipped file (--force replaces it)")
            plan.append((rel, data, result.replaced))
        elif target.is_symlink():  # a broken link, or a link to a folder
            differ.append(f"{target}: is a link to no file (--force replaces the link)")
            plan.append((rel, data, result.replaced))
        else:
            plan.append((rel, data, result.written))
    if blocked or (differ and not force):
        raise ResourceError("\n".join(blocked + ([] if force else differ)))
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ResourceError(f"{dest}: cannot create the folder: {exc.strerror or exc}") from None
    for rel, data, bucket in plan:
        try:
            _write_file(dest / rel, data)
        except OSError as exc:
            raise ResourceError(f"{dest / rel}: cannot write: {exc.strerror or exc}") from None
        bucket.append(rel)
    return result
