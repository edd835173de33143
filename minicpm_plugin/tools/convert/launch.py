"""Find the training command of a launch script and read its flags the way the author meant them."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath

from minicpm_plugin.tools.convert.shell import Command, Expander, Lexer, ScriptError, Seg, Word

BOOL_WORDS = {"true": True, "false": False, "1": True, "0": False, "yes": True, "no": False}
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_WRAPPERS = {"nohup", "time", "exec", "env", "sudo"}
BOOL_FLAGS = {
    "bf16", "fp16", "use_lora", "qlora", "tf32", "gradient_checkpointing", "do_train", "do_eval",
    "save_only_model", "load_best_model_at_end", "overwrite_output_dir", "logging_first_step",
    "remove_unused_columns", "group_by_length", "greater_is_better", "torch_compile", "save_safetensors",
}


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


_LAUNCHERS = {"deepspeed", "torchrun", "python", "python3", "accelerate"}


def _is_assignment(word: Word) -> bool:
    first = word.segs[0] if word.segs else None
    return first is not None and first.kind == "lit" and not first.quoted and bool(_ASSIGNMENT.match(first.text))


def _split_assignment(exp: Expander, word: Word) -> tuple[str, str]:
    first = word.segs[0]
    name, _, rest = first.text.partition("=")
    tail = Word([Seg("lit", rest, first.quoted), *word.segs[1:]], word.line)
    return name, "".join(exp.word(tail)) if tail.segs else ""


def read_launch(text: str, variables: Mapping[str, str] | None = None,
                source: str = "script.sh") -> tuple[Launch, list[Trap], Expander]:
    """Find the `... finetune.py --flags` command of a script, as the author meant it."""
    repaired, traps = find_traps(text)
    exp = Expander(variables or {})
    for cmd in Lexer(repaired).commands():
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
            if name in BOOL_FLAGS and value.lower() not in BOOL_WORDS:
                flags.append(Flag(name, True, line))  # e.g. "--bf16 somethingelse": leave it as a stray
            else:
                flags.append(Flag(name, value, line))
                k += 1
        else:
            flags.append(Flag(name, True, line))
        k += 1
    return flags


