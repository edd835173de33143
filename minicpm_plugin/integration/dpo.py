"""Preference training: `rl: dpo` (also ipo, simpo, orpo) with `datasets: [{type: minicpm_plugin.dpo}]`.

How axolotl 0.19 reaches this module: `axolotl.utils.data.rl._load_split` calls
`axolotl.prompt_strategies.base.load("minicpm_plugin.dpo", cfg, dataset_idx=i)`, which imports the
package `minicpm_plugin` and calls its attribute `dpo(cfg, dataset_idx=i)` (a lazy attribute that
returns :func:`dpo` below; there must be no submodule called `minicpm_plugin.dpo`). The call returns a
row transform plus `datasets.map` keyword arguments.

The plugin's `register` has already read, validated and written each local preference file as
Arrow-safe rows of two strings (`pair` = canonical pair as JSON text, `source` = FILE:LINE), so values
reach the tokens exactly as written. The transform renders each pair with MiniCPM3's format into the
three strings the trainers tokenize (`prompt` without `<s>`, answers ending with one `<|im_end|>`),
all other columns removed and the output features pinned to strings. With the tokenizer axolotl passes
it, it also tokenizes each pair as TRL will: a pair longer than `sequence_len`, or whose prompt tokens
are not a prefix of prompt + answer, is left out here and counted with its FILE:LINE (reported after
preprocessing), so axolotl's own length filter, which drops rows with a bare count, finds nothing.

Which trainers: `dpo` and `ipo` (TRL `DPOTrainer`), `simpo` (TRL's CPO trainer) and `orpo` all read
`prompt`/`chosen`/`rejected` strings and split answers from prompt the same way; `kto` takes unpaired
completions with labels and `grpo` generates its own completions, so neither uses pairs.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from minicpm_plugin.chat.tokens import BOS, IM_END
from minicpm_plugin.formats.preference import pair_texts, scan_pair_records
from minicpm_plugin.formats.preference_prepare import (
    decode_pair_row,
    is_prepared_pair_row,
    prepare_pairs_file,
)
from minicpm_plugin.integration.config_checks import ConfigError, check_dataset_path
from minicpm_plugin.integration.length_report import LengthReport
from minicpm_plugin.utils import get_logger

LOG = get_logger(__name__)
PREFERENCE_TYPE = "minicpm_plugin.dpo"
SFT_TYPE = "minicpm_plugin.strategy"
#: `rl:` values whose trainers take prompt/chosen/rejected strings.
PAIR_RL = ("dpo", "ipo", "simpo", "orpo")
OUTPUT_COLUMNS = ("prompt", "chosen", "rejected")


def rl_name(cfg: Any) -> str | None:
    rl = cfg.get("rl")
    if rl is None or rl is False or rl == "":
        return None
    return str(getattr(rl, "value", rl)).lower()


def is_preference_dataset(ds: Any) -> bool:
    return isinstance(ds, dict) and str(ds.get("type") or "") == PREFERENCE_TYPE


def _all_datasets(cfg: Any) -> list[Any]:
    return [*(cfg.get("datasets") or []), *(cfg.get("test_datasets") or [])]


def check_preference_config(cfg: dict[str, Any], opts: Any) -> bool:
    """Refuse combinations that would fail deep inside axolotl or train the wrong thing; True when the
    config trains preference pairs with `minicpm_plugin.dpo`."""
    rl = rl_name(cfg)
    datasets = _all_datasets(cfg)
    ours = [ds for ds in datasets if is_preference_dataset(ds)]
    if rl is None:
        if ours:
            raise ConfigError(f"datasets of type {PREFERENCE_TYPE} are preference pairs: set `rl: dpo` (or ipo, simpo, "
                              f"orpo); for SFT data use type {SFT_TYPE}.")
        return False
    sft = [ds for ds in datasets if isinstance(ds, dict) and str(ds.get("type") or "").startswith(SFT_TYPE)]
    if sft:
        raise ConfigError(f"`rl: {rl}` trains preference pairs but a dataset has type {SFT_TYPE} (SFT); use type "
                          f"{PREFERENCE_TYPE} for preference files, or remove `rl:` to fine-tune on conversations.")
    if not ours:
        return False
    if rl not in PAIR_RL:
        raise ConfigError(f"`rl: {rl}` does not train on preference pairs ({PREFERENCE_TYPE} supports rl: "
                          f"{', '.join(PAIR_RL)}): KTO needs unpaired completions with labels and GRPO generates its own.")
    unusable = {"minicpm3_overlong": ("truncate_turns", "a pair is kept whole or left out (and counted), never cut"),
                "minicpm3_train_thought": (False, "a preference trainer scores the whole answer, thought included"),
                "minicpm3_train_last_turn_only": (True, "only the answer is trained in a pair anyway")}
    for key, (value, why) in unusable.items():
        if getattr(opts, key) == value:
            raise ConfigError(f"{key}: {value!r} does not apply to preference pairs ({why}); remove it.")
    eos = ((cfg.get("special_tokens") or {}).get("eos_token"))
    if eos not in (None, IM_END):
        raise ConfigError(f"special_tokens.eos_token is {eos!r}: MiniCPM3 ends a turn with {IM_END}, and TRL appends the "
                          f"EOS token to every answer that does not end with it; remove the override.")
    if cfg.get("excess_length_strategy") == "truncate":
        LOG.warning("excess_length_strategy: truncate has no effect on minicpm_plugin.dpo data: pairs longer than "
                    "sequence_len are left out (and counted) before axolotl's own length step")
    return True


def prepare_preference_datasets(cfg: dict[str, Any], opts: Any, out_dir: Path) -> list[Any]:
    """Prepare each local `minicpm_plugin.dpo` file (see the module doc); point the dataset entry at it."""
    from minicpm_plugin.formats.problems import DataError

    prepared = []
    for key in ("datasets", "test_datasets"):
        for ds in cfg.get(key) or []:
            if not is_preference_dataset(ds):
                continue
            fmt = ds.pop("format", None) or opts.minicpm3_format
            path = ds.get("path")
            if not path or not Path(path).is_file():
                if path and Path(path).exists():
                    raise ConfigError(f"dataset path {path!r} is a directory; give the data file itself.")
                if path:
                    check_dataset_path(str(path))  # a missing file is an error, as for SFT datasets
                LOG.warning(f"preference dataset {path!r} is not a local file: its rows reach {PREFERENCE_TYPE} through "
                            "Arrow, which can change argument values (nulls, floats). Download it to a JSON/JSONL file for "
                            "exact values." + (f" Its `format: {fmt}` applies to local files only; set minicpm3_format."
                                               if fmt != opts.minicpm3_format else ""))
                continue
            try:
                result = prepare_pairs_file(path, format=fmt, on_bad_rows=opts.minicpm3_on_bad_rows, out_dir=out_dir)
            except DataError as exc:
                raise ConfigError(str(exc)) from None
            except ValueError as exc:  # an unknown format name
                raise ConfigError(f"dataset {path!r}: {exc}") from None
            prepared.append(result)
            LOG.info("data: " + result.summary())
            ds["path"] = result.path
            ds["ds_type"] = "json"
            ds.pop("data_files", None)
            ds.setdefault("split", "train")
    return prepared


def pair_report(cfg: Any) -> LengthReport:
    """Where the transform records the pairs it leaves out (one file per preprocessing setup)."""
    base = LengthReport.for_config(cfg).path
    return LengthReport(base.with_name(base.stem + ".pairs.jsonl"))


def _row_pair(row: dict[str, Any], source: str, fmt: str) -> dict[str, Any]:
    if is_prepared_pair_row(row):
        return decode_pair_row(row)
    from minicpm_plugin.formats.reader import RawRecord

    scanned = scan_pair_records([RawRecord(1, {k: v for k, v in row.items() if v is not None})], source, format=fmt)
    problems = scanned.file_problems + [p for r in scanned.rows for p in r.problems if p.is_error]
    if problems or not scanned.rows or scanned.rows[0].pair is None:
        raise ValueError("; ".join(str(p) for p in problems) or f"{source}: cannot read this row as a preference pair")
    return scanned.rows[0].pair


def check_tokenizer(tokenizer: Any) -> None:
    """The trainers append `eos_token` to answers not ending with it, and rely on `<s>` being added."""
    if getattr(tokenizer, "eos_token", None) != IM_END:
        raise ValueError(f"the tokenizer's eos_token is {tokenizer.eos_token!r}, not {IM_END}: the preference trainers "
                         f"would append it after MiniCPM3's {IM_END}. Use MiniCPM3's tokenizer without an eos override.")
    if getattr(tokenizer, "bos_token", None) != BOS:
        raise ValueError(f"the tokenizer's bos_token is {tokenizer.bos_token!r}, not {BOS}; use MiniCPM3's tokenizer.")


def dpo(cfg: Any, dataset_idx: int = 0, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
    """What axolotl calls for `type: minicpm_plugin.dpo`: the batched row transform and its map arguments."""
    from datasets import Features, Value

    from minicpm_plugin.integration.args import plugin_options
    from minicpm_plugin.tokenize import tokenize_pairs

    opts = plugin_options(cfg)
    ds_cfg = (cfg.get("datasets") or [])[dataset_idx] if dataset_idx < len(cfg.get("datasets") or []) else {}
    fmt = (ds_cfg or {}).get("format") or opts.minicpm3_format
    name = str((ds_cfg or {}).get("path") or f"dataset {dataset_idx}")
    literal_style = opts.minicpm3_literal_style
    limit = int(cfg.get("sequence_len") or 0) or None
    report = pair_report(cfg)

    def transform(batch: dict[str, list[Any]], indices: list[int], tokenizer: Any = None) -> dict[str, list[str]]:
        keys = list(batch)
        texts, sources = [], []
        for j, index in enumerate(indices):
            row = {k: batch[k][j] for k in keys}
            source = row["source"] if is_prepared_pair_row(row) else f"{name}:{index + 1}"
            texts.append(pair_texts(_row_pair(row, source, fmt), literal_style))
            sources.append(source)
        keep = [True] * len(texts)
        if tokenizer is not None:
            check_tokenizer(tokenizer)
            for j, tokens in enumerate(tokenize_pairs(tokenizer, texts)):
                if not tokens.boundary_ok:
                    report.add(sources[j], "token-boundary", tokens.length, 0, 0)
                    keep[j] = False
                elif limit is not None and tokens.length > limit:
                    report.add(sources[j], "dropped", tokens.length, 0, 0)
                    keep[j] = False
        kept = [t for t, k in zip(texts, keep, strict=True) if k]
        return {"prompt": [t.prompt for t in kept], "chosen": [t.chosen for t in kept], "rejected": [t.rejected for t in kept]}

    features = Features({c: Value("string") for c in OUTPUT_COLUMNS})
    return transform, {"remove_columns": "__all__", "batched": True, "with_indices": True, "features": features}


def report_left_out(cfg: Any) -> None:
    """After preprocessing: say which pairs the transform left out, and why."""
    rows = pair_report(cfg).records()
    limit = cfg.sequence_len
    by_status: dict[str, list[dict[str, Any]]] = {}
    for row in rows.values():
        by_status.setdefault(row["status"], []).append(row)
    long = sorted(by_status.get("dropped", []), key=lambda r: r["source"])
    if long:
        worst = max(r["full"] for r in long)
        LOG.warning(f"{len(long)} preference pair(s) longer than sequence_len={limit} were left out (up to {worst} "
                    f"tokens), e.g. {', '.join(r['source'] for r in long[:5])}. Raise sequence_len to keep them "
                    "(tool stubs add ~1,000 tokens to every prompt).")
    split = sorted(by_status.get("token-boundary", []), key=lambda r: r["source"])
    if split:
        LOG.warning(f"{len(split)} preference pair(s) were left out because the tokenizer merges the end of the prompt "
                    f"with the answer, so no token split gives the model's own tokens: "
                    f"{', '.join(r['source'] for r in split[:5])}.")
    if not rows:
        LOG.info(f"preprocessing: every preference pair fits sequence_len={limit} and splits on a token boundary")


def _columns(dataset: Any) -> tuple[str, str, str] | None:
    names = set(getattr(dataset, "column_names", None) or [])
    if {"prompt_ids", "chosen_ids", "rejected_ids"} <= names:  # TRL DPOTrainer (dpo, ipo)
        return "prompt_ids", "chosen_ids", "rejected_ids"
    if {"prompt_input_ids", "chosen_input_ids", "rejected_input_ids"} <= names:  # CPO (simpo) and ORPO
        return "prompt_input_ids", "chosen_input_ids", "rejected_input_ids"
    return None


def trainer_token_problems(dataset: Any, bos_id: int, eos_id: int) -> Counter[str]:
    """Rows of a trainer's tokenized dataset whose prompt does not start with exactly one `<s>`, or whose
    answers do not end with exactly one `<|im_end|>` (what a changed TRL or tokenizer would cause)."""
    cols = _columns(dataset)
    out: Counter[str] = Counter()
    if cols is None:
        return out
    p_col, c_col, r_col = cols
    prompts, chosen, rejected = dataset[p_col], dataset[c_col], dataset[r_col]
    for p, c, r in zip(prompts, chosen, rejected, strict=True):
        if not p or p[0] != bos_id or p.count(bos_id) != 1:
            out["prompt without exactly one <s> at the start"] += 1
        for ids in (c, r):
            if not ids or ids[-1] != eos_id or (len(ids) > 1 and ids[-2] == eos_id):
                out["answer not ending with exactly one <|im_end|>"] += 1
    return out


def check_trainer(cfg: Any, trainer: Any, prepared: list[Any]) -> None:
    """After the trainer is built: count its rows against what was prepared and check its token ids."""
    tokenizer = getattr(trainer, "processing_class", None) or getattr(trainer, "tokenizer", None)
    datasets = [d for d in (getattr(trainer, "train_dataset", None), getattr(trainer, "eval_dataset", None)) if d is not None]
    problems: Counter[str] = Counter()
    if tokenizer is not None:
        for dataset in datasets:
            problems += trainer_token_problems(dataset, tokenizer.bos_token_id, tokenizer.convert_tokens_to_ids(IM_END))
    if problems:
        LOG.warning("the trainer's tokens differ from MiniCPM3's format: " + "; ".join(f"{n} {k}" for k, n in problems.items()))
    rows = sum(len(d) for d in datasets)
    if prepared:
        expected = sum(p.written for p in prepared) - len(pair_report(cfg).records())
        if rows < expected:
            LOG.warning(f"{expected - rows} preference pair(s) were removed after the plugin's preprocessing (axolotl's "
                        f"deduplication or its own length filter); the trainer has {rows} of {expected}.")
        else:
            LOG.info(f"trainer: {rows} preference pairs, prompts start with one <s>, answers end with one {IM_END}"
                     if not problems else f"trainer: {rows} preference pairs")
