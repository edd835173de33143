"""What bash itself does with the lines of a launch script that its author meant differently.

`read_launch` reads the script as the author meant it. `bash_warnings` writes one warning for each
line where bash runs something else: it ends the command there, passes the words of a `\\ # comment`
to finetune.py, runs the following flags as a command of its own, or passes a bare `use_lora` as a
stray argument. Bash's own reading (`bash_reading`) is the same lexer run on the unrepaired text;
the tests check it against real bash.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field

from minicpm_plugin.tools.convert.launch import BARE_FLAGS, Flag, Launch, Trap, as_launch, iter_commands
from minicpm_plugin.tools.convert.shell import Expander, ScriptError, short

_MAX_LISTED = 30  # line numbers listed in one "the same at line(s)" warning
_PARSER_STOPS = ("which finetune.py's argument parser rejects (HfArgumentParser: 'Some specified arguments "
                 "are not used')")


@dataclass
class BashCommand:
    """One command as bash reads it: its expanded words with their lines."""

    fields: list[tuple[str, int]]
    launch: bool = False  # bash's training command (the first `... finetune.py` one)

    @property
    def span(self) -> tuple[int, int]:
        return self.fields[0][1], self.fields[-1][1]


@dataclass
class BashReading:
    """The commands bash runs from the launch line through the last line the author meant for it."""

    commands: list[BashCommand] = field(default_factory=list)
    error: str | None = None  # bash's syntax error (a quote in a comment left open, ...)
    error_line: int | None = None


def bash_reading(text: str, first_line: int, last_line: int, variables: Mapping[str, str] | None = None,
                 source: str = "script.sh") -> BashReading:
    """How bash splits lines `first_line`..`last_line` of the unrepaired script into commands."""
    reading = BashReading()
    exp = Expander(variables or {}, source)
    launched = False
    try:
        for cmd, env, fields in iter_commands(text, exp, source):
            if cmd.line > last_line:
                break
            if cmd.line >= first_line and fields:
                is_launch = not launched and as_launch(fields, env, cmd.line) is not None
                launched |= is_launch
                reading.commands.append(BashCommand(fields, is_launch))
    except ScriptError as exc:
        reading.error, reading.error_line = exc.detail or str(exc), exc.line
    return reading


def _quote(word: str) -> str:
    """The word in single quotes, as bash would need it written (so ' #' and ' ' stay visible)."""
    return "'" + short(word, 40).replace("'", "'\\''") + "'"


def _show(words: list[str], limit: int = 3) -> str:
    shown = " ".join(_quote(w) for w in words[:limit])
    return shown + (f" … (+{len(words) - limit} more)" if len(words) > limit else "")


def _lines(a: int, b: int) -> str:
    return f"line {a}" if a == b else f"lines {a}-{b}"


def _not_a_program(word: str) -> bool:
    return word.startswith("-") or word in BARE_FLAGS


def _extra(bash_words: list[str], author_words: list[str]) -> list[str]:
    """The words bash has on a line that the author's reading of it does not."""
    rest, extra = Counter(author_words), []
    for word in bash_words:
        if rest[word] > 0:
            rest[word] -= 1
        else:
            extra.append(word)
    return extra


class _Report:
    def __init__(self, source: str, launch: Launch, reading: BashReading) -> None:
        self.source, self.launch, self.reading = source, launch, reading
        self.author: dict[int, list[str]] = defaultdict(list)
        for word, line in launch.fields:
            self.author[line].append(word)
        self.bash: dict[int, list[tuple[str, int, int]]] = defaultdict(list)  # line -> (word, command, pos)
        self.continued: set[int] = set()  # lines after which a command bash reads goes on
        for ci, cmd in enumerate(reading.commands):
            for pos, (word, line) in enumerate(cmd.fields):
                self.bash[line].append((word, ci, pos))
            self.continued.update(range(*cmd.span))

    def ends(self, line: int) -> bool:
        """Whether bash ends a command at `line` (no command it reads goes on past it) and runs it."""
        return line not in self.continued and not self.broken(line)

    def broken(self, line: int) -> bool:
        """Whether bash stopped with a syntax error before running the command of `line`."""
        return self.reading.error_line is not None and self.reading.error_line <= line

    def extra(self, line: int) -> tuple[BashCommand | None, list[str]]:
        entries = self.bash.get(line)
        if not entries:
            return None, []
        ci = entries[0][1]
        return self.reading.commands[ci], _extra([w for w, c, _ in entries if c == ci], self.author[line])

    def first(self, trap: Trap, head: list[str]) -> str:
        """The line where bash's training command ends: what it passes and what it drops."""
        later = [f"--{f.name}" for f in self.launch.flags if f.line > trap.line and f.name]
        shown = ", ".join(later[:4]) + (", ..." if len(later) > 4 else "")
        cmd, extra = self.extra(trap.line)
        passes = (f", passes {_show(extra)} to finetune.py as extra argument(s) (which its argument parser "
                  "rejects)") if cmd and cmd.launch and extra else ""
        return (f"{self.source}:{trap.line}: " + "".join(h + "; " for h in head)
                + f"bash ends the command here ({trap.reason}){passes} and {'' if passes else 'silently '}"
                f"drops the {len(later)} flag(s) after this line ({shown}); converted as the author meant "
                "(all flags)")

    def clause(self, line: int, bare: list[Flag]) -> str:
        """What bash does with the words of `line`."""
        entries = self.bash.get(line)
        if self.broken(line):
            return (f"bash stops with a syntax error and runs nothing from line {self.launch.line} on "
                    f"({self.reading.error})")
        if not entries:
            return "bash ends the command here"
        cmd, extra = self.extra(line)
        assert cmd is not None
        words = extra or [f.name for f in bare] or [w for w, _, _ in entries]
        name = cmd.fields[0][0]
        start, end = cmd.span
        if cmd.launch:
            return f"bash passes {_show(words)} to finetune.py as stray argument(s), {_PARSER_STOPS}"
        if entries[0][2] == 0:
            shown = short(name, 40) + (" …" if len(cmd.fields) > 1 else "")
            return (f"bash runs {_lines(start, end)} as a command of its own, `{shown}`"
                    + (": command not found" if _not_a_program(name) else ""))
        return (f"bash passes {_show(words)} to the command `{short(name, 40)}` of line {start}"
                + (", which does not exist" if _not_a_program(name) else ""))


def bash_warnings(text: str, launch: Launch, traps: list[Trap], variables: Mapping[str, str] | None = None,
                  source: str = "script.sh") -> list[str]:
    """One warning per line of the launch command that bash runs differently from its author's meaning.

    The first line where bash ends the command says how many flags bash drops. Later lines of the
    same older trap kind (comment lines, `\\  # comment`) are listed together in one warning; `\\ #`
    lines and bare `use_lora` / `qlora` words get a warning each, saying what bash does with them."""
    last = launch.last_line
    traps = [t for t in traps if launch.line <= t.line < last]
    bare = [f for f in launch.flags if f.bare]
    if not traps and not bare:
        return []
    report = _Report(source, launch, bash_reading(text, launch.line, last, variables, source))
    at = {t.line: t for t in traps}
    ends = [t for t in traps if report.ends(t.line)]
    first = ends[0] if ends else None
    bare_at: dict[int, list[Flag]] = defaultdict(list)
    for f in bare:
        bare_at[f.line].append(f)
    same = [t.line for t in traps if first is not None and t is not first and t.kind == first.kind
            and t.kind != "escaped-hash" and t.line not in bare_at]
    same_set = set(same)
    # A command that bash starts right after a `\ #` line ended the one before: its first line is
    # run differently too, even when nothing on it is wrong (the last `--deepspeed ...` line).
    tails: dict[int, int] = {}
    commands = report.reading.commands
    for before, cmd in zip(commands, commands[1:], strict=False):
        ended = before.span[1]
        if ended in at and at[ended].kind == "escaped-hash" and cmd.span[0] not in at:
            tails.setdefault(cmd.span[0], ended)
    warnings: list[str] = []
    for line in sorted(set(at) | set(bare_at) | set(tails)):
        here = bare_at.get(line, [])
        head = [f"`{f.name}` has no dashes: read as --{f.name} "
                + ("true" if f.value is True else short(str(f.value))) for f in here]
        if line in tails and not here:
            head.append(f"the '\\ #' of line {tails[line]} ended the command before")
        if first is not None and line == first.line:
            warnings.append(report.first(first, head))
        elif line in same_set:
            if line == same[0]:
                listed = ", ".join(map(str, same[:_MAX_LISTED]))
                more = f", ... ({len(same)} lines)" if len(same) > _MAX_LISTED else ""
                warnings.append(f"{source}:{line}: the same at line(s) {listed}{more}")
        else:
            parts = head + ([at[line].reason] if line in at else []) + [report.clause(line, here)]
            warnings.append(f"{source}:{line}: " + "; ".join(parts) + "; converted as the author meant")
    return warnings
