"""bash's grammar over the lexer's items: simple commands, ``&&``/``||`` lists, pipelines, ``if``/``case``/loops,
``{ }``/``( )`` groups and function definitions, as nodes for the executor (``_bash``) to walk.

Reserved words count only where bash reads them: as the first word of a command. A script bash would refuse
(``if`` without ``fi``) is still read as far as it goes: the open construct ends at the end of the file.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

from lora_audit.evidence._bash_lexer import Item, Op, Redir
from lora_audit.evidence._bash_words import Word
from lora_audit.evidence._script import ARG_MAX
from lora_audit.model import Note


@dataclass(slots=True)
class Simple:
    words: list[Word]
    redirs: list[Redir]
    notes: list[Note]
    line: int
    too_long: bool = False  # written over more than ARG_MAX characters: the words past it are not kept


@dataclass(slots=True)
class AndOr:
    first: Node
    rest: list[tuple[str, Node]]


@dataclass(slots=True)
class Pipeline:
    cmds: list[Node]
    negate: bool = False


@dataclass(slots=True)
class If:
    clauses: list[tuple[list[Node], list[Node], int]]  # (condition, body, line of if/elif)
    orelse: list[Node] | None


@dataclass(slots=True)
class Case:
    subject: Word
    arms: list[tuple[list[Word], list[Node]]]
    line: int


@dataclass(slots=True)
class Loop:
    kind: str  # for | while | until | select
    var: str | None
    words: list[Word] | None  # for NAME in WORDS (None: "$@")
    cond: list[Node]
    body: list[Node]
    line: int


@dataclass(slots=True)
class Group:
    body: list[Node]
    subshell: bool = False


@dataclass(slots=True)
class FuncDef:
    name: str
    body: list[Node]
    line: int


Node = Simple | AndOr | Pipeline | If | Case | Loop | Group | FuncDef

_COMPOUND = {"if", "case", "for", "select", "while", "until", "{", "function", "!"}
_CLOSERS = {"then", "elif", "else", "fi", "do", "done", "esac", "}"}
_SEPARATORS = {";", "\n", "&"}
_CASE_ENDS = {";;", ";&", ";;&"}


class LineStarts(Protocol):
    """The fast path (``_bash_fast.Runner``): called at the start of a top-level line with nothing pending (it runs
    the lines it can read there), and told each top-level command read after that."""

    def __call__(self) -> None: ...

    def command_read(self, node: Node | None, parser: Parser) -> None: ...


class Parser:
    """Reads items from an iterator, keeping only those of the construct being read (bounded memory)."""

    def __init__(self, lines: Iterable[list[Item]], fast: LineStarts | None = None):
        self._source: Iterator[list[Item]] = iter(lines)  # the lexer's items, a line at a time
        self._fast = fast  # called at the start of a top-level line (_bash_fast): runs the trivial lines there
        self.items: list[Item] = []
        self.i = 0
        self.pending: list[Note] = []

    # -- helpers --------------------------------------------------------------------------------------------------
    def _has(self, k: int) -> bool:
        """Whether item i+k exists, reading on as needed."""
        items = self.items
        while len(items) <= self.i + k:
            nxt = next(self._source, None)
            if nxt is None:
                return False
            items.extend(nxt)
        return True

    def _peek(self) -> Item | None:
        items, i = self.items, self.i
        if i < len(items):  # the common case, inline: the item is read and is no note
            it = items[i]
            if it.__class__ is not Note:
                return it
        while self._has(0) and isinstance(self.items[self.i], Note):
            self.pending.append(self.items[self.i])  # type: ignore[arg-type]
            self.i += 1
        return self.items[self.i] if self._has(0) else None

    def _keyword(self) -> str | None:
        it = self._peek()
        return it.plain() if isinstance(it, Word) else None

    def _skip_newlines(self) -> None:
        while True:
            it = self._peek()
            if isinstance(it, Op) and it.text in ("\n", ";"):
                self.i += 1
            else:
                return

    def _expect_word(self, word: str) -> None:
        self._skip_newlines()
        if self._keyword() == word:
            self.i += 1

    # -- grammar --------------------------------------------------------------------------------------------------
    def parse(self) -> list[Node]:
        return list(self.iter_parse())

    def iter_parse(self) -> Iterator[Node]:
        """Top-level commands one at a time, each as soon as it is read."""
        while True:
            if self._fast is not None and self._at_line_start():
                self._fast()
            self._skip_newlines()
            del self.items[:self.i]  # what is read is done with
            self.i = 0
            it = self._peek()
            if it is None:
                return
            if (isinstance(it, Op) and it.text not in ("(",)) or self._keyword() in _CLOSERS:
                self.i += 1  # a stray closer (fi, done, `)`) or operator at top level: skip it, read on
                continue
            node = self.and_or()
            if self._fast is not None:
                self._fast.command_read(node, self)
            if node is not None:
                yield node

    def _at_line_start(self) -> bool:
        """Whether the lexer stands at the start of a line with nothing of the script pending here: all read is
        done with but separators, the last item read is a newline (the lexer hands on a line ending there)."""
        items = self.items
        if self.pending:
            return False
        if not items:
            return True
        last = items[-1]
        if not isinstance(last, Op) or last.text != "\n":
            return False
        return all(isinstance(it, Op) and it.text in ("\n", ";") for it in items[self.i:])

    def list_until(self, closers: set[str], case_arm: bool = False) -> list[Node]:
        out: list[Node] = []
        while True:
            self._skip_newlines()
            it = self._peek()
            if it is None:
                return out
            if isinstance(it, Op):
                if it.text == ")" or (case_arm and it.text in _CASE_ENDS):
                    return out
                if it.text in _SEPARATORS:
                    self.i += 1
                    continue
                if it.text != "(":  # a stray && || | : skip
                    self.i += 1
                    continue
            if self._keyword() in _CLOSERS:  # ours, or a mismatched one that ends the construct as well
                return out
            node = self.and_or()
            if node is not None:
                out.append(node)

    def and_or(self) -> Node | None:
        first = self.pipeline()
        if first is None:
            return None
        rest: list[tuple[str, Node]] = []
        while True:
            it = self._peek()
            if isinstance(it, Op) and it.text in ("&&", "||"):
                self.i += 1
                self._skip_blank_lines()
                nxt = self.pipeline()
                if nxt is None:
                    break
                rest.append((it.text, nxt))
            else:
                break
        return AndOr(first, rest) if rest else first

    def _skip_blank_lines(self) -> None:
        while isinstance(self._peek(), Op) and self._peek().text == "\n":  # type: ignore[union-attr]
            self.i += 1

    def pipeline(self) -> Node | None:
        negate = False
        if self._keyword() == "!":
            negate = True
            self.i += 1
        cmds = []
        cmd = self.command()
        if cmd is None:
            return None
        cmds.append(cmd)
        while True:
            it = self._peek()
            if isinstance(it, Op) and it.text in ("|", "|&"):
                self.i += 1
                self._skip_blank_lines()
                nxt = self.command()
                if nxt is None:
                    break
                cmds.append(nxt)
            else:
                break
        if len(cmds) == 1 and not negate:
            return cmds[0]
        return Pipeline(cmds, negate)

    def command(self) -> Node | None:
        it = self._peek()
        # the common case: a bare word that opens no compound command (nor NAME() ...)
        if isinstance(it, Word) and it.text is not None and it.text not in _COMPOUND and not (
                self._has(2) and isinstance(self.items[self.i + 1], Op)):
            return self.simple()
        if isinstance(it, Op) and it.text == "(":
            self.i += 1
            body = self.list_until(set())
            if isinstance(self._peek(), Op) and self._peek().text == ")":  # type: ignore[union-attr]
                self.i += 1
            return Group(body, subshell=True)
        kw = self._keyword()
        line = it.line if isinstance(it, (Word, Op)) else 0
        if kw == "if":
            return self._if(line)
        if kw == "case":
            return self._case(line)
        if kw in ("for", "select"):
            return self._for(kw, line)
        if kw in ("while", "until"):
            self.i += 1
            cond = self.list_until({"do"})
            self._expect_word("do")
            body = self.list_until({"done"})
            self._expect_word("done")
            return Loop(kw, None, None, cond, body, line)
        if kw == "{":
            self.i += 1
            body = self.list_until({"}"})
            self._expect_word("}")
            return Group(body)
        if kw == "function":
            self.i += 1
            name = self._keyword() or "?"
            self.i += 1
            if isinstance(self._peek(), Op) and self._peek().text == "(":  # type: ignore[union-attr]
                self.i += 2
            return self._func_body(name, line)
        # NAME() compound-command
        if isinstance(it, Word) and kw and self._has(2):
            a, b = self.items[self.i + 1], self.items[self.i + 2]
            if isinstance(a, Op) and a.text == "(" and isinstance(b, Op) and b.text == ")":
                self.i += 3
                return self._func_body(kw, line)
        return self.simple()

    def _func_body(self, name: str, line: int) -> FuncDef:
        self._skip_newlines()
        body = self.command()
        return FuncDef(name, [body] if body is not None else [], line)

    def simple(self) -> Simple | None:
        words: list[Word] = []
        redirs: list[Redir] = []
        line = size = 0
        while True:
            it = self._peek()
            if isinstance(it, Word):
                if words or redirs or it.plain() not in _CLOSERS:
                    size += _size(it)
                    if size <= ARG_MAX:  # past it no program can be started with the command: bounded memory
                        words.append(it)
                    line = line or it.line
                    self.i += 1
                    if self.i > 4096:  # a long command: the items read are done with (nothing indexes them)
                        del self.items[:self.i]
                        self.i = 0
                    continue
                break
            if isinstance(it, Redir):
                redirs.append(it)
                line = line or it.line
                self.i += 1
                continue
            break
        # notes (a comment inside a continuation) seen up to the end of this command belong to it
        self._peek()
        notes, self.pending = self.pending, []
        if not words and not redirs:
            if notes:
                self.pending = notes
            return None
        return Simple(words, redirs, notes, line, too_long=size > ARG_MAX)

    def _if(self, line: int) -> If:
        self.i += 1
        clauses = []
        cond = self.list_until({"then"})
        self._expect_word("then")
        body = self.list_until({"elif", "else", "fi"})
        clauses.append((cond, body, line))
        orelse = None
        while True:
            self._skip_newlines()
            kw = self._keyword()
            if kw == "elif":
                ln = self._peek().line  # type: ignore[union-attr]
                self.i += 1
                cond = self.list_until({"then"})
                self._expect_word("then")
                body = self.list_until({"elif", "else", "fi"})
                clauses.append((cond, body, ln))
            elif kw == "else":
                self.i += 1
                orelse = self.list_until({"fi"})
            else:
                if kw == "fi":
                    self.i += 1
                return If(clauses, orelse)

    def _case(self, line: int) -> Case:
        self.i += 1
        subject = self._peek()
        if not isinstance(subject, Word):
            return Case(Word([], line), [], line)
        self.i += 1
        self._expect_word("in")
        arms: list[tuple[list[Word], list[Node]]] = []
        while True:
            self._skip_newlines()
            it = self._peek()
            if it is None or self._keyword() == "esac":
                if it is not None:
                    self.i += 1
                return Case(subject, arms, line)
            if isinstance(it, Op) and it.text == "(":
                self.i += 1
            patterns: list[Word] = []
            while True:
                it = self._peek()
                if isinstance(it, Word):
                    patterns.append(it)
                    self.i += 1
                elif isinstance(it, Op) and it.text == "|":
                    self.i += 1
                elif isinstance(it, Op) and it.text == ")":
                    self.i += 1
                    break
                else:
                    return Case(subject, arms, line)  # not a case bash would accept: stop reading it
            body = self.list_until({"esac"}, case_arm=True)
            arms.append((patterns, body))
            it = self._peek()
            if isinstance(it, Op) and it.text in _CASE_ENDS:
                self.i += 1

    def _for(self, kind: str, line: int) -> Loop:
        self.i += 1
        it = self._peek()
        var = it.plain() if isinstance(it, Word) else None
        if isinstance(it, Word):
            self.i += 1
        words: list[Word] | None = None
        self._skip_blank_lines()
        if self._keyword() == "in":
            self.i += 1
            words = []
            while isinstance(self._peek(), Word):
                words.append(self._peek())  # type: ignore[arg-type]
                self.i += 1
        self._expect_word("do")
        body = self.list_until({"done"})
        self._expect_word("done")
        return Loop(kind, var, words, [], body, line)


def _size(w: Word) -> int:
    """About the characters a word stands for (as written), and one for the blank after it."""
    if w.text is not None:
        return len(w.text) + 1
    return 1 + sum(len(p.raw) + sum(len(t) for t, _ in p.segs) for p in w.parts) + sum(
        _size(e) for e in w.array or ())
