"""Build hook: the wheel carries the recipes, DeepSpeed configs and sample data as package data.

The repository keeps one copy of them, in `examples/` and `deepspeed_configs/`. When a wheel is
built, the files that `minicpm_plugin/tools/resources.py` names are copied into
`minicpm_plugin/resources/` of the build. Editable installs copy nothing: they read the checkout.
Everything else about the package is in pyproject.toml.
"""

import importlib.util
import shutil
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent


def _resources_module():  # noqa: ANN202 - the module object
    # Loaded from its file: the package itself cannot be imported before it is built.
    spec = importlib.util.spec_from_file_location("_minicpm_resources", HERE / "minicpm_plugin/tools/resources.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


class BuildPyWithResources(build_py):
    """build_py, then copy the shipped files into the built package."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        res = _resources_module()
        files = res.matching_files(HERE)
        if not files:
            raise SystemExit(f"no recipes or sample data under {HERE}: examples/ and deepspeed_configs/ are missing")
        target = Path(self.build_lib) / "minicpm_plugin" / res.PACKAGE_SUBDIR
        shutil.rmtree(target, ignore_errors=True)  # no file left over from an earlier build
        for rel, src in files.items():
            self.mkpath(str((target / rel).parent))
            self.copy_file(str(src), str(target / rel), preserve_mode=False)


setup(cmdclass={"build_py": BuildPyWithResources})
