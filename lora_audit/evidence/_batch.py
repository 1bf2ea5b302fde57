"""Windows ``.bat``/``.cmd`` scripts → commands of Tokens, as cmd.exe and then python.exe would split them.

cmd reads a logical line (``^`` at the end of a line joins the next one), expands ``%VAR%`` on the whole line at
once, splits it at ``&``/``&&``/``||``/``|``, runs ``set``; the program then splits its own command line with the
Microsoft C runtime rules (quotes, backslashes before quotes), which is what python.exe does.
Only variables set in the script are known: the real environment is never read.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from itertools import repeat
from keyword import iskeyword

from lora_audit.errors import EvidenceError
from lora_audit.evidence._script import Command, Value, arith, check_launches
from lora_audit.evidence.invocation import Token, launches_training
from lora_audit.model import Note

_C = tuple[str, int]  # a character and its line
_POSITIONAL = re.compile(r"%(~[a-z$:]*)?([0-9*])", re.IGNORECASE)
# variables cmd makes up on the fly: their value depends on the moment the script ran
_CMD_MAX = 8191  # the longest command line cmd.exe accepts (and so the longest value a `set` line can give)
_REM = re.compile(r"rem(\s|$|[.,;=/])", re.IGNORECASE)
_VERB = re.compile(r'[^\s/"=]*')
_LEAD = " \t@("  # what a command's start may hold before its verb (``@python ...``, ``if exist x (python ...``)
_CARET_BLANKS = re.compile(r"\^[ \t]+$")
_SET_MODE = re.compile(r"/([ap])\s*", re.IGNORECASE)
_NAME_STEP = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)([+-])(0|[1-9][0-9]{0,17})")  # set /a N=N+1 (a longer number: arith)
_DYNAMIC = {"CD", "DATE", "TIME", "RANDOM", "ERRORLEVEL", "CMDCMDLINE", "CMDEXTVERSION"}


class BatchTokenizer:
    def __init__(self, label: str):
        self.label = label
        self.vars: dict[str, Value] = {}  # names upper-cased: cmd's variables are case-insensitive
        self.delayed = False  # setlocal EnableDelayedExpansion: !VAR! expands when the command runs

    def commands(self, text: str, first_line: int = 1) -> list[Command]:
        out: list[Command] = []
        for chars, notes, line_text in self._logical_lines(text, first_line):
            s = line_text.lstrip(" \t@")
            if not s or s.startswith(":") or _REM.match(s):
                continue  # REM and :: comments, :labels
            # cmd expands %VAR% on the whole line before running any of its commands
            pieces = _split(chars, line_text)
            expanded = []
            for i, (piece, piece_text) in enumerate(pieces):
                cmd = Command(words=[], notes=list(notes) if i == len(pieces) - 1 else [])
                expanded.append((*self._percent(piece, piece_text, cmd), cmd))
            for cmd_chars, cmd_text, cmd in expanded:
                # the characters and their text stay index for index alike (every character of a batch line, a
                # variable's value included, is one character), so the text is sliced rather than joined again
                lead = len(cmd_text) - len(cmd_text.lstrip(_LEAD))
                text = cmd_text[lead:lead + 256]  # the verb and setlocal's options are at the start
                verb = _VERB.match(text).group(0).lower()  # type: ignore[union-attr]
                if not verb:
                    continue
                if verb == "rem":
                    break
                if verb == "set":
                    self._set(cmd_chars[lead + 3:], cmd_text[lead + 3:], cmd.notes)
                    continue
                stripped = cmd_chars[lead:]
                if verb == "setlocal":
                    self.delayed = self.delayed or "enabledelayedexpansion" in text.lower()
                    continue
                if self.delayed:
                    stripped = self._bang(stripped, cmd_text[lead:], cmd)
                cmd.words, cmd.error = _argv(stripped, self.label)
                if not launches_training(cmd.words):
                    continue  # only training commands are wanted (shell.training_evidence): bounded memory
                cmd.variables = [{**v, "value": v["value"].text()} for v in cmd.variables]  # text only when kept
                stray = [w for w in cmd.words[1:] if w.text.upper() == "REM" or w.text.startswith("::")]
                if stray:
                    cmd.notes.append(Note(message=f"{stray[0].text} inside a ^-continued command is not a comment: "
                                                  "cmd passes it and what follows as arguments",
                                          source=f"{self.label}:{stray[0].line}"))
                check_launches(out, self.label, cmd.words[0].line)
                out.append(cmd)
        return out

    # -- lines ----------------------------------------------------------------------------------------------------
    def _logical_lines(self, text: str, first_line: int) -> Iterator[tuple[list[_C], list[Note], str]]:
        """Each logical line (``^``-continued lines joined) as characters with their lines, its notes and its
        text; one at a time, so a long script is never held as characters all at once."""
        cur: list[_C] = []
        cur_text: list[str] = []
        notes: list[Note] = []
        for n, physical in enumerate(text.split("\n"), start=first_line):
            caret_end = False
            if "^" in physical:  # only a caret continues a line: the common line needs no look at each character
                caret_end, in_quotes = (_continues_unquoted(physical), False) if '"' not in physical else \
                    _continues(physical)
                if not caret_end and not in_quotes and _CARET_BLANKS.search(physical):
                    notes.append(Note(message="a ^ followed by spaces is not a line continuation: the command ends "
                                              "on this line", source=f"{self.label}:{n}"))
            if caret_end:
                cur.extend(zip(physical[:-1], repeat(n)))
                cur_text.append(physical[:-1])
                continue
            cur.extend(zip(physical, repeat(n)))
            cur_text.append(physical)
            yield cur, notes, "".join(cur_text)
            cur, cur_text, notes = [], [], []
        if cur:
            yield cur, notes, "".join(cur_text)

    # -- expansion ------------------------------------------------------------------------------------------------
    def _percent(self, chars: list[_C], text: str, cmd: Command) -> tuple[list[_C], str]:
        """``%VAR%``, ``%%``, ``%~dp0`` (the script's folder), ``%1`` as cmd expands them in a batch file; the
        characters and their text (``text`` is that of ``chars``)."""
        if "%" not in text:
            return chars, text  # nothing to expand (the common command)
        out: list[_C] = []
        notes = cmd.notes
        i = 0
        while i < len(chars):
            c, line = chars[i]
            if c != "%":
                j = text.find("%", i)  # the run up to the next %, at once
                j = len(chars) if j < 0 else j
                out.extend(chars[i:j])
                i = j
                continue
            if text.startswith("%%", i):
                out.append(("%", line))
                i += 2
                continue
            m = _POSITIONAL.match(text, i)
            if m:
                if m.group(0).lower() in ("%~dp0", "%~pd0"):
                    out.extend((ch, line) for ch in ".\\")  # the script's own folder, where the evidence lies
                else:
                    notes.append(Note(message=f"{m.group(0)} is an argument given to the script when it ran: left "
                                              "as written", source=f"{self.label}:{line}"))
                    out.extend((ch, line) for ch in m.group(0))
                i = m.end()
                continue
            close = text.find("%", i + 1)
            if close < 0:
                out.append(chars[i])
                i += 1
                continue
            raw, name = text[i:close + 1], text[i + 1:close]
            value = self._lookup(name, raw, line, cmd)
            out.extend(value if value is not None else [(ch, line) for ch in raw])
            i = close + 1
        return out, "".join([c for c, _ in out])

    def _bang(self, chars: list[_C], text: str, cmd: Command) -> list[_C]:
        out: list[_C] = []
        i = 0
        for m in re.finditer(r"!([^!\s]+)!", text):
            out.extend(chars[i:m.start()])
            value = self._lookup(m.group(1), m.group(0), chars[m.start()][1], cmd)
            out.extend(value if value is not None else chars[m.start():m.end()])
            i = m.end()
        return out + chars[i:]

    def _lookup(self, name: str, raw: str, line: int, cmd: Command) -> list[_C] | None:
        key, notes = name.upper(), cmd.notes
        if ":" in name and name.split(":")[0].upper() in self.vars:
            notes.append(Note(message=f"{raw}: substring and replacement expansions are not evaluated; left as "
                                      "written", source=f"{self.label}:{line}"))
            return None
        value = self.vars.get(key)
        if value is None:
            if key in _DYNAMIC:
                why = "depends on when and where the script ran"
            else:
                why = "is not set in the script (the environment at run time would decide)"
            spaced = [k for k in self.vars if k.strip() == key]
            hint = f" (`set {spaced[0]}=` named a variable {spaced[0]!r}, spaces included)" if spaced else ""
            notes.append(Note(message=f"{raw} {why}: left as written{hint}", source=f"{self.label}:{line}"))
            return None
        notes.extend(value.notes)
        cmd.variables.append({"name": name, "value": value, "defined": f"{self.label}:{value.line}"})
        return list(value.items[0])

    def _set(self, chars: list[_C], text: str, notes: list[Note]) -> None:
        """``set NAME=value`` (value to the end, spaces and quotes included), ``set "NAME=value"``, ``set /a``;
        ``text`` is that of ``chars``."""
        lead = len(text) - len(text.lstrip(_LEAD))
        chars, text = chars[lead:], text[lead:]
        line = chars[0][1] if chars else 0
        m = _SET_MODE.match(text)
        mode = m.group(1).lower() if m else ""
        if m:
            chars, text = chars[m.end():], text[m.end():]
        if text.startswith('"'):
            last = text.rfind('"')
            chars, text = (chars[1:last], text[1:last]) if last > 0 else (chars[1:], text[1:])
        if "=" not in text:
            return  # `set` / `set NAME`: display only
        eq = text.index("=")
        name, value = text[:eq], chars[eq + 1:]
        if mode == "a":
            name = name.strip()
            n = _arith(text[eq + 1:].strip().strip('"'),
                       lambda k: None if k.upper() not in self.vars else str(self.vars[k.upper()].text()))
            if n is None:
                self.vars.pop(name.upper(), None)
                return
            value = [(ch, line) for ch in str(n)]
        elif mode == "p":
            self.vars.pop(name.upper(), None)  # typed at a prompt: unknown
            return
        if not value:
            self.vars.pop(name.upper(), None)
            return
        if len(value) > _CMD_MAX:  # cmd.exe refuses longer lines ("The input line is too long"): never longer here
            notes = notes + [Note(message=f"%{name}% would be longer than cmd's {_CMD_MAX}-character line limit: "
                                          "cut there", source=f"{self.label}:{line}")]
            value = value[:_CMD_MAX]
        self.vars[name.upper()] = Value(items=[value], line=value[0][1], notes=list(notes))


def _continues(physical: str) -> tuple[bool, bool]:
    """Whether a physical line ends in a ``^`` that continues it, and whether it ends inside quotes: cmd's reading,
    character by character (``^`` escapes the next character outside quotes)."""
    in_quotes, caret_end, i, size = False, False, 0, len(physical)
    while i < size:
        c = physical[i]
        if c == '"':
            in_quotes = not in_quotes
        elif c == "^" and not in_quotes:
            if i == size - 1:
                caret_end = True
            i += 1
        i += 1
    return caret_end, in_quotes


def _continues_unquoted(physical: str) -> bool:
    """``_continues`` of a line without quotes: every ``^`` escapes the next character, so the line ends in an
    unescaped ``^`` exactly when it ends in an odd run of them (no look at each character)."""
    return (len(physical) - len(physical.rstrip("^"))) % 2 == 1


def _arith(expr: str, lookup: Callable[[str], str | None]) -> int | None:
    """``_script.arith``, with ``set /a N=N+1`` (a name, + or -, a decimal number) counted without Python's parser:
    what ``arith`` gives for it (the name's value as ``int()`` reads it; None when unset or not a number)."""
    m = _NAME_STEP.fullmatch(expr)
    if m is None or iskeyword(m.group(1)):  # None, True, if ...: only the parser knows what they mean
        return arith(expr, lookup)
    v = lookup(m.group(1))
    if v is None:
        return None
    try:
        n = int(v.strip() or 0)
    except ValueError:
        return None
    k = int(m.group(3))
    return n + k if m.group(2) == "+" else n - k


def _split(chars: list[_C], text: str) -> list[tuple[list[_C], str]]:
    """Split a logical line at ``&``, ``&&``, ``||``, ``|`` outside quotes (``^&`` and ``2>&1`` stay); each piece
    with its text (``text`` is that of ``chars``)."""
    if "&" not in text and "|" not in text:
        return [(chars, text)]  # nothing to split at (the common case; long lines stay cheap)
    out: list[list[_C]] = []
    cur: list[_C] = []
    in_quotes, i = False, 0
    while i < len(chars):
        c = chars[i][0]
        if c == '"':
            in_quotes = not in_quotes
        elif c == "^" and not in_quotes and i + 1 < len(chars):
            cur.extend(chars[i:i + 2])
            i += 2
            continue
        elif c in "&|" and not in_quotes and not (cur and cur[-1][0] in "<>"):
            out.append(cur)
            cur = []
            i += 2 if i + 1 < len(chars) and chars[i + 1][0] == c else 1
            continue
        cur.append(chars[i])
        i += 1
    out.append(cur)
    return [(piece, "".join([c for c, _ in piece])) for piece in out]


def _after_redirection(chars: list[_C], i: int) -> int:
    """The index after the redirection starting at ``chars[i]`` (``>``, ``>>``, ``2>&1``, ``< file``): its
    operator, the blanks after it, and its target word (quotes in it kept together)."""
    i += 1
    while i < len(chars) and chars[i][0] in "<>&":
        i += 1
    while i < len(chars) and chars[i][0] in " \t":
        i += 1
    q = False
    while i < len(chars) and (q or chars[i][0] not in " \t"):
        q = q != (chars[i][0] == '"')
        i += 1
    return i


def _backslashes(chars: list[_C], i: int, cur: list[_C]) -> int:
    """The run of backslashes at ``chars[i]`` as the C runtime reads it, appended to ``cur``: before a quote, 2n
    give n and the quote toggles quoting (returned index at the quote), 2n+1 give n and a literal quote; else they
    are literal. Returns the index after what was consumed."""
    line = chars[i][1]
    j = i
    while j < len(chars) and chars[j][0] == "\\":
        j += 1
    n = j - i
    if j < len(chars) and chars[j][0] == '"':
        cur.extend([("\\", line)] * (n // 2))
        if n % 2:
            cur.append(('"', chars[j][1]))
            return j + 1
        return j  # the quote toggles in the caller
    cur.extend(chars[i:j])
    return j


def _argv(chars: list[_C], label: str) -> tuple[list[Token], EvidenceError | None]:
    """Split a command as python.exe's C runtime does, after cmd removed ``^`` escapes and redirections."""
    words: list[Token] = []
    cur: list[_C] = []
    started, in_quotes, quote_open, i = False, False, 0, 0

    def flush() -> None:
        nonlocal cur, started
        if started:
            words.append(Token("".join(c for c, _ in cur), cur[0][1] if cur else quote_open))
        cur, started = [], False

    while i < len(chars):
        c, line = chars[i]
        if not in_quotes and c in " \t":
            flush()
            i += 1
        elif not in_quotes and c == "^":
            if i + 1 < len(chars):
                cur.append(chars[i + 1])
                started = True
            i += 2
        elif not in_quotes and c in "<>":
            if len(cur) == 1 and cur[0][0].isdigit():
                cur, started = [], False  # 2>...: the handle number
            flush()
            i = _after_redirection(chars, i)
        elif c == "\\":
            i = _backslashes(chars, i, cur)
            started = True
        elif c == '"':
            if in_quotes and i + 1 < len(chars) and chars[i + 1][0] == '"':
                cur.append(('"', line))  # "" inside quotes: a literal quote (ucrt)
                i += 2
            else:
                in_quotes = not in_quotes
                if in_quotes:
                    quote_open = line
                i += 1
            started = True
        else:
            cur.append(chars[i])
            started = True
            i += 1
    flush()
    if in_quotes:
        return words, EvidenceError("unterminated quote: cmd takes the rest of the line (a final ^ included) as one "
                                    "argument and ends the command there", label, quote_open)
    return words, None
