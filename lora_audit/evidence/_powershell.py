"""PowerShell ``.ps1`` scripts → commands of Tokens, as PowerShell passes arguments to a native program.

Statements end at a newline (unless a backtick continues the line), ``;``, a pipe or a brace. ``$var = ...`` and
``$env:VAR = ...`` assignments are read in expression mode (strings, numbers, ``@(...)`` arrays, ``,`` lists,
``+`` concatenation); other statements in argument mode, where ``"..."`` expands ``$var``/``$env:VAR``, ``'...'``
is literal and an array variable or ``@(...)`` gives one argument per element. Only variables set in the script
are known: the real environment is never read.
"""

from __future__ import annotations

import re

from lora_audit.errors import EvidenceError
from lora_audit.evidence._powershell_cond import evaluate as _ps_evaluate
from lora_audit.evidence._powershell_expr import Expressions
from lora_audit.evidence._powershell_scan import ESCAPES, VAR, C
from lora_audit.evidence._script import Command, Value, check_launches, commented_continuation
from lora_audit.evidence.invocation import Token, launches_training
from lora_audit.model import Note

_ASSIGN = re.compile(r"(?:\[[^\]\n]+\]\s*)*\$(?:\{([^}\n]+)\}|(?:(env|global|script|local|private):)?([A-Za-z_]\w*))"
                     r"[ \t]*(\+?=)(?!=)", re.IGNORECASE)
_PARAM = re.compile(r"(?:\[[^\]\n]*\]\s*)*param\s*\(", re.IGNORECASE)
_REDIRECT = re.compile(r"(\d|\*)?>>?(&\d)?")
_SPLAT = re.compile(r"@([A-Za-z_]\w*)")
_IF = re.compile(r"if\s*\(", re.IGNORECASE)
_ELSE = re.compile(r"\s*else(if\s*\()?", re.IGNORECASE)
_METHOD = re.compile(r"(?:\[void\]\s*|\$null\s*=\s*)?\$([A-Za-z_]\w*)\.(Add|AddRange)\(", re.IGNORECASE)
_BLANK_TO_EOL = re.compile(r"[ \t]*(#.*)?(\n|$)")
_WORD_STOP = " \t\n;|}"
# what may follow a newline between statements and needs the loop of _skip_between_statements: blanks, newlines, a
# continuation, a comment ("#", "<#"), separators ("&&", "||")
_NOT_A_START = " \t\n`#<;{}|)&"


class PowerShellTokenizer(Expressions):
    """Runs a script's assignments in order and yields its other statements as commands of words."""

    def commands(self, text: str, first_line: int = 1) -> list[Command]:
        self._start(text, first_line)
        self._conds: list[str] = []
        self._shared: set[int] = set()
        out: list[Command] = []
        try:
            self._statements(out)
        except RecursionError:  # "@(@(@(" thousands deep: one line (guard only)
            raise EvidenceError("brackets or substitutions nested too deeply to read", self.label, first_line) from None
        return out

    def _statements(self, out: list[Command]) -> None:
        """Statements up to self.end, run in order (if/elseif/else on known values take PowerShell's branch)."""
        while True:
            self._skip_between_statements()
            if self.pos >= self.end:
                return
            m = _IF.match(self.t, self.pos)
            if m:
                self._if(m, out)
                continue
            m = _METHOD.match(self.t, self.pos)
            if m:
                self._method(m)
                continue
            m = _ASSIGN.match(self.t, self.pos)
            if m:
                self._assignment(m)
                continue
            m = _PARAM.match(self.t, self.pos)
            if m:
                self._param_block(m)
                continue
            cmd = self._command()
            if cmd.words and launches_training(cmd.words):  # only training commands are wanted (bounded memory)
                if self._conds:
                    self._note(cmd.notes, "this command runs only " + "; ".join(self._conds) + ": the script "
                                          "cannot tell", self.pos - 1)
                check_launches(out, self.label, cmd.words[0].line)
                out.append(cmd)

    # -- if / elseif / else ---------------------------------------------------------------------------------------
    def _if(self, m: re.Match, out: list[Command]) -> None:
        """``if (c) { } elseif (c) { } else { }``: the branch PowerShell takes when the script's values decide;
        otherwise every branch on its own copy of the variables, a variable they leave different is unknown."""
        clauses: list[tuple[str | None, int, int, int]] = []  # (condition, block start, block end, line)
        pos = m.end() - 1
        while True:
            line = self.line_of(pos)
            close = self._matching(pos)
            cond = self.t[pos + 1:close - 1]
            block = self._block_after(close)
            if block is None:
                self.pos = close
                return
            clauses.append((cond, block[0], block[1], line))
            nxt = _ELSE.match(self.t, block[1] + 1)
            if nxt and nxt.group(1):  # elseif (
                pos = nxt.end() - 1
                continue
            if nxt:
                els = self._block_after(nxt.end())
                if els is not None:
                    clauses.append((None, els[0], els[1], self.line_of(nxt.start())))
                    self.pos = els[1] + 1
                    break
            self.pos = block[1] + 1
            break
        end_pos = self.pos
        undecided: list[tuple[str, int, int]] = []
        for test, start, stop, line in clauses:
            status = True if test is None else _ps_evaluate(test, self._cond_lookup, self._cond_expand)
            if status is False:
                continue
            if status is True and not undecided:
                self._block(start, stop, out)
                break
            what = "else" if test is None else f"if ({test.strip()}) (line {line})"
            undecided.append((what, start, stop))
            if status is True:
                break
        if undecided:
            base = self.vars
            self._shared.update(id(v) for v in base.values())  # the branches' copies share them: never in place
            states = []
            for what, start, stop in undecided:
                self.vars = dict(base)
                self._conds.append(f"when {what} is taken")
                self._block(start, stop, out)
                self._conds.pop()
                states.append((self.vars, what))
            if clauses[-1][0] is not None or len(undecided) < len(clauses):
                states.append((dict(base), "no branch"))
            self.vars = _ps_merge(states)
        self.pos = end_pos

    def _block_after(self, pos: int) -> tuple[int, int] | None:
        """The ``{ ... }`` after pos: (first char inside, index of the closing brace)."""
        i = pos
        while i < self.end and self.t[i] in " \t\n":
            i += 1
        if i >= self.end or self.t[i] != "{":
            return None
        depth, j = 0, i
        while j < self.end:
            c = self.t[j]
            if c in "\"'":
                k = self.t.find(c, j + 1, self.end)
                j = self.end if k < 0 else k + 1
                continue
            if c == "`":
                j += 2
                continue
            if c == "#" and (j == 0 or self.t[j - 1] in " \t\n;{"):
                k = self.t.find("\n", j, self.end)
                j = self.end if k < 0 else k
                continue
            if c == "{":
                depth += 1
            elif c == "}":
                depth -= 1
                if depth == 0:
                    return i + 1, j
            j += 1
        raise EvidenceError("unterminated '{': '}' never comes", self.label, self.line_of(i))

    def _block(self, start: int, stop: int, out: list[Command]) -> None:
        saved_end = self.end
        self.pos, self.end = start, stop
        try:
            self._statements(out)
        finally:
            self.end = saved_end

    def _cond_lookup(self, name: str) -> Value | None | bool:
        key = name.lower()
        scope, _, bare = key.rpartition(":")
        if scope in ("global", "script", "local", "private", "using"):
            key = bare
        if key in self.vars:
            return self.vars[key]
        return False  # not set in the script: the environment or the caller decides

    def _cond_expand(self, text: str) -> str | None:
        saved = self.pos
        scratch = Command(words=[])
        sub = PowerShellTokenizer(self.label)
        sub.vars = self.vars
        sub._start(text, 1)
        try:
            chars = sub._double(scratch)
        except EvidenceError:
            return None
        finally:
            self.pos = saved
        if any("not set in the script" in n.message or "is not run" in n.message for n in scratch.notes):
            return None  # something in it is only known at run time
        return "".join(c for c, _ in chars)

    # -- $list.Add(...) / .AddRange(...) ---------------------------------------------------------------------------
    def _skip_between_statements(self) -> None:
        t, end = self.t, self.end  # read once: this runs before every statement
        pos = self.pos
        if self.fast and pos + 1 < end and t[pos] == "\n" and t[pos + 1] not in _NOT_A_START:
            self.pos = pos + 1  # one newline and a statement's first character: what the loop below finds
            return
        while self.pos < end:
            self._skip_blanks(newlines=True)
            pos = self.pos
            if pos < end and (t[pos] in ";{}|)" or t.startswith("&&", pos)):
                self.pos += 2 if t.startswith(("&&", "||"), pos) else 1
            else:
                return

    # -- statements -----------------------------------------------------------------------------------------------
    def _command(self) -> Command:
        cmd = Command(words=[])
        continued = False
        while self.pos < self.end:
            c = self._peek()
            if c in " \t":
                self.pos += 1
            elif c == "`" and self._peek(1) == "\n":
                self.pos += 2
                continued = True
            elif c in "\n;|}{" or self.t.startswith("&&", self.pos):
                break
            elif c == "#" or self.t.startswith("<#", self.pos):
                start = self.pos
                self._skip_comment()
                if continued and c == "#" and commented_continuation(self.t, start, self.pos, "`"):
                    self._note(cmd.notes, "a commented-out line inside a `-continued command ends it: the lines "
                                          "after it are not part of the command", start)
            elif c == "&" and not cmd.words:
                cmd.words.append(Token("&", self.line_of(self.pos)))  # the call operator
                self.pos += 1
            elif c == "&":
                break
            elif redirect := _REDIRECT.match(self.t, self.pos):
                self._redirect(redirect)
            elif self.t.startswith("--%", self.pos) and self._peek(3) in " \t\n":
                nl = self.t.find("\n", self.pos)
                stop = self.end if nl < 0 else nl
                for m in re.finditer(r"\S+", self.t[self.pos + 3:stop]):
                    cmd.words.append(Token(m.group(0), self.line_of(self.pos)))
                self.pos = stop
            else:
                cmd.words.extend(self._argument(cmd))
        return cmd

    def _redirect(self, m: re.Match) -> None:
        self.pos = m.end()
        if not m.group(2):
            self._skip_blanks()
            self._argument(Command(words=[]))  # the file name

    def _whole_array(self, cmd: Command) -> list[Token] | None:
        """An argument that is one array as a whole (``@(...)``, ``$name``, ``@name``): one word per element;
        None (and the position unchanged) when the argument is anything else."""
        pos = self.pos
        if self.t.startswith("@(", pos):
            items = self._array(cmd)
            if self._peek() in _WORD_STOP or not self._peek():
                return [_tok(item, self.line_of(pos)) for item in items]
            self.pos = pos
        m = VAR.match(self.t, pos) or _SPLAT.match(self.t, pos)
        if m and (m.end() >= self.end or self.t[m.end()] in _WORD_STOP):
            value = self._lookup(m, cmd, splat=m.group(0).startswith("@"))
            self.pos = m.end()
            if value is None or value.runtime:
                return [Token(m.group(0), self.line_of(pos), runtime=True)]
            return [_tok(item, self.line_of(pos)) for item in value.items]
        return None

    def _argument(self, cmd: Command) -> list[Token]:
        """One argument-mode word; an array (variable, @name splat, @(...)) gives one word per element."""
        pos = self.pos
        whole = self._whole_array(cmd)
        if whole is not None:
            return whole
        chars: list[C] = []
        quoted = False
        while self.pos < self.end:
            c, i = self._peek(), self.pos
            if c in _WORD_STOP or c == ")":
                break
            if c == "`":
                if self._peek(1) == "\n":
                    break
                if self._peek(1) in " \t" and _BLANK_TO_EOL.match(self.t, i + 1):
                    self._note(cmd.notes, "backtick followed by a space at the end of the line is not a "
                                          "continuation: the command ends here and the next lines are separate "
                                          "commands", i)
                chars.append((ESCAPES.get(self._peek(1), self._peek(1)), self.line_of(i)))
                self.pos += 2
            elif c == '"':
                chars.extend(self._double(cmd))
                quoted = True
            elif c == "'":
                chars.extend(self._single())
                quoted = True
            elif c == "$":
                chars.extend(self._dollar(cmd))
            elif c == "(" and i == pos:
                close = self._matching(i)
                raw = self.t[i:close]
                self._note(cmd.notes, f"{raw} is a PowerShell expression: not evaluated; the argument keeps it as "
                                      "written", i)
                chars.extend((ch, self.line_of(i)) for ch in raw)
                self.pos = close
            else:
                chars.append((c, self.line_of(i)))
                self.pos += 1
        if chars or quoted:
            return [_tok(chars, self.line_of(pos))]
        if self.pos == pos:
            self.pos += 1  # a stray ')': skip it
        return []


def _tok(chars: list[C], line: int) -> Token:
    return Token("".join(c for c, _ in chars), chars[0][1] if chars else line)


def _ps_merge(states: list[tuple[dict[str, Value], str]]) -> dict[str, Value]:
    """Variables after undecidable branches: kept where all agree, unknown (with the branches named) otherwise."""
    merged: dict[str, Value] = {}
    names = dict.fromkeys(k for st, _ in states for k in st)
    for name in names:
        values = [st.get(name) for st, _ in states]
        v0 = values[0]
        if all(v is v0 for v in values):
            if v0 is not None:
                merged[name] = v0
            continue
        line = next(v.line for v in values if v is not None)
        texts = "; ".join(f"{'unset' if v is None else v.text()!r} {when}" for v, (_, when) in zip(values, states))
        merged[name] = Value(items=[[(f"${name}", line)]], line=line, runtime=True, notes=[Note(
            message=f"${name} depends on a branch the script cannot decide: {texts}", source=None)])
    return merged

