"""PowerShell in expression mode, where assignments are read: ``$var = ...`` (strings, numbers, ``@(...)`` arrays,
``,`` lists, ``+`` concatenation, casts), ``$list.Add()``/``.AddRange()`` and ``param(...)`` defaults. The
statements around them are read by ``_powershell``."""

from __future__ import annotations

import re
from itertools import repeat

from lora_audit.errors import EvidenceError
from lora_audit.evidence._powershell_scan import VAR, C, Scanner
from lora_audit.evidence._script import WINDOWS_COMMAND_LINE, Command, Value
from lora_audit.model import Note

_BARE = re.compile(r"[^\s,;)#|}+(\"'$]+")  # a number or a bare word in expression mode
_NEW_LIST = re.compile(r"(?:\[(?:System\.Collections\.)?(?:ArrayList|Generic\.List\[[^\]]*\])\]::new\(\s*\)|"
                       r"New-Object\s+(?:-TypeName\s+)?(?:System\.Collections\.)?(?:ArrayList|Generic\.List\[[^\]]*\])"
                       r"(?:\s*\(\s*\))?)", re.IGNORECASE)
_CAST = re.compile(r"\[[A-Za-z_][\w.]*(?:\[[^\]]*\])?\]\s*(?=[@$\"'\d(])")
# .Add("text") with a string of plain characters: no escape, no variable, no doubled quote, on one line
_ONE_STRING = re.compile(r'"([^"`$\n]*)"\)')
_BLANKS_QUOTE = re.compile(r'[ \t]*"')
_NUMBER = re.compile(r"-?\d+(\.\d+)?([eE]-?\d+)?")
_STATEMENT_END = "\n;|}#"


class Expressions(Scanner):
    """The assignments of a script, evaluated on the variables set so far."""

    _shared: set[int]  # ids of values a branch copy shares (appended to only after a copy)
    fast = True  # shortcuts for the common statements (off: the general reading, for the differential tests)

    def _method(self, m: re.Match) -> None:
        """``[void]$a.Add(x)``, ``$a.Add(x) | Out-Null``, ``$null = $a.AddRange(@(...))``: append to the list."""
        name, method = m.group(1).lower(), m.group(2).lower()
        start = self.pos
        line = self.line_of(start)
        self.pos = m.end()
        scratch = Command(words=[])
        items: list[list[C]] = []
        concat = False
        plain = _ONE_STRING.match(self.t, self.pos, self.end) if self.fast else None
        if plain:  # .Add("text"): the one item the loop below reads, the position after the ")" where it stops
            items.append(list(zip(plain.group(1), repeat(self.line_of(self.pos + 1)))))
            self.pos = plain.end()
        while not plain and self.pos < self.end:
            self._skip_blanks(newlines=True)
            if self._peek() == ")":
                self.pos += 1
                break
            got = self._item(scratch)
            if got is None:
                stop = self._matching(m.end() - 1)
                raw = self.t[self.pos:stop - 1].strip()
                self._note(scratch.notes, f"{raw!r} is not evaluated: kept as written", self.pos)
                items.append([(c, line) for c in raw])
                self.pos = stop
                break
            new, _ = got
            if concat and items:
                items[-1] = items[-1] + [c for item in new for c in item]
            else:
                items.extend(new)
            self._skip_blanks(newlines=True)
            concat = self._peek() == "+"
            if concat or self._peek() == ",":
                self.pos += 1
        if method == "add" and len(items) > 1:
            items = [[c for item in items for c in (item + [(" ", line)])][:-1]]  # one element: an array as text
        old = self.vars.get(name)
        if old is None:
            self._note(scratch.notes, f"${m.group(1)} is not created in the script before .{m.group(2)}()", start)
            old = Value(items=[], line=line, array=True)
        self.vars[name] = _extended(old, items, scratch.notes, self._shared, self.label)
        stop = self._statement_end(self.pos)
        self.pos = stop  # `| Out-Null` and the like

    def _assignment(self, m: re.Match) -> None:
        braced, scope, name, op = m.groups()
        key = (braced or ((scope + ":") if scope and scope.lower() == "env" else "") + name).lower()
        line = self.line_of(self.pos)
        self.pos = m.end()
        scratch = Command(words=[])
        string = self._one_string(scratch) if self.fast else None
        if string is not None:  # what _expression gives, and a right side starting with a quote is a string
            items, array, kind = [string], False, "string"
        else:
            scratch, self.pos = Command(words=[]), m.end()  # a shortcut tried: its notes are not kept
            items, array = self._expression(scratch)
            rhs = self.t[m.end():self.pos].split("#")[0].strip()
            kind = ("number" if _NUMBER.fullmatch(rhs) else
                    "bool" if rhs.lower() in ("$true", "$false") else "string")
        value = Value(items=items, line=line, array=array, notes=scratch.notes, kind=kind)
        old = self.vars.get(key)
        if op == "+=" and old is not None:
            if old.array or array:
                value = _extended(old, items, scratch.notes, self._shared, self.label)
            else:
                value = Value(items=[old.items[0] + (items[0] if items else [])], line=old.line,
                              notes=old.notes + scratch.notes)
        self.vars[key] = value

    def _one_string(self, cmd: Command) -> list[C] | None:
        """A right side that is one double-quoted string ending the statement (``$x = "v $y"``): its characters,
        read as ``_expression`` reads them (blanks, the string, blanks, then the statement's end); None otherwise
        (the caller reads it again from the start: what it read here, the same string, raises the same errors)."""
        q = _BLANKS_QUOTE.match(self.t, self.pos, self.end)
        if q is None:
            return None
        self.pos = q.end() - 1
        chars = self._double(cmd)
        if self.pos < self.end and self.t[self.pos] == "\n":
            return chars  # the common end, where the blanks below are none and a newline ends the statement
        self._skip_blanks()
        c = self._peek()
        return chars if not c or c in _STATEMENT_END else None

    def _param_block(self, m: re.Match) -> None:
        """``param([int]$Dim = 32, ...)``: the defaults are what the script runs with unless its caller says."""
        open_pos = m.end() - 1
        self.pos = m.end()
        while True:
            self._skip_blanks(newlines=True)
            c = self._peek()
            if not c:
                raise EvidenceError("unterminated param( block", self.label, self.line_of(open_pos))
            if c == ")":
                self.pos += 1
                return
            if c == "[":
                self.pos = self._matching_square(self.pos)
                continue
            v = VAR.match(self.t, self.pos)
            if not v:
                self.pos += 1  # a comma, an attribute's leftovers
                continue
            self.pos = v.end()
            self._skip_blanks(newlines=True)
            if self._peek() != "=":
                continue
            self.pos += 1
            self._skip_blanks(newlines=True)
            scratch = Command(words=[])
            got = self._item(scratch)
            if got is None:
                continue
            name = (v.group(1) or v.group(2)).lower()
            self._note(scratch.notes, f"{v.group(0)} is a parameter of the script: its default is used (a caller "
                                      "could have passed another value)", v.start())
            items, array = got
            self.vars[name] = Value(items=items, line=self.line_of(v.start()), array=array, notes=scratch.notes)

    def _expression(self, cmd: Command) -> tuple[list[list[C]], bool]:
        """The right side of an assignment: items (one, or several for an array) and whether it is an array."""
        start = self.pos
        items: list[list[C]] = []
        array, concat = False, False
        self._skip_blanks(newlines=True)
        while self.pos < self.end:
            got = self._item(cmd)
            if got is None:
                break
            new, is_array = got
            array = array or is_array
            if concat and items and not array:
                items[-1] = items[-1] + [c for item in new for c in item]
            else:
                items.extend(new)
            concat = False
            self._skip_blanks()
            c = self._peek()
            if c == ",":
                array = True
            elif c == "+":
                concat = True
            elif not c or c in _STATEMENT_END:
                return items, array
            else:
                break
            self.pos += 1
            self._skip_blanks(newlines=True)
        # something we do not evaluate (a cmdlet call, a method, an operator): keep the text as written
        stop = self._statement_end(start)
        raw = self.t[start:stop].strip()
        self._note(cmd.notes, f"{raw!r} is not evaluated: the value is kept as written", start)
        self.pos = stop
        return [[(c, self.line_of(start)) for c in raw]], False

    def _item(self, cmd: Command) -> tuple[list[list[C]], bool] | None:
        """One value in expression mode: a string, a number or bare word, a variable, an @(...) array."""
        c, pos = self._peek(), self.pos
        if c == '"' and self.fast:  # the common item first: a new list, a cast start with "[" or "N", an array "@"
            return [self._double(cmd)], False
        m = _NEW_LIST.match(self.t, pos)
        if m:  # [System.Collections.ArrayList]::new(), New-Object System.Collections.ArrayList: an empty list
            self.pos = m.end()
            return [], True
        m = _CAST.match(self.t, pos)
        if m:  # [System.Collections.ArrayList]@(...), [string]$x, [int]5: the value after the cast
            self.pos = m.end()
            return self._item(cmd)
        if self.t.startswith("@(", pos):
            return self._array(cmd), True
        if self.t.startswith(('@"\n', "@'\n"), pos):
            return [self._here_string(cmd)], False
        if c == '"':
            return [self._double(cmd)], False
        if c == "'":
            return [self._single()], False
        if c == "$":
            m = VAR.match(self.t, pos)
            if m:
                self.pos = m.end()
                value = self._lookup(m, cmd)
                if value is None:
                    return [[(ch, self.line_of(pos)) for ch in m.group(0)]], False
                return [list(item) for item in value.items], value.array
            return None
        m = _BARE.match(self.t, pos)
        if m and not (self._after_word(m.end())):
            self.pos = m.end()
            return [[(ch, self.line_of(pos)) for ch in m.group(0)]], False
        return None

    def _after_word(self, i: int) -> bool:
        """True when a bare word is followed by another word: a command call, not a value."""
        while i < self.end and self.t[i] in " \t":
            i += 1
        return i < self.end and self.t[i] not in ",+\n;)#|}"

    def _array(self, cmd: Command) -> list[list[C]]:
        open_pos = self.pos
        self.pos += 2
        items: list[list[C]] = []
        while True:
            self._skip_blanks(newlines=True)
            if self.pos >= self.end:
                raise EvidenceError("unterminated array: @( is never closed", self.label, self.line_of(open_pos))
            c = self._peek()
            if c == ")":
                self.pos += 1
                return items
            if c in ",;":
                self.pos += 1
                continue
            got = self._item(cmd)
            if got is None:
                stop = self._statement_end(self.pos)
                close = self.t.find(")", self.pos)
                stop = min(stop, close) if close >= 0 else stop
                raw = self.t[self.pos:stop].strip()
                self._note(cmd.notes, f"{raw!r} in an array is not evaluated: kept as written", self.pos)
                items.append([(ch, self.line_of(self.pos)) for ch in raw])
                self.pos = max(stop, self.pos + 1)
                continue
            items.extend(got[0])


def _extended(old: Value, items: list[list[C]], notes: list[Note], shared: set[int], label: str) -> Value:
    """An array with items appended: in place (linear over many appends) unless a branch copy shares it."""
    if id(old) in shared:
        old = Value(items=list(old.items), line=old.line, array=True, notes=list(old.notes), runtime=old.runtime,
                    size=old.size)
    if old.size < 0:
        old.size = sum(len(item) + 1 for item in old.items)
    old.size += sum(len(item) + 1 for item in items)
    if old.size > WINDOWS_COMMAND_LINE:  # no program could be started with it: not kept (bounded memory)
        if not old.runtime or old.items:
            old.notes.append(Note(message=f"the list grows past {WINDOWS_COMMAND_LINE:,} characters, the longest "
                                          "command line Windows starts a program with: its value is not kept",
                                  source=f"{label}:{old.line}"))
        old.items, old.runtime = [], True
        return old
    old.items.extend(items)
    old.array = True
    old.notes.extend(notes)
    return old
