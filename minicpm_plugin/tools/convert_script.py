"""Convert an official MiniCPM `finetune.py` launch script into an axolotl recipe.

The official scripts look like::

    formatted_time=$(date +"%Y%m%d%H%M%S")
    deepspeed --include localhost:0 finetune.py \\
        --model_name_or_path MiniCPM3-4B --output_dir output/LoRA/$formatted_time/ \\
        --train_data_path data/train.json --bf16 --use_lora ... \\
        --deepspeed configs/ds_config_zero2_offload.json

This module reads such a script the way bash does (line continuations, quotes, `$VAR` / `${VAR:-x}`
from earlier assignments, `;`/`&&`/`|`, redirections, comments) with one deliberate difference: a
`# comment` after a line-continuation backslash (or a comment line inside a continued command) makes
bash end the command right there and silently drop every later flag. That is never what the author
meant, so it is reported with its line number and the flags are read as intended.

Pure Python (no torch, no axolotl): `convert_script(text, path)` returns a `Conversion` whose
`to_yaml()` is the recipe, plus the warnings and the flags that have no axolotl equivalent.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

import yaml

# The LoRA that finetune.py hard-codes for MiniCPM3 (its `target_modules` branch for
# MiniCPM3ForCausalLM), so a converted recipe trains the same adapter.
OFFICIAL_LORA: dict[str, Any] = {
    "lora_r": 64,
    "lora_alpha": 32,
    "lora_dropout": 0.1,
    "lora_target_modules": ["q_a_proj", "kv_a_proj_with_mqa", "q_b_proj", "kv_b_proj"],
    "peft_init_lora_weights": "gaussian",
}
DATASET_TYPE = "minicpm_plugin.strategy"
PLUGIN = "minicpm_plugin.MiniCPM3Plugin"

_BOOL_WORDS = {"true": True, "false": False, "1": True, "0": False, "yes": True, "no": False}
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_OPERATORS = ("&&", "||", ";;", ";", "|&", "|", "&")
_REDIRECT = re.compile(r"(\d*|&)(>>|>\||<>|>&|<&|>|<)")
_WRAPPERS = {"nohup", "time", "exec", "env", "sudo"}


class ScriptError(ValueError):
    """The script cannot be converted (no launch command, a flag value of the wrong type, ...)."""


# --------------------------------------------------------------------------------------------------
# Reading the shell script
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Seg:
    """Part of a shell word: literal text, a variable reference or a command substitution."""

    kind: str  # "lit" | "var" | "cmd"
    text: str  # literal text, variable name, or the raw `$(...)` text
    quoted: bool = False
    default: str | None = None  # for ${VAR:-default}
    assign_default: bool = False  # ${VAR:=default}


@dataclass
class Word:
    segs: list[Seg]
    line: int


@dataclass
class Command:
    words: list[Word]
    line: int  # line of the first word


@dataclass(frozen=True)
class Trap:
    """A line where bash ends the command although the author meant to continue it."""

    line: int
    reason: str


@dataclass
class Flag:
    name: str
    value: str | bool
    line: int


@dataclass
class Launch:
    """The training command as the author meant it."""

    launcher: str  # deepspeed | torchrun | accelerate | python
    launcher_args: list[tuple[str, str | None, int]]
    script: str
    flags: list[Flag]
    env: dict[str, str]
    line: int
    argv: list[tuple[str, int]]  # the words after the script, with their lines


def _split_comment(line: str, quote: str | None) -> tuple[str, str | None, str | None]:
    """Split one physical line into (code, comment or None, open quote at the end of the line)."""
    i, n = 0, len(line)
    word_start = True
    while i < n:
        c = line[i]
        if quote == "'":
            if c == "'":
                quote = None
        elif quote == '"':
            if c == "\\":
                i += 1
            elif c == '"':
                quote = None
        elif c == "\\":
            i += 1
            word_start = False
        elif c in "'\"":
            quote = c
        elif c == "#" and word_start:
            return line[:i], line[i:], None
        word_start = c.isspace() or c in ";&|()<>"
        if quote is not None:
            word_start = False
        i += 1
    return line, None, quote


def _trailing_backslashes(text: str) -> int:
    return len(text) - len(text.rstrip("\\"))


def _looks_like_flag(line: str) -> bool:
    return line.lstrip().startswith("-")


def find_traps(text: str) -> tuple[str, list[Trap]]:
    """Return the script with continuation traps repaired (same line count) and where they were."""
    lines = text.split("\n")
    out = list(lines)
    traps: list[Trap] = []
    quote: str | None = None
    continuing = False

    def next_code_line(i: int) -> str | None:
        for later in lines[i + 1:]:
            stripped = later.strip()
            if stripped and not stripped.startswith("#"):
                return later
        return None

    for i, line in enumerate(lines):
        if quote is not None:  # inside a multi-line quoted string: no comments, no traps
            _, _, quote = _split_comment(line, quote)
            continuing = False
            continue
        code, comment, quote = _split_comment(line, None)
        if quote is not None:
            continuing = False
            continue
        stripped = code.rstrip()
        bash_continues = comment is None and _trailing_backslashes(line) % 2 == 1
        follow = None if bash_continues else next_code_line(i)
        flag_follows = follow is not None and _looks_like_flag(follow)
        reason = None
        if bash_continues:
            pass
        elif not stripped and continuing and flag_follows:
            reason = ("a comment line inside a continued command" if comment else
                      "an empty line inside a continued command")
            out[i] = "\\"
        elif stripped and _trailing_backslashes(stripped) % 2 == 1 and flag_follows:
            reason = ("a '# comment' after the line-continuation backslash" if comment else
                      "spaces after the line-continuation backslash")
            out[i] = stripped
        elif stripped and comment and comment.rstrip().endswith("\\") and flag_follows:
            reason = "the line-continuation backslash is inside a '# comment'"
            out[i] = stripped + " \\"
        if reason:
            traps.append(Trap(i + 1, reason))
            continuing = True
        else:
            continuing = bash_continues
    return "\n".join(out), traps


class _Lexer:
    """A small bash word splitter: enough for launch scripts, not a shell."""

    def __init__(self, text: str) -> None:
        self.s = text
        self.i = 0
        self.line = 1

    def _peek(self, k: int = 0) -> str:
        j = self.i + k
        return self.s[j] if j < len(self.s) else ""

    def _advance(self) -> str:
        c = self.s[self.i]
        self.i += 1
        if c == "\n":
            self.line += 1
        return c

    def commands(self) -> Iterator[Command]:
        words: list[Word] = []
        while self.i < len(self.s):
            c = self._peek()
            if c == "\\" and self._peek(1) == "\n":
                self._advance()
                self._advance()
            elif c in " \t\r":
                self._advance()
            elif c == "\n":
                self._advance()
                if words:
                    yield Command(words, words[0].line)
                    words = []
            elif c == "#":
                while self.i < len(self.s) and self._peek() != "\n":
                    self._advance()
            elif self._redirection():
                continue
            elif any(self.s.startswith(op, self.i) for op in _OPERATORS):
                op = next(op for op in _OPERATORS if self.s.startswith(op, self.i))
                for _ in op:
                    self._advance()
                if words:
                    yield Command(words, words[0].line)
                    words = []
            elif c in "()":
                self._advance()
            else:
                words.append(self._word())
        if words:
            yield Command(words, words[0].line)

    def _redirection(self) -> bool:
        """Skip a redirection (`> log`, `2>&1`, `&> out.txt`) at the cursor; True if there was one."""
        m = _REDIRECT.match(self.s, self.i)
        if not m:
            return False
        for _ in m.group(0):
            self._advance()
        if m.group(2) in (">&", "<&") and re.match(r"\d+|-", self.s[self.i:]):
            while self._peek().isdigit() or self._peek() == "-":
                self._advance()
            return True
        while self._peek() in " \t":
            self._advance()
        if self.i < len(self.s) and self._peek() != "\n":
            self._word()  # the target file
        return True

    def _word(self) -> Word:
        line = self.line
        segs: list[Seg] = []
        lit: list[str] = []

        def flush(quoted: bool = False) -> None:
            if lit:
                segs.append(Seg("lit", "".join(lit), quoted))
                lit.clear()

        while self.i < len(self.s):
            c = self._peek()
            if c in " \t\r\n;|&()<>":
                break
            if c == "\\":
                self._advance()
                if self.i < len(self.s):
                    nxt = self._advance()
                    if nxt != "\n":
                        lit.append(nxt)
            elif c == "'":
                flush()
                self._advance()
                start = self.i
                while self.i < len(self.s) and self._peek() != "'":
                    self._advance()
                segs.append(Seg("lit", self.s[start:self.i], True))
                if self.i < len(self.s):
                    self._advance()
            elif c == '"':
                flush()
                self._advance()
                self._double_quoted(segs)
            elif c == "$" or c == "`":
                flush()
                segs.append(self._dollar(quoted=False))
            else:
                lit.append(self._advance())
        flush()
        return Word(segs, line)

    def _double_quoted(self, segs: list[Seg]) -> None:
        lit: list[str] = []
        while self.i < len(self.s) and self._peek() != '"':
            c = self._peek()
            if c == "\\" and self._peek(1) in '"\\$`\n':
                self._advance()
                nxt = self._advance()
                if nxt != "\n":
                    lit.append(nxt)
            elif c in "$`":
                if lit:
                    segs.append(Seg("lit", "".join(lit), True))
                    lit.clear()
                segs.append(self._dollar(quoted=True))
            else:
                lit.append(self._advance())
        if lit or not segs:
            segs.append(Seg("lit", "".join(lit), True))
        if self.i < len(self.s):
            self._advance()

    def _dollar(self, quoted: bool) -> Seg:
        start = self.i
        if self._peek() == "`":
            self._advance()
            while self.i < len(self.s) and self._peek() != "`":
                self._advance()
            if self.i < len(self.s):
                self._advance()
            return Seg("cmd", self.s[start:self.i], quoted)
        self._advance()  # "$"
        c = self._peek()
        if c == "(":
            depth = 0
            while self.i < len(self.s):
                ch = self._advance()
                if ch == "(":
                    depth += 1
                elif ch == ")":
                    depth -= 1
                    if depth == 0:
                        break
            return Seg("cmd", self.s[start:self.i], quoted)
        if c == "{":
            self._advance()
            body_start = self.i
            while self.i < len(self.s) and self._peek() != "}":
                self._advance()
            body = self.s[body_start:self.i]
            if self.i < len(self.s):
                self._advance()
            m = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*|\d+)(?:(:?)([-=])(.*))?", body, re.S)
            if not m:
                return Seg("cmd", self.s[start:self.i], quoted)
            name, _, op, default = m.groups()
            return Seg("var", name, quoted, default, op == "=")
        m = re.match(r"[A-Za-z_][A-Za-z0-9_]*|\d", self.s[self.i:])
        if not m:
            return Seg("lit", "$", quoted)
        for _ in m.group(0):
            self._advance()
        return Seg("var", m.group(0), quoted)


@dataclass
class _Unresolved:
    name: str
    line: int
    kind: str  # "var" | "cmd"


class _Expander:
    """Expands words with the variables assigned so far (and the user's --var values)."""

    def __init__(self, variables: Mapping[str, str]) -> None:
        self.vars: dict[str, str] = dict(variables)
        self.unresolved: list[_Unresolved] = []
        self.marked: set[str] = set()  # values that stand for unresolved text

    def word(self, word: Word) -> list[str]:
        """The fields one word expands to (unquoted variables split on whitespace)."""
        fields: list[str] = [""]
        for seg in word.segs:
            if seg.kind == "lit":
                fields[-1] += seg.text
                continue
            if seg.kind == "cmd":
                self.unresolved.append(_Unresolved(seg.text, word.line, "cmd"))
                value = seg.text
                self.marked.add(value)
            else:
                value = self.vars.get(seg.text)
                if value is None or (value == "" and seg.default is not None):
                    if seg.default is not None:
                        value = self.expand_text(seg.default, word.line)
                        if seg.assign_default:
                            self.vars[seg.text] = value
                    else:
                        self.unresolved.append(_Unresolved(seg.text, word.line, "var"))
                        value = "${" + seg.text + "}"
                        self.marked.add(value)
            if seg.quoted or value in self.marked:  # unknown shell text is kept as one piece
                fields[-1] += value
            else:
                parts = value.split()
                if not parts:
                    continue
                if value[:1].isspace() and fields[-1]:
                    fields.append("")
                fields[-1] += parts[0]
                for part in parts[1:]:
                    fields.append(part)
                if value[-1:].isspace():
                    fields.append("")
        fields = [f for f in fields if f != ""] or ([""] if word.segs else [])
        return fields

    def expand_text(self, text: str, line: int) -> str:
        lexer = _Lexer(f'"{text}"')
        lexer.line = line
        (cmd,) = list(lexer.commands()) or [Command([Word([], line)], line)]
        return " ".join(self.word(cmd.words[0]))

    def command(self, cmd: Command) -> list[tuple[str, int]]:
        return [(f, w.line) for w in cmd.words for f in self.word(w)]


_LAUNCHERS = {"deepspeed", "torchrun", "python", "python3", "accelerate"}


def _is_assignment(word: Word) -> bool:
    first = word.segs[0] if word.segs else None
    return first is not None and first.kind == "lit" and not first.quoted and bool(_ASSIGNMENT.match(first.text))


def _split_assignment(exp: _Expander, word: Word) -> tuple[str, str]:
    first = word.segs[0]
    name, _, rest = first.text.partition("=")
    tail = Word([Seg("lit", rest, first.quoted), *word.segs[1:]], word.line)
    return name, "".join(exp.word(tail)) if tail.segs else ""


def read_launch(text: str, variables: Mapping[str, str] | None = None,
                source: str = "script.sh") -> tuple[Launch, list[Trap], _Expander]:
    """Find the `... finetune.py --flags` command of a script, as the author meant it."""
    repaired, traps = find_traps(text)
    exp = _Expander(variables or {})
    for cmd in _Lexer(repaired).commands():
        words = list(cmd.words)
        env: dict[str, str] = {}
        if words and words[0].segs and words[0].segs[0].text == "export" and len(words[0].segs) == 1:
            words = words[1:]
            for w in words:
                if _is_assignment(w):
                    name, value = _split_assignment(exp, w)
                    exp.vars[name] = value
            continue
        while words and _is_assignment(words[0]):
            name, value = _split_assignment(exp, words[0])
            env[name] = value
            words = words[1:]
        if not words:  # plain assignments
            exp.vars.update(env)
            continue
        while words and len(words[0].segs) == 1 and words[0].segs[0].text in _WRAPPERS:
            words = words[1:]
        exp.unresolved = []
        fields = exp.command(Command(words, cmd.line))
        script_at = next((k for k, (f, _) in enumerate(fields) if f.endswith(".py")), None)
        if script_at is None:
            continue
        head = PurePosixPath(fields[0][0]).name
        if head.startswith("python"):
            launcher = "python"
        elif head in _LAUNCHERS or script_at == 0:
            launcher = head if script_at else "python"
        else:
            continue  # e.g. `echo finetune.py`
        launcher_words = fields[1:script_at]
        if launcher == "accelerate" and launcher_words and launcher_words[0][0] == "launch":
            launcher_words = launcher_words[1:]
        argv = fields[script_at + 1:]
        return Launch(launcher, _pairs(launcher_words), fields[script_at][0],
                      _flags(argv), env, cmd.line, argv), traps, exp
    raise ScriptError(f"{source}: no training command found: expected a line like "
                      "`deepspeed ... finetune.py --model_name_or_path ...`")


def _pairs(words: list[tuple[str, int]]) -> list[tuple[str, str | None, int]]:
    out: list[tuple[str, str | None, int]] = []
    k = 0
    while k < len(words):
        word, line = words[k]
        if word.startswith("-") and "=" in word:
            name, _, value = word.partition("=")
            out.append((name, value, line))
        elif word.startswith("-") and k + 1 < len(words) and not words[k + 1][0].startswith("-"):
            out.append((word, words[k + 1][0], line))
            k += 1
        else:
            out.append((word, None, line))
        k += 1
    return out


def _flags(words: list[tuple[str, int]]) -> list[Flag]:
    flags: list[Flag] = []
    k = 0
    while k < len(words):
        word, line = words[k]
        if not word.startswith("-"):
            flags.append(Flag("", word, line))  # a stray positional argument
            k += 1
            continue
        name = word.lstrip("-")
        if "=" in name:
            name, _, value = name.partition("=")
            flags.append(Flag(name, value, line))
        elif k + 1 < len(words) and not words[k + 1][0].startswith("--"):
            value = words[k + 1][0]
            if name in BOOL_FLAGS and value.lower() not in _BOOL_WORDS:
                flags.append(Flag(name, True, line))  # e.g. "--bf16 somethingelse": leave it as a stray
            else:
                flags.append(Flag(name, value, line))
                k += 1
        else:
            flags.append(Flag(name, True, line))
        k += 1
    return flags


# --------------------------------------------------------------------------------------------------
# Mapping flags to recipe keys
# --------------------------------------------------------------------------------------------------

BOOL_FLAGS = {
    "bf16", "fp16", "use_lora", "qlora", "tf32", "gradient_checkpointing", "do_train", "do_eval",
    "save_only_model", "load_best_model_at_end", "overwrite_output_dir", "logging_first_step",
    "remove_unused_columns", "group_by_length", "greater_is_better", "torch_compile", "save_safetensors",
}
# finetune.py flag -> (recipe key, type)
_DIRECT: dict[str, tuple[str, Any]] = {
    "learning_rate": ("learning_rate", float),
    "per_device_train_batch_size": ("micro_batch_size", int),
    "per_device_eval_batch_size": ("eval_batch_size", int),
    "model_max_length": ("sequence_len", int),
    "gradient_accumulation_steps": ("gradient_accumulation_steps", int),
    "warmup_steps": ("warmup_steps", int),
    "warmup_ratio": ("warmup_ratio", float),
    "max_steps": ("max_steps", int),
    "num_train_epochs": ("num_epochs", "number"),
    "weight_decay": ("weight_decay", float),
    "eval_steps": ("eval_steps", "steps"),
    "save_steps": ("save_steps", "steps"),
    "save_total_limit": ("save_total_limit", int),
    "seed": ("seed", int),
    "logging_steps": ("logging_steps", int),
    "lr_scheduler_type": ("lr_scheduler", str),
    "optim": ("optimizer", str),
    "max_grad_norm": ("max_grad_norm", float),
    "adam_beta1": ("adam_beta1", float),
    "adam_beta2": ("adam_beta2", float),
    "adam_epsilon": ("adam_epsilon", float),
    "dataloader_num_workers": ("dataloader_num_workers", int),
    "resume_from_checkpoint": ("resume_from_checkpoint", str),
    "save_strategy": ("save_strategy", str),
    "eval_strategy": ("eval_strategy", str),
    "evaluation_strategy": ("eval_strategy", str),
    "metric_for_best_model": ("metric_for_best_model", str),
    "gradient_checkpointing": ("gradient_checkpointing", bool),
    "tf32": ("tf32", bool),
    "save_only_model": ("save_only_model", bool),
    "load_best_model_at_end": ("load_best_model_at_end", bool),
    "group_by_length": ("group_by_length", bool),
    "greater_is_better": ("greater_is_better", bool),
    "torch_compile": ("torch_compile", bool),
    "dataloader_pin_memory": ("dataloader_pin_memory", bool),
    "dataloader_prefetch_factor": ("dataloader_prefetch_factor", int),
}
# Flags that need no key: what they do happens anyway (or is irrelevant) under axolotl.
_NOT_NEEDED = {
    "do_train": "axolotl always trains",
    "do_eval": "evaluation follows eval_strategy / the eval data",
    "local_rank": "set by the launcher",
    "overwrite_output_dir": "axolotl writes into output_dir",
    "remove_unused_columns": "axolotl manages dataset columns",
    "save_safetensors": "axolotl saves safetensors",
}
# What finetune.py (and transformers' TrainingArguments) use when a flag is absent; written out so
# the recipe trains the same run (axolotl's own defaults differ for several of them).
_SCRIPT_DEFAULTS: dict[str, Any] = {
    "sequence_len": 512,
    "micro_batch_size": 8,
    "eval_batch_size": 8,
    "gradient_accumulation_steps": 1,
    "num_epochs": 3,
    "learning_rate": 5e-5,
    "lr_scheduler": "linear",
    "optimizer": "adamw_torch",
    "weight_decay": 0.0,
    "max_grad_norm": 1.0,
    "logging_steps": 500,
    "save_strategy": "steps",
    "save_steps": 500,
    "seed": 42,
}
_DEFAULT_TRAIN = "data/AdvertiseGenChatML/train.json"
_DEFAULT_EVAL = "data/AdvertiseGenChatML/dev.json"
_DEFAULT_MODEL = "baichuan-inc/Baichuan2-7B-Base"
# Our configs, by (stage, offload).
_DS_OURS = {
    (2, False): "deepspeed_configs/zero2.json",
    (2, True): "deepspeed_configs/zero2_offload.json",
    (3, False): "deepspeed_configs/zero3.json",
    (3, True): "deepspeed_configs/zero3_offload.json",
}


@dataclass
class Conversion:
    """A converted recipe with a comment per key and what the user must know."""

    source: str
    recipe: dict[str, Any] = field(default_factory=dict)
    origin: dict[str, str] = field(default_factory=dict)  # key -> "--flag (line N)" or a note
    warnings: list[str] = field(default_factory=list)  # "SCRIPT:LINE: message"
    unmapped: list[str] = field(default_factory=list)  # "SCRIPT:LINE: --flag value: why"
    world_size: int | None = None

    def set(self, key: str, value: Any, origin: str) -> None:
        self.recipe[key] = value
        self.origin[key] = origin

    def to_yaml(self, recipe_path: str = "RECIPE.yml") -> str:
        """The recipe as commented YAML; `recipe_path` goes into the command in its header."""
        return _emit_yaml(self, recipe_path)


def _at(flag: Flag) -> str:
    return f"--{flag.name} (line {flag.line})"


def _coerce(conv: Conversion, flag: Flag, kind: Any) -> Any:
    """The flag's value as `kind`: bool, int, float, str, "number" (int when whole) or "steps" (a
    count, or a fraction of the run when below 1)."""
    value = flag.value
    where = f"{conv.source}:{flag.line}"
    if kind is bool:
        if value is True:
            return True
        if isinstance(value, str) and value.lower() in _BOOL_WORDS:
            return _BOOL_WORDS[value.lower()]
        raise ScriptError(f"{where}: --{flag.name} expects true or false, got {value!r}")
    if value is True:
        raise ScriptError(f"{where}: --{flag.name} needs a value")
    if kind is str:
        return value
    try:
        number = float(value)
    except ValueError:
        raise ScriptError(f"{where}: --{flag.name} expects a number, got {value!r}") from None
    if kind == "steps" and number < 1:
        return number  # TrainingArguments reads a value below 1 as a fraction of the run
    if kind in (int, "steps"):
        if not number.is_integer():
            raise ScriptError(f"{where}: --{flag.name} expects a whole number, got {value!r}")
        return int(number)
    return int(number) if kind == "number" and number.is_integer() else number


def _strip_unresolved(path: str, marked: set[str]) -> str:
    """Drop path components that are unresolved shell text (e.g. a `$(date ...)` timestamp)."""
    keep = [part for part in path.split("/") if not any(m in part for m in marked)]
    out = "/".join(keep)
    return out + "/" if path.endswith("/") and out and not out.endswith("/") else out


def _map_deepspeed(conv: Conversion, flag: Flag, qlora: bool) -> None:
    raw = str(flag.value)
    name = PurePosixPath(raw).name.lower()
    m = re.search(r"zero_?([0-3])", name) or re.search(r"stage_?([0-3])", name)
    where = f"{conv.source}:{flag.line}"
    if not m or int(m.group(1)) not in (2, 3):
        conv.set("deepspeed", raw, f"{_at(flag)}: kept as is (not one of the official ZeRO-2/3 configs)")
        conv.warnings.append(f"{where}: --deepspeed {raw}: not an official ZeRO-2/3 config name; kept "
                             "the path as is. Compare it with deepspeed_configs/ (see docs/recipes.md)")
        return
    stage, offload = int(m.group(1)), "offload" in name
    note = f"{_at(flag)}: {PurePosixPath(raw).name}"
    if stage == 3 and qlora:
        stage = 2
        conv.warnings.append(f"{where}: --deepspeed {raw}: ZeRO-3 does not work with QLoRA (its "
                             f"4-bit packed weights cannot be sharded); mapped to ZeRO-2 ({_DS_OURS[(2, offload)]})")
        note += ", ZeRO-3 -> ZeRO-2 for QLoRA"
    conv.set("deepspeed", _DS_OURS[(stage, offload)], note)


def _launch_world_size(conv: Conversion, launch: Launch) -> None:
    gpus: int | None = None
    for name, value, line in launch.launcher_args:
        where = f"{conv.source}:{line}"
        if name == "--include" and value:
            hosts = value.split("@")
            if len(hosts) > 1:
                conv.unmapped.append(f"{where}: {name} {value}: several hosts; use a multi-node accelerate "
                                     "config")
            gpus = sum(len(h.split(":", 1)[1].split(",")) if ":" in h else 1 for h in hosts)
        elif name in ("--num_gpus", "--nproc_per_node", "--nproc-per-node", "--num_processes") and value:
            gpus = int(value) if value.isdigit() else gpus
        elif name in ("--master_port", "--master_addr", "--main_process_port"):
            conv.unmapped.append(f"{where}: {name} {value}: not needed (accelerate picks the port; "
                                 "`accelerate launch --main_process_port N` to set one)")
        else:
            conv.unmapped.append(f"{where}: {launch.launcher} {name}{' ' + value if value else ''}: "
                                 "launcher option not converted")
    visible = launch.env.get("CUDA_VISIBLE_DEVICES")
    if gpus is None and visible:
        gpus = len([d for d in visible.split(",") if d.strip()])
    conv.world_size = gpus


def convert_script(text: str, source: str = "script.sh", variables: Mapping[str, str] | None = None,
                   base_dir: str = ".") -> Conversion:
    """Convert the text of an official launch script; `variables` pre-define shell variables.

    `base_dir` is the folder paths in the script are relative to (the script's folder, `finetune/` in
    the official repo), joined onto relative data and output paths unless it is ".".
    """
    launch, traps, exp = read_launch(text, variables, source)
    conv = Conversion(source=source)
    last_line = max([f.line for f in launch.flags] + [launch.line])
    traps = [t for t in traps if launch.line <= t.line < last_line]
    if traps:
        first = traps[0]
        later = [f"--{f.name}" for f in launch.flags if f.line > first.line and f.name]
        shown = ", ".join(later[:4]) + (", ..." if len(later) > 4 else "")
        conv.warnings.append(
            f"{source}:{first.line}: bash ends the command here ({first.reason}) and silently drops the "
            f"{len(later)} flag(s) after this line ({shown}); converted as the author meant (all flags)")
        if len(traps) > 1:
            conv.warnings.append(f"{source}:{traps[1].line}: the same at line(s) "
                                 + ", ".join(str(t.line) for t in traps[1:]))
    for name, line in dict.fromkeys((u.name, u.line) for u in exp.unresolved if u.kind == "var"):
        conv.warnings.append(f"{source}:{line}: ${name} is not set in the script; the recipe has "
                             f"${{{name}}} in its place (pass --var {name}=VALUE)")
    if PurePosixPath(launch.script).name != "finetune.py":
        conv.warnings.append(f"{source}:{launch.line}: the script runs {launch.script}, not finetune.py; "
                             "flags are read as finetune.py's")
    _launch_world_size(conv, launch)

    flags: dict[str, Flag] = {}
    for flag in launch.flags:
        if not flag.name:
            conv.unmapped.append(f"{source}:{flag.line}: stray argument {flag.value!r}: ignored")
            continue
        if flag.name in flags:
            conv.warnings.append(f"{source}:{flag.line}: --{flag.name} given twice; the last one wins "
                                 f"(line {flags[flag.name].line} ignored)")
        flags[flag.name] = flag

    def path_of(flag: Flag | None, default: str) -> str:
        value = default if flag is None else str(flag.value)
        value = _strip_unresolved(value, exp.marked)
        if value and base_dir not in ("", ".") and not value.startswith(("/", "~", "$")):
            value = str(PurePosixPath(base_dir) / value) + ("/" if value.endswith("/") else "")
        return value

    def bool_flag(name: str) -> bool:
        return name in flags and _coerce(conv, flags[name], bool)

    for flag in flags.values():
        shell_output = [m for m in exp.marked if isinstance(flag.value, str) and m in flag.value
                        and m.startswith(("$(", "`"))]
        if shell_output and flag.name != "output_dir":
            conv.warnings.append(f"{source}:{flag.line}: --{flag.name} {flag.value}: contains the output of "
                                 f"{shell_output[0]}, which only the shell knows; edit the recipe")

    # -- model --------------------------------------------------------------------------------------
    model_flag = flags.pop("model_name_or_path", None)
    model = _DEFAULT_MODEL if model_flag is None else str(model_flag.value)
    if model_flag is None:
        conv.warnings.append(f"{source}: no --model_name_or_path: finetune.py would load its default "
                             f"{_DEFAULT_MODEL}; set base_model to your MiniCPM3 checkpoint")
    elif "minicpm3" not in model.lower().replace("-", "").replace("_", "") and model not in exp.marked:
        conv.warnings.append(f"{source}:{model_flag.line}: --model_name_or_path {model}: not a MiniCPM3 "
                             "checkpoint name; the plugin and this recipe are for MiniCPM3 (e.g. "
                             "openbmb/MiniCPM3-4B or its local copy)")
    conv.set("base_model", model, _at(model_flag) if model_flag else "finetune.py default")
    conv.set("trust_remote_code", False, "MiniCPM3 is native in transformers 5; remote code does not load")
    conv.set("plugins", [PLUGIN], "MiniCPM3 chat format, exact label masks, config checks")

    # -- data ---------------------------------------------------------------------------------------
    train_flag = flags.pop("train_data_path", None)
    eval_flag = flags.pop("eval_data_path", None)
    conv.set("datasets", [{"path": path_of(train_flag, _DEFAULT_TRAIN), "ds_type": "json",
                           "type": DATASET_TYPE}],
             (_at(train_flag) if train_flag else "finetune.py default path")
             + "; the seed's JSON array of {messages} is read by the plugin's loader")
    conv.set("test_datasets", [{"path": path_of(eval_flag, _DEFAULT_EVAL), "ds_type": "json",
                                "split": "train", "type": DATASET_TYPE}],
             (_at(eval_flag) if eval_flag else "finetune.py default path") + "; a local file's only split is train")
    conv.set("val_set_size", 0.0, "the eval data comes from test_datasets")
    out_flag = flags.pop("output_dir", None)
    if out_flag is None:
        raise ScriptError(f"{source}:{launch.line}: no --output_dir (finetune.py requires it)")
    out = path_of(out_flag, "")
    note = _at(out_flag)
    if str(out_flag.value) != _strip_unresolved(str(out_flag.value), exp.marked):
        note += ", without the part only the shell knows (e.g. a $(date) timestamp)"
    conv.set("output_dir", out or "./outputs/minicpm3", note)
    conv.set("dataset_prepared_path", "last_run_prepared", "cache of the tokenized data")

    # -- precision ----------------------------------------------------------------------------------
    bf16, fp16 = bool_flag("bf16"), bool_flag("fp16")
    if bf16 and fp16:
        raise ScriptError(f"{source}:{flags['fp16'].line}: both --bf16 and --fp16 are set (finetune.py "
                          "refuses this too)")
    for name in ("bf16", "fp16"):
        flag = flags.pop(name, None)
        conv.set(name, bf16 if name == "bf16" else fp16, _at(flag) if flag else f"no --{name}")
    if not bf16 and not fp16:
        conv.warnings.append(f"{source}: neither --bf16 nor --fp16: the script trains in fp32 and so does "
                             "this recipe; MiniCPM3 is a bf16 model, bf16: true halves the memory")
    elif fp16:
        conv.warnings.append(f"{source}: --fp16: MiniCPM3 was trained in bf16 and its scaled embeddings can "
                             "overflow fp16; prefer bf16: true on GPUs that support it")

    # -- sequence and batches -------------------------------------------------------------------------
    for flag_name, (key, kind) in _DIRECT.items():
        if flag_name in flags:
            flag = flags.pop(flag_name)
            conv.set(key, _coerce(conv, flag, kind), _at(flag))
    for key, value in _SCRIPT_DEFAULTS.items():
        if key == "save_steps" and conv.recipe.get("save_strategy") != "steps":
            continue  # axolotl rejects save_steps beside save_strategy epoch/no
        if key not in conv.recipe:
            conv.set(key, value, "absent from the script: finetune.py / TrainingArguments default")
    conv.set("sample_packing", False, "finetune.py pads each row on its own; packing is off for MiniCPM3")
    conv.set("attn_implementation", "sdpa", "PyTorch fused attention")
    conv.set("special_tokens", {"pad_token": "</s>"},
             "MiniCPM3 has no pad token; </s> is in the vocabulary and never in chat text")
    if conv.recipe.get("eval_strategy") == "no":
        conv.recipe.pop("test_datasets")
        conv.origin.pop("test_datasets")
        conv.origin["val_set_size"] = "no evaluation (eval_strategy no)"

    # -- adapters -----------------------------------------------------------------------------------
    use_lora, qlora = bool_flag("use_lora"), bool_flag("qlora")
    lora_flag, qlora_flag = flags.pop("use_lora", None), flags.pop("qlora", None)
    if qlora and not use_lora:
        conv.warnings.append(f"{source}:{qlora_flag.line if qlora_flag else launch.line}: --qlora without "
                             "--use_lora: finetune.py stops on this (it asserts use_lora); converted as QLoRA")
    if qlora or use_lora:
        where = _at(qlora_flag) if qlora else _at(lora_flag)  # type: ignore[arg-type]
        conv.set("adapter", "qlora" if qlora else "lora", where)
        if qlora:
            conv.set("load_in_4bit", True, where)
            conv.set("bnb_config_kwargs", {"bnb_4bit_quant_type": "nf4", "bnb_4bit_use_double_quant": True},
                     "finetune.py --qlora: nf4 + double quantization; compute dtype follows bf16/fp16 "
                     "(finetune.py hard-codes fp16)")
        for key, value in OFFICIAL_LORA.items():
            conv.set(key, value, "finetune.py's LoRA for MiniCPM3")
        for key in ("lora_mlp_kernel", "lora_qkv_kernel", "lora_o_kernel", "lora_embedding_kernel"):
            conv.set(key, False, "axolotl's fused LoRA kernels expect q_proj/k_proj/v_proj")

    # -- deepspeed ----------------------------------------------------------------------------------
    if "deepspeed" in flags:
        _map_deepspeed(conv, flags.pop("deepspeed"), qlora)

    # -- logging --------------------------------------------------------------------------------------
    strategy = flags.pop("logging_strategy", None)
    if strategy is not None and strategy.value != "steps":
        conv.unmapped.append(f"{source}:{strategy.line}: --logging_strategy {strategy.value}: axolotl logs "
                             "every logging_steps")
    report = flags.pop("report_to", None)
    if report is not None:
        targets = {t.strip() for t in str(report.value).replace(",", " ").split()}
        if "tensorboard" in targets:
            conv.set("use_tensorboard", True, _at(report))
        if "wandb" in targets:
            conv.set("use_wandb", True, _at(report))
        rest = targets - {"tensorboard", "wandb", "none"}
        if rest:
            conv.unmapped.append(f"{source}:{report.line}: --report_to {' '.join(sorted(rest))}: not converted")

    # -- the rest ------------------------------------------------------------------------------------
    for name, flag in flags.items():
        value = "" if flag.value is True else f" {flag.value}"
        why = _NOT_NEEDED.get(name)
        if why:
            conv.unmapped.append(f"{source}:{flag.line}: --{name}{value}: not needed ({why})")
        elif name == "log_level":
            conv.unmapped.append(f"{source}:{flag.line}: --{name}{value}: not converted (axolotl sets its own "
                                 "log level; AXOLOTL_LOG_LEVEL=DEBUG for more)")
        elif name == "cache_dir":
            conv.unmapped.append(f"{source}:{flag.line}: --{name}{value}: not converted (set HF_HOME instead)")
        else:
            conv.unmapped.append(f"{source}:{flag.line}: --{name}{value}: no axolotl equivalent converted; "
                                 "add it by hand if it matters")
    return conv


# --------------------------------------------------------------------------------------------------
# YAML output
# --------------------------------------------------------------------------------------------------

_SECTIONS: list[tuple[str, list[str]]] = [
    ("model", ["base_model", "trust_remote_code", "plugins"]),
    ("data", ["datasets", "test_datasets", "val_set_size", "dataset_prepared_path", "output_dir"]),
    ("sequence length and batches", ["sequence_len", "sample_packing", "micro_batch_size", "eval_batch_size",
                                     "gradient_accumulation_steps", "num_epochs", "max_steps"]),
    ("precision and memory", ["bf16", "fp16", "tf32", "attn_implementation", "gradient_checkpointing"]),
    ("adapter", ["adapter", "load_in_4bit", "bnb_config_kwargs", "lora_r", "lora_alpha", "lora_dropout",
                 "lora_target_modules", "peft_init_lora_weights", "lora_mlp_kernel", "lora_qkv_kernel",
                 "lora_o_kernel", "lora_embedding_kernel"]),
    ("tokens", ["special_tokens"]),
    ("optimizer and schedule", ["optimizer", "learning_rate", "lr_scheduler", "warmup_steps", "warmup_ratio",
                                "weight_decay", "max_grad_norm", "adam_beta1", "adam_beta2", "adam_epsilon"]),
    ("logging, evaluation, checkpoints", ["logging_steps", "eval_strategy", "eval_steps", "save_strategy",
                                          "save_steps", "save_total_limit", "save_only_model",
                                          "load_best_model_at_end", "metric_for_best_model",
                                          "greater_is_better", "seed", "use_tensorboard", "use_wandb"]),
    ("DeepSpeed", ["deepspeed"]),
]


def _scalar(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True, allow_unicode=True, width=10_000) \
        .removesuffix("\n").removesuffix("\n...").strip()


def _emit_yaml(conv: Conversion, recipe_path: str) -> str:
    lines = [f"# Converted from {conv.source} by `minicpm-plugin convert-script`.",
             "# Each key says which flag it comes from. Train with:",
             "#   accelerate launch"
             + (f" --num_processes {conv.world_size}" if conv.world_size and conv.world_size > 1 else "")
             + f" -m axolotl.cli.train {recipe_path}"]
    if conv.warnings:
        lines.append("#")
        lines.append("# Warnings:")
        lines += [f"#   {w}" for w in conv.warnings]
    if conv.unmapped:
        lines.append("#")
        lines.append("# Not converted:")
        lines += [f"#   {u}" for u in conv.unmapped]
    placed: set[str] = set()
    for title, keys in _SECTIONS + [("other", [k for k in conv.recipe])]:
        keys = [k for k in keys if k in conv.recipe and k not in placed]
        if not keys:
            continue
        lines.append("")
        lines.append(f"# ---- {title} " + "-" * max(4, 92 - len(title)))
        for key in keys:
            placed.add(key)
            value = conv.recipe[key]
            origin = conv.origin.get(key, "")
            if isinstance(value, (dict, list)):
                lines.append(f"# {key}: {origin}" if origin else f"# {key}")
                dumped = yaml.safe_dump({key: value}, allow_unicode=True, sort_keys=False,
                                        default_flow_style=False, width=10_000)
                lines += dumped.rstrip("\n").split("\n")
            else:
                text = f"{key}: {_scalar(value)}"
                lines.append(f"{text:<40} # {origin}" if origin else text)
    return "\n".join(lines) + "\n"
