"""A small bash reader for launch scripts: words, quotes, `$VAR` / `${VAR:-x}` expansion.

Enough of bash for `deepspeed ... finetune.py --flags` scripts (line continuations, quotes, variables
set earlier, `;`/`&&`/`|`, redirections, comments); not a shell. Also how the script's bytes are
decoded (`decode_script`) and the two byte-level quirks bash does not forgive (`prepare_text`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

_OPERATORS = ("&&", "||", ";;", ";", "|&", "|", "&")
_REDIRECT = re.compile(r"(\d*|&)(>>|>\||<>|>&|<&|>|<)")
_FD_DUP = re.compile(r"\d+|-")
_VAR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|\d")
_PARAM = re.compile(r"([A-Za-z_][A-Za-z0-9_]*|\d+)(?:(:?)([-=])(.*))?", re.S)
_PLAIN = re.compile(r"[^ \t\n;|&()<>\\'\"$`]+")  # a run of characters that are just themselves
_IFS = re.compile(r"[ \t\n]+")  # how bash splits an unquoted expansion (a CR or U+3000 is no blank)
_PLAIN_DQ = re.compile(r'[^"\\$`]+')  # the same inside double quotes
_PARENS = re.compile(r"[()]")
_BRACES = re.compile(r"[\\$}]")
MAX_DEFAULT_DEPTH = 32  # ${A:-${B:-...}} levels; deeper nesting is refused, not recursed into
LAUNCH_EXAMPLE = "`deepspeed ... finetune.py --model_name_or_path ...`"


class ScriptError(ValueError):
    """The script cannot be converted; the message is `FILE[:LINE]: what to change`, one line."""

    def __init__(self, message: str, line: int | None = None, detail: str | None = None) -> None:
        super().__init__(message)
        self.line = line
        self.detail = detail  # a short description, for quoting inside another message


_CONTROL = {i: repr(chr(i))[1:-1] for i in [*range(32), 127]}


def short(text: str, limit: int = 60) -> str:
    """`text` cut to `limit` characters (with "…"), control characters escaped, so that a message
    stays one readable line."""
    text = text.translate(_CONTROL)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def decode_script(data: bytes, source: str) -> str:
    """The script's text; UTF-16, binary and non-UTF-8 files get a ScriptError naming what to change."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise ScriptError(f"{source}:1: UTF-16 text (it starts with a byte-order mark), which bash cannot "
                          f"run: save it as UTF-8 (e.g. `iconv -f UTF-16 -t UTF-8 {source} > fixed.sh`)")
    nul = data.find(b"\0")
    if nul >= 0:
        line = data.count(b"\n", 0, nul) + 1
        raise ScriptError(f"{source}:{line}: NUL byte at offset {nul}: a binary file (or UTF-16 without a "
                          "byte-order mark), not a shell script: pass the launch script (.sh)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ScriptError(f"{source}:{line}: byte 0x{data[exc.start]:02x} (column {column}) is not UTF-8: save "
                          "the script as UTF-8 (e.g. `iconv -f GBK -t UTF-8` for a GBK file)") from None


def prepare_text(text: str, source: str) -> tuple[str, list[str]]:
    """Undo a UTF-8 byte-order mark and Windows line endings, with a warning for each.

    Bash takes both literally: the mark becomes part of the first word, and with CRLF endings every
    line-continuation backslash escapes the CR instead of the newline, so each line ends its command."""
    warnings: list[str] = []
    if text.startswith("\ufeff"):
        text = text[1:]
        warnings.append(f"{source}:1: starts with a UTF-8 byte-order mark, which bash reads as part of the "
                        "first word; ignored here, remove it from the file")
    crlf = text.count("\r\n")
    if crlf:
        first = text[:text.index("\r\n")].count("\n") + 1
        text = text.replace("\r\n", "\n")
        warnings.append(f"{source}:{first}: Windows line endings (CRLF) on {crlf} line(s): bash reads each "
                        "line-continuation backslash as escaping the CR and ends the command at every line; "
                        f"converted as the author meant, run `dos2unix {source}` before using the script")
    return text, warnings


@dataclass(frozen=True)
class Seg:
    """Part of a shell word: literal text, a variable reference or a command substitution."""

    kind: str  # "lit" | "var" | "cmd"
    text: str  # literal text, variable name, or the raw `$(...)` text
    quoted: bool = False
    default: str | None = None  # for ${VAR:-default}
    assign_default: bool = False  # ${VAR:=default}
    colon: bool = True  # ${VAR:-x} (unset or empty) rather than ${VAR-x} (unset only)


@dataclass
class Word:
    segs: list[Seg]
    line: int


@dataclass
class Command:
    words: list[Word]
    line: int  # line of the first word


class Lexer:
    """A small bash word splitter: enough for launch scripts, not a shell.

    Quotes, `$(`, `${` and backquotes left open at the end of the text raise a ScriptError naming
    the line they open on (bash stops there with "unexpected EOF")."""

    def __init__(self, text: str, source: str = "script.sh", line: int = 1) -> None:
        self.s = text
        self.n = len(text)
        self.i = 0
        self.line = line
        self.source = source

    def _peek(self, k: int = 0) -> str:
        """The character k ahead, or NUL past the end (which no test below matches)."""
        j = self.i + k
        return self.s[j] if j < self.n else "\0"

    def _advance(self) -> str:
        c = self.s[self.i]
        self.i += 1
        if c == "\n":
            self.line += 1
        return c

    def _skip_to(self, j: int) -> None:
        """Move the cursor to index j, counting the newlines passed."""
        self.line += self.s.count("\n", self.i, j)
        self.i = j

    def _unterminated(self, what: str, line: int, close: str) -> ScriptError:
        return ScriptError(f"{self.source}:{line}: {what} opened on this line is never closed: add the "
                           f"closing {close} (bash stops with 'unexpected EOF' here)",
                           line, f"{what} opened on line {line} is never closed")

    def commands(self) -> Iterator[Command]:
        words: list[Word] = []
        while self.i < self.n:
            c = self._peek()
            if c == "\\" and self._peek(1) == "\n":
                self._advance()
                self._advance()
            elif c in " \t":
                self._advance()
            elif c == "\n":
                self._advance()
                if words:
                    yield Command(words, words[0].line)
                    words = []
            elif c == "#":
                end = self.s.find("\n", self.i)
                self._skip_to(self.n if end < 0 else end)
            elif self._redirection():
                continue
            elif c in ";|&" and any(self.s.startswith(op, self.i) for op in _OPERATORS):
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
        if m.group(2) in (">&", "<&") and _FD_DUP.match(self.s, self.i):
            while self._peek().isdigit() or self._peek() == "-":
                self._advance()
            return True
        while self._peek() in " \t":
            self._advance()
        if self.i < self.n and self._peek() != "\n":
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

        while self.i < self.n:
            c = self._peek()
            if c in " \t\n;|&()<>":
                break
            if c == "\\":
                self._advance()
                if self.i < self.n:
                    nxt = self._advance()
                    if nxt != "\n":
                        lit.append(nxt)
            elif c == "'":
                flush()
                opened = self.line
                self._advance()
                end = self.s.find("'", self.i)
                if end < 0:
                    raise self._unterminated("the single quote (')", opened, "'")
                segs.append(Seg("lit", self.s[self.i:end], True))
                self._skip_to(end + 1)
            elif c == '"':
                flush()
                self._advance()
                self._double_quoted(segs)
            elif c == "$" or c == "`":
                flush()
                segs.append(self._dollar(quoted=False))
            else:
                m = _PLAIN.match(self.s, self.i)
                lit.append(m.group(0) if m else c)
                self._skip_to(m.end() if m else self.i + 1)
        flush()
        return Word(segs, line)

    def _double_quoted(self, segs: list[Seg]) -> None:
        opened = self.line
        lit: list[str] = []
        while self.i < self.n and self._peek() != '"':
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
                m = _PLAIN_DQ.match(self.s, self.i)
                lit.append(m.group(0) if m else c)
                self._skip_to(m.end() if m else self.i + 1)
        if self.i >= self.n:
            raise self._unterminated('the double quote (")', opened, '"')
        if lit or not segs:
            segs.append(Seg("lit", "".join(lit), True))
        self._advance()

    def _dollar(self, quoted: bool) -> Seg:
        start, opened = self.i, self.line
        if self._peek() == "`":
            end = self.s.find("`", self.i + 1)
            if end < 0:
                raise self._unterminated("the backquote (`)", opened, "`")
            self._skip_to(end + 1)
            return Seg("cmd", self.s[start:self.i], quoted)
        self._advance()  # "$"
        c = self._peek()
        if c == "(":
            depth = 0
            for m in _PARENS.finditer(self.s, self.i):
                depth += 1 if m.group(0) == "(" else -1
                if depth == 0:
                    self._skip_to(m.end())
                    return Seg("cmd", self.s[start:self.i], quoted)
            raise self._unterminated("the command substitution $(", opened, ")")
        if c == "{":
            self._advance()
            body_start, depth, j = self.i, 1, self.i
            while depth:
                m = _BRACES.search(self.s, j)
                if m is None:
                    raise self._unterminated("the ${", opened, "}")
                j = m.end()
                if m.group(0) == "\\":
                    j += 1
                elif m.group(0) == "$":
                    if self.s.startswith("{", j):
                        depth, j = depth + 1, j + 1
                else:
                    depth -= 1
            self._skip_to(min(j, self.n))
            body = self.s[body_start:self.i - 1]
            m = _PARAM.fullmatch(body)
            if not m:
                return Seg("cmd", self.s[start:self.i], quoted)
            name, colon, op, default = m.groups()
            return Seg("var", name, quoted, default, op == "=", bool(colon))
        m = _VAR_NAME.match(self.s, self.i)
        if not m:
            return Seg("lit", "$", quoted)
        self._skip_to(m.end())
        return Seg("var", m.group(0), quoted)


@dataclass
class Unresolved:
    name: str
    line: int
    kind: str  # "var" | "cmd"


class Expander:
    """Expands words with the variables assigned so far (and the user's --var values)."""

    def __init__(self, variables: Mapping[str, str], source: str = "script.sh") -> None:
        self.vars: dict[str, str] = dict(variables)
        self.exported: dict[str, tuple[str, int]] = {}  # `export NAME=value`: value and line
        self.unresolved: list[Unresolved] = []
        self.marked: set[str] = set()  # values that stand for unresolved text
        self.source = source
        self._depth = 0

    def word(self, word: Word) -> list[str]:
        """The fields one word expands to (unquoted variables split on whitespace)."""
        fields: list[list[str]] = [[]]  # each field as its pieces (joined once at the end)
        for seg in word.segs:
            if seg.kind == "lit":
                fields[-1].append(seg.text)
                continue
            if seg.kind == "cmd":
                self.unresolved.append(Unresolved(seg.text, word.line, "cmd"))
                value = seg.text
                self.marked.add(value)
            else:
                value = self.vars.get(seg.text)
                if seg.default is not None and (value is None or (value == "" and seg.colon)):
                    value = self.expand_text(seg.default, word.line)
                    if seg.assign_default:
                        self.vars[seg.text] = value
                elif value is None:
                    self.unresolved.append(Unresolved(seg.text, word.line, "var"))
                    value = "${" + seg.text + "}"
                    self.marked.add(value)
            if seg.quoted or value in self.marked:  # unknown shell text is kept as one piece
                fields[-1].append(value)
            else:
                parts = _IFS.split(value.strip(" \t\n"))
                if parts == [""]:
                    continue
                if value[:1] in (" ", "\t", "\n") and any(fields[-1]):
                    fields.append([])
                fields[-1].append(parts[0])
                fields.extend([part] for part in parts[1:])
                if value[-1:] in (" ", "\t", "\n"):
                    fields.append([])
        joined = ["".join(f) for f in fields]
        return [f for f in joined if f != ""] or ([""] if word.segs else [])

    def expand_text(self, text: str, line: int) -> str:
        """Expand the text of a `${VAR:-default}` default (as if double-quoted)."""
        if self._depth >= MAX_DEFAULT_DEPTH:
            raise ScriptError(f"{self.source}:{line}: ${{...:-...}} defaults nested more than "
                              f"{MAX_DEFAULT_DEPTH} deep: set the variable directly")
        self._depth += 1
        try:
            cmd = next(Lexer(f'"{text}"', self.source, line).commands(), None)
            return " ".join(self.word(cmd.words[0])) if cmd else ""
        finally:
            self._depth -= 1

    def command(self, cmd: Command) -> list[tuple[str, int]]:
        return [(f, w.line) for w in cmd.words for f in self.word(w)]
