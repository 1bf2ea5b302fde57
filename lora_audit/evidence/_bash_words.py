"""bash words as the lexer (``_bash_lexer``) reads them: quotes, escapes, ``$VAR``/``${VAR:-x}``/``$(...)`` kept as
parts for the executor to expand, ``NAME=``/``NAME=(...)`` assignments, heredoc bodies.

Literal text is kept in runs (``(text, line of its first character)``), never one tuple per character, and runs
of ordinary characters are read with one regular expression each; a bare word (most words of a script) is kept as
its text alone."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from lora_audit.errors import EvidenceError
from lora_audit.evidence._script import Lines
from lora_audit.model import Note

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ASSIGNMENT = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(\+?)=")
_BRACE_OPS = (":-", ":=", ":+", ":?", "-", "=", "+", "?")
METACHARS = " \t\n;&|()<>"
_BRACED = re.compile(r"([A-Za-z_][A-Za-z0-9_]*|\d+|[@*#?$!-])(\[([^\]]*)\])?")  # ${NAME[index]...}
_BLANK_TO_EOL = re.compile(r"[ \t]*(#.*)?(\n|$)")
_PLAIN = re.compile(r"[^ \t\n;&|()<>\\'\"$`]+")  # ordinary characters of an unquoted word
_EXPANDING = frozenset("\\$`")  # what a double-quoted string or a heredoc body expands
_PLAIN_DQ = re.compile(r"[^\"\\$`]+")  # ordinary characters inside double quotes
_PLAIN_HEREDOC = re.compile(r"[^\\$`]+")
_PLAIN_ARG = re.compile(r"[^\\'\"$`]+")  # ordinary characters of the word after ${NAME:-

Seg = tuple[str, int]  # literal text and the line of its first character


@dataclass(slots=True)
class Part:
    kind: str  # "lit" | "var" | "sub" (command substitution / arithmetic, kept as written)
    quoted: bool
    line: int
    segs: list[Seg] = field(default_factory=list)  # lit
    raw: str = ""  # var, sub: the text as written
    name: str = ""  # var
    index: str | None = None  # var: "@", "*", "0", ...
    op: str | None = None  # var: one of _BRACE_OPS, or "unsupported"
    arg: list[Part] | None = None  # var: the word after op


_NO_NOTES: tuple[Note, ...] = ()


class Word:
    """A word as written: its parts, or, for a bare word (no quote, escape, expansion or assignment: most words of
    a script), only its ``text``, its one part made when asked for (a long script keeps a few objects a word)."""

    __slots__ = ("_parts", "text", "line", "quoted", "assign", "array", "notes")

    def __init__(self, parts: list[Part] | None, line: int, quoted: bool = False,
                 assign: tuple[str, bool] | None = None, array: list[Word] | None = None,
                 notes: list[Note] | None = None, text: str | None = None):
        self._parts = parts
        self.text = text  # set for a bare word only
        self.line = line
        self.quoted = quoted  # has quotes: an empty result is still a word ("")
        self.assign = assign  # NAME= / NAME+=
        self.array = array  # NAME=( ... )
        self.notes: list[Note] = notes if notes is not None else []

    @classmethod
    def bare(cls, text: str, line: int) -> Word:
        return cls(None, line, notes=_NO_NOTES, text=text)  # type: ignore[arg-type]

    @property
    def parts(self) -> list[Part]:
        if self._parts is None:
            return [Part("lit", False, self.line, segs=[(self.text or "", self.line)])]
        return self._parts

    def plain(self) -> str | None:
        """The word's text when it is a bare literal (for keywords and builtins)."""
        if self.text is not None:
            return self.text
        if self.quoted or self.assign or self._parts is None:
            return None
        parts = self.parts
        if len(parts) == 1 and parts[0].kind == "lit":
            segs = parts[0].segs
            return segs[0][0] if len(segs) == 1 else "".join(t for t, _ in segs)
        for p in parts:
            if p.kind != "lit":
                return None
        return "".join(t for p in parts for t, _ in p.segs)

    def literal(self) -> str | None:
        """The word's text after quote removal when it has no expansion (heredoc delimiters, case patterns)."""
        if self.text is not None:
            return self.text
        if self.assign or any(p.kind != "lit" for p in self.parts):
            return None
        return "".join(t for p in self.parts for t, _ in p.segs)


class WordReader:
    """A position in a script's text (between start and end) and the reading of one word there."""

    def __init__(self, text: str, lines: Lines, label: str, start: int = 0, end: int | None = None):
        self.text, self.line_of, self.label = text, lines, label
        self.pos, self.end = start, len(text) if end is None else end
        self._continued: list[int] = []  # lines ending in `\`-newline since the last newline

    def _peek(self, k: int) -> str:
        i = self.pos + k
        return self.text[i] if i < self.end else ""

    def _skip_line(self) -> None:
        nl = self.text.find("\n", self.pos, self.end)
        self.pos = self.end if nl < 0 else nl

    def _word(self, stops: str = METACHARS, quoted_context: bool = False, assign_ok: bool = True) -> Word:
        word = Word(parts=[], line=self.line_of(self.pos))
        m = _ASSIGNMENT.match(self.text, self.pos, self.end) if assign_ok and not quoted_context else None
        if m:
            word.assign = (m.group(1), m.group(2) == "+")
            self.pos = m.end()
            if self._peek(0) == "(":
                word.array = self._array()
                return word
        t = self.text
        plain = _PLAIN if stops == METACHARS and not quoted_context else _PLAIN_ARG
        while self.pos < self.end:
            c = t[self.pos]
            if c in stops:
                break
            if c == "\\":
                nxt = self._peek(1)
                if nxt == "\n":
                    self._continued.append(self.line_of(self.pos))
                    self.pos += 2
                    continue
                if nxt and nxt in " \t" and not quoted_context and _BLANK_TO_EOL.match(t, self.pos + 1, self.end):
                    word.notes.append(Note(
                        message="backslash followed by a space at the end of the line is not a continuation: the "
                                "command ends here and the next lines are separate commands",
                        source=f"{self.label}:{self.line_of(self.pos)}"))
                if not nxt:  # a backslash as the script's last character: bash drops it
                    self.pos += 1
                    continue
                self._lit(word, nxt, self.pos + 1, quoted=True)
                word.quoted = True
                self.pos += 2
            elif c == "'":
                self._single(word)
            elif c == '"':
                self._double(word)
            elif c == "$":
                self._dollar(word, quoted=quoted_context)
            elif c == "`":
                self._backtick(word, quoted=quoted_context)
            else:
                m = plain.match(t, self.pos, self.end)
                stop = m.end() if m else self.pos + 1
                self._lit(word, t[self.pos:stop], self.pos, quoted=quoted_context)
                self.pos = stop
        parts = word._parts
        if stops == METACHARS and not quoted_context and not word.quoted and not word.assign and parts and all(
                p.kind == "lit" for p in parts):
            word.text = "".join([t for p in parts for t, _ in p.segs])  # bare after all (`a\<newline>b`)
            word._parts = None
        return word

    def _array(self) -> list[Word]:
        open_line = self.line_of(self.pos)
        self.pos += 1
        elems: list[Word] = []
        while True:
            if self.pos >= self.end:
                raise EvidenceError("unterminated array: '(' is never closed", self.label, open_line)
            c = self.text[self.pos]
            if c in " \t\n":
                self.pos += 1
            elif c == "\\" and self._peek(1) == "\n":
                self.pos += 2
            elif c == "#":
                self._skip_line()
            elif c == ")":
                self.pos += 1
                return elems
            else:
                elems.append(self._word(assign_ok=False))
                if self.pos < self.end and self.text[self.pos] in ";&|(<>":
                    raise EvidenceError(f"unexpected {self.text[self.pos]!r} in an array", self.label,
                                        self.line_of(self.pos))

    def _lit(self, word: Word, text: str, pos: int, quoted: bool) -> None:
        seg = (text, self.line_of(pos))
        parts = word._parts
        if parts:
            last = parts[-1]
            if last.kind == "lit" and last.quoted == quoted:
                last.segs.append(seg)
                return
        word.parts.append(Part("lit", quoted, seg[1], segs=[seg]))

    def _single(self, word: Word) -> None:
        start = self.pos
        close = self.text.find("'", start + 1, self.end)
        if close < 0:
            raise EvidenceError("unterminated single quote", self.label, self.line_of(start))
        word.quoted = True
        word.parts.append(Part("lit", True, self.line_of(start)))  # keeps '' as an empty word
        if close > start + 1:
            self._lit(word, self.text[start + 1:close], start + 1, quoted=True)
        self.pos = close + 1

    def _double(self, word: Word) -> None:
        start = self.pos
        self.pos += 1
        word.quoted = True
        word.parts.append(Part("lit", True, self.line_of(start)))
        t = self.text
        while self.pos < self.end:
            c = t[self.pos]
            if c == '"':
                self.pos += 1
                return
            if c in _EXPANDING:
                self._expanding_step(word, '$`"\\')
            else:  # the common case, inline: a run of plain characters
                m = _PLAIN_DQ.match(t, self.pos, self.end)
                self._lit(word, m.group(0), self.pos, quoted=True)  # type: ignore[union-attr]
                self.pos = m.end()  # type: ignore[union-attr]
        raise EvidenceError("unterminated double quote", self.label, self.line_of(start))

    def _expanding_step(self, word: Word, escapable: str) -> None:
        """At a ``\\``, ``$`` or backtick in text where they expand (a double-quoted string, a heredoc body): ``\\``
        escapes only the characters in ``escapable`` and joins lines."""
        c = self.text[self.pos]
        if c == "\\":
            nxt = self._peek(1)
            if nxt and nxt in escapable:
                self._lit(word, nxt, self.pos + 1, quoted=True)
                self.pos += 2
            elif nxt == "\n":
                self.pos += 2
            else:
                self._lit(word, "\\", self.pos, quoted=True)
                self.pos += 1
        elif c == "$":
            self._dollar(word, quoted=True)
        else:
            self._backtick(word, quoted=True)

    def _dollar(self, word: Word, quoted: bool) -> None:
        t, start = self.text, self.pos
        line = self.line_of(start)
        m = _NAME.match(t, start + 1, self.end)
        if m:  # the common case first: $NAME
            word.parts.append(Part("var", quoted, line, raw=t[start:m.end()], name=m.group(0)))
            self.pos = m.end()
            return
        nxt = self._peek(1)
        if nxt == "{":
            end = self._matching(start + 1, "{", "}")
            word.parts.append(self._braced(start, end, quoted))
            self.pos = end
        elif nxt == "(":
            end = self._matching(start + 1, "(", ")")
            word.parts.append(Part("sub", quoted, line, raw=t[start:end]))
            self.pos = end
        elif nxt == "'" and not quoted:  # $'...': ANSI-C quoting
            self.pos += 1
            self._ansi_c(word)
        elif nxt == '"' and not quoted:  # $"...": locale translation, otherwise a double-quoted string
            self.pos += 1
            self._double(word)
        elif nxt and ((nxt.isascii() and nxt.isdigit()) or nxt in "@*#?$!-"):
            word.parts.append(Part("var", quoted, line, raw=t[start:start + 2], name=nxt))
            self.pos += 2
        else:
            self._lit(word, "$", start, quoted)
            self.pos += 1

    def _braced(self, start: int, end: int, quoted: bool) -> Part:
        """``${NAME}``, ``${NAME[@]}``, ``${NAME:-word}`` (and :=, :+, without colon); anything else unsupported."""
        raw = self.text[start:end]
        inner_start = start + 2
        m = _BRACED.match(self.text, inner_start, end - 1)
        part = Part("var", quoted, self.line_of(start), raw=raw)
        if not m:  # ${#NAME}, ${!NAME} come out as unsupported below: their "rest" is no operator
            part.op = "unsupported"
            return part
        part.name, part.index = m.group(1), m.group(3)
        rest = self.text[m.end():end - 1]
        if not rest:
            return part
        op = next((o for o in _BRACE_OPS if rest.startswith(o)), None)
        if op is None:
            part.op = "unsupported"
            return part
        part.op = op
        sub = WordReader(self.text, self.line_of, self.label, m.end() + len(op), end - 1)
        part.arg = sub._word(stops="", quoted_context=quoted, assign_ok=False).parts
        return part

    def _matching(self, open_pos: int, opener: str, closer: str) -> int:
        """Index just past the bracket closing the one at open_pos, skipping quotes and escapes."""
        depth, i, t = 0, open_pos, self.text
        while i < self.end:
            c = t[i]
            if c == "\\":
                i += 2
                continue
            if c == "'" and opener == "(":
                j = t.find("'", i + 1, self.end)
                i = (j if j >= 0 else self.end) + 1
                continue
            if c == '"':
                j = i + 1
                while j < self.end and t[j] != '"':
                    j += 2 if t[j] == "\\" else 1
                i = j + 1
                continue
            if c == opener:
                depth += 1
            elif c == closer:
                depth -= 1
                if depth == 0:
                    return i + 1
            i += 1
        raise EvidenceError(f"unterminated ${opener}: {closer!r} never comes", self.label, self.line_of(open_pos))

    def _ansi_c(self, word: Word) -> None:
        start = self.pos
        word.quoted = True
        word.parts.append(Part("lit", True, self.line_of(start)))
        escapes = {"n": "\n", "t": "\t", "\\": "\\", "'": "'", '"': '"', "r": "\r", "0": ""}
        i = start + 1
        while i < self.end:
            c = self.text[i]
            if c == "'":
                self.pos = i + 1
                return
            if c == "\\" and i + 1 < self.end:
                self._lit(word, escapes.get(self.text[i + 1], "\\" + self.text[i + 1]), i, quoted=True)
                i += 2
                continue
            self._lit(word, c, i, quoted=True)
            i += 1
        raise EvidenceError("unterminated $'...' quote", self.label, self.line_of(start))

    def _backtick(self, word: Word, quoted: bool) -> None:
        start = self.pos
        i = start + 1
        while i < self.end and self.text[i] != "`":
            i += 2 if self.text[i] == "\\" else 1
        if i >= self.end:
            raise EvidenceError("unterminated backtick command substitution", self.label, self.line_of(start))
        word.parts.append(Part("sub", quoted, self.line_of(start), raw=self.text[start:i + 1]))
        self.pos = i + 1

    def heredoc(self) -> Word:
        """A heredoc body with an unquoted delimiter: ``$`` expansions and ``\\`` before ``$ ` \\`` or a newline,
        every other character (quotes included) as written."""
        word = Word(parts=[], line=self.line_of(self.pos), quoted=True)
        t = self.text
        while self.pos < self.end:
            if t[self.pos] in _EXPANDING:
                self._expanding_step(word, "$`\\")
            else:
                m = _PLAIN_HEREDOC.match(t, self.pos, self.end)
                self._lit(word, m.group(0), self.pos, quoted=True)  # type: ignore[union-attr]
                self.pos = m.end()  # type: ignore[union-attr]
        return word
