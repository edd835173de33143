"""Build the preference trainer axolotl builds for each config (no training) and dump its token ids.

    python tests/preference_trainer_ids.py OUT.json CONFIG.yml [CONFIG.yml ...]

Runs what `axolotl.cli.train` runs up to the trainer (config loading with the plugin's `register`,
`load_preference_datasets`, `setup_model_and_trainer`), then writes for each config the trainer class
and, per row of its train dataset, the prompt / chosen / rejected ids the trainer will feed the model
(TRL DPOTrainer: `prompt_ids`, `chosen_ids`, `rejected_ids`; CPO and ORPO: `prompt_input_ids` and the
`chosen_*` / `rejected_*` sequences with their labels).
"""

from __future__ import annotations

import json
import sys
from typing import Any


def dump(trainer: Any) -> dict[str, Any]:
    ds = trainer.train_dataset
    cols = ds.column_names
    rows = []
    if "prompt_ids" in cols:
        for p, c, r in zip(ds["prompt_ids"], ds["chosen_ids"], ds["rejected_ids"], strict=True):
            rows.append({"prompt": p, "chosen": c, "rejected": r})
    else:
        for p, ci, cl, ri, rl in zip(ds["prompt_input_ids"], ds["chosen_input_ids"], ds["chosen_labels"],
                                     ds["rejected_input_ids"], ds["rejected_labels"], strict=True):
            rows.append({"prompt": p, "chosen_input_ids": ci, "chosen_labels": cl, "rejected_input_ids": ri,
                         "rejected_labels": rl})
    return {"trainer": type(trainer).__name__, "columns": cols, "rows": rows}


def main(out: str, *configs: str) -> None:
    from axolotl.cli.config import load_cfg
    from axolotl.common.datasets import load_preference_datasets
    from axolotl.train import setup_model_and_trainer

    results = {}
    for config in configs:
        cfg = load_cfg(config)
        meta = load_preference_datasets(cfg=cfg)
        trainer, *_ = setup_model_and_trainer(cfg, meta)
        results[config] = dump(trainer)
        del trainer
    with open(out, "w", encoding="utf-8") as fh:
        json.dump(results, fh)


if __name__ == "__main__":
    main(*sys.argv[1:])
