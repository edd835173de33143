# The two commands of the README: `make demo` and `make test`. Both create .venv when missing.
PYTHON ?= python3.11
# pytest-xdist workers for `make test` (CI has 2 cores); each training run in a test uses its share of the cores.
TEST_WORKERS ?= 2
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
export AXOLOTL_DO_NOT_TRACK := 1
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export WANDB_MODE := disabled
export DS_BUILD_OPS := 0
export TOKENIZERS_PARALLELISM := false
# DeepSpeed compiles its CPU Adam op on first use (the plugin skips the shm comm op): once per machine, into this cache,
# always with the venv's ninja (the system's other ninja would rebuild them).
export TORCH_EXTENSIONS_DIR := $(CURDIR)/.torch_extensions
# The venv is installed without byte-compiling its 43k files (pip --no-compile: 125 of 227 s of a fresh
# install here); Python compiles each module on first import and keeps the .pyc, unless this variable
# (set on some machines) forbids writing it: then every process would recompile all it imports.
unexport PYTHONDONTWRITEBYTECODE
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: install test lint demo clean

# The stamp depends on pyproject.toml so a dependency change reinstalls.
$(VENV)/.installed: pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) (Python 3.11)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# torch first, pinned, so no CUDA build is pulled in by axolotl's range.
	$(PIP) install -q --no-compile torch==2.13.0
	$(PIP) install -q --no-compile -e '.[dev]'
	touch $@

install: $(VENV)/.installed

lint: install
	$(VENV)/bin/ruff check minicpm_plugin tests benchmarks

test: install
	$(VENV)/bin/ruff check minicpm_plugin tests benchmarks
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder --durations=40 tests

demo: install
	$(PY) -m minicpm_plugin.tools.demo

clean:
	rm -rf build *.egg-info .pytest_cache demo_out
