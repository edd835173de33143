"""Counts of rows dropped or truncated during preprocessing, collected across worker processes.

axolotl tokenizes with `datasets.map`, possibly in several processes, so the strategy appends one
JSON line per affected row to a file named after the preprocessing settings; the plugin sums the
file after preprocessing. Rows are keyed by their source (FILE:LINE), so repeated calls count once.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class LengthSummary:
    dropped: int = 0
    truncated: int = 0
    nothing_to_train: int = 0
    tokens_lost: int = 0
    turns_cut: int = 0
    examples: list[str] = field(default_factory=list)

    @property
    def any(self) -> bool:
        return bool(self.dropped or self.truncated or self.nothing_to_train)


class LengthReport:
    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def for_config(cls, cfg: Any) -> LengthReport:
        base = Path(cfg.dataset_prepared_path or "last_run_prepared") / "minicpm3_reports"
        key = json.dumps(
            [
                [str(d.get("path")) for d in (cfg.datasets or [])],
                str(cfg.tokenizer_config or cfg.base_model),
                cfg.sequence_len,
                cfg.minicpm3_overlong,
                cfg.minicpm3_literal_style,
                cfg.minicpm3_train_last_turn_only,
                cfg.minicpm3_train_thought,
            ],
            default=str,
        )
        return cls(base / (hashlib.sha256(key.encode()).hexdigest()[:16] + ".jsonl"))

    def reset(self) -> None:
        self.path.unlink(missing_ok=True)

    def add(self, source: str, status: str, full_length: int, kept: int, turns_cut: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps({"source": source, "status": status, "full": full_length, "kept": kept, "turns_cut": turns_cut})
        # One small O_APPEND write per row: safe with several writer processes.
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, (line + "\n").encode())
        finally:
            os.close(fd)

    def records(self) -> dict[str, dict[str, Any]]:
        """The last record of each source: ``{"source", "status", "full", "kept", "turns_cut"}``."""
        rows: dict[str, dict[str, Any]] = {}
        if self.path.exists():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    row = json.loads(line)
                    rows[row["source"]] = row
        return rows

    def summary(self) -> LengthSummary:
        rows = self.records()
        out = LengthSummary()
        counts: Counter[str] = Counter(r["status"] for r in rows.values())
        out.dropped, out.truncated, out.nothing_to_train = counts["dropped"], counts["truncated"], counts["nothing_to_train"]
        out.tokens_lost = sum(r["full"] - r["kept"] for r in rows.values() if r["status"] in ("dropped", "truncated"))
        out.turns_cut = sum(r["turns_cut"] for r in rows.values())
        out.examples = sorted(rows)[:5]
        return out
