"""bash/sh scripts → commands of Tokens, as bash would run them.

Three steps, as in bash: the lexer (``_bash_lexer``) reads words keeping ``$VAR``/``${VAR:-x}``/``$(...)`` as parts;
the parser (``_bash_parse``) groups them into commands, ``&&``/``||`` lists, ``if``/``case``/loops and functions;
this executor walks them in order, keeping the variables the script assigns (``VAR=``, ``export``, arrays, ``+=``),
taking the branch bash takes when the condition is known from the script (``_bash_cond``), and expanding each
command's words with the values known at that point.

Only variables set in the script are known: the real environment is never read. What only the machine or the
moment the script ran could tell (``$(...)``, an environment variable, ``$1``, a file test) is kept as written and
marked *runtime*. When a condition cannot be decided, each branch is run on its own copy of the variables and the
copies are merged: a variable the branches leave different is *conditional* (its possible values, each with the
branch it comes from), and a command using it is expanded once per combination (``Command.variants``).
"""

from __future__ import annotations

import gc
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from itertools import product
from pathlib import Path

from lora_audit.errors import EvidenceError
from lora_audit.evidence._bash_cond import evaluate
from lora_audit.evidence._bash_lexer import Lexer, Part, Redir, Word
from lora_audit.evidence._bash_parse import AndOr, Case, FuncDef, Group, If, Loop, Node, Parser, Pipeline, Simple
from lora_audit.evidence._script import ARG_MAX, Command, Lines, arith, check_launches, is_script_dir
from lora_audit.evidence.invocation import Token, find_training_command, may_launch
from lora_audit.model import Note

# A run of expanded text: (text, line of its first character, flags)
Piece = tuple[str, int, int]
SPLIT, BREAK, RT = 1, 2, 4  # subject to word splitting; array element boundary; known only at run time
_IFS = re.compile(r"[ \t\n]+")
_DECLARE = {"export", "declare", "typeset", "local", "readonly"}
_QUERY = {"command", "which", "type", "hash", "grep", "egrep", "fgrep", "pgrep", "compgen"}  # status unknown
_MAX_VARIANTS = 16  # combinations of conditional values expanded for one command
_MAX_CHOICES = 8  # possible values kept for one conditional variable
_MAX_DEPTH = 16  # nested function calls and sourced files
# commands run again by loops and function calls, in all: past it a loop runs its body once as if it could not tell
# how often, and a function call runs nothing (nested loops of 100 values would otherwise run 100**depth times)
_MAX_REPEATED = 50_000
_MAX_FORKS = 256  # undecidable branches followed with their candidate values; past that, values are unknown
_MAX_LABEL = 240  # characters of a "when" description
_MAX_PIECES = 64  # runs of text kept with their own line in one value


@dataclass
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


class _Exit(Exception):
    """``exit``: the script stops here."""


class BashTokenizer:
    """Runs a bash script's assignments and control flow in order and yields its other commands, expanded."""

    def __init__(self, label: str, path: Path | None = None):
        self.label = label
        self.path = Path(path) if path is not None else None
        self.vars: dict[str, BVal] = {}
        self.funcs: dict[str, list[Node]] = {}
        self.called: set[str] = set()
        self.files: dict[str, CreatedFile] = {}
        self.sourced: list[str] = []
        self.out: list[Command] = []
        self._conds: list[str] = []  # the undecidable branches the walk is in
        self._picks: dict[str, int] = {}
        self._used: dict[str, int] = {}
        self._depth = 0
        self._positional: list[Token] | None = None  # inside a function: its arguments
        self._sourcing: list[str] = []
        self._created: dict[str, tuple[str, str, int]] | None = None  # self.files as commands carry it
        self._forks = 0
        self._repeating = 0  # inside a loop's iterations or a function call
        self._repeated = 0  # commands run there

    # -- entry ----------------------------------------------------------------------------------------------------
    def commands(self, text: str, first_line: int = 1) -> list[Command]:
        """Every simple command the script runs, in order (the assignments and control flow already applied)."""
        enabled = gc.isenabled()
        gc.disable()  # millions of small objects, none cyclic: the collector's passes would make parsing quadratic
        try:
            nodes = Parser(Lexer(text, Lines(text, first_line), self.label).iter_items()).iter_parse()
            try:
                for node in nodes:  # each top-level command runs as soon as it is read
                    self._node(node)
            except _Exit:
                pass
            for name, body in list(self.funcs.items()):
                if name not in self.called:  # a function never called: its commands are still evidence
                    self.called.add(name)
                    self._conds.append(f"function {name} is never called in the script")
                    try:
                        self._block(body)
                    except _Exit:
                        pass
                    self._conds.pop()
        except RecursionError:  # "((((" thousands deep, from any caller (scripts, notes, notebooks): one line
            raise EvidenceError("brackets or substitutions nested too deeply to read", self.label, first_line) from None
        finally:
            if enabled:
                gc.enable()
        return self.out

    # -- walking the nodes ----------------------------------------------------------------------------------------
    def _block(self, nodes: list[Node]) -> bool | None:
        if self._repeating:
            self._repeated += len(nodes)
        status: bool | None = True
        for n in nodes:
            status = self._node(n)
        return status

    def _node(self, n: Node) -> bool | None:
        if isinstance(n, Simple):
            return self._simple(n)
        if isinstance(n, AndOr):
            return self._and_or(n)
        if isinstance(n, Pipeline):
            status = True
            for c in n.cmds:
                status = self._node(c)
            return _neg(status) if n.negate else status
        if isinstance(n, If):
            return self._if(n.clauses, n.orelse)
        if isinstance(n, Case):
            return self._case(n)
        if isinstance(n, Loop):
            return self._loop(n)
        if isinstance(n, Group):
            if n.subshell:
                saved = dict(self.vars)
                _freeze(saved)
                try:
                    return self._block(n.body)
                except _Exit:
                    return None  # `( ...; exit )` leaves the subshell only
                finally:
                    self.vars = saved
            return self._block(n.body)
        if isinstance(n, FuncDef):
            self.funcs[n.name] = n.body
            return True
        return True

    def _and_or(self, n: AndOr) -> bool | None:
        status = self._node(n.first)
        for op, node in n.rest:
            runs = status if op == "&&" else _neg(status)
            if runs is True:
                status = self._node(node)
            elif runs is None:
                what = f"{'the command before' if op == '&&' else 'the command before fails'} ({_describe(n.first)})"
                self._branches([(f"{op} after {what}", lambda node=node: self._node(node))], exhaustive=False,
                               otherwise=f"{what} decides otherwise")
                status = None
        return status

    def _if(self, clauses: list, orelse: list[Node] | None) -> bool | None:
        for k, (cond, body, line) in enumerate(clauses):
            status = self._block(cond)
            if status is True:
                return self._block(body)
            if status is None:
                what = f"`{_describe_all(cond)}` (line {line})"
                rest = clauses[k + 1:]
                self._branches([(f"if {what} is true", lambda body=body: self._block(body)),
                                (f"if {what} is false", lambda: self._if(rest, orelse))], exhaustive=True)
                return None
        return self._block(orelse) if orelse is not None else True

    def _case(self, n: Case) -> bool | None:
        subject = self._string(n.subject)
        arms = []
        for patterns, body in n.arms:
            pats = [self._pattern(p) for p in patterns]
            if subject is not None and all(p is not None for p in pats):
                if any(fnmatchcase(subject, p) for p in pats):  # type: ignore[arg-type]
                    return self._block(body)
                continue
            arms.append((pats, body))
        if not arms:
            return True
        names = ", ".join("|".join(p or "?" for p in pats) for pats, _ in arms)
        what = f"case {_word_text(n.subject)} (line {n.line})"
        self._branches([(f"{what} takes {'|'.join(p or '?' for p in pats)})",
                         lambda body=body: self._block(body)) for pats, body in arms],
                       exhaustive=any("*" in pats for pats, _ in arms), otherwise=f"{what} matches none of {names}")
        return None

    def _loop(self, n: Loop) -> bool | None:
        if n.kind in ("for", "select") and n.var:
            values = None
            if n.words is not None:
                toks = [t for w in n.words for t in self._fields(w)]
                values = None if any(t.runtime for t in toks) else toks
            if values is not None and n.kind == "for" and self._repeated < _MAX_REPEATED:
                self._repeating += 1
                try:
                    for tok in values[:100]:
                        self.vars[n.var] = BVal(items=[[(tok.text, tok.line, 0)]], line=tok.line)
                        self._block(n.body)
                finally:
                    self._repeating -= 1
                return True
            self.vars[n.var] = BVal(items=[[(f"${n.var}", n.line, RT)]], line=n.line)
            self._branches([(f"the {n.kind} loop at line {n.line} runs", lambda: self._block(n.body))],
                           exhaustive=False, otherwise=f"the {n.kind} loop at line {n.line} does not run")
            return None
        status = self._block(n.cond)
        if n.kind == "until":
            status = _neg(status)
        if status is False:
            return True
        if status is True:  # `while true; do ...; break; done`: the body once
            self._block(n.body)
            return True
        self._branches([(f"the {n.kind} loop at line {n.line} runs", lambda: self._block(n.body))],
                       exhaustive=False, otherwise=f"the {n.kind} loop at line {n.line} does not run")
        return None

    def _branches(self, branches: list[tuple[str, Callable[[], object]]], exhaustive: bool,
                  otherwise: str = "") -> None:
        """Run each branch on its own copy of the variables, then merge the copies (conditional values)."""
        base = self.vars
        _freeze(base)
        self._forks += 1
        results: list[tuple[dict[str, BVal], str]] = []
        for desc, run in branches:
            self.vars = dict(base)
            self._conds.append(desc)
            try:
                run()
                results.append((self.vars, desc))
            except _Exit:
                pass  # the script ends in this branch: what it set there never reaches the commands after
            finally:
                self._conds.pop()
        if not exhaustive:
            results.append((dict(base), otherwise))
        if not results:
            self.vars = base
            raise _Exit
        self.vars = _merge(results, degrade=self._forks > _MAX_FORKS)

    # -- one simple command ---------------------------------------------------------------------------------------
    def _simple(self, n: Simple) -> bool | None:
        words = n.words
        notes = list(n.notes)
        for w in words:
            if w.notes:
                notes.extend(w.notes)
        if not words:
            return True
        k = 0
        while k < len(words) and words[k].assign:
            k += 1
        if k == len(words):
            for w in words:
                self._assign(w, notes)
            return True
        head = words[k].plain()
        if k == 0 and head is not None:
            handled = self._builtin(head, words, n, notes)
            if handled is not _NOT_BUILTIN:
                return handled  # type: ignore[return-value]
        if self._may_launch(words, k):
            self._emit(words, n, notes)
        return None if head in _QUERY else True

    def _may_launch(self, words: list[Word], k: int) -> bool:
        """False when the command certainly launches no training script: its words are then not expanded (nothing
        of it is kept), unless expanding them assigns (``${X:=v}``)."""
        if any(w.text is None and _assigns(w.parts) for w in words):
            return True
        head = words[k]
        if head.text is not None:
            return may_launch(head.text)
        self._used, self._picks = {}, {}
        toks = self._fields(head, [], None)
        if self._used or not toks:  # a conditional value (variants to expand): the whole command is read
            return True
        return may_launch(toks[0].text)

    def _builtin(self, head: str, words: list[Word], n: Simple, notes: list[Note]) -> object:
        if head in _DECLARE:
            for w in words[1:]:
                if w.assign:
                    self._assign(w, notes)
            return True
        if head == "unset":
            for w in words[1:]:
                self.vars.pop(w.plain() or "", None)
            return True
        if head in ("source", ".") and len(words) > 1:
            self._source(words[1], notes)
            return True
        if head in (":", "true"):
            for w in words[1:]:
                self._fields(w, notes)  # `: ${DIM:=32}` assigns through its expansion
            return True
        if head == "false":
            return False
        if head in ("[", "test", "[["):
            return self._test(head, words[1:], notes)
        if head == "exit":
            raise _Exit
        if head in ("cd", "echo", "printf", "mkdir", "set", "shift", "return", "break", "continue", "trap", "wait",
                    "pushd", "popd", "read", "sleep", "shopt", "umask", "ulimit", "alias"):
            if head == "read":
                for w in words[1:]:
                    name = w.plain()
                    if name and re.fullmatch(r"[A-Za-z_]\w*", name):  # typed at a prompt: unknown here
                        self.vars[name] = BVal(items=[[(f"${name}", w.line, RT)]], line=w.line)
            return True
        if head in ("cat", "tee") and any(r.heredoc for r in n.redirs):
            self._heredoc_file(head, words, n.redirs, notes)
            return True
        if head in self.funcs:
            return self._call(head, words, notes)
        return _NOT_BUILTIN

    def _emit(self, words: list[Word], n: Simple, notes: list[Note]) -> None:
        self._used, self._picks = {}, {}
        cmd = Command(words=[], notes=notes)
        cmd.words = self._words(words, cmd)
        if self._used:
            names = list(self._used)
            sizes = [self._used[k] for k in names]
            combos: list[tuple[int, ...]]
            total = 1
            for s in sizes:
                total *= s
            if total <= _MAX_VARIANTS:
                combos = list(product(*(range(s) for s in sizes)))
            else:  # too many: each variable's values one at a time, the others at their first
                combos = [tuple(0 for _ in names)] + [tuple(i if j == k else 0 for j in range(len(names)))
                                                      for k, s in enumerate(sizes) for i in range(1, s)]
            for combo in combos:
                self._picks = dict(zip(names, combo))
                scratch = Command(words=[])
                toks = self._words(words, scratch)
                when = "; ".join(self.vars[name].choices[i][1]  # type: ignore[index]
                                 for name, i in self._picks.items() if self.vars[name].choices)
                cmd.variants.append((toks, when))
            self._picks = {}
        if self._conds:
            cmd.notes.append(Note(message="this command runs only " + "; ".join(self._conds) + ": the script "
                                          "cannot tell", source=f"{self.label}:{n.line}"))
        if find_training_command(cmd.words) is None and not any(find_training_command(w) for w, _ in cmd.variants):
            return  # only commands that launch a script are wanted: the others are not kept (bounded memory)
        if n.too_long or sum(len(t.text) + 1 for t in cmd.words) > ARG_MAX:
            cmd.error = EvidenceError(f"the command is longer than ARG_MAX ({ARG_MAX:,} characters of arguments): "
                                      "bash cannot start it ('Argument list too long')", self.label, n.line)
        if self._created is None:
            self._created = {k: (f.text, f.label, f.line) for k, f in self.files.items()}
        cmd.created = self._created
        check_launches(self.out, self.label, n.line)
        self.out.append(cmd)

    def _words(self, words: list[Word], cmd: Command) -> list[Token]:
        out: list[Token] = []
        for w in words:
            if w.array is not None:
                continue  # NAME=(...) before a command: bash refuses it; not part of the command either
            if w.assign:
                name, append = w.assign
                pieces = [(name + ("+=" if append else "="), w.line, 0)] + self._expand(w.parts, cmd.notes, cmd)
                out.append(_joined(pieces, w.line))
            else:
                out.extend(self._fields(w, cmd.notes, cmd))
        return out

    # -- expansion ------------------------------------------------------------------------------------------------
    def _fields(self, w: Word, notes: list[Note] | None = None, cmd: Command | None = None) -> list[Token]:
        if w.text is not None:  # a bare word: nothing to expand or split
            return [Token(w.text, w.line)]
        self._at_empty = False
        pieces = self._expand(w.parts, notes if notes is not None else [], cmd)
        if self._at_empty and not "".join(t for t, _, _ in pieces):
            return []  # "${args[@]}" of an empty array: no word at all
        return _fields(pieces, w.line, keep_empty=w.quoted)

    def _string(self, w: Word) -> str | None:
        """A word expanded without splitting (case subjects, test operands); None when known only at run time."""
        pieces = self._expand(w.parts, [], None)
        if any(f & RT for _, _, f in pieces):
            return None
        return "".join(t for t, _, f in pieces if not f & BREAK)

    def _pattern(self, w: Word) -> str | None:
        out = []
        for p in w.parts:
            if p.kind == "lit":
                text = "".join(t for t, _ in p.segs)
                out.append(re.sub(r"([*?\[])", r"[\1]", text) if p.quoted else text)
            else:
                pieces = self._expand([p], [], None)
                if any(f & RT for _, _, f in pieces):
                    return None
                out.append("".join(t for t, _, _ in pieces))
        return "".join(out)

    def _expand(self, parts: list[Part], notes: list[Note], cmd: Command | None = None) -> list[Piece]:
        out: list[Piece] = []
        for p in parts:
            if p.kind == "lit":
                out.extend((t, ln, 0) for t, ln in p.segs)
            elif p.kind == "sub":
                out.extend(self._substitution(p, notes))
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
            if p.name.isdigit() or p.name in ("@", "*", "#"):
                why = "is an argument given to the script when it ran"
            elif p.name in ("?", "$", "!", "-"):
                why = "is set by the shell when the script runs"
            else:
                why = "is not set in the script: the environment at run time decides"
                if self.sourced:
                    why += f" (the script sources {', '.join(self.sourced)}, which could not be read)"
            self._note(notes, f"{p.raw} {why}: a runtime value, kept as written", p.line)
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
        idx = int(p.index) if p.index and p.index.isdigit() else 0
        if idx >= len(items):
            return []
        return [(t, ln, f | (0 if f & RT else split)) for t, ln, f in items[idx]]

    def _note(self, notes: list[Note], message: str, line: int) -> None:
        notes.append(Note(message=message, source=f"{self.label}:{line}"))

    # -- assignments, tests, sourcing, heredocs, functions ------------------------------------------------------
    def _assign(self, w: Word, notes: list[Note]) -> None:
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
            value = BVal(items=[_compact([(t, ln, f & RT) for t, ln, f in pieces if not f & BREAK])], line=w.line,
                         notes=scratch)
        old = self.vars.get(name)
        if append and old is not None:
            if old.choices is not None:
                value = BVal(items=[], line=old.line, choices=[
                    (_append(v, value, name, self.label), when) for v, when in old.choices])
            else:
                value = _append(old, value, name, self.label)
        self.vars[name] = value

    def _test(self, head: str, words: list[Word], notes: list[Note]) -> bool | None:
        if head == "[" and words and words[-1].plain() == "]":
            words = words[:-1]
        if head == "[[" and words and words[-1].plain() == "]]":
            words = words[:-1]
        args: list[tuple[str | None, bool]] = []
        for w in words:
            if head == "[[":
                args.append((self._string(w), w.quoted))
            else:
                for tok in self._fields(w, notes):
                    args.append((None if tok.runtime else tok.text, w.quoted))

        def var(name: str) -> bool | None:
            return name in self.vars

        return evaluate(args, head == "[[", var)

    def _source(self, w: Word, notes: list[Note]) -> None:
        name = self._string(w)
        shown = name or _word_text(w)
        text: str | None = None
        label = shown
        if name is not None and name in self.files:
            f = self.files[name]
            text, label = f.text, f"{f.label}"
            first = f.line
        elif name is not None and self.path is not None and len(self._sourcing) < _MAX_DEPTH:
            from lora_audit.evidence._script import read_script
            from lora_audit.evidence.invocation import locate_file, relative_label

            target = locate_file(name, self.path.parent)
            if target is not None and _inside(target, self.path.parent):
                label = relative_label(target, self.path, self.label)
                if label in self._sourcing:
                    return
                try:
                    text = read_script(target, label)
                except EvidenceError as e:
                    self._note(notes, f"sources {shown}, which cannot be read ({e.message})", w.line)
                    text = None
                first = 1
        if text is None:
            if shown not in self.sourced:
                self.sourced.append(shown)
            return
        saved_label = self.label
        self._sourcing.append(label)
        self.label = label
        try:
            for node in Parser(Lexer(text, Lines(text, first), label).iter_items()).iter_parse():
                if self._repeating:
                    self._repeated += 1
                self._node(node)
        finally:
            self.label = saved_label
            self._sourcing.pop()

    def _heredoc_file(self, head: str, words: list[Word], redirs: list[Redir], notes: list[Note]) -> None:
        doc = next(r.heredoc for r in redirs if r.heredoc)
        assert doc is not None
        targets = [r for r in redirs if r.op in (">", ">>", ">|", "&>") and r.target is not None and r.fd in ("",
                                                                                                              "1")]
        names = [self._string(r.target) for r in targets if r.target is not None]
        append = any(r.op == ">>" for r in targets)
        if head == "tee":
            file_words = [w for w in words[1:] if not (w.plain() or "").startswith("-")]
            append = append or any(w.plain() in ("-a", "--append") for w in words[1:])
            names += [self._string(w) for w in file_words]
        if doc.expand:
            lex = Lexer(doc.body, Lines(doc.body, doc.line), self.label)
            pieces = self._expand(lex.heredoc().parts, notes)
            text = "".join(t for t, _, f in pieces if not f & BREAK)
            runtime = any(f & RT for _, _, f in pieces)
        else:
            text, runtime = doc.body, False
        for name in names:
            if name is None:
                self._note(notes, "a heredoc is written to a file whose name is only known at run time", doc.line)
                continue
            self._created = None
            if append and name in self.files:
                old = self.files[name]
                self.files[name] = CreatedFile(old.text + text, old.label, old.line, old.runtime or runtime)
            else:
                self.files[name] = CreatedFile(text, self.label, doc.line, runtime)

    def _call(self, name: str, words: list[Word], notes: list[Note]) -> bool | None:
        if self._depth >= _MAX_DEPTH or self._repeated >= _MAX_REPEATED:
            return None
        self.called.add(name)
        args = [t for w in words[1:] for t in self._fields(w, notes)]
        saved = self._positional
        self._positional = args
        self._depth += 1
        self._repeating += 1
        try:
            return self._block(self.funcs[name])
        finally:
            self._depth -= 1
            self._repeating -= 1
            self._positional = saved


_NOT_BUILTIN = object()


def _assigns(parts: list[Part]) -> bool:
    """Whether expanding these parts assigns a variable (``${X:=v}``, ``${X=v}``, nested in a default as well)."""
    for p in parts:
        if p.kind == "var" and (p.op in (":=", "=") or (p.arg and _assigns(p.arg))):
            return True
    return False


def _neg(v: bool | None) -> bool | None:
    return None if v is None else not v


def _append(old: BVal | None, value: BVal, name: str, label: str) -> BVal:
    """``NAME+=``: in place when no branch snapshot holds the old value (linear for long runs of appends); a value
    grown past ARG_MAX is dropped for a runtime mark (no command could be started with it: bounded memory)."""
    if old is None:
        return value
    if old.capped:
        return old
    if old.frozen:  # a snapshot taken before a branch still needs the old value: copy it once
        old = BVal(items=[list(item) for item in old.items], line=old.line, array=old.array, notes=list(old.notes),
                   size=old.size)
    size = _size(old) + _size(value)
    if value.array or old.array:
        old.items.extend(value.items)
        old.array = True
    elif old.items:
        old.items[0].extend(value.items[0] if value.items else [])
        if len(old.items[0]) > _MAX_PIECES:
            old.items[0] = _compact(old.items[0])
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


def _size(v: BVal) -> int:
    if v.size < 0:
        v.size = sum(len(t) for item in v.items for t, _, _ in item) + len(v.items)
    return v.size


def _compact(pieces: list[Piece]) -> list[Piece]:
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


def _freeze(state: dict[str, BVal]) -> None:
    for v in state.values():
        v.frozen = True
        for cv, _ in v.choices or ():
            if cv is not None:
                cv.frozen = True


def _label(text: str) -> str:
    return text if len(text) <= _MAX_LABEL else text[:_MAX_LABEL - 3] + "..."


def _merge(results: list[tuple[dict[str, BVal], str]], degrade: bool = False) -> dict[str, BVal]:
    """The variables after branches: the same where every branch agrees, conditional where they differ (past
    _MAX_FORKS undecidable branches in one script: simply unknown, so a script of thousands stays linear)."""
    first = results[0][0]
    if len(results) == 1:
        return first
    merged: dict[str, BVal] = {}
    names = dict.fromkeys(k for state, _ in results for k in state)
    for name in names:
        values = [(state.get(name), when) for state, when in results]
        v0 = values[0][0]
        if all(v is v0 for v, _ in values):
            if v0 is not None:
                merged[name] = v0
            continue
        if degrade:
            line = next((v.line for v, _ in values if v is not None), 0)
            merged[name] = BVal(items=[[(f"${{{name}}}", line, RT)]], line=line, notes=[Note(
                message=f"${name} depends on more undecidable branches than are followed: unknown here")])
            continue
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
        if len(choices) == 1 and choices[0][0] is not None:
            merged[name] = choices[0][0]  # type: ignore[assignment]
        elif len(choices) == 1:
            continue
        else:
            line = next((v.line for v, _ in choices if v is not None), 0)
            merged[name] = BVal(items=[], line=line, choices=choices)
    return merged


def _fields(pieces: list[Piece], line: int, keep_empty: bool) -> list[Token]:
    """Split expanded text into words: on blanks from unquoted expansions and on array element boundaries."""
    out: list[Token] = []
    cur: list[str] = []
    cur_line = 0
    cur_rt = False
    started = False

    def flush() -> None:
        nonlocal cur, started, cur_rt
        if started:
            out.append(Token("".join(cur), cur_line, cur_rt))
        cur, started, cur_rt = [], False, False

    def add(text: str, ln: int, rt: bool) -> None:
        nonlocal started, cur_line, cur_rt
        if not started:
            cur_line, started = ln, True
        cur.append(text)
        cur_rt = cur_rt or rt

    for text, ln, fl in pieces:
        if fl & BREAK:
            flush()
        elif fl & SPLIT:
            pos = counted = 0  # newlines counted up to `counted` (incrementally: a long value stays linear)
            for m in _IFS.finditer(text):
                if m.start() > pos:
                    ln += text.count("\n", counted, pos)
                    counted = pos
                    add(text[pos:m.start()], ln, False)
                flush()
                pos = m.end()
            if pos < len(text):
                ln += text.count("\n", counted, pos)
                add(text[pos:], ln, False)
        elif text or fl & RT:
            add(text, ln, bool(fl & RT))
    flush()
    if not out and keep_empty:
        out.append(Token("", line))
    return out


def _joined(pieces: list[Piece], line: int) -> Token:
    kept = [p for p in pieces if not p[2] & BREAK]
    return Token("".join(t for t, _, _ in kept), kept[0][1] if kept else line, any(f & RT for _, _, f in kept))


def _word_text(w: Word) -> str:
    """The word about as written (for describing a condition)."""
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


def _inside(target: Path, folder: Path) -> bool:
    try:
        target.resolve().relative_to(folder.resolve())
        return True
    except (ValueError, OSError):
        return False
