"""axolotl prompt strategy: `datasets: [{path: ..., type: minicpm_plugin.strategy}]`.

Rows arrive from the file the plugin prepared (`minicpm_plugin.formats.prepare`: the text rendered
while the file was validated, the spans that labelling needs, the source FILE:LINE), so a row is only
tokenized and labelled here: one render (at prepare time) and one tokenizer call per conversation,
and every value reaches the tokens exactly as written in the user's file. Rows prepared without a
text in the run's literal style are rendered from their `conversation`; rows from elsewhere (a hub
dataset) are converted here from their columns.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from axolotl.prompt_tokenizers import PromptTokenizingStrategy

from minicpm_plugin.chat import FormatError, Rendered, render_conversation
from minicpm_plugin.formats.prepare import decode_row, is_prepared_row, stored_render
from minicpm_plugin.integration.args import plugin_options
from minicpm_plugin.integration.length_report import LengthReport
from minicpm_plugin.tokenize import LabelOptions, finish
from minicpm_plugin.utils import get_logger

LOG = get_logger(__name__)


def row_conversation(row: dict[str, Any], source: str, format: str = "auto") -> dict[str, Any]:
    """The canonical conversation of one dataset row (prepared by the plugin, or raw columns)."""
    if is_prepared_row(row):
        return decode_row(row)
    from minicpm_plugin.formats.reader import RawRecord
    from minicpm_plugin.formats.scan import scan_records

    scanned = scan_records([RawRecord(1, {k: v for k, v in row.items() if v is not None})], source, format=format)
    problems = scanned.file_problems + [p for r in scanned.rows for p in r.problems if p.is_error]
    if problems or not scanned.rows or scanned.rows[0].conversation is None:
        raise ValueError("; ".join(str(p) for p in problems) or "cannot read this row")
    return scanned.rows[0].conversation


def encode(tokenizer: Any, texts: list[str]) -> tuple[list[list[int]], list[Any]]:
    """Token ids and character offsets of each text, from one call of the tokenizer (which adds `<s>`).

    A `tokenizers`-backed tokenizer whose encoding transformers does not change (its own `_encode_plus`,
    no truncation or padding set, special tokens kept whole) is called as transformers calls it,
    `encode_batch` on the Rust backend, without first converting every encoding into a dict of lists
    (about a tenth of the call). Any other tokenizer is called normally. No attention mask either way:
    `finish` builds it.
    """
    backend = getattr(tokenizer, "_tokenizer", None)
    if _plain_backend(tokenizer) and backend.truncation is None and backend.padding is None and (
            backend.encode_special_tokens == bool(getattr(tokenizer, "split_special_tokens", False))):
        encodings = backend.encode_batch(texts, add_special_tokens=True)
        return [e.ids for e in encodings], [e.offsets for e in encodings]
    enc = tokenizer(texts, return_offsets_mapping=True, add_special_tokens=True, return_attention_mask=False)
    return enc["input_ids"], enc["offset_mapping"]


def _plain_backend(tokenizer: Any) -> bool:
    try:
        from transformers.tokenization_utils_tokenizers import TokenizersBackend
    except ImportError:  # pragma: no cover - another transformers layout
        return False
    return isinstance(tokenizer, TokenizersBackend) and type(tokenizer)._encode_plus is TokenizersBackend._encode_plus


class MiniCPM3Strategy(PromptTokenizingStrategy):
    """Renders each conversation once, tokenizes it once with offsets, labels from spans."""

    def __init__(self, tokenizer: Any, cfg: Any, report: LengthReport | None = None, format: str | None = None) -> None:
        opts = plugin_options(cfg)
        super().__init__(None, tokenizer, train_on_inputs=False, sequence_len=int(cfg.sequence_len or 2048))
        self.options = LabelOptions(train_last_turn_only=opts.minicpm3_train_last_turn_only,
                                    train_thought=opts.minicpm3_train_thought)
        self.literal_style = opts.minicpm3_literal_style
        self.overlong = opts.minicpm3_overlong
        self.format = format or opts.minicpm3_format  # the dataset's own format, else the config's
        self.report = report

    @property
    def supports_batched(self) -> bool:
        return True

    def tokenize_prompt(self, prompt: dict[str, list[Any]]) -> dict[str, list[Any]]:
        """A batch of rows (columns of lists, as `datasets.map` gives them) -> `input_ids`, `attention_mask`,
        `labels`: one int64 numpy array per kept row. Overlong rows and rows with nothing to train are
        left out and counted in the length report."""
        keys = list(prompt)
        n = len(prompt[keys[0]]) if keys else 0
        rendered: list[Rendered] = []
        messages: list[Any] = []  # None for a prepared row: its rendered spans are already the label spans
        sources: list[str] = []
        for i in range(n):
            row = {k: prompt[k][i] for k in keys}
            source = row.get("source") or f"row {i}"
            stored = stored_render(row, self.literal_style) if is_prepared_row(row) else None
            if stored is not None:
                rendered.append(stored)
                messages.append(None)
            else:
                try:
                    conv = row_conversation(row, source, self.format)
                    rendered.append(render_conversation(conv["messages"], conv.get("tools"), literal_style=self.literal_style))
                except (FormatError, ValueError, KeyError, TypeError) as exc:
                    # Only reachable for rows the plugin did not prepare and validate itself.
                    raise ValueError(f"{source}: cannot render this conversation: {exc}") from exc
                messages.append(conv["messages"])
            sources.append(source)
        all_ids, all_offsets = encode(self.tokenizer, [r.text for r in rendered])
        out: dict[str, list[Any]] = {"input_ids": [], "attention_mask": [], "labels": []}
        for r, msgs, ids, offsets, source in zip(rendered, messages, all_ids, all_offsets, sources, strict=True):
            t = finish(r, msgs, list(ids), offsets, self.options, self.sequence_len, self.overlong)
            if t.overlong and self.report:
                self.report.add(source, t.overlong, t.full_length, len(t.input_ids), t.turns_cut)
            if t.overlong == "dropped":
                continue
            if t.trained_tokens == 0:
                if self.report:
                    self.report.add(source, "nothing_to_train", t.full_length, 0, 0)
                continue
            # int64 arrays: datasets writes them to Arrow in one copy each. From lists of Python ints it walks
            # every token of the batch several times looking for mixed types (about 1/3 of the tokenizer
            # call); the Arrow columns are the same (input_ids int32, attention_mask int8, labels int64).
            out["input_ids"].append(np.asarray(t.input_ids, dtype=np.int64))
            out["attention_mask"].append(np.ones(len(t.input_ids), dtype=np.int64))
            out["labels"].append(np.asarray(t.labels, dtype=np.int64))
        return out


def load(tokenizer: Any, cfg: Any, ds_cfg: dict[str, Any] | None = None, processor: Any = None) -> MiniCPM3Strategy:
    """Entry point axolotl calls for `type: minicpm_plugin.strategy`, with the validated dataset entry
    as `ds_cfg`; the plugin put that dataset's `format:` there as `input_format`."""
    fmt = ds_cfg.get("input_format") if ds_cfg else None
    return MiniCPM3Strategy(tokenizer, cfg, report=LengthReport.for_config(cfg), format=fmt)
