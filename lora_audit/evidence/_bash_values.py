"""bash variables as the executor (``_bash``) keeps them: values whose text keeps the line it was written on,
conditional values (one per undecidable branch), and the merge of the variables after branches."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache

from lora_audit.evidence._script import ARG_MAX
from lora_audit.evidence.invocation import Token
from lora_audit.model import Note

# A run of expanded text: (text, line of its first character, flags)
Piece = tuple[str, int, int]
SPLIT, BREAK, RT = 1, 2, 4  # subject to word splitting; array element boundary; known only at run time
_IFS = re.compile(r"[ \t\n]+")
_MAX_CHOICES = 8  # possible values kept for one conditional variable
_MAX_LABEL = 240  # characters of a "when" description
_MAX_PIECES = 64  # runs of text kept with their own line in one value
_MAX_UNKNOWNS = 4096  # unknown values (past _MAX_FORKS) kept for reuse by one script's merges
# an undecidable branch described: its text, or a function writing it when it is kept (most never are)
Desc = str | Callable[[], str]


def desc_text(d: Desc) -> str:
    return d if isinstance(d, str) else d()


@dataclass(eq=False, slots=True)  # a value is the same value only as the same object (merge compares them so)
class BVal:
    """A variable: one item (a string) or several (an array), or, when conditional, its possible values."""

    items: list[list[Piece]]
    line: int
    array: bool = False
    notes: list[Note] = field(default_factory=list)
    choices: list[tuple[BVal | None, str]] | None = None  # (value or None for unset, when)
    frozen: bool = False  # shared with a snapshot of the variables: never changed in place
    size: int = -1  # characters of its items (kept by appends; -1: not counted yet)
    capped: bool = False  # grown past ARG_MAX: its text is no longer kept, appends are dropped

    def text(self) -> str | list[str]:
        if self.choices is not None:
            return [("<unset>" if v is None else str(v.text())) for v, _ in self.choices]
        texts = ["".join(t for t, _, _ in item) for item in self.items]
        return texts if self.array else (texts[0] if texts else "")

    def key(self) -> tuple:
        return (self.array, tuple("".join(t for t, _, _ in item) for item in self.items))


@dataclass
class CreatedFile:
    text: str
    label: str
    line: int  # line of the file's first line in the script
    runtime: bool  # holds values only known at run time


def append_value(old: BVal | None, value: BVal, name: str, label: str) -> BVal:
    """``NAME+=``: in place when no branch snapshot holds the old value (linear for long runs of appends); a value
    grown past ARG_MAX is dropped for a runtime mark (no command could be started with it: bounded memory)."""
    if old is None:
        return value
    if old.capped:
        return old
    if old.frozen:  # a snapshot taken before a branch still needs the old value: copy it once
        old = BVal(items=[list(item) for item in old.items], line=old.line, array=old.array, notes=list(old.notes),
                   size=old.size)
    size = value_size(old) + value_size(value)
    if value.array or old.array:
        old.items.extend(value.items)
        old.array = True
    elif old.items:
        old.items[0].extend(value.items[0] if value.items else [])
        if len(old.items[0]) > _MAX_PIECES:
            old.items[0] = compact(old.items[0])
    else:
        old.items.append(list(value.items[0]) if value.items else [])
    old.notes.extend(value.notes)
    old.size = size
    if size > ARG_MAX:
        old.items, old.array, old.capped = [[(f"${{{name}}}", old.line, RT)]], False, True
        old.notes = old.notes[:20] + [Note(
            message=f"${name} grows past {ARG_MAX:,} characters (ARG_MAX): no command can be started with it "
                    "('Argument list too long'); its value is not kept", source=f"{label}:{old.line}")]
    return old


def value_size(v: BVal) -> int:
    if v.size < 0:
        v.size = sum(len(t) for item in v.items for t, _, _ in item) + len(v.items)
    return v.size


def compact(pieces: list[Piece]) -> list[Piece]:
    """Adjacent runs of one line (and, past _MAX_PIECES runs, of any lines) joined: a value copied into itself line
    after line (``V="$V x"``) stays a few runs instead of growing by one run per line."""
    if len(pieces) < 2:
        return pieces
    out: list[Piece] = [pieces[0]]
    for t, ln, f in pieces[1:]:
        pt, pln, pf = out[-1]
        if pf == f and pln == ln and not f & BREAK:
            out[-1] = (pt + t, pln, pf)
        else:
            out.append((t, ln, f))
    if len(out) > _MAX_PIECES:  # one run, its first line (runtime if any part of it is)
        rt = RT if any(f & RT for _, _, f in out) else 0
        out = [("".join(t for t, _, _ in out), out[0][1], rt)]
    return out


def freeze(state: dict[str, BVal]) -> None:
    for v in state.values():
        v.frozen = True
        for cv, _ in v.choices or ():
            if cv is not None:
                cv.frozen = True


def _label(text: str) -> str:
    return text if len(text) <= _MAX_LABEL else text[:_MAX_LABEL - 3] + "..."


def merge(results: list[tuple[dict[str, BVal], Desc]],
          unknowns: dict[tuple[str, int], BVal] | None = None) -> dict[str, BVal]:
    """The variables after branches (each branch's, and its description): the same where every branch agrees,
    conditional where they differ (past _MAX_FORKS undecidable branches in one script, given the script's
    ``unknowns``: simply unknown, so a script of thousands stays linear; the descriptions are then never written).

    The states are the branches' own copies, no longer used: the first one becomes the result (the names left
    different moved to its end, in sorted order), so a merge costs the names that differ, not all the names."""
    first = results[0][0]
    if len(results) == 1:
        return first
    changed = _changed(first, results)
    merged = first
    whens: list[str] | None = None  # the descriptions, written once, when a conditional value needs them
    for name in sorted(changed) if len(changed) > 1 else changed:
        if unknowns is not None:  # unknown, on the line of the first branch's value
            line = 0
            for state, _ in results:
                if (v := state.get(name)) is not None:
                    line = v.line
                    break
            merged.pop(name, None)  # set again at the end (where a name set in a branch only would be)
            merged[name] = _unknown(name, line, unknowns)
            continue
        if whens is None:
            whens = [desc_text(desc) for _, desc in results]
        choices = _choices([(state.get(name), when) for (state, _), when in zip(results, whens)])
        merged.pop(name, None)
        if len(choices) == 1:
            if choices[0][0] is not None:  # (None: unset in every branch)
                merged[name] = choices[0][0]
        else:
            line = next((v.line for v, _ in choices if v is not None), 0)
            merged[name] = BVal(items=[], line=line, choices=choices)
    return merged


def _changed(first: dict[str, BVal], results: list[tuple[dict[str, BVal], Desc]]) -> set[str]:
    """The names some branch left different from the first (item views compare as sets of (name, value object),
    at C speed; BVal hashes by identity): the others are taken as they are."""
    if len(results) == 2:  # an if/else, a loop that may not run: the common case, one symmetric difference
        other = results[1][0]
        return {k for k, _ in first.items() ^ other.items()} if other is not first else set()
    changed: set[str] = set()
    for state, _ in results[1:]:
        if state is not first:
            changed.update(k for k, _ in first.items() ^ state.items())
    return changed


def _choices(values: list[tuple[BVal | None, str]]) -> list[tuple[BVal | None, str]]:
    """A variable's possible values after branches (``values``: its value in each, None for unset, and when): the
    values of the same text as one, with all their whens; a conditional value's own choices flattened."""
    choices: list[tuple[BVal | None, str]] = []
    seen: dict[tuple | None, int] = {}
    for v, when in values:
        for cv, cwhen in (v.choices if v is not None and v.choices is not None else [(v, "")]):
            key = None if cv is None else cv.key()
            label = f"{when}; {cwhen}" if cwhen and when else (when or cwhen)
            if key in seen:
                i = seen[key]
                choices[i] = (choices[i][0], _label(f"{choices[i][1]} or {label}"))
            elif len(choices) < _MAX_CHOICES:
                seen[key] = len(choices)
                choices.append((cv, _label(label)))
    return choices


def _unknown(name: str, line: int, unknowns: dict[tuple[str, int], BVal]) -> BVal:
    """``$name`` unknown, on ``line``: one object for each (name, line), reused by every merge of the script that
    gives it, so that branches leaving such a value as it was leave the same object and the merges after them see
    no change (the value they would write is that same value again). Created frozen: an append copies it, what it
    holds never changes. At most _MAX_UNKNOWNS are kept (then forgotten all at once; new ones are equal)."""
    v = unknowns.get((name, line))
    if v is None:
        if len(unknowns) >= _MAX_UNKNOWNS:
            unknowns.clear()
        v = unknowns[name, line] = BVal([[(f"${{{name}}}", line, RT)]], line, notes=[_unknown_note(name)],
                                        frozen=True)
    return v


@lru_cache(maxsize=1024)
def _unknown_note(name: str) -> Note:
    """The one note of a variable past _MAX_FORKS (the same text at every merge: written once; notes are never
    changed in place)."""
    return Note(message=f"${name} depends on more undecidable branches than are followed: unknown here")


def split_fields(pieces: list[Piece], line: int, keep_empty: bool) -> list[Token]:
    """Split expanded text into words: on blanks from unquoted expansions and on array element boundaries."""
    out: list[Token] = []
    cur: list[str] = []  # the word being built (once started)
    cur_line = 0
    cur_rt = started = False
    for text, ln, fl in pieces:
        if fl & BREAK:
            if started:
                out.append(Token("".join(cur), cur_line, cur_rt))
            cur, cur_rt, started = [], False, False
        elif fl & SPLIT and _IFS.search(text):
            cur, cur_line, started, cur_rt = _split_run(text, ln, out, cur, cur_line, started, cur_rt)
        elif text or fl & (RT | SPLIT) == RT:  # a run not split (a splitting one without blanks is never runtime)
            if not started:
                cur_line, started = ln, True
            cur.append(text)
            cur_rt = cur_rt or fl & (RT | SPLIT) == RT
    if started:
        out.append(Token("".join(cur), cur_line, cur_rt))
    if not out and keep_empty:
        out.append(Token("", line))
    return out


def first_field(pieces: list[Piece]) -> str | None:
    """The text of the first word split_fields gives (its ``keep_empty`` aside), or None when it gives none: the
    same reading, stopped at the end of that word (a command name is all that is looked at)."""
    cur: list[str] = []
    started = False
    for text, _, fl in pieces:
        if fl & BREAK:
            if started:
                break
        elif fl & SPLIT and (m := _IFS.search(text)) is not None:
            if m.start() or started:  # the word ends at the first blanks
                cur.append(text[:m.start()])
                return "".join(cur)
            rest = text[m.end():]  # leading blanks, no word started: the word starts after them
            m = _IFS.search(rest)
            if m is not None:
                return rest[:m.start()]
            if rest:
                cur.append(rest)
                started = True
        elif text or fl & (RT | SPLIT) == RT:
            started = True
            cur.append(text)
    return "".join(cur) if started else None


def _split_run(text: str, ln: int, out: list[Token], cur: list[str], cur_line: int, started: bool,
               cur_rt: bool) -> tuple[list[str], int, bool, bool]:
    """A splitting run with blanks in it: the word being built ends at each, new ones start after them."""
    pos = counted = 0  # newlines counted up to `counted` (incrementally: a long value stays linear)
    for m in _IFS.finditer(text):
        if m.start() > pos:
            ln += text.count("\n", counted, pos)
            counted = pos
            if not started:
                cur_line, started = ln, True
            cur.append(text[pos:m.start()])
        if started:
            out.append(Token("".join(cur), cur_line, cur_rt))
        cur, cur_rt, started = [], False, False
        pos = m.end()
    if pos < len(text):
        ln += text.count("\n", counted, pos)
        if not started:
            cur_line, started = ln, True
        cur.append(text[pos:])
    return cur, cur_line, started, cur_rt


def joined(pieces: list[Piece], line: int) -> Token:
    kept = [p for p in pieces if not p[2] & BREAK]
    return Token("".join(t for t, _, _ in kept), kept[0][1] if kept else line, any(f & RT for _, _, f in kept))
