"""Preparing data files at startup: a progress bar as `datasets` shows its own (tqdm on stderr), and
how many processes to prepare with."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

#: Without a terminal, a bar is still written (every 30 s) for files at least this large.
LONG_FILE_BYTES = 64 << 20


@contextmanager
def file_progress(path: str | Path, desc: str) -> Iterator[Callable[[int], None] | None]:
    """``update(n_bytes)`` for a bar over the file's size, or None when no bar is wanted: progress bars
    disabled for `datasets` (`HF_DATASETS_DISABLE_PROGRESS_BARS`), or stderr not a terminal and the
    file small."""
    from datasets.utils.tqdm import are_progress_bars_disabled, tqdm

    try:
        size = os.path.getsize(path)
    except OSError:
        size = 0
    tty = sys.stderr.isatty()
    if are_progress_bars_disabled() or not size or (not tty and size < LONG_FILE_BYTES):
        yield None
        return
    bar = None

    def update(n: int) -> None:  # the bar appears with the first bytes read (not for a reused prepared file)
        nonlocal bar
        if bar is None:
            bar = tqdm(total=size, desc=desc, unit="B", unit_scale=True, unit_divisor=1024, file=sys.stderr,
                       mininterval=0.5 if tty else 30.0, dynamic_ncols=tty)
        bar.update(n)

    try:
        yield update
    finally:
        if bar is not None:
            bar.close()


def prepare_processes(cfg: Any) -> int:
    """Processes for preparing a file: axolotl's `dataset_num_proc` (default: its own, the CPU count),
    shared among the processes of this machine (every rank prepares at startup)."""
    from axolotl.utils.datasets import get_default_process_count

    total = cfg.get("dataset_num_proc") or get_default_process_count() or 1
    return max(1, int(total) // max(1, int(os.environ.get("LOCAL_WORLD_SIZE") or 1)))
