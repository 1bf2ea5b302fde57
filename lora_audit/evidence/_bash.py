"""bash/sh scripts → commands of Tokens, as bash would run them.

Three steps, as in bash: the lexer (``_bash_lexer``) reads words keeping ``$VAR``/``${VAR:-x}``/``$(...)`` as parts;
the parser (``_bash_parse``) groups them into commands, ``&&``/``||`` lists, ``if``/``case``/loops and functions;
this executor walks them in order, keeping the variables the script assigns (``VAR=``, ``export``, arrays, ``+=``),
taking the branch bash takes when the condition is known from the script (``_bash_cond``), and expanding each
command's words with the values known at that point. Trivial top-level lines (assignments, plain commands, one-line
``if``) are split into the same nodes by ``_bash_fast`` without the lexer and parser, and run here all the same.

Only variables set in the script are known: the real environment is never read. What only the machine or the
moment the script ran could tell (``$(...)``, an environment variable, ``$1``, a file test) is kept as written and
marked *runtime*. When a condition cannot be decided, each branch is run on its own copy of the variables and the
copies are merged: a variable the branches leave different is *conditional* (its possible values, each with the
branch it comes from), and a command using it is expanded once per combination (``Command.variants``).
"""

from __future__ import annotations

import contextlib
import gc
import re
from collections.abc import Callable
from fnmatch import fnmatchcase
from functools import lru_cache, partial
from itertools import product
from typing import Any

from lora_audit.errors import EvidenceError
from lora_audit.evidence import _bash_fast
from lora_audit.evidence._bash_expand import (
    _MAX_DEPTH,
    _assigns,
    _case_desc,
    _case_none_desc,
    _describe,
    _if_desc,
    _loop_desc,
)
from lora_audit.evidence._bash_files import ScriptFiles
from lora_audit.evidence._bash_lexer import Lexer
from lora_audit.evidence._bash_parse import AndOr, Case, FuncDef, Group, If, Loop, Node, Parser, Pipeline, Simple
from lora_audit.evidence._bash_values import RT, BVal, Desc, desc_text, freeze, joined, merge
from lora_audit.evidence._bash_words import Word
from lora_audit.evidence._script import ARG_MAX, Command, Lines, check_launches
from lora_audit.evidence.invocation import Token, launches_training
from lora_audit.evidence.invocation import may_launch as _may_launch_name
from lora_audit.model import Note

_DECLARE = {"export", "declare", "typeset", "local", "readonly"}
# builtins that change nothing the reader keeps (their status: true)
_NOOPS = frozenset({"cd", "echo", "printf", "mkdir", "set", "shift", "return", "break", "continue", "trap", "wait",
                    "pushd", "popd", "sleep", "shopt", "umask", "ulimit", "alias"})
_QUERY = {"command", "which", "type", "hash", "grep", "egrep", "fgrep", "pgrep", "compgen"}  # status unknown
_MAX_VARIANTS = 16  # combinations of conditional values expanded for one command
# commands run again by loops and function calls, in all: past it a loop runs its body once as if it could not tell
# how often, and a function call runs nothing (nested loops of 100 values would otherwise run 100**depth times)
_MAX_REPEATED = 50_000
_MAX_FORKS = 256  # undecidable branches followed with their candidate values; past that, values are unknown


class _Exit(Exception):
    """``exit``: the script stops here."""


class BashTokenizer(ScriptFiles):
    """Runs a bash script's assignments and control flow in order and yields its other commands, expanded."""

    # -- entry ----------------------------------------------------------------------------------------------------
    def commands(self, text: str, first_line: int = 1) -> list[Command]:
        """Every simple command the script runs, in order (the assignments and control flow already applied)."""
        enabled = gc.isenabled()
        gc.disable()  # millions of small objects, none cyclic: the collector's passes would make parsing quadratic
        try:
            lexer = Lexer(text, Lines(text, first_line), self.label)
            fast = _bash_fast.runner(lexer, self._node, self._simple) if _bash_fast.FAST else None
            nodes = Parser(lexer.lines(), fast).iter_parse()
            try:
                for node in nodes:  # each top-level command runs as soon as it is read
                    self._node(node)
            except _Exit:
                pass
            for name, body in list(self.funcs.items()):
                if name not in self.called:  # a function never called: its commands are still evidence
                    self.called.add(name)
                    self._conds.append(f"function {name} is never called in the script")
                    with contextlib.suppress(_Exit):
                        self._block(body)
                    self._conds.pop()
        except RecursionError:  # "((((" thousands deep, from any caller (scripts, notes, notebooks): one line
            raise EvidenceError("brackets or substitutions nested too deeply to read", self.label, first_line) from None
        finally:
            if enabled:
                gc.enable()
        return self.out

    # -- walking the nodes ----------------------------------------------------------------------------------------
    def _block(self, nodes: list[Node]) -> bool | None:
        """Runs the nodes in order; the status of the last (what ``_node`` does for each, without the call)."""
        if self._repeating:
            self._repeated += len(nodes)
        status: bool | None = True
        for n in nodes:
            status = self._simple(n) if n.__class__ is Simple else _RUN[n.__class__](self, n)
        return status

    def _node(self, n: Node) -> bool | None:
        """Runs one node: a simple command (most nodes) directly, the others by the method for their class
        (``_RUN``: one dict look-up instead of a chain of isinstance tests; nodes are the parser's classes
        themselves, never subclasses of them)."""
        if n.__class__ is Simple:
            return self._simple(n)
        return _RUN[n.__class__](self, n)

    def _pipeline(self, n: Pipeline) -> bool | None:
        status: bool | None = True
        for c in n.cmds:
            status = self._node(c)
        return _neg(status) if n.negate else status

    def _group(self, n: Group) -> bool | None:
        if n.subshell:
            saved = dict(self.vars)
            freeze(saved)
            try:
                return self._block(n.body)
            except _Exit:
                return None  # `( ...; exit )` leaves the subshell only
            finally:
                self.vars = saved
        return self._block(n.body)

    def _funcdef(self, n: FuncDef) -> bool | None:
        self.funcs[n.name] = n.body
        return True

    def _run_if(self, n: If) -> bool | None:
        return self._if(n.clauses, n.orelse)

    def _and_or(self, n: AndOr) -> bool | None:
        status = self._node(n.first)
        for op, node in n.rest:
            runs = status if op == "&&" else _neg(status)
            if runs is True:
                status = self._node(node)
            elif runs is None:
                what = f"{'the command before' if op == '&&' else 'the command before fails'} ({_describe(n.first)})"
                self._branches([(f"{op} after {what}", partial(self._node, node))], exhaustive=False,
                               otherwise=f"{what} decides otherwise")
                status = None
        return status

    def _if(self, clauses: list, orelse: list[Node] | None) -> bool | None:
        for k, (cond, body, line) in enumerate(clauses):
            status = self._block(cond)
            if status is True:
                return self._block(body)
            if status is None:
                rest = clauses[k + 1:]  # the descriptions are written only when one is kept (most never are)
                self._branches([(partial(_if_desc, cond, line, "true"), partial(self._block, body)),
                                (partial(_if_desc, cond, line, "false"), partial(self._if, rest, orelse))],
                               exhaustive=True)
                return None
        return self._block(orelse) if orelse is not None else True

    def _case(self, n: Case) -> bool | None:
        subject = self._string(n.subject)
        arms = []
        for patterns, body in n.arms:
            pats = [self._pattern(p) for p in patterns]
            if subject is not None and all(p is not None for p in pats):
                if any(fnmatchcase(subject, p) for p in pats if p is not None):
                    return self._block(body)
                continue
            arms.append((pats, body))
        if not arms:
            return True
        self._branches([(partial(_case_desc, n, pats), partial(self._block, body)) for pats, body in arms],
                       exhaustive=any("*" in pats for pats, _ in arms),
                       otherwise=partial(_case_none_desc, n, [pats for pats, _ in arms]))
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
            self._loop_branch(n)
            return None
        status = self._block(n.cond)
        if n.kind == "until":
            status = _neg(status)
        if status is False:
            return True
        if status is True:  # `while true; do ...; break; done`: the body once
            self._block(n.body)
            return True
        self._loop_branch(n)
        return None

    def _loop_branch(self, n: Loop) -> None:
        """A loop whose number of runs is unknown: its body once, as a branch that may not be taken."""
        self._branches([(partial(_loop_desc, n, "runs"), partial(self._block, n.body))], exhaustive=False,
                       otherwise=partial(_loop_desc, n, "does not run"))

    def _branches(self, branches: list[tuple[Desc, Callable[[], object]]], exhaustive: bool,
                  otherwise: Desc = "") -> None:
        """Run each branch on its own copy of the variables, then merge the copies (conditional values). A branch's
        description may be a function writing it: called only when a note or a conditional value keeps it. When
        the branches may all be skipped (not exhaustive), the variables as they were are one more state to merge
        (``base`` itself: merge changes only the first state)."""
        base = self.vars
        freeze(base)
        self._forks += 1
        results: list[tuple[dict[str, BVal], Desc]] = []
        conds = self._conds
        for desc, run in branches:
            self.vars = dict(base)
            conds.append(desc)
            try:
                run()
                results.append((self.vars, desc))
            except _Exit:
                pass  # the script ends in this branch: what it set there never reaches the commands after
            finally:
                conds.pop()
        if not exhaustive:
            results.append((base, otherwise))
        if not results:
            self.vars = base
            raise _Exit
        self.vars = merge(results, self._unknowns if self._forks > _MAX_FORKS else None)

    # -- one simple command ---------------------------------------------------------------------------------------
    def _simple(self, n: Simple) -> bool | None:
        words = n.words
        if not words:
            return True
        k = 0
        while k < len(words) and words[k].assign:
            k += 1
        if k == len(words):
            for w in words:
                self._assign(w)
            return True
        head = words[k].plain()
        if k == 0 and head is not None:
            handled = self._builtin(head, words, n)
            if handled is not _NOT_BUILTIN:
                return handled  # type: ignore[return-value]
        if self._may_launch(words, k):
            self._emit(words, n, _notes(n))
        return None if head in _QUERY else True

    def _may_launch(self, words: list[Word], k: int) -> bool:
        """False when the command certainly launches no training script: its words are then not expanded (nothing
        of it is kept), unless expanding them assigns (``${X:=v}``)."""
        for w in words:
            if w.text is None:
                for p in w.parts:  # only a part with an operator can assign (what _assigns looks at)
                    if (p.op is not None or p.arg) and _assigns([p]):
                        return True
        head = words[k]
        if head.text is not None:
            return may_launch(head.text)
        self._used, self._picks = {}, {}
        first = self._first_field(head)
        if self._used or first is None:  # a conditional value (variants to expand): the whole command is read
            return True
        return may_launch(first)

    def _builtin(self, head: str, words: list[Word], n: Simple) -> object:
        """What a builtin (or a function of the script) does, or _NOT_BUILTIN. The notes of the command's words are
        gathered only by the builtins that expand words into them. (The names tested are all different: the order
        of the tests is only that of their frequency.)"""
        if head in ("[", "test", "[["):
            return self._test(head, words[1:])
        if head in _DECLARE:
            for w in (w for w in words[1:] if w.assign):
                self._assign(w)
            return True
        if head in _NOOPS:
            return True
        if head == "read":
            self._read(words)
            return True
        if head == "unset":
            for w in words[1:]:
                self.vars.pop(w.plain() or "", None)
            return True
        if head in ("source", ".") and len(words) > 1:
            self._source(words[1], _notes(n))
            return True
        if head in (":", "true"):
            notes = _notes(n)
            for w in words[1:]:
                self._fields(w, notes)  # `: ${DIM:=32}` assigns through its expansion
            return True
        if head == "false":
            return False
        if head == "exit":
            raise _Exit
        if head in ("cat", "tee") and any(r.heredoc for r in n.redirs):
            self._heredoc_file(head, words, n.redirs, _notes(n))
            return True
        if head in self.funcs:
            return self._call(head, words, _notes(n))
        return _NOT_BUILTIN

    def _read(self, words: list[Word]) -> None:
        for w in words[1:]:
            name = w.plain()
            if name and re.fullmatch(r"[A-Za-z_]\w*", name):  # typed at a prompt: unknown here
                self.vars[name] = BVal(items=[[(f"${name}", w.line, RT)]], line=w.line)

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
            conds = "; ".join(map(desc_text, self._conds))
            cmd.notes.append(Note(message=f"this command runs only {conds}: the script cannot tell",
                                  source=f"{self.label}:{n.line}"))
        if not launches_training(cmd.words):
            return  # only training commands are wanted (shell.training_evidence): the others are not kept
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
                out.append(joined(pieces, w.line))
            else:
                out.extend(self._fields(w, cmd.notes, cmd))
        return out

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
# what _node runs for each class of node
_RUN: dict[type, Callable[[BashTokenizer, Any], bool | None]] = {
    Simple: BashTokenizer._simple, AndOr: BashTokenizer._and_or, Pipeline: BashTokenizer._pipeline,
    If: BashTokenizer._run_if, Case: BashTokenizer._case, Loop: BashTokenizer._loop, Group: BashTokenizer._group,
    FuncDef: BashTokenizer._funcdef}


def _notes(n: Simple) -> list[Note]:
    """The notes of a command and of its words (a new list: a command kept adds its own)."""
    notes = list(n.notes)
    for w in n.words:
        if w.notes:
            notes.extend(w.notes)
    return notes


# a pure test of one string, met with the same few command names again and again
may_launch = lru_cache(maxsize=4096)(_may_launch_name)


def _neg(v: bool | None) -> bool | None:
    return None if v is None else not v
