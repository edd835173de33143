"""An offline, randomly initialised tiny MiniCPM3 (model + tokenizer) for tests, demos and benchmarks.

`build_tiny_model(out_dir)` writes, in a few seconds and without any hub access:

* a native `transformers` `MiniCPM3ForCausalLM` with the real architecture (multi-head latent
  attention, muP scalings `scale_emb=12`, `scale_depth=1.4`, `hidden_size/dim_model_base=10`, tied
  embeddings, longrope) at toy dimensions, saved as float32 safetensors with a generation config
  that stops on `</s>` and `<|im_end|>`;
* a fast SentencePiece-style BPE tokenizer trained on a small embedded English/Chinese/tool-call
  corpus, with MiniCPM3's special-token layout (`<unk>` 0, `<s>` 1, `</s>` 2, then the eight added
  special tokens `<|im_end|>` ... `<|fim_suffix|>` at 3..10, then the 256 `<0xNN>` byte tokens),
  byte fallback (no `<unk>` for any text), BOS added once by the post-processor, no EOS,
  `eos_token` `<|im_end|>`, `pad_token` unset (axolotl falls back to the EOS token), and the
  plugin's chat template.

Deviations from the real tokenizer, chosen so that character offsets and `decode(encode(x)) == x`
are exact: no SentencePiece dummy-prefix `▁` before the first word (rendered chat text starts with
`<|im_start|>`, so only raw text is affected), every `\\n` is its own token, digits are split one by
one, and pieces are at most 8 characters long (so `<|tool_call_start|>` and friends stay several
ordinary tokens). A literal `▁` (U+2581) in the input decodes as a space, as in SentencePiece.
transformers 5 keeps BOS in the `tokenizer.json` post-processor and drops `add_bos_token` from
`tokenizer_config.json`, so a loaded tokenizer reports `add_bos_token == False` yet adds `<s>`.

The build is deterministic: the same `seed` (and library versions) gives byte-identical files, so a
CI cache can key on (`TINY_MODEL_VERSION`, seed, transformers version). Nothing here imports axolotl.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

#: Bumped whenever the files written for a given seed change (cache key for CI).
TINY_MODEL_VERSION = 2
#: std of the tied embedding matrix (see build_tiny_model)
EMBEDDING_STD = 1.0

#: SentencePiece control tokens, ids 0..2.
BASE_SPECIAL_TOKENS: tuple[str, ...] = ("<unk>", "<s>", "</s>")
#: MiniCPM3's added special tokens, in id order (3..10 here, 73440..73447 in the real vocabulary).
ADDED_SPECIAL_TOKENS: tuple[str, ...] = (
    "<|im_end|>",
    "<|im_start|>",
    "<|tool_call|>",
    "<|execute_start|>",
    "<|execute_end|>",
    "<|fim_prefix|>",
    "<|fim_middle|>",
    "<|fim_suffix|>",
)
#: Format markers that are ordinary text (several tokens each) in MiniCPM3, never special tokens.
PLAIN_TEXT_MARKERS: tuple[str, ...] = (
    "<|tool_call_start|>",
    "<|tool_call_end|>",
    "<|thought_start|>",
    "<|thought_end|>",
)
BYTE_TOKENS: tuple[str, ...] = tuple(f"<0x{i:02X}>" for i in range(256))

#: Target total vocabulary (specials + bytes + learned pieces); the corpus may yield slightly fewer.
TOKENIZER_VOCAB_TARGET = 3072
MAX_PIECE_CHARS = 8

#: Tiny dimensions with the real model's proportions (4B: hidden 2560, q_lora 768, kv_lora 256,
#: nope 64, rope 32, v 64, 40 heads). hidden_size / dim_model_base = 10 as in the real model.
TINY_CONFIG: dict[str, Any] = {
    "hidden_size": 80,
    "dim_model_base": 8,
    "intermediate_size": 192,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "q_lora_rank": 48,
    "kv_lora_rank": 16,
    "qk_nope_head_dim": 16,
    "qk_rope_head_dim": 8,
    "v_head_dim": 16,
    "scale_emb": 12,
    "scale_depth": 1.4,
    "max_position_embeddings": 32768,
    "rms_norm_eps": 1e-5,
    "initializer_range": 0.1,
    "hidden_act": "silu",
    "tie_word_embeddings": True,
    "use_cache": True,
}

# Synthetic tool-call / JSON lines that enrich the hand-written corpus (fixed seed, independent of
# the model seed, so the tokenizer is the same for every seed).
_FUNCTIONS: dict[str, tuple[str, ...]] = {
    "get_weather": ("city", "unit", "days"),
    "search_web": ("query", "max_results", "language"),
    "send_email": ("to", "subject", "body", "urgent"),
    "book_flight": ("origin", "destination", "date", "passengers"),
    "convert_currency": ("amount", "from_currency", "to_currency"),
    "translate_text": ("text", "target_language"),
    "get_stock_price": ("symbol", "exchange"),
    "create_event": ("title", "start_time", "attendees", "location"),
    "search_hotels": ("location", "check_in", "check_out", "guests", "max_price"),
    "calculate": ("expression", "precision"),
    "get_time": ("timezone",),
    "set_alarm": ("time", "label", "repeat"),
    "play_music": ("song", "artist", "volume"),
}
_VALUES: tuple[str, ...] = (
    '"Beijing"', '"Shanghai"', '"北京"', '"上海"', '"杭州"', '"深圳"', '"Paris"', '"London"',
    '"New York"', '"Tokyo"', '"celsius"', '"fahrenheit"', "true", "false", "null", "0", "1", "2",
    "3", "5", "10", "42", "100", "2024", "3.5", "19.99", "-7", '"2024-10-01"', '"09:30"', '"USD"',
    '"EUR"', '"CNY"', '"zh"', '"en"', '["alice", "bob"]', '{"remind": 15}', "[]", "{}",
    '"hello world"', '"你好"', '"天气预报"', '"最新新闻"',
)  # fmt: skip
_SYNTHETIC_SEED = 1234
_SYNTHETIC_ROUNDS = 1500


def corpus_lines() -> list[str]:
    """The tokenizer training corpus: the packaged text file plus synthetic call/JSON/number lines."""
    text = resources.files("minicpm_plugin").joinpath("data/tiny_corpus.txt").read_text(encoding="utf-8")
    lines = text.splitlines(keepends=True)
    rng = random.Random(_SYNTHETIC_SEED)
    names = sorted(_FUNCTIONS)
    for _ in range(_SYNTHETIC_ROUNDS):
        name = rng.choice(names)
        params = _FUNCTIONS[name][: rng.randint(0, len(_FUNCTIONS[name]))]
        values = [rng.choice(_VALUES) for _ in params]
        lines.append(f"{name}({','.join(f'{p}={v}' for p, v in zip(params, values, strict=True))})\n")
        arguments = {p: json.loads(v) for p, v in zip(params, values, strict=True)}
        record = {"name": name, "arguments": arguments}
        lines.append(json.dumps(record, ensure_ascii=rng.random() < 0.3) + "\n")
        lines.append(" ".join(str(rng.randint(0, 10 ** rng.randint(1, 6))) for _ in range(3)) + "\n")
    return lines


def _pre_tokenizer() -> Any:
    from tokenizers import pre_tokenizers

    return pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split("\n", behavior="isolated"),
            pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="never", split=True),
            pre_tokenizers.Digits(individual_digits=True),
        ]
    )


def _special_added_tokens() -> list[Any]:
    from tokenizers import AddedToken

    return [
        AddedToken(t, special=True, normalized=False, single_word=False, lstrip=False, rstrip=False)
        for t in BASE_SPECIAL_TOKENS + ADDED_SPECIAL_TOKENS
    ]


def build_backend_tokenizer(lines: list[str] | None = None, vocab_size: int = TOKENIZER_VOCAB_TARGET) -> Any:
    """Train the BPE pieces and assemble a `tokenizers.Tokenizer` with MiniCPM3's id layout."""
    from tokenizers import Tokenizer, decoders, models, trainers

    lines = corpus_lines() if lines is None else lines
    specials = BASE_SPECIAL_TOKENS + ADDED_SPECIAL_TOKENS

    trainer_tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True))
    trainer_tok.add_special_tokens(_special_added_tokens())  # split out, never merged
    trainer_tok.pre_tokenizer = _pre_tokenizer()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - len(specials) - len(BYTE_TOKENS),
        min_frequency=2,
        show_progress=False,
        special_tokens=[],
        initial_alphabet=["\n", "▁"],
        max_token_length=MAX_PIECE_CHARS,
    )
    trainer_tok.train_from_iterator(lines, trainer=trainer)
    learned = json.loads(trainer_tok.to_str())["model"]
    reserved = set(specials) | set(BYTE_TOKENS)
    pieces = [p for p, _ in sorted(learned["vocab"].items(), key=lambda kv: kv[1]) if p not in reserved]
    vocab = {tok: i for i, tok in enumerate(list(specials) + list(BYTE_TOKENS) + pieces)}
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in learned["merges"]]

    tok = Tokenizer(
        models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", byte_fallback=True, fuse_unk=True)
    )
    tok.pre_tokenizer = _pre_tokenizer()
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()])
    tok.add_special_tokens(_special_added_tokens())
    return tok


def build_tiny_tokenizer(chat_template: str | None = None, *, lines: list[str] | None = None,
                         vocab_size: int = TOKENIZER_VOCAB_TARGET) -> Any:
    """The tiny MiniCPM3 tokenizer as a `transformers` fast tokenizer (not saved).

    `chat_template` defaults to `minicpm_plugin.CHAT_TEMPLATE` (left unset while that is empty).
    `lines` (default: `corpus_lines()`) and `vocab_size` train another vocabulary (the benchmarks'
    larger one); tests and the tiny model use the defaults.
    """
    from transformers import PreTrainedTokenizerFast

    if chat_template is None:
        from minicpm_plugin import CHAT_TEMPLATE

        chat_template = CHAT_TEMPLATE or None
    return PreTrainedTokenizerFast(
        tokenizer_object=build_backend_tokenizer(lines, vocab_size),
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="<|im_end|>",
        extra_special_tokens=list(ADDED_SPECIAL_TOKENS),
        add_bos_token=True,
        add_eos_token=False,
        clean_up_tokenization_spaces=False,
        chat_template=chat_template,
    )


def _longrope_factors(n: int) -> list[float]:
    # Any increasing, deterministic factors; short == long as in the real checkpoint's config.
    return [round(1.0 + 0.05 * i * i, 4) for i in range(n)]


def build_tiny_config(vocab_size: int, overrides: Mapping[str, Any] | None = None) -> Any:
    """A `MiniCPM3Config` with `TINY_CONFIG` dimensions (plus `overrides`) and longrope RoPE."""
    from transformers import MiniCPM3Config

    fields = dict(TINY_CONFIG)
    fields.update(overrides or {})
    if "rope_parameters" not in fields:
        fields["rope_parameters"] = {
            "rope_type": "longrope",
            "rope_theta": 10000.0,
            "short_factor": _longrope_factors(fields["qk_rope_head_dim"] // 2),
            "long_factor": _longrope_factors(fields["qk_rope_head_dim"] // 2),
            "original_max_position_embeddings": fields["max_position_embeddings"],
            # transformers 5.16.1's MiniCPM3Attention reads rope_parameters["factor"] for any
            # non-default RoPE (KeyError without it); max / original = 1 as in the real model.
            "factor": 1.0,
        }
    eos_id = len(BASE_SPECIAL_TOKENS) + ADDED_SPECIAL_TOKENS.index("<|im_end|>")
    return MiniCPM3Config(
        vocab_size=vocab_size,
        bos_token_id=1,
        eos_token_id=[2, eos_id],
        pad_token_id=None,
        dtype="float32",
        **fields,
    )


def _is_nonempty_dir(path: Path) -> bool:
    return path.is_dir() and any(path.iterdir())


def build_tiny_model(
    out_dir: str | Path,
    *,
    seed: int = 0,
    overwrite: bool = False,
    config_overrides: Mapping[str, Any] | None = None,
    chat_template: str | None = None,
) -> Path:
    """Write the tiny MiniCPM3 (model, generation config, tokenizer) to `out_dir`; return its path.

    Raises `FileExistsError` if `out_dir` is a non-empty directory and `overwrite` is false (with
    `overwrite`, files of the same names are replaced, others are left alone) and `NotADirectoryError`
    if it is a file. `config_overrides` changes `TINY_CONFIG` fields (e.g. more layers).
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{out} exists and is not a directory")
    if _is_nonempty_dir(out) and not overwrite:
        raise FileExistsError(f"{out} is not empty")

    import torch
    from transformers import GenerationConfig, MiniCPM3ForCausalLM

    tokenizer = build_tiny_tokenizer(chat_template)
    config = build_tiny_config(len(tokenizer), config_overrides)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = MiniCPM3ForCausalLM(config).to(torch.float32)
        # Unit-variance (tied) embeddings, like a trained model's scale: with the muP /10 before the
        # head and std 0.1, logits stay near uniform and LoRA (which cannot rescale the norms) can
        # barely lower the loss; at std 1 a LoRA run visibly learns in a few dozen steps.
        # Scaled with the width so wider variants (config_overrides) start near the same loss.
        std = EMBEDDING_STD * TINY_CONFIG["hidden_size"] / config.hidden_size
        model.get_input_embeddings().weight.data.normal_(0.0, std)
    model.generation_config = GenerationConfig(
        bos_token_id=config.bos_token_id, eos_token_id=list(config.eos_token_id)
    )
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out


def iter_files(out_dir: str | Path) -> Iterator[Path]:
    """The files of a build, sorted by name."""
    yield from sorted(p for p in Path(out_dir).iterdir() if p.is_file())
