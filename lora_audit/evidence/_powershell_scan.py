"""The PowerShell scanner: a position in the script text, and what reads the same in every statement.

Blanks, backtick continuations and comments; single-quoted (literal, ``''`` for a quote), double-quoted and here-
strings (``$var``, ``${var}``, ``$env:VAR`` expanded, backtick escapes, ``$(...)`` kept as written); variable
lookups (case-insensitive; ``$PSScriptRoot`` is the script's folder, where the evidence lies).
"""

from __future__ import annotations

import re
from itertools import repeat

from lora_audit.errors import EvidenceError
from lora_audit.evidence._script import Command, Lines, Value
from lora_audit.model import Note

C = tuple[str, int]  # a character and its line
VAR = re.compile(r"\$(?:\{([^}\n]+)\}|((?:(?:env|global|script|local|private|using):)?[A-Za-z_]\w*))",
                 re.IGNORECASE)
ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "0": "", "a": "\a", "b": "\b", "f": "\f", "v": "\v"}
_SQ_PLAIN = re.compile(r"[^'\n]+")
_DQ_PLAIN = re.compile(r'[^"`$\n]+')
_BLANKS = re.compile(r"[ \t]+")
_BLANKS_NL = re.compile(r"[ \t\n]+")
_AUTOMATIC = {"psscriptroot": ".", "true": "True", "false": "False", "null": ""}


class Scanner:
    def __init__(self, label: str):
        self.label = label
        self.vars: dict[str, Value] = {}  # lower-cased names; environment variables as "env:name"
        self.t, self.pos, self.end, self.line_of = "", 0, 0, Lines("")

    def _start(self, text: str, first_line: int) -> None:
        self.t, self.pos, self.end, self.line_of = text, 0, len(text), Lines(text, first_line)

    def _peek(self, k: int = 0) -> str:
        i = self.pos + k
        return self.t[i] if i < self.end else ""

    def _note(self, notes: list[Note], message: str, pos: int) -> None:
        notes.append(Note(message=message, source=f"{self.label}:{self.line_of(pos)}"))

    def _skip_comment(self) -> bool:
        if self.t.startswith("<#", self.pos):
            close = self.t.find("#>", self.pos + 2)
            if close < 0:
                raise EvidenceError("unterminated block comment <#", self.label, self.line_of(self.pos))
            self.pos = close + 2
            return True
        if self._peek() == "#":
            nl = self.t.find("\n", self.pos)
            self.pos = self.end if nl < 0 else nl
            return True
        return False

    def _skip_blanks(self, newlines: bool = False) -> None:
        t, end = self.t, self.end  # read once: this runs between every two items of every statement
        while self.pos < end:
            c = t[self.pos]
            if c in " \t" or (newlines and c == "\n"):
                self.pos = (_BLANKS_NL if newlines else _BLANKS).match(t, self.pos, end).end()  # type: ignore
            elif c == "`" and self.pos + 1 < end and t[self.pos + 1] == "\n":
                self.pos += 2
            elif newlines and (self.t.startswith("<#", self.pos) or c == "#"):
                self._skip_comment()
            else:
                return

    def _matching_square(self, open_pos: int) -> int:
        depth = 0
        for i in range(open_pos, self.end):
            if self.t[i] == "[":
                depth += 1
            elif self.t[i] == "]":
                depth -= 1
                if depth == 0:
                    return i + 1
        raise EvidenceError("unterminated '[' in param(", self.label, self.line_of(open_pos))

    def _statement_end(self, start: int) -> int:
        i, depth = start, 0
        while i < self.end:
            c = self.t[i]
            if c in "([{":
                depth += 1
            elif c in ")]}":
                depth -= 1
            elif c in "\"'":
                j = self.t.find(c, i + 1)
                i = self.end if j < 0 else j
            elif c == "`":
                i += 1
            elif depth <= 0 and c in "\n;|#":
                return i
            i += 1
        return self.end

    def _single(self) -> list[C]:
        start = self.pos
        out: list[C] = []
        i = start + 1
        while i < self.end:
            if self.t[i] == "'":
                if i + 1 < self.end and self.t[i + 1] == "'":
                    out.append(("'", self.line_of(i)))
                    i += 2
                    continue
                self.pos = i + 1
                return out
            m = _SQ_PLAIN.match(self.t, i, self.end)  # a run of characters on one line: one look-up of its line
            stop = m.end() if m else i + 1
            out.extend(zip(self.t[i:stop], repeat(self.line_of(i))))
            i = stop
        raise EvidenceError("unterminated single-quoted string", self.label, self.line_of(start))

    def _double(self, cmd: Command) -> list[C]:
        start = self.pos
        self.pos += 1
        out: list[C] = []
        t, end = self.t, self.end  # read once (every string of a script comes here)
        while self.pos < end:
            i = self.pos
            c = t[i]
            if c == '"':
                if i + 1 < end and t[i + 1] == '"':
                    out.append(('"', self.line_of(i)))
                    self.pos += 2
                    continue
                self.pos += 1
                return out
            if c == "`" and i + 1 < end:
                nxt = t[i + 1]
                if nxt != "\n":
                    out.append((ESCAPES.get(nxt, nxt), self.line_of(i)))
                self.pos += 2
            elif c == "$":
                out.extend(self._dollar(cmd))
            else:
                m = _DQ_PLAIN.match(t, i, end)  # a run of characters on one line
                stop = m.end() if m else i + 1
                out.extend(zip(t[i:stop], repeat(self.line_of(i))))
                self.pos = stop
        raise EvidenceError("unterminated double-quoted string", self.label, self.line_of(start))

    def _here_string(self, cmd: Command) -> list[C]:
        start = self.pos
        expand = self.t[start + 1] == '"'
        close = self.t.find("\n" + self.t[start + 1] + "@", start + 2)
        if close < 0:
            raise EvidenceError("unterminated here-string", self.label, self.line_of(start))
        body_end, self.pos = close, start + 3
        out: list[C] = []
        while self.pos < body_end:
            if expand and self._peek() == "$":
                out.extend(self._dollar(cmd))
            else:
                out.append((self._peek(), self.line_of(self.pos)))
                self.pos += 1
        self.pos = close + 3
        return out

    def _dollar(self, cmd: Command) -> list[C]:
        """``$var``, ``${var}``, ``$env:VAR`` or ``$(...)`` inside a word or a double-quoted string."""
        pos = self.pos
        if pos + 1 < self.end and self.t[pos + 1] == "(":
            close = self._matching(pos + 1)
            raw = self.t[pos:close]
            self._note(cmd.notes, f"{raw} is not run: the word keeps it as written", pos)
            self.pos = close
            return [(ch, self.line_of(pos)) for ch in raw]
        m = VAR.match(self.t, pos)
        if not m:
            self.pos += 1
            return [("$", self.line_of(pos))]
        self.pos = m.end()
        value = self._lookup(m, cmd)
        if value is None:
            return list(zip(m.group(0), repeat(self.line_of(pos))))
        out: list[C] = []
        for k, item in enumerate(value.items):  # an array inside a string: elements joined by spaces ($OFS)
            if k:
                out.append((" ", self.line_of(pos)))
            out.extend(item)
        return out

    def _lookup(self, m: re.Match, cmd: Command, splat: bool = False) -> Value | None:
        raw = m.group(0)
        name = (m.group(1) or "") if splat else (m.group(1) or m.group(2))
        key = name.lower()
        scope, _, bare = key.rpartition(":")
        if scope in ("global", "script", "local", "private", "using"):
            key = bare
        if key in _AUTOMATIC and key not in self.vars:
            return Value(items=[[(c, self.line_of(m.start())) for c in _AUTOMATIC[key]]], line=self.line_of(m.start()))
        value = self.vars.get(key)
        if value is None:
            why = ("is not set in the script (the environment at run time would decide)" if key.startswith("env:")
                   else "is not set in the script")
            self._note(cmd.notes, f"{raw} {why}: left as written", m.start())
            return None
        cmd.notes.extend(value.notes)
        cmd.variables.append({"name": raw.lstrip("$@"), "value": value.text(), "defined": f"{self.label}:{value.line}"})
        return value

    def _matching(self, open_pos: int) -> int:
        depth, i = 0, open_pos
        while i < self.end:
            c = self.t[i]
            if c == "`":
                i += 2
                continue
            if c in "\"'":
                j = self.t.find(c, i + 1)
                i = self.end if j < 0 else j + 1
                continue
            if c == "(":
                depth += 1
            elif c == ")":
                depth -= 1
                if depth == 0:
                    return i + 1
            i += 1
        raise EvidenceError("unterminated '(': ')' never comes", self.label, self.line_of(open_pos))


