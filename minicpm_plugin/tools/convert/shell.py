"""A small bash reader for launch scripts: words, quotes, `$VAR` / `${VAR:-x}` expansion.

Enough of bash for `deepspeed ... finetune.py --flags` scripts (line continuations, quotes, variables
set earlier, `;`/`&&`/`|`, redirections, comments); not a shell.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

_OPERATORS = ("&&", "||", ";;", ";", "|&", "|", "&")
_REDIRECT = re.compile(r"(\d*|&)(>>|>\||<>|>&|<&|>|<)")


class ScriptError(ValueError):
    """The script cannot be converted (no launch command, a flag value of the wrong type, ...)."""



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



class Lexer:
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
class Unresolved:
    name: str
    line: int
    kind: str  # "var" | "cmd"


class Expander:
    """Expands words with the variables assigned so far (and the user's --var values)."""

    def __init__(self, variables: Mapping[str, str]) -> None:
        self.vars: dict[str, str] = dict(variables)
        self.unresolved: list[Unresolved] = []
        self.marked: set[str] = set()  # values that stand for unresolved text

    def word(self, word: Word) -> list[str]:
        """The fields one word expands to (unquoted variables split on whitespace)."""
        fields: list[str] = [""]
        for seg in word.segs:
            if seg.kind == "lit":
                fields[-1] += seg.text
                continue
            if seg.kind == "cmd":
                self.unresolved.append(Unresolved(seg.text, word.line, "cmd"))
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
                        self.unresolved.append(Unresolved(seg.text, word.line, "var"))
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
        lexer = Lexer(f'"{text}"')
        lexer.line = line
        (cmd,) = list(lexer.commands()) or [Command([Word([], line)], line)]
        return " ".join(self.word(cmd.words[0]))

    def command(self, cmd: Command) -> list[tuple[str, int]]:
        return [(f, w.line) for w in cmd.words for f in self.word(w)]

