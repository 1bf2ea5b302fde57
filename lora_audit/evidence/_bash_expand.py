"""Expanding bash words against the variables the script set: ``$VAR``, ``${VAR:-x}``, arrays, ``$((...))``,
word splitting; assignments and ``[ ]``/``[[ ]]`` tests, which are evaluated the same way. The state of a run of
the executor (``_bash.BashTokenizer``) lives here, in the base class it builds on."""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

from lora_audit.evidence._bash_cond import evaluate
from lora_audit.evidence._bash_parse import AndOr, Case, Loop, Node, Pipeline, Simple
from lora_audit.evidence._bash_values import (
    BREAK,
    RT,
    SPLIT,
    BVal,
    CreatedFile,
    Desc,
    Piece,
    append_value,
    compact,
    first_field,
    split_fields,
)
from lora_audit.evidence._bash_words import Part, Word
from lora_audit.evidence._script import Command, arith, is_script_dir
from lora_audit.evidence.invocation import Token
from lora_audit.model import Note

_MAX_DEPTH = 16  # nested function calls and sourced files


class _Dropped(list[Note]):
    """The notes of an expansion whose notes nobody keeps (a test's operands, a command name looked at only to see
    whether it launches training): nothing is added, and the notes are not even written."""

    def append(self, _: Note) -> None:
        return None

    def extend(self, _: Iterable[Note]) -> None:
        return None


DROPPED = _Dropped()


class Expander:
    """The variables, functions and files of a script being run, and the expansion of words with them."""

    def __init__(self, label: str, path: Path | None = None) -> None:
        self.label = label
        self.path = Path(path) if path is not None else None
        self.vars: dict[str, BVal] = {}
        self.funcs: dict[str, list[Node]] = {}
        self.called: set[str] = set()
        self.files: dict[str, CreatedFile] = {}
        self.sourced: list[str] = []
        self.out: list[Command] = []
        self._conds: list[Desc] = []  # the undecidable branches the walk is in
        self._picks: dict[str, int] = {}
        self._used: dict[str, int] = {}
        self._depth = 0
        self._positional: list[Token] | None = None  # inside a function: its arguments
        self._sourcing: list[str] = []
        self._created: dict[str, tuple[str, str, int]] | None = None  # self.files as commands carry it
        self._forks = 0
        self._unknowns: dict[tuple[str, int], BVal] = {}  # the values merges past _MAX_FORKS give (reused)
        self._repeating = 0  # inside a loop's iterations or a function call
        self._repeated = 0  # commands run there

    # -- expansion ------------------------------------------------------------------------------------------------
    def _fields(self, w: Word, notes: list[Note] | None = None, cmd: Command | None = None) -> list[Token]:
        if w.text is not None:  # a bare word: nothing to expand or split
            return [Token(w.text, w.line)]
        parts = w.parts
        if w.quoted and all(p.kind == "lit" for p in parts):  # quoted text only: one field, as split_fields gives it
            segs = [s for p in parts for s in p.segs if s[0]]
            return [Token("".join(t for t, _ in segs), segs[0][1])] if segs else [Token("", w.line)]
        self._at_empty = False
        pieces = self._expand(w.parts, notes if notes is not None else [], cmd)
        if self._at_empty and not "".join(t for t, _, _ in pieces):
            return []  # "${args[@]}" of an empty array: no word at all
        return split_fields(pieces, w.line, keep_empty=w.quoted)

    def _first_field(self, w: Word) -> str | None:
        """The first word of what ``_fields(w, DROPPED)`` gives, or None when it gives no word."""
        if w.text is not None or (w.quoted and all(p.kind == "lit" for p in w.parts)):
            toks = self._fields(w, DROPPED)
            return toks[0].text if toks else None
        self._at_empty = False
        pieces = self._expand(w.parts, DROPPED, None)
        if self._at_empty and not "".join(t for t, _, _ in pieces):
            return None
        first = first_field(pieces)
        return "" if first is None and w.quoted else first

    def _string(self, w: Word) -> str | None:
        """A word expanded without splitting (case subjects, test operands); None when known only at run time.
        The notes of its expansion are not kept."""
        if w.text is not None:
            return w.text  # a bare word: its text
        pieces = self._expand(w.parts, DROPPED, None)
        if any(f & RT for _, _, f in pieces):
            return None
        return "".join(t for t, _, f in pieces if not f & BREAK)

    def _pattern(self, w: Word) -> str | None:
        """A case pattern: the word's quoted glob characters escaped; None when known only at run time."""
        if w.text is not None:
            return w.text  # a bare word: its text, globs and all
        out = []
        for p in w.parts:
            if p.kind == "lit":
                text = "".join(t for t, _ in p.segs)
                out.append(re.sub(r"([*?\[])", r"[\1]", text) if p.quoted else text)
            else:
                pieces = self._expand([p], DROPPED, None)
                if any(f & RT for _, _, f in pieces):
                    return None
                out.append("".join(t for t, _, _ in pieces))
        return "".join(out)

    def _expand(self, parts: list[Part], notes: list[Note], cmd: Command | None = None) -> list[Piece]:
        out: list[Piece] = []
        add = out.append
        for p in parts:
            kind = p.kind
            if kind == "lit":
                for t, ln in p.segs:
                    add((t, ln, 0))
            elif kind == "sub":
                out.extend(self._substitution(p, notes))
            elif p.op is None and not p.name.isdigit():  # $NAME: what _variable gives, the common cases inline
                v = self.vars.get(p.name)
                if v is None:  # not set in the script: kept as written, a runtime value
                    if notes is not DROPPED:
                        self._unset_note(p, notes)
                    add((p.raw, p.line, RT))
                elif v.choices is None:  # set to one value
                    out.extend(self._value_pieces(p, v, notes, cmd))
                else:
                    out.extend(self._variable(p, notes, cmd))
            else:
                out.extend(self._variable(p, notes, cmd))
        return out

    def _substitution(self, p: Part, notes: list[Note]) -> list[Piece]:
        if is_script_dir(p.raw):
            return [(".", p.line, 0)]
        if p.raw.startswith("$((") and p.raw.endswith("))"):
            n = arith(p.raw[3:-2], self._arith_value)
            if n is not None:
                return [(str(n), p.line, 0)]
        self._note(notes, f"{p.raw} is a command the script runs: its output is only known at run time (kept as "
                          "written)", p.line)
        return [(p.raw, p.line, RT)]

    def _arith_value(self, name: str) -> str | None:
        v = self._lookup(name)
        if v is None or v.choices is not None or any(f & RT for item in v.items for _, _, f in item):
            return None
        return str(v.text() if not v.array else (v.text()[0] if v.text() else ""))

    def _lookup(self, name: str) -> BVal | None:
        v = self.vars.get(name)
        if v is not None and v.choices is not None:
            self._used[name] = len(v.choices)
            return v.choices[min(self._picks.get(name, 0), len(v.choices) - 1)][0]
        return v

    def _variable(self, p: Part, notes: list[Note], cmd: Command | None) -> list[Piece]:
        if p.op == "unsupported":
            self._note(notes, f"{p.raw}: this expansion is not evaluated; its value is only known at run time",
                       p.line)
            return [(p.raw, p.line, RT)]
        if p.name.isdigit() and self._positional is not None and p.name != "0":
            k = int(p.name)
            if k <= len(self._positional):
                tok = self._positional[k - 1]
                return [(tok.text, tok.line, (RT if tok.runtime else 0) | (0 if p.quoted else SPLIT))]
            value = None
        else:
            value = self._lookup(p.name) if not p.name.isdigit() else None
        is_set = value is not None
        nonempty = is_set and bool(value.items) and bool(value.items[0])  # type: ignore[union-attr]
        present = nonempty if p.op and p.op.startswith(":") else is_set
        if p.op in (":-", "-", ":=", "="):
            if present:
                return self._value_pieces(p, value, notes, cmd)  # type: ignore[arg-type]
            default = self._expand(p.arg or [], notes, cmd)
            if p.op in (":=", "="):
                self.vars[p.name] = BVal(items=[[(t, ln, f & RT) for t, ln, f in default if not f & BREAK]],
                                         line=p.line)
            if not is_set:
                self._note(notes, f"${p.name} is not set in the script: {p.raw} gives its default "
                                  f"{''.join(t for t, _, _ in default)!r} (the environment at run time could differ)",
                           p.line)
            return [(t, ln, f if p.quoted else f | (0 if f & RT else SPLIT)) for t, ln, f in default]
        if p.op in (":+", "+"):
            if not present:
                return []
            return [(t, ln, f if p.quoted else f | (0 if f & RT else SPLIT)) for t, ln, f in
                    self._expand(p.arg or [], notes, cmd)]
        if value is None:
            if notes is not DROPPED:
                self._unset_note(p, notes)
            return [(p.raw, p.line, RT)]
        return self._value_pieces(p, value, notes, cmd)

    def _value_pieces(self, p: Part, value: BVal, notes: list[Note], cmd: Command | None) -> list[Piece]:
        notes.extend(value.notes)
        if cmd is not None:
            cmd.variables.append({"name": p.name, "value": value.text(), "defined": f"{self.label}:{value.line}"})
        split = 0 if p.quoted else SPLIT
        items = value.items
        if p.index in ("@", "*"):
            if not items and p.quoted and p.index == "@":
                self._at_empty = True
            sep: Piece = ("", p.line, BREAK) if p.quoted and p.index == "@" else (" ", p.line, split)
            out: list[Piece] = []
            for i, item in enumerate(items):
                if i:
                    out.append(sep)
                out.extend((t, ln, f | (0 if f & RT else split)) for t, ln, f in item)
            return out
        if p.index is None:  # $NAME (the common case): its first item
            return [(t, ln, f | (0 if f & RT else split)) for t, ln, f in items[0]] if items else []
        idx = int(p.index) if p.index.isdigit() else 0
        if idx >= len(items):
            return []
        return [(t, ln, f | (0 if f & RT else split)) for t, ln, f in items[idx]]

    def _unset_note(self, p: Part, notes: list[Note]) -> None:
        notes.append(Note(message=_unset_message(p.raw, p.name, ", ".join(self.sourced)),
                          source=f"{self.label}:{p.line}"))

    def _note(self, notes: list[Note], message: str, line: int) -> None:
        if notes is DROPPED:
            return
        notes.append(Note(message=message, source=f"{self.label}:{line}"))

    def _assign(self, w: Word) -> None:
        name, append = w.assign  # type: ignore[misc]
        scratch: list[Note] = []
        if w.array is not None:
            items: list[list[Piece]] = []
            for e in w.array:
                for tok in self._fields(e, scratch):
                    items.append([(tok.text, tok.line, RT if tok.runtime else 0)])
            value = BVal(items=items, line=w.line, array=True, notes=scratch)
        else:
            pieces = self._expand(w.parts, scratch)
            value = BVal(items=[compact([(t, ln, f & RT) for t, ln, f in pieces if not f & BREAK])], line=w.line,
                         notes=scratch)
        old = self.vars.get(name)
        if append and old is not None:
            if old.choices is not None:
                value = BVal(items=[], line=old.line, choices=[
                    (append_value(v, value, name, self.label), when) for v, when in old.choices])
            else:
                value = append_value(old, value, name, self.label)
        self.vars[name] = value

    def _test(self, head: str, words: list[Word]) -> bool | None:
        if head == "[" and words and words[-1].plain() == "]":
            words = words[:-1]
        if head == "[[" and words and words[-1].plain() == "]]":
            words = words[:-1]
        args: list[tuple[str | None, bool]] = []
        for w in words:
            if w.text is not None:  # a bare word (operators, most operands): its text, what both readings give
                args.append((w.text, w.quoted))
            elif (text := self._quoted_var(w)) is not _GENERAL:  # "$NAME": its value (None: runtime)
                args.append((text, True))  # type: ignore[arg-type]
            elif head == "[[":
                args.append((self._string(w), w.quoted))
            else:
                for tok in self._fields(w, DROPPED):  # the notes of a test's operands are not kept
                    args.append((None if tok.runtime else tok.text, w.quoted))
        return evaluate(args, head == "[[", self.vars.__contains__)  # `-v NAME`: set in the script

    def _quoted_var(self, w: Word) -> str | None | object:
        """``"$NAME"`` (the whole word, quoted) as a test operand: its value's text, None when it holds a runtime
        value or is unset, what both ``_fields`` and ``_string`` give it; _GENERAL for any other word, or for a
        conditional value (its expansion records the variable as used)."""
        parts = w.parts
        if not w.quoted or not parts:
            return _GENERAL
        p = parts[-1]  # the one var part, after empty literal parts (the opening quote's)
        if p.kind != "var" or p.op is not None or p.index is not None or not p.quoted or p.name.isdigit():
            return _GENERAL
        for q in parts[:-1]:
            if q.kind != "lit" or q.segs:
                return _GENERAL
        v = self.vars.get(p.name)
        if v is None:
            return None  # unset: kept as written, a runtime value
        if v.choices is not None:
            return _GENERAL
        if not v.items:
            return ""
        item = v.items[0]
        return None if any(f & RT for _, _, f in item) else "".join(t for t, _, _ in item)


_GENERAL = object()  # _quoted_var: the word needs the general expansion


@lru_cache(maxsize=1024)
@lru_cache(maxsize=256)  # one message per reference written in a script, met on every line that repeats it
def _unset_message(raw: str, name: str, sourced: str) -> str:
    """What an unset ``$NAME`` (written ``raw``) gives, for a script that sources the files ``sourced``."""
    if name.isdigit() or name in ("@", "*", "#"):
        why = "is an argument given to the script when it ran"
    elif name in ("?", "$", "!", "-"):
        why = "is set by the shell when the script runs"
    else:
        why = "is not set in the script: the environment at run time decides"
        if sourced:
            why += f" (the script sources {sourced}, which could not be read)"
    return f"{raw} {why}: a runtime value, kept as written"


def _assigns(parts: list[Part]) -> bool:
    """Whether expanding these parts assigns a variable (``${X:=v}``, ``${X=v}``, nested in a default as well)."""
    return any(p.kind == "var" and (p.op in (":=", "=") or bool(p.arg and _assigns(p.arg))) for p in parts)


def _word_text(w: Word) -> str:
    """The word about as written (for describing a condition)."""
    if w.text is not None:
        return w.text  # a bare word: its one unquoted literal part
    text = "".join("".join(t for t, _ in p.segs) if p.kind == "lit" else p.raw for p in w.parts)
    return f'"{text}"' if w.quoted and (not text or " " in text or "$" in text) else text


def _describe(n: Node) -> str:
    if isinstance(n, Simple):
        return " ".join(_word_text(w) for w in n.words)
    if isinstance(n, AndOr):
        return _describe(n.first) + "".join(f" {op} {_describe(x)}" for op, x in n.rest)
    if isinstance(n, Pipeline):
        return ("! " if n.negate else "") + " | ".join(_describe(c) for c in n.cmds)
    return type(n).__name__.lower()


def _describe_all(nodes: list[Node]) -> str:
    text = "; ".join(_describe(n) for n in nodes)
    return text if len(text) <= 80 else text[:77] + "..."


def _if_desc(cond: list[Node], line: int, outcome: str) -> str:
    """An if's branch taken (the branch descriptions are written only when kept: ``_bash.BashTokenizer._branches``)."""
    return f"if `{_describe_all(cond)}` (line {line}) is {outcome}"


def _case_desc(n: Case, pats: list[str | None]) -> str:
    """A case's arm taken: ``case "$M" (line 3) takes a|b)`` (a pattern known only at run time: ``?``)."""
    return f"case {_word_text(n.subject)} (line {n.line}) takes {'|'.join(p or '?' for p in pats)})"


def _case_none_desc(n: Case, arms: list[list[str | None]]) -> str:
    """None of a case's arms (their patterns) taken."""
    names = ", ".join("|".join(p or "?" for p in pats) for pats in arms)
    return f"case {_word_text(n.subject)} (line {n.line}) matches none of {names}"


def _loop_desc(n: Loop, outcome: str) -> str:
    """A loop run an unknown number of times: its body run, or not."""
    return f"the {n.kind} loop at line {n.line} {outcome}"
