"""A fast path for the common trivial lines of a bash script, read without the general lexer and parser.

At the top level, where the parser stands at the start of a line with nothing pending, a line that is blank, a
comment, or ``;``-separated simple commands whose words are plain text, ``'...'``, ``"..."`` and ``$NAME``
references only (no redirection, pipe, ``&&``, parenthesis, backslash, backtick, ``${``, ``$(``, reserved word or
``[[``) is split into words here, built exactly as the word reader builds them (``_bash_words.WordReader._word``),
and each command is handed to the executor's own ``_simple``: what the command does (assignments, builtins,
training commands) is decided by the same code as on the general path. Any other line, and anything not certain,
goes to the general path (``FAST = False`` turns this path off; the differential test compares the two). A whole
top-level command the general path read there (a multi-line ``for``/``if``/``case`` block, a heredoc), met again
from a line start, is not read again: its template's copy runs (``_bash_templates``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import cast

from lora_audit.evidence import _bash_copies
from lora_audit.evidence._bash_copies import copier
from lora_audit.evidence._bash_lexer import _BARE_TARGET, _REDIRECT, Lexer, Op, Redir
from lora_audit.evidence._bash_parse import AndOr, If, Node, Parser, Pipeline, Simple
from lora_audit.evidence._bash_templates import Spans, shifted
from lora_audit.evidence._bash_words import Part, Word

FAST = True  # module switch: False reads every line through the general lexer and parser

_MAX_LINE = 4096  # longer lines take the general path (a command past ARG_MAX is marked there)
# characters that make a line general: redirections, pipes, lists, groups, escapes, command substitution
_GENERAL = re.compile(r"[\\`{}]|\$\{|\$\(|\[\[|\]\]|<<|<&|&>|<>|>\|")
_OP = re.compile(r"&&|\|\||[|;]")
_SIMPLE_REDIRS = frozenset({">", ">>", ">&", "<"})
_NAME_START = "[A-Za-z_]"
# the longest word there, never given back (atomic, possessive: no backtracking, linear in the line's length)
_WORD = re.compile(rf"""(?!\#)(?>(?:[^ \t\n;&|()<>\\'"$`]++|'[^'\n]*+'
                         |"(?:[^"\\$`\n]++|\${_NAME_START}[A-Za-z0-9_]*+)*+"|\${_NAME_START}[A-Za-z0-9_]*+)++)""",
                   re.VERBOSE)
_BARE_BLANK = re.compile(r"(?!\#)([^ \t\n;&|()<>\\'\"$`]++)(?=[ \t;&|<>]|$)[ \t]*")
_WORD_BLANK = re.compile(rf"({_WORD.pattern})(?=[ \t;&|<>]|$)[ \t]*", re.VERBOSE)
_BLANK = re.compile(r"[ \t]*")
_PIECE = re.compile(r"""(?P<plain>[^ \t\n;&|()<>\\'"$`]+)|'(?P<sq>[^'\n]*)'|"(?P<dq>[^"]*)"
                        |\$(?P<var>[A-Za-z_][A-Za-z0-9_]*)""", re.VERBOSE)
_DQ_PIECE = re.compile(r"(?P<text>[^$]+)|\$(?P<var>[A-Za-z_][A-Za-z0-9_]*)")
_ASSIGNMENT = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(\+?)=")
# an array assignment NAME=( ... ) / NAME+=( ... ) with its elements on the line, and the blanks after it
_ARRAY = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(\+?)=\(([^()\n]*)\)(?=[ \t;&|<>]|$)[ \t]*")
_IF_WORDS = frozenset({"if", "then", "elif", "else", "fi"})
# words bash reads as reserved in command position (and `[[`, which the lexer reads a test after)
_RESERVED = frozenset({"if", "then", "elif", "else", "fi", "do", "done", "case", "esac", "for", "select", "while",
                       "until", "function", "{", "}", "!", "[[", "]]", "time", "coproc", "in"})


def split_line(line: str, line_no: int) -> list[Node] | None:
    """The commands of one line (without its newline) as the parser's nodes, or None when the line needs the
    general path."""
    if len(line) > _MAX_LINE:
        return None
    if _GENERAL.search(line):
        return None
    read = _items(line, line_no)
    if read is None:
        return None
    items, words_only = read
    if not items:
        return []
    head = items[0]
    if words_only:  # one simple command (the common case): as Parser.simple builds it
        words = cast(list[Word], items)
        return None if words[0].text in _RESERVED else [Simple(words, [], [], line_no)]
    if isinstance(head, Word) and head.text == "if":
        return _if_node(items, line_no)
    return _nodes(items, line_no)


def _items(line: str, line_no: int) -> tuple[list[Word | Redir | str], bool] | None:
    """Words, simple redirections (``>``, ``>>``, ``<``, ``2>&1`` to a bare name) and ``;``/``&&``/``||``/``|``,
    as the lexer reads them, and whether they are words only; None for anything else."""
    items: list[Word | Redir | str] = []
    words_only = True
    paren = "=(" in line  # an array assignment to read (any other `(` is the general path's)
    pos, n = _BLANK.match(line).end(), len(line)  # type: ignore[union-attr]
    while pos < n:
        c = line[pos]
        if c == "#":  # a comment: at the start of a word only (a `#` inside a word is read by _WORD)
            break
        if c in ";&|":
            m = _OP.match(line, pos)  # a lone `&`, `|&` and `;;` are not matched whole: general path
            if m is None or line.startswith(("|&", ";;", "&&&"), pos):
                return None
            items.append(m.group(0))
            end = m.end()
            words_only = False
        elif c in "<>" or ("0" <= c <= "9" and _REDIRECT.match(line, pos)):
            r = _REDIRECT.match(line, pos)
            t = _BARE_TARGET.match(line, r.end()) if r is not None and r.group(2) in _SIMPLE_REDIRS else None
            if t is None:
                return None
            items.append(Redir(op=r.group(2), fd=r.group(1), target=Word.bare(t.group(0), line_no),  # type: ignore
                               line=line_no))
            end = t.end()
            words_only = False
        elif paren and (a := _ARRAY.match(line, pos)) is not None:
            word = _array(a, line_no)
            if word is None:
                return None
            items.append(word)
            pos = a.end()
            continue
        else:
            m = _BARE_BLANK.match(line, pos)  # the common case: no quote or $ (and no NAME=): the lexer's bare word
            if m is not None and "=" not in (text := m.group(1)):
                items.append(Word.bare(text, line_no))
                pos = m.end()
                continue
            m = _WORD_BLANK.match(line, pos)  # the word, ending where the lexer ends it, and the blanks after
            if m is None:
                return None
            word = _build(m.group(1), line_no)
            if word is None:
                return None
            items.append(word)
            pos = m.end()
            continue
        pos = _BLANK.match(line, end).end()  # type: ignore[union-attr]
    return items, words_only


def _nodes(items: list[Word | Redir | str], line_no: int) -> list[Node] | None:
    """``;``-separated ``&&``/``||`` lists of pipelines of simple commands, as Parser.and_or builds them."""
    nodes: list[Node] = []
    words: list[Word] = []
    redirs: list[Redir] = []
    pipe: list[Node] = []
    first: Node | None = None
    rest: list[tuple[str, Node]] = []
    op = ""
    if items and items[-1] == ";":
        items = items[:-1]  # the `;` ending the line
    if not items:
        return nodes
    for it in [*items, ";"]:
        if isinstance(it, Word):
            if not words and not redirs and it.text in _RESERVED:
                return None
            words.append(it)
            continue
        if isinstance(it, Redir):
            redirs.append(it)
            continue
        if not words:  # an operator with no command before it (`a | | b`, a leading `;`): general path
            return None
        pipe.append(Simple(words, redirs, [], line_no))
        words, redirs = [], []
        if it == "|":
            continue
        node = pipe[0] if len(pipe) == 1 else Pipeline(pipe)
        pipe = []
        if first is None:
            first = node
        else:
            rest.append((op, node))
        if it == ";":
            nodes.append(AndOr(first, rest) if rest else first)
            first, rest = None, []
        else:
            op = it
    return nodes


def _if_node(items: list[Word | Redir | str], line_no: int) -> list[Node] | None:
    """``if C; then B; [elif C; then B;] [else B;] fi`` on one line, as Parser._if builds it: the keywords at
    the start of a ``;``-separated part only, every list not empty, nothing after ``fi``."""
    parts: list[tuple[str, list[Word | Redir | str]]] = []
    for seg in _segments(items):
        head = seg[0] if seg else None
        if isinstance(head, Word) and head.text in _IF_WORDS:
            parts.append((head.text, seg[1:]))
        elif not parts or not seg:
            return None
        else:
            parts[-1][1].extend([";", *seg])
    if len(parts) < 3 or parts[-1] != ("fi", []):
        return None
    clauses: list[tuple[list[Node], list[Node], int]] = []
    orelse: list[Node] | None = None
    body_parts = parts[:-1]
    i = 0
    while i < len(body_parts):
        kw, rest = body_parts[i]
        if kw == ("elif" if clauses else "if") and i + 1 < len(body_parts) and body_parts[i + 1][0] == "then":
            cond, body = _nodes(rest, line_no), _nodes(body_parts[i + 1][1], line_no)
            if not cond or not body:
                return None
            clauses.append((cond, body, line_no))
            i += 2
        elif kw == "else" and clauses and i == len(body_parts) - 1:
            orelse = _nodes(rest, line_no)
            if not orelse:
                return None
            i += 1
        else:
            return None
    return [If(clauses, orelse)]


def _segments(items: list[Word | Redir | str]) -> list[list[Word | Redir | str]]:
    segs: list[list[Word | Redir | str]] = [[]]
    for it in items:
        if it == ";":
            segs.append([])
        else:
            segs[-1].append(it)
    if not segs[-1]:
        segs.pop()  # the `;` ending the line
    return segs


def _array(m: re.Match[str], line_no: int) -> Word | None:
    """``NAME=(a "b c")`` as WordReader._array reads it: the elements are words read without ``NAME=``."""
    inner = m.group(3)
    if _GENERAL.search(inner) or "#" in inner:
        return None
    elems: list[Word] = []
    pos, n = _BLANK.match(inner).end(), len(inner)  # type: ignore[union-attr]
    while pos < n:
        w = _WORD.match(inner, pos)
        if w is None or (w.end() < n and inner[w.end()] not in " \t"):
            return None
        elem = _build(w.group(0), line_no, assign_ok=False)
        if elem is None:
            return None
        elems.append(elem)
        pos = _BLANK.match(inner, w.end()).end()  # type: ignore[union-attr]
    word = Word(parts=[], line=line_no, assign=(m.group(1), m.group(2) == "+"), array=elems)
    return word


def _build(s: str, line: int, assign_ok: bool = True) -> Word | None:
    """The word as ``WordReader._word`` builds it (parts, quoting, ``NAME=``), or None if unsure."""
    pos = 0
    assign = None
    m = _ASSIGNMENT.match(s) if assign_ok and "=" in s else None
    if m:
        assign = (m.group(1), m.group(2) == "+")
        pos = m.end()
        rest = s[pos:]
        if rest and "'" not in rest and '"' not in rest and "$" not in rest:  # NAME=text: one literal part
            return Word(parts=[Part("lit", False, line, segs=[(rest, line)])], line=line, assign=assign)
    elif "'" not in s and '"' not in s and "$" not in s:
        return Word.bare(s, line)  # the lexer's bare word
    parts: list[Part] = []
    quoted = False
    for p in _PIECE.finditer(s, pos):
        kind = p.lastgroup
        if kind == "plain":
            _lit(parts, p.group("plain"), line, False)
        elif kind == "var":
            parts.append(Part("var", False, line, raw="$" + p.group("var"), name=p.group("var")))
        elif kind == "sq":  # WordReader._single: a part of its own, even empty
            quoted = True
            parts.append(Part("lit", True, line))
            if p.group("sq"):
                _lit(parts, p.group("sq"), line, True)
        else:  # WordReader._double
            quoted = True
            parts.append(Part("lit", True, line))
            for q in _DQ_PIECE.finditer(p.group("dq")):
                if q.lastgroup == "var":
                    parts.append(Part("var", True, line, raw="$" + q.group("var"), name=q.group("var")))
                else:
                    _lit(parts, q.group("text"), line, True)
    word = Word(parts=parts, line=line, quoted=quoted, assign=assign)
    if not quoted and assign is None and parts and all(p.kind == "lit" for p in parts):
        return Word.bare("".join(t for p in parts for t, _ in p.segs), line)
    return word


def _lit(parts: list[Part], text: str, line: int, quoted: bool) -> None:
    """WordReader._lit: a run of text joins the word's last part when that is literal text quoted alike."""
    if parts:
        last = parts[-1]
        if last.kind == "lit" and last.quoted == quoted:
            last.segs.append((text, line))
            return
    parts.append(Part("lit", quoted, line, segs=[(text, line)]))


def runner(lexer: Lexer, run_node: Callable[[Node], object], run_simple: Callable[[Simple], object]) -> Runner:
    return Runner(lexer, run_node, run_simple)


class Runner:
    """What the parser calls at the start of a top-level line: runs the fast lines from there, moving the lexer on
    past them, and stops at the first line that needs the general path (``run_simple``: what ``run_node`` does
    with a simple command, called without the dispatch).

    A line met again (generated scripts repeat a few lines thousands of times) is split once more into a template
    kept for it, and from then on its nodes are copies of the template moved to their line (``_bash_copies``): the
    same nodes split_line builds there, without reading the line again. Templates are never handed out (what runs
    is always a fresh copy); at most _MEMO lines are remembered (then forgotten all at once), each of at most
    _MEMO_LINE characters.

    A whole top-level command the general path reads from such a line start, over several lines, is remembered by
    its text the same way (``_bash_templates.Spans``; ``command_read``, which the parser calls after each top-level
    command, tells its span): text met again from a line start is not read, its template's copy is run."""

    def __init__(self, lexer: Lexer, run_node: Callable[[Node], object], run_simple: Callable[[Simple], object]):
        self.lexer, self.run_node, self.run_simple = lexer, run_node, run_simple
        self.seen: dict[str, _Template | bool | None] = {}  # line -> False (met once), its template, None (general)
        self.spans = Spans()
        self._start = self._start_line = -1  # where the general path takes over, at a clean line start

    def split(self, line: str, line_no: int) -> list[Node] | None:
        if len(line) > _MEMO_LINE:
            return split_line(line, line_no)
        seen = self.seen
        got = seen.get(line, _UNSEEN)
        if got.__class__ is _Template:
            return got.copy(line_no)
        if got is None:
            return None
        if len(seen) >= _MEMO:
            seen.clear()
        nodes = split_line(line, line_no)
        if got is _UNSEEN:  # met once: handed on as split, only remembered as met (or as general)
            seen[line] = False if nodes is not None else None
            return nodes
        if nodes is None:
            seen[line] = None
            return None
        # met a second time: this split is the template, the line a copy
        template = seen[line] = _Template(nodes, line_no)
        return template.copy(line_no)

    def __call__(self) -> None:
        lexer = self.lexer
        self._start = -1
        if not lexer.clean():  # e.g. after an unclosed `[[`: the lexer reads the next lines as words of the test
            return
        text, end = lexer.text, lexer.end
        pos = lexer.pos
        line_no = lexer.line_of(pos)
        find, split, match, seen = text.find, self.split, self.spans.match, self.seen.get
        run_node, run_simple = self.run_node, self.run_simple
        while pos < end:
            nl = find("\n", pos, end)
            if nl < 0:
                return  # the last line, without a newline: the general path
            line = text[pos:nl]
            memo = seen(line)
            nodes: list[Node] | None
            if memo.__class__ is _Template:  # what split gives for a line with a template, without the call
                make = memo.make
                nodes = make(line_no) if make is not None else memo.copy(line_no)
            else:
                nodes = split(line, line_no)
            if nodes is None:
                got = match(line, text, pos, end, line_no)
                if got is None:
                    self._start, self._start_line = pos, line_no
                    return
                node, size, lines = got
                pos = lexer.pos = pos + size
                line_no += lines
                run_node(node)
                continue
            pos = lexer.pos = nl + 1
            for node in nodes:
                if type(node) is Simple:
                    run_simple(node)
                else:
                    run_node(node)
            line_no += 1  # each fast line is one line of the script

    def command_read(self, node: Node | None, parser: Parser) -> None:
        """After the parser read a top-level command: if it is the first read from where ``__call__`` stopped and
        both the parser and the lexer stand at the next line start with nothing read beyond it and nothing pending
        (only the newline ending the command is left), its span of text is one ``Spans`` remembers."""
        start = self._start
        if start < 0:
            return
        self._start = -1
        lexer = self.lexer
        pos = lexer.pos
        if node is None or parser.pending or pos >= lexer.end or not Spans.fits(start, pos) or not lexer.clean():
            return
        items, i = parser.items, parser.i
        if len(items) != i + 1:
            return
        last = items[i]
        if last.__class__ is Op and last.text == "\n":
            self.spans.read(lexer.text[start:pos], self._start_line, node)


_UNSEEN = object()
_MEMO, _MEMO_LINE = 1024, 256


class _Template:
    """A line's nodes (split at line ``line``), copied to each line where it is met again: by walking them
    (``_bash_templates.shifted``, as whole commands met again are), then, once copied COMPILE_AFTER times, by a
    copier written for them (``_bash_copies.copier``)."""

    __slots__ = ("nodes", "line", "uses", "make")

    def __init__(self, nodes: list[Node], line: int):
        self.nodes, self.line, self.uses = nodes, line, 0
        self.make: Callable[[int], list[Node]] | None = None

    def copy(self, ln: int) -> list[Node]:
        make = self.make
        if make is not None:
            return make(ln)
        self.uses += 1
        if self.uses >= _bash_copies.COMPILE_AFTER:
            self.make = copier(self.nodes)
        d = ln - self.line
        return [shifted(n, d) for n in self.nodes]
