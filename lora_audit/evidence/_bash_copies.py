"""Fresh copies of a fast line's template nodes (``_bash_fast``), moved to the line where the template is met again.

The fast path's runner hands out a new copy of a line's template each time the line is met again (generated scripts
repeat a few lines thousands of times): the same tree ``split_line`` builds at that line, every line number set to
it, no mutable object shared with the template. ``_bash_templates.shifted`` (the copy whole commands met again
get) walks the template to copy it: a call per node, word and part and a test of each field, which cost a line of
the ``assigns`` bench shape more (3.5 µs) than building the copy's objects does (1.5 µs). A template copied often
(``COMPILE_AFTER`` times) gets a copier of its own instead (``copier``): one function whose body is the template's
constructor calls, written once for it (as ``dataclasses`` writes an ``__init__``), so a copy is only the
construction of its objects.

Nothing of the script is written into a copier's source: every value (texts, names, operators, a bare word's shared
empty notes) is a global of the copier's own namespace, named ``k0``, ``k1``, ...; the source holds only those
names, the node classes, the literals None/True/False, ``ln`` (the line) and calls. Writing one costs about 90 µs
(hence only for a template copied ``COMPILE_AFTER`` times: a line met fewer times is never worse off than by that
once per ``COMPILE_AFTER`` copies); its source is bounded by the fast path's longest remembered line.
"""

from __future__ import annotations

from collections.abc import Callable

from lora_audit.evidence._bash_lexer import Redir
from lora_audit.evidence._bash_parse import AndOr, If, Node, Pipeline, Simple
from lora_audit.evidence._bash_words import Part, Word

COMPILE_AFTER = 64  # copies made by walking a template before it gets a copier of its own


def copier(nodes: list[Node]) -> Callable[[int], list[Node]]:
    """A function of the line giving what ``[shifted(n, line - first) for n in nodes]`` gives (``first``: the line
    the nodes were split at), written for these nodes."""
    space: dict[str, object] = {"S": Simple, "W": Word, "P": Part, "R": Redir, "A": AndOr, "L": Pipeline, "I": If}
    count = iter(range(1 << 62))

    def k(v: object) -> str:  # a value: a literal for None/True/False, else the name of a new global holding it
        if v is None or v is True or v is False:
            return repr(v)
        name = f"k{next(count)}"
        space[name] = v
        return name

    def seq(xs: list, f: Callable[[object], str]) -> str:  # a new list of the copies
        return "[" + ", ".join(f(x) for x in xs) + "]"

    def node(n: object) -> str:
        if isinstance(n, Simple):
            return f"S({seq(n.words, word)}, {seq(n.redirs, redir)}, [], ln)"
        if isinstance(n, AndOr):
            return f"A({node(n.first)}, [{', '.join(f'({k(op)}, {node(x)})' for op, x in n.rest)}])"
        if isinstance(n, Pipeline):
            return f"L({seq(n.cmds, node)}, {k(n.negate)})"
        if isinstance(n, If):
            clauses = ", ".join(f"({seq(c, node)}, {seq(b, node)}, ln)" for c, b, _ in n.clauses)
            return f"I([{clauses}], {'None' if n.orelse is None else seq(n.orelse, node)})"
        raise TypeError(f"not a node of the fast path: {type(n).__name__}")

    def word(w: object) -> str:
        assert isinstance(w, Word)
        if w.text is not None:
            return f"W(None, ln, False, None, None, {k(w.notes)}, {k(w.text)})"
        array = "None" if w.array is None else seq(w.array, word)
        return f"W({seq(w.parts, part)}, ln, {k(w.quoted)}, {k(w.assign)}, {array})"

    def part(p: object) -> str:
        assert isinstance(p, Part)
        segs = "[" + ", ".join(f"({k(t)}, ln)" for t, _ in p.segs) + "]"
        arg = "None" if p.arg is None else seq(p.arg, part)
        return f"P({k(p.kind)}, {k(p.quoted)}, ln, {segs}, {k(p.raw)}, {k(p.name)}, {k(p.index)}, {k(p.op)}, {arg})"

    def redir(r: object) -> str:
        assert isinstance(r, Redir)
        target = "None" if r.target is None else word(r.target)
        return f"R({k(r.op)}, {k(r.fd)}, {target}, ln, {k(r.heredoc)})"

    source = f"def copy(ln):\n    return {seq(nodes, node)}\n"
    exec(compile(source, "<bash template copier>", "exec"), space)  # noqa: S102 - names and calls only (above)
    return space["copy"]  # type: ignore[return-value]
