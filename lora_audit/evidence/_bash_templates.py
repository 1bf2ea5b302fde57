"""Templates of whole top-level commands met again, for ``_bash_fast``'s runner: generated scripts repeat a block
of lines (a ``for`` loop holding ``if``/``case``/``while``) thousands of times.

A top-level command the general lexer and parser read from the start of a line in a clean state (nothing pending
in the parser, no note, no heredoc body to read, not inside ``[[``), that ends exactly at the end of a line without
either of them reading further, is a function of its text alone: the same text read at another line gives the same
nodes with every line number moved by the same amount (the lexer's line of a position is the count of newlines
before it). Its span of text is remembered (``Spans.read``); met a second time, a copy of its nodes becomes the
template, and from then on the text at a top-level line start that begins with the span (``Spans.match``) is not
read at all: the executor gets a fresh copy of the template with every line number shifted (``shifted``). A parse
that gave a note (its text and source name lines) never becomes a template. Memory is bounded: spans of at most
_SPAN_CHARS characters and _SPAN_LINES lines, at most _TEMPLATES templates and _ONCE_CHARS characters of spans met
once and _TEMPLATE_CHARS of templates' spans (each forgotten all at once when full; the nodes of a template take
about 50 bytes a character of its span at most), at most _PER_LINE templates starting with the same line.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lora_audit.evidence._bash_lexer import Heredoc, Redir
from lora_audit.evidence._bash_parse import AndOr, Case, FuncDef, Group, If, Loop, Node, Pipeline, Simple
from lora_audit.evidence._bash_words import _NO_NOTES, Part, Word

_SPAN_CHARS, _SPAN_LINES = 16384, 200
_TEMPLATES, _TEMPLATE_CHARS, _PER_LINE = 256, 1 << 18, 8
_ONCE_CHARS = 1 << 20
_MAX_DEPTH = 64  # nodes nested deeper are not templated (the copy is recursive)


class _Template:
    __slots__ = ("span", "first", "lines", "node")

    def __init__(self, span: str, first: int, node: Node):
        self.span, self.first, self.node = span, first, node
        self.lines = span.count("\n")


class Spans:
    """The spans of top-level commands read by the general path, and the templates of those met twice."""

    def __init__(self) -> None:
        self._by_first: dict[str, list[_Template]] = {}  # a template's first line (no newline) -> templates
        self._count = self._chars = 0
        self._once: dict[str, bool] = {}  # span met once -> False; span that cannot be a template -> True
        self._once_chars = 0

    @staticmethod
    def fits(start: int, end: int) -> bool:
        return end - start <= _SPAN_CHARS

    def match(self, line: str, text: str, pos: int, end: int, line_no: int) -> tuple[Node, int, int] | None:
        """For the text at the top-level line start ``pos`` (line ``line_no``, whose text is ``line``): a fresh copy
        of the template it begins with, moved to ``line_no``, with the span's length and its count of lines."""
        got = self._by_first.get(line)
        if got is None:
            return None
        for t in got:
            if text.startswith(t.span, pos, end):
                return shifted(t.node, line_no - t.first), len(t.span), t.lines
        return None

    def read(self, span: str, first: int, node: Node) -> None:
        """The general path read ``node`` from ``span`` (starting at line ``first``, in the clean state)."""
        if span.count("\n") > _SPAN_LINES:
            return
        refused = self._once.get(span)
        if refused is None:  # met once: only remembered
            if self._once_chars + len(span) > _ONCE_CHARS:
                self._once.clear()
                self._once_chars = 0
            self._once[span] = False
            self._once_chars += len(span)
            return
        if refused:
            return
        if not _clean(node, 0):  # a note names lines; nesting too deep for the recursive copy
            self._once[span] = True
            return
        del self._once[span]
        self._once_chars -= len(span)
        if self._count >= _TEMPLATES or self._chars + len(span) > _TEMPLATE_CHARS:
            self._by_first.clear()
            self._count = self._chars = 0
        same = self._by_first.setdefault(span[:span.index("\n")], [])
        if len(same) >= _PER_LINE:
            old = same.pop(0)
            self._count -= 1
            self._chars -= len(old.span)
        same.append(_Template(span, first, shifted(node, 0)))  # its own copy: the node read is handed on
        self._count += 1
        self._chars += len(span)


def _clean(n: Any, depth: int) -> bool:
    """Whether a node (word, part, redirection) holds no note and is nested at most _MAX_DEPTH deep."""
    if depth > _MAX_DEPTH:
        return False
    depth += 1
    if isinstance(n, list):
        return all(_clean(x, depth) for x in n)
    if isinstance(n, Word):
        return not n.notes and (n._parts is None or _clean(n._parts, depth)) and (
            n.array is None or _clean(n.array, depth))
    if isinstance(n, Part):
        return n.arg is None or _clean(n.arg, depth)
    if isinstance(n, Redir):
        return n.target is None or _clean(n.target, depth)
    if isinstance(n, Simple):
        return not n.notes and not n.too_long and _clean(n.words, depth) and _clean(n.redirs, depth)
    if isinstance(n, AndOr):
        return _clean(n.first, depth) and all(_clean(x, depth) for _, x in n.rest)
    if isinstance(n, Pipeline):
        return _clean(n.cmds, depth)
    if isinstance(n, If):
        return all(_clean(c, depth) and _clean(b, depth) for c, b, _ in n.clauses) and (
            n.orelse is None or _clean(n.orelse, depth))
    if isinstance(n, Case):
        return _clean(n.subject, depth) and all(_clean(p, depth) and _clean(b, depth) for p, b in n.arms)
    if isinstance(n, Loop):
        return (n.words is None or _clean(n.words, depth)) and _clean(n.cond, depth) and _clean(n.body, depth)
    if isinstance(n, (Group, FuncDef)):
        return _clean(n.body, depth)
    return False


# -- the copy, every line number moved by d ---------------------------------------------------------------------------
# One function per class, found by the class (no isinstance chain): the copy of a template is most of what a
# repeated block costs.

def shifted(n: Node, d: int) -> Node:
    """A fresh copy of a node (no object shared but strings and tuples of strings) with every line moved by d."""
    return _NODE[n.__class__](n, d)


def _nodes(ns: list[Node], d: int) -> list[Node]:
    node = _NODE
    return [node[n.__class__](n, d) for n in ns]


def _words(ws: list[Word], d: int) -> list[Word]:
    return [Word(None, w.line + d, False, None, None, _NO_NOTES, w.text)  # type: ignore[arg-type]
            if w.text is not None else _word(w, d) for w in ws]


def _word(w: Word, d: int) -> Word:
    text = w.text
    if text is not None:
        return Word(None, w.line + d, False, None, None, _NO_NOTES, text)  # type: ignore[arg-type]
    array, parts = w.array, w._parts
    return Word(None if parts is None else [_part(p, d) for p in parts], w.line + d, w.quoted, w.assign,
                None if array is None else _words(array, d))


def _part(p: Part, d: int) -> Part:
    arg, segs = p.arg, p.segs
    return Part(p.kind, p.quoted, p.line + d, [(t, ln + d) for t, ln in segs] if segs else [], p.raw, p.name,
                p.index, p.op, None if arg is None else [_part(a, d) for a in arg])


def _redir(r: Redir, d: int) -> Redir:
    doc, target = r.heredoc, r.target
    return Redir(r.op, r.fd, None if target is None else _word(target, d), r.line + d,
                 None if doc is None else Heredoc(doc.body, doc.line + d, doc.expand, doc.delimiter))


def _simple(n: Simple, d: int) -> Simple:
    redirs = n.redirs
    return Simple(_words(n.words, d), [_redir(r, d) for r in redirs] if redirs else [], [], n.line + d,
                  n.too_long)


def _and_or(n: AndOr, d: int) -> AndOr:
    node = _NODE
    return AndOr(node[n.first.__class__](n.first, d), [(op, node[x.__class__](x, d)) for op, x in n.rest])


def _pipeline(n: Pipeline, d: int) -> Pipeline:
    return Pipeline(_nodes(n.cmds, d), n.negate)


def _if(n: If, d: int) -> If:
    orelse = n.orelse
    return If([(_nodes(c, d), _nodes(b, d), ln + d) for c, b, ln in n.clauses],
              None if orelse is None else _nodes(orelse, d))


def _case(n: Case, d: int) -> Case:
    return Case(_word(n.subject, d), [(_words(p, d), _nodes(b, d)) for p, b in n.arms], n.line + d)


def _loop(n: Loop, d: int) -> Loop:
    words = n.words
    return Loop(n.kind, n.var, None if words is None else _words(words, d), _nodes(n.cond, d), _nodes(n.body, d),
                n.line + d)


def _group(n: Group, d: int) -> Group:
    return Group(_nodes(n.body, d), n.subshell)


def _funcdef(n: FuncDef, d: int) -> FuncDef:
    return FuncDef(n.name, _nodes(n.body, d), n.line + d)


_NODE: dict[type, Callable[[Any, int], Node]] = {
    Simple: _simple, AndOr: _and_or, Pipeline: _pipeline, If: _if, Case: _case, Loop: _loop, Group: _group,
    FuncDef: _funcdef}
