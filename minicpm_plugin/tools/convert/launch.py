r"""Find the training command of a launch script and read its flags the way the author meant them.

`find_traps` repairs the lines where bash would end the command although the author continued it
(a `# comment` after the line-continuation backslash, a comment line inside the command, `\ #`
with one space); `read_launch` then reads the repaired text. `bash.py` says what bash itself does
with those lines.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath

from minicpm_plugin.tools.convert.shell import (
    LAUNCH_EXAMPLE,
    Command,
    Expander,
    Lexer,
    ScriptError,
    Seg,
    Word,
)

BOOL_WORDS = {"true": True, "false": False, "1": True, "0": False, "yes": True, "no": False}
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_WRAPPERS = {"nohup", "time", "exec", "env", "sudo"}
_LAUNCHERS = {"deepspeed", "torchrun", "python", "python3", "accelerate"}
# finetune.py / TrainingArguments flags that take no value (`--bf16` alone means true).
BOOL_FLAGS = {
    "bf16", "fp16", "use_lora", "qlora", "tf32", "gradient_checkpointing", "do_train", "do_eval",
    "save_only_model", "load_best_model_at_end", "overwrite_output_dir", "logging_first_step",
    "remove_unused_columns", "group_by_length", "greater_is_better", "torch_compile", "save_safetensors",
}
# finetune.py's own switches, which the MiniCPM cookbook's LoRA/QLoRA steps tell users to add as
# `use_lora \` / `qlora \` lines without dashes; such a bare word is read as `--name true`.
BARE_FLAGS = {"use_lora", "qlora"}

# Why bash ends (or breaks) the command on a trap line; ESCAPED_HASH lines are reported one by one.
ESCAPED_HASH = "'\\ #': the backslash escapes the blank after it, so '#' starts no comment"
_TRAP_REASONS = {
    "comment-line": "a comment line inside a continued command",
    "empty-line": "an empty line inside a continued command",
    "comment-after": "a '# comment' after the line-continuation backslash",
    "spaces-after": "spaces after the line-continuation backslash",
    "in-comment": "the line-continuation backslash is inside a '# comment'",
    "escaped-hash": ESCAPED_HASH,
}


@dataclass(frozen=True)
class Trap:
    """A line that bash reads differently from what the author meant (usually: it ends the command)."""

    line: int
    reason: str
    kind: str = ""  # a key of _TRAP_REASONS


@dataclass
class Flag:
    name: str
    value: str | bool
    line: int
    bare: bool = False  # written without dashes (`use_lora \`)


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
    fields: list[tuple[str, int]]  # the whole command after its assignments, with lines

    @property
    def last_line(self) -> int:
        return max([f.line for f in self.flags] + [self.line])


@dataclass
class _LineScan:
    code: str
    comment: str | None
    quote: str | None  # quote still open at the end of the line
    escaped_hash: int | None  # index of the backslash of an unquoted "\ #" (or "\<tab>#")


_UNQUOTED_STOP = re.compile(r"[\\'\"#]")
_DQ_STOP = re.compile(r'[\\"]')


def _scan_line(line: str, quote: str | None) -> _LineScan:
    """Split one physical line as bash does into code and `# comment`, noting a `\\ #` on the way."""
    i, n = 0, len(line)
    word_start = True
    escaped_hash = None
    while i < n:
        if quote == "'":
            j = line.find("'", i)
            if j < 0:
                break
            quote, i, word_start = None, j + 1, False
            continue
        if quote == '"':
            m = _DQ_STOP.search(line, i)
            if m is None:
                break
            if m.group(0) == "\\":
                i = m.end() + 1
            else:
                quote, i, word_start = None, m.end(), False
            continue
        m = _UNQUOTED_STOP.search(line, i)
        if m is None:
            break
        j, c = m.start(), m.group(0)
        if j > i:
            word_start = line[j - 1] in " \t;&|()<>"  # bash's blanks and operators, nothing else
        if c == "\\":
            if escaped_hash is None and line[j + 1:j + 2] in (" ", "\t") and line[j + 2:j + 3] == "#":
                escaped_hash = j
            i, word_start = j + 2, False
        elif c == "#" and word_start:
            return _LineScan(line[:j], line[j:], None, escaped_hash)
        else:  # a quote opens, or a '#' inside a word
            quote = c if c != "#" else None
            i, word_start = j + 1, False
    return _LineScan(line, None, quote, escaped_hash)


def _trailing_backslashes(text: str) -> int:
    return len(text) - len(text.rstrip("\\"))


def _looks_like_flag(line: str) -> bool:
    """A line that continues a command's flags: `--flag ...` or a bare `use_lora \\`."""
    stripped = line.lstrip()
    return stripped.startswith("-") or re.split(r"[\s\\]", stripped, maxsplit=1)[0] in BARE_FLAGS


def _next_code_lines(lines: list[str]) -> list[str | None]:
    """For each line, the next line that is neither empty nor a comment line (None at the end)."""
    out: list[str | None] = [None] * len(lines)
    nxt: str | None = None
    for i in range(len(lines) - 1, -1, -1):
        out[i] = nxt
        stripped = lines[i].strip()
        if stripped and not stripped.startswith("#"):
            nxt = lines[i]
    return out


def find_traps(text: str) -> tuple[str, list[Trap]]:
    """Return the script with continuation traps repaired (same line count) and where they were."""
    lines = text.split("\n")
    out = list(lines)
    traps: list[Trap] = []
    quote: str | None = None
    continuing = False
    next_code = _next_code_lines(lines)
    for i, line in enumerate(lines):
        if quote is not None:  # inside a multi-line quoted string: no comments, no traps
            quote = _scan_line(line, quote).quote
            continuing = False
            continue
        scan = _scan_line(line, None)
        follow = next_code[i]
        flag_follows = follow is not None and _looks_like_flag(follow)
        kind = None
        if scan.escaped_hash is not None and flag_follows:
            # `--flag \ # comment`: bash passes " #" and the comment as words and (unless the comment
            # itself ends in a backslash) ends the command; the author meant continuation + comment.
            kind = "escaped-hash"
            out[i] = line[:scan.escaped_hash] + "\\"
            scan.quote = None
        elif scan.quote is not None:
            quote = scan.quote
            continuing = False
            continue
        else:
            stripped = scan.code.rstrip()
            bash_continues = scan.comment is None and _trailing_backslashes(line) % 2 == 1
            if bash_continues or not flag_follows:
                pass
            elif not stripped and continuing:
                kind = "comment-line" if scan.comment else "empty-line"
                out[i] = "\\"
            elif stripped and _trailing_backslashes(stripped) % 2 == 1:
                kind = "comment-after" if scan.comment else "spaces-after"
                out[i] = stripped
            elif stripped and scan.comment and scan.comment.rstrip().endswith("\\"):
                kind = "in-comment"
                out[i] = stripped + " \\"
            if kind is None:
                continuing = bash_continues
                continue
        traps.append(Trap(i + 1, _TRAP_REASONS[kind], kind))
        continuing = True
    return "\n".join(out), traps


def _is_assignment(word: Word) -> bool:
    first = word.segs[0] if word.segs else None
    return first is not None and first.kind == "lit" and not first.quoted and bool(_ASSIGNMENT.match(first.text))


def _split_assignment(exp: Expander, word: Word) -> tuple[str, str]:
    first = word.segs[0]
    name, _, rest = first.text.partition("=")
    tail = Word([Seg("lit", rest, first.quoted), *word.segs[1:]], word.line)
    return name, "".join(exp.word(tail)) if tail.segs else ""


def iter_commands(text: str, exp: Expander,
                  source: str) -> Iterator[tuple[Command, dict[str, str], list[tuple[str, int]]]]:
    """The script's commands in order, with their `VAR=value` prefixes and expanded words.

    Assignments and `export`s only update `exp` (they are what later words expand with)."""
    for cmd in Lexer(text, source).commands():
        words = list(cmd.words)
        env: dict[str, str] = {}
        if words and words[0].segs and words[0].segs[0].text == "export" and len(words[0].segs) == 1:
            for w in words[1:]:
                if _is_assignment(w):
                    name, value = _split_assignment(exp, w)
                    exp.vars[name] = value
                    exp.exported[name] = (value, w.line)
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
        yield cmd, env, exp.command(Command(words, cmd.line))


def as_launch(fields: list[tuple[str, int]], env: dict[str, str], line: int) -> Launch | None:
    """The command as a `launcher ... script.py flags` launch, or None if it runs no Python script."""
    script_at = next((k for k, (f, _) in enumerate(fields) if f.endswith(".py")), None)
    if script_at is None:
        return None
    head = PurePosixPath(fields[0][0]).name
    if head.startswith("python"):
        launcher = "python"
    elif head in _LAUNCHERS or script_at == 0:
        launcher = head if script_at else "python"
    else:
        return None  # e.g. `echo finetune.py`
    launcher_words = fields[1:script_at]
    if launcher == "accelerate" and launcher_words and launcher_words[0][0] == "launch":
        launcher_words = launcher_words[1:]
    argv = fields[script_at + 1:]
    return Launch(launcher, _pairs(launcher_words), fields[script_at][0], _flags(argv), env, line, argv,
                  fields)


def read_launch(text: str, variables: Mapping[str, str] | None = None,
                source: str = "script.sh") -> tuple[Launch, list[Trap], Expander]:
    """Find the `... finetune.py --flags` command of a script, as the author meant it."""
    repaired, traps = find_traps(text)
    exp = Expander(variables or {}, source)
    for cmd, env, fields in iter_commands(repaired, exp, source):
        launch = as_launch(fields, env, cmd.line)
        if launch is not None:
            return launch, traps, exp
    raise ScriptError(f"{source}: no training command found: expected a line like {LAUNCH_EXAMPLE}")


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
        bare = word in BARE_FLAGS
        if not word.startswith("-") and not bare:
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
                flags.append(Flag(name, True, line, bare))  # e.g. "--bf16 somethingelse": leave it as a stray
            else:
                flags.append(Flag(name, value, line, bare))
                k += 1
        else:
            flags.append(Flag(name, True, line, bare))
        k += 1
    return flags
