"""bash/sh scripts → commands of Tokens, as bash would split and expand them.

Two steps, as in bash: the lexer (``_bash_lexer``) reads words keeping ``$VAR``/``${VAR:-x}``/``$(...)`` as parts;
this executor walks the commands in order, keeping the variables the script assigns (``VAR=``, ``export``, arrays)
and expanding each command's words with the values known at that point. Only variables set in the script are
known: the real environment is never read.
"""

from __future__ import annotations

from lora_audit.evidence._bash_lexer import Lexer, Op, Part, Word
from lora_audit.evidence._script import BREAK, LIT, SPLIT, Char, Command, Lines, Value, arith, fields, \
    is_script_dir, joined, lit
from lora_audit.evidence.invocation import Token
from lora_audit.model import Note

# words that may open a command line without being the command (``then accelerate launch ...``)
_RESERVED = {"if", "then", "else", "elif", "do", "while", "until", "{", "}", "!", "time", "fi", "done"}
_DECLARE = {"export", "declare", "typeset", "local", "readonly"}


class BashTokenizer:
    """Runs the assignments of a bash script in order and yields its other commands, expanded."""

    def __init__(self, label: str):
        self.label = label
        self.vars: dict[str, Value] = {}
        self.sourced: list[str] = []

    def commands(self, text: str, first_line: int = 1) -> list[Command]:
        items = Lexer(text, Lines(text, first_line), self.label).items()
        out: list[Command] = []
        words: list[Word] = []
        notes: list[Note] = []
        for item in [*items, Op("\n", 0)]:
            if isinstance(item, Word):
                words.append(item)
            elif isinstance(item, Note):
                notes.append(item)
            else:
                cmd = self._run(words, notes)
                if cmd is not None:
                    out.append(cmd)
                words, notes = [], []
        return out

    # -- executing one simple command -----------------------------------------------------------------------------
    def _run(self, words: list[Word], notes: list[Note]) -> Command | None:
        while words and words[0].plain() in _RESERVED:
            words = words[1:]
        if not words:
            return None
        notes = notes + [n for w in words for n in w.notes]
        if all(w.assign for w in words):
            for w in words:
                self._assign(w)
            return None
        head = words[0].plain()
        if head in _DECLARE:
            for w in words[1:]:
                if w.assign:
                    self._assign(w)
            return None
        if head == "unset":
            for w in words[1:]:
                self.vars.pop(w.plain() or "", None)
            return None
        if head in ("source", ".") and len(words) > 1:
            self.sourced.append(words[1].plain() or "?")
            return None
        cmd = Command(words=[], notes=notes)
        for w in words:
            if w.array is not None:
                continue  # NAME=(...) before a command: bash refuses it; not part of the command either
            chars = self._expand(w.parts, cmd)
            if w.assign:
                name, append = w.assign
                chars = lit(name + ("+=" if append else "="), w.line) + chars
                cmd.words.append(joined(chars, w.line))
            else:
                cmd.words.extend(fields(chars, w.line, keep_empty=w.quoted))
        if head == ":":
            return None  # `: ${DIM:=32}` assigns through its expansion, nothing else
        return cmd

    def _assign(self, w: Word) -> None:
        name, append = w.assign
        scratch = Command(words=[])
        if w.array is not None:
            items = []
            for e in w.array:
                items.extend([(c, ln) for c, ln in _chars_of(tok)]
                             for tok in fields(self._expand(e.parts, scratch), e.line, keep_empty=e.quoted))
            value = Value(items=items, line=w.line, array=True, notes=scratch.notes)
        else:
            chars = self._expand(w.parts, scratch)
            value = Value(items=[[(c, ln) for c, ln, k in chars if k != BREAK]], line=w.line, notes=scratch.notes)
        old = self.vars.get(name)
        if append and old is not None:
            if value.array or old.array:
                value = Value(items=old.items + value.items, line=old.line, array=True, notes=old.notes + value.notes)
            else:
                value = Value(items=[old.items[0] + value.items[0]], line=old.line, notes=old.notes + value.notes)
        self.vars[name] = value

    def _expand(self, parts: list[Part], cmd: Command) -> list[Char]:
        out: list[Char] = []
        for p in parts:
            if p.kind == "lit":
                out.extend((c, ln, LIT) for c, ln in p.chars)
            elif p.kind == "sub":
                out.extend(self._substitution(p, cmd))
            else:
                out.extend(self._variable(p, cmd))
        return out

    def _substitution(self, p: Part, cmd: Command) -> list[Char]:
        if is_script_dir(p.raw):
            return lit(".", p.line)
        if p.raw.startswith("$((") and p.raw.endswith("))"):
            n = arith(p.raw[3:-2], lambda k: None if k not in self.vars else str(self.vars[k].text()))
            if n is not None:
                return lit(str(n), p.line)
        self._note(cmd, f"{p.raw} is not run: the word keeps it as written", p.line)
        return lit(p.raw, p.line)

    def _variable(self, p: Part, cmd: Command) -> list[Char]:
        if p.op == "unsupported":
            self._note(cmd, f"{p.raw}: this expansion is not evaluated; the word keeps it as written", p.line)
            return lit(p.raw, p.line)
        value = self.vars.get(p.name)
        is_set = value is not None
        nonempty = is_set and bool(value.items) and bool(value.items[0])  # ${A:-x} looks at A[0] for arrays
        present = nonempty if p.op and p.op.startswith(":") else is_set
        if p.op in (":-", "-", ":=", "="):
            if present:
                return self._value_chars(p, value, cmd)
            default = self._expand(p.arg or [], cmd)
            if p.op in (":=", "="):
                self.vars[p.name] = Value(items=[[(c, ln) for c, ln, k in default if k != BREAK]], line=p.line)
            if not is_set:
                self._note(cmd, f"${p.name} is not set in the script: {p.raw} gives its default "
                                f"{''.join(c for c, _, _ in default)!r} (the environment at run time could differ)",
                           p.line)
            return [(c, ln, LIT if p.quoted else k) for c, ln, k in default]
        if p.op in (":+", "+"):
            return [(c, ln, LIT if p.quoted else k) for c, ln, k in self._expand(p.arg or [], cmd)] if present else []
        if value is None:
            if p.name.isdigit() or p.name in ("@", "*", "#"):
                why = "is an argument given to the script when it ran"
            else:
                why = "is not set in the script (the environment at run time would decide)"
                if self.sourced:
                    why += f"; the script sources {', '.join(self.sourced)}, which is not read"
            self._note(cmd, f"{p.raw} {why}: left as written", p.line)
            return lit(p.raw, p.line)
        return self._value_chars(p, value, cmd)

    def _value_chars(self, p: Part, value: Value, cmd: Command) -> list[Char]:
        cmd.notes.extend(value.notes)
        cmd.variables.append({"name": p.name, "value": value.text(), "defined": f"{self.label}:{value.line}"})
        kind = LIT if p.quoted else SPLIT
        items = value.items
        if p.index in ("@", "*"):
            sep: list[Char] = [("", p.line, BREAK)] if p.quoted and p.index == "@" else [(" ", p.line, kind)]
            out: list[Char] = []
            for i, item in enumerate(items):
                if i:
                    out.extend(sep)
                out.extend((c, ln, kind) for c, ln in item)
            return out
        idx = int(p.index) if p.index and p.index.isdigit() else 0
        if idx >= len(items):
            return []
        return [(c, ln, kind) for c, ln in items[idx]]

    def _note(self, cmd: Command, message: str, line: int) -> None:
        cmd.notes.append(Note(message=message, source=f"{self.label}:{line}"))


def _chars_of(tok: Token) -> list[tuple[str, int]]:
    return [(c, tok.line) for c in tok.text]
