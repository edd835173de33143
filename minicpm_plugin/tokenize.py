"""Rendered conversation -> input_ids / labels / attention_mask, from one render and one tokenizer call.

Each conversation is rendered once by the format core, which also returns the character span of
every part; the whole text is tokenized once with offsets, and a token is trained when its
characters overlap a trainable span. No turn is re-rendered or searched for.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any, Literal

from minicpm_plugin.chat import Part, Rendered, Span, render_conversation
from minicpm_plugin.chat.spans import label_spans
from minicpm_plugin.chat.tokens import LiteralStyle

IGNORE_INDEX = -100
OverlongMode = Literal["drop", "truncate_turns"]


@dataclass(frozen=True)
class LabelOptions:
    """Which assistant parts carry a loss (docs/architecture.md, "What gets a label")."""

    train_last_turn_only: bool = False
    train_thought: bool = True


@dataclass
class TokenizedConversation:
    input_ids: list[int]
    labels: list[int]
    attention_mask: list[int]
    rendered: Rendered
    #: tokens of the full conversation before any truncation
    full_length: int = 0
    #: None when kept whole; "truncated" or "dropped" when longer than the sequence length
    overlong: str | None = None
    #: assistant turns cut off by truncation
    turns_cut: int = 0

    @property
    def trained_tokens(self) -> int:
        return len(self.labels) - self.labels.count(IGNORE_INDEX)


def trainable_spans(spans: Sequence[Span], messages: Sequence[Mapping[str, Any]] | None, options: LabelOptions,
                    last_message: int | None = None) -> list[Span]:
    """The spans that get labels: assistant thought, calls, content and `<|im_end|>`.

    ``spans`` are a render's spans with the conversation's ``messages``, or (``messages`` None) the
    label spans a prepared row stores (:func:`minicpm_plugin.formats.prepare.label_spans`).
    `last_message` limits the choice to messages up to that index (used after truncation).
    """
    chosen = [s for s in (spans if messages is None else label_spans(spans, messages))
              if s.part is not Part.NEWLINE and (last_message is None or s.message_index <= last_message)]
    if options.train_last_turn_only and chosen:
        last = max(s.message_index for s in chosen)
        chosen = [s for s in chosen if s.message_index == last]
    if not options.train_thought:
        chosen = [s for s in chosen if s.part is not Part.THOUGHT]
    return chosen


# Keys for bisecting the offsets: a token's (start, end) characters, end >= start (`<s>` is (0, 0)).
_start = itemgetter(0)
_end = itemgetter(1)


def token_ranges(offsets: Sequence[Sequence[int]], spans: Sequence[Span]) -> list[tuple[int, int]]:
    """Token index ranges [i, j) whose characters overlap each span (offsets are sorted).

    Binary search straight over the offsets: O(spans x log tokens), no per-token Python work.
    """
    ranges = []
    for span in spans:
        i = bisect_right(offsets, span.start, key=_end)  # first token ending after the span starts
        j = bisect_left(offsets, span.end, lo=i, key=_start)  # first token starting at or after the span ends
        if i < j:
            ranges.append((i, j))
    return ranges


def label_tokens(input_ids: list[int], offsets: Sequence[Sequence[int]], spans: Sequence[Span]) -> list[int]:
    labels = [IGNORE_INDEX] * len(input_ids)
    for i, j in token_ranges(offsets, spans):
        labels[i:j] = input_ids[i:j]
    return labels


def turn_cut_points(rendered: Rendered, offsets: Sequence[Sequence[int]]) -> list[tuple[int, int]]:
    """(token count, message index) after each assistant turn's `<|im_end|>\\n`, in order."""
    ends = [o[1] for o in offsets]
    points = []
    for span in rendered.spans:
        if span.part is Part.NEWLINE and span.role == "assistant" and span.message_index is not None:
            points.append((bisect_left(ends, span.end) + 1, span.message_index))
    return points


def finish(
    rendered: Rendered,
    messages: Sequence[Mapping[str, Any]] | None,
    input_ids: list[int],
    offsets: Sequence[Sequence[int]],
    options: LabelOptions,
    sequence_len: int | None = None,
    overlong: OverlongMode = "drop",
) -> TokenizedConversation:
    """Labels (and length handling) for a conversation already rendered and tokenized.

    ``messages`` None: ``rendered`` carries a prepared row's text and label spans (no conversation needed).
    """
    full = len(input_ids)
    result = TokenizedConversation(input_ids, [], [1] * full, rendered, full_length=full)
    spans = rendered.spans if messages is None else label_spans(rendered.spans, messages)
    last_message: int | None = None
    if sequence_len is not None and full > sequence_len:
        fitting = [(n, i) for n, i in turn_cut_points(rendered, offsets) if n <= sequence_len]
        if overlong != "truncate_turns" or not fitting:
            result.overlong = "dropped"
            result.input_ids, result.attention_mask = [], []
            return result
        cut, last_message = fitting[-1]
        result.overlong = "truncated"
        result.turns_cut = sum(1 for s in spans if s.part is Part.NEWLINE and s.message_index > last_message)
        input_ids, offsets = input_ids[:cut], offsets[:cut]
        result.input_ids, result.attention_mask = input_ids, [1] * cut
    result.labels = label_tokens(input_ids, offsets, trainable_spans(spans, None, options, last_message))
    return result


def tokenize_conversation(
    tokenizer: Any,
    conversation: Mapping[str, Any],
    options: LabelOptions = LabelOptions(),
    *,
    literal_style: LiteralStyle = "json",
    sequence_len: int | None = None,
    overlong: OverlongMode = "drop",
) -> TokenizedConversation:
    """Render and tokenize one canonical conversation (`{"messages": [...], "tools": [...]}`).

    The tokenizer adds `<s>` itself (MiniCPM3's `add_bos_token`), exactly once, at the start.
    """
    messages = conversation["messages"]
    rendered = render_conversation(messages, conversation.get("tools"), literal_style=literal_style)
    enc = tokenizer(rendered.text, return_offsets_mapping=True, add_special_tokens=True, return_attention_mask=False)
    return finish(rendered, messages, list(enc["input_ids"]), enc["offset_mapping"], options, sequence_len, overlong)


@dataclass(frozen=True)
class PairTokens:
    """Token ids of a preference pair as TRL's DPOTrainer builds them from three strings.

    ``prompt_ids`` is the tokenized prompt (with the tokenizer's `<s>`); each answer's ids are the
    tokens of prompt + answer after the prompt's length. ``boundary_ok`` says that the prompt's tokens
    are a prefix of both, i.e. the split falls on a token boundary and the answer ids are exactly the
    tokens the model sees (and generates) after the prompt.
    """

    prompt_ids: list[int]
    chosen_ids: list[int]
    rejected_ids: list[int]
    boundary_ok: bool

    @property
    def length(self) -> int:
        """The longer of prompt + chosen and prompt + rejected (what must fit `sequence_len`)."""
        return len(self.prompt_ids) + max(len(self.chosen_ids), len(self.rejected_ids))


def tokenize_pairs(tokenizer: Any, texts: Sequence[Any]) -> list[PairTokens]:
    """`PairTokens` for many `minicpm_plugin.formats.preference.PairTexts` (three batched tokenizer calls)."""
    if not texts:
        return []
    prompts = [t.prompt for t in texts]
    p_ids = tokenizer(prompts, add_special_tokens=True, return_attention_mask=False)["input_ids"]
    c_ids = tokenizer([t.prompt + t.chosen for t in texts], add_special_tokens=True, return_attention_mask=False)["input_ids"]
    r_ids = tokenizer([t.prompt + t.rejected for t in texts], add_special_tokens=True, return_attention_mask=False)["input_ids"]
    out = []
    for p, c, r in zip(p_ids, c_ids, r_ids, strict=True):
        p, c, r = list(p), list(c), list(r)
        n = len(p)
        out.append(PairTokens(p, c[n:], r[n:], c[:n] == p and r[:n] == p))
    return out
