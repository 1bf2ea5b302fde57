"""The bash lexer: script text → words, operators and redirections, as bash reads them before any expansion.

Comments, ``\\``-newline continuations, operators, redirections and heredoc bodies are dealt with here; words are
read by ``_bash_words`` (a bare word, the common case, directly from one regular expression here). The lexer hands
the parser a line of items at a time and is linear in the size of the script.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from lora_audit.evidence._bash_words import METACHARS, Word, WordReader
from lora_audit.evidence._script import Lines
from lora_audit.model import Note

_OPERATORS = (";;&", ";;", ";&", "&&", "||", "|&", ";", "&", "|", "(", ")")
_FD = re.compile(r"\d*")  # the file descriptor number of a redirection (2>&1)
_REDIRECTS = ("<<<", "<<-", "&>>", "<<", ">>", "<>", ">&", "<&", ">|", "&>", ">", "<")
_REDIRECT = re.compile(r"(\d*)(<<<|<<-|&>>|<<|>>|<>|>&|<&|>\||&>|>|<)[ \t]*")  # _REDIRECTS, in their order
_BARE_TARGET = re.compile(r"[^ \t\n;&|()<>\\'\"$`]+(?=[ \t\n;&|()<>]|$)")
# what an item starts with, outside [[ ]]: the cases read without a step per character (anything else, or no
# match, goes through Lexer._other)
_ITEM = re.compile(r"""
    (?P<blank>[ \t]+)
  | (?P<nl>\n)
  | (?P<redir>\d*(?:<<<|<<-|&>>|<<|>>|<>|>&|<&|>\||&>|>|<))
  | (?P<bare>(?![A-Za-z_][A-Za-z0-9_]*\+?=)[^ \t\n;&|()<>\\'"$`#][^ \t\n;&|()<>\\'"$`]*(?=[ \t\n;&|()<>]|$))
  | (?P<op>;;&|;;|;&|&&|\|\||\|&|[;&|()])""", re.VERBOSE)
# inside [[ ]], these are words of the test, not operators
_TEST_OPS = ("&&", "||", "(", ")", "<", ">")


@dataclass(slots=True)
class Op:
    text: str
    line: int


@dataclass(slots=True)
class Heredoc:
    body: str
    line: int  # line of the body's first line
    expand: bool  # unquoted delimiter: $VAR, $(...) and \-escapes in the body are expanded
    delimiter: str


@dataclass(slots=True)
class Redir:
    op: str
    fd: str
    target: Word | None
    line: int
    heredoc: Heredoc | None = None


Item = Word | Op | Note | Redir

class Lexer(WordReader):
    def __init__(self, text: str, lines: Lines, label: str, start: int = 0, end: int | None = None):
        super().__init__(text, lines, label, start, end)
        self._heredocs: list[Redir] = []
        self._in_test = False  # between [[ and ]]
        self.pending: list[Note] = []

    # -- top level ------------------------------------------------------------------------------------------------
    def clean(self) -> bool:
        """Nothing read before carries over to the text at ``pos`` (at a line start): no heredoc body still to
        read, no note to hand on, not between ``[[`` and ``]]``, no ``\\``-continuation."""
        return not (self._heredocs or self.pending or self._in_test or self._continued)

    def items(self) -> list[Item]:
        return [it for batch in self.lines() for it in batch]

    def lines(self) -> Iterator[list[Item]]:
        """The items a line at a time (a list ends with its newline and the notes its heredocs gave, or after 1,024
        items): read lazily, so a long script is never held as items all at once."""
        t, end, line_of = self.text, self.end, self.line_of
        match = _ITEM.match
        batch: list[Item] = []
        add = batch.append
        while self.pos < end:
            if len(batch) >= 1024:  # a command continued over thousands of lines is handed on in parts as well
                yield batch
                batch = []
                add = batch.append
            m = match(t, self.pos, end)
            kind = m.lastgroup if m is not None else None
            if self._in_test and kind not in ("blank", "nl"):
                kind = None  # inside [[ ]], && || ( ) < > are words of the test
            if kind == "bare":  # the common case, a bare word: built directly
                text = m.group("bare")  # type: ignore[union-attr]
                line = line_of(self.pos)
                self.pos = m.end()  # type: ignore[union-attr]
                if text == "[[":
                    self._in_test = True
                add(Word.bare(text, line))
            elif kind == "blank":
                self.pos = m.end()  # type: ignore[union-attr]
            elif kind == "op":
                op = m.group("op")  # type: ignore[union-attr]
                add(Op(op, line_of(self.pos)))
                self.pos += len(op)
            elif kind == "nl":
                add(Op("\n", line_of(self.pos)))
                self.pos += 1
                self._continued = []
                self._read_heredocs()  # before the newline is handed on: the command it ends needs the bodies
                if self.pending:
                    batch.extend(self.pending)
                    self.pending = []
                yield batch
                batch = []
                add = batch.append
            elif kind == "redir":
                add(self._redirect())
            else:
                item = self._other()
                if item is not None:
                    add(item)
        self._read_heredocs()  # a heredoc opened on the last line, with no newline after it
        batch.extend(self.pending)
        if batch:
            yield batch

    def _other(self) -> Item | None:
        """What the master expression leaves: continuations, comments, ``[[ ]]`` contents, words with quotes,
        escapes, expansions or an assignment (None when nothing is to be handed on)."""
        t = self.text
        c = t[self.pos]
        if c == "\\" and self._peek(1) == "\n":
            self._continued.append(self.line_of(self.pos))
            self.pos += 2
        elif c == "#":
            start = self.pos
            self._skip_line()
            if self._continued and not t[t.rfind("\n", 0, start) + 1:start].strip():
                return self._orphan_note(start)
        elif self._in_test and t.startswith(_TEST_OPS, self.pos):
            op = next(o for o in _TEST_OPS if t.startswith(o, self.pos))
            line = self.line_of(self.pos)
            self.pos += len(op)
            return Word.bare(op, line)
        elif c in "<>&0123456789" and self._redirect_at(self.pos):
            return self._redirect()
        elif c in ";&|()":
            op = next(o for o in _OPERATORS if t.startswith(o, self.pos))
            line = self.line_of(self.pos)
            self.pos += len(op)
            return Op(op, line)
        else:
            w = self._word()
            text = w.plain()
            if text == "[[":
                self._in_test = True
            elif text == "]]":
                self._in_test = False
            return w
        return None

    def _orphan_note(self, start: int) -> Note:
        """bash ends a command at a comment line inside a `\\` continuation: what follows runs on its own."""
        line = self.line_of(start)
        nl = self.text.find("\n", start, self.end)
        # the lines the user meant to continue the command: up to the first line not ending in `\`
        orphans: list[int] = []
        i = nl + 1 if nl >= 0 else self.end
        while i < self.end and len(orphans) < 1000:
            j = self.text.find("\n", i, self.end)
            stop = self.end if j < 0 else j
            body = self.text[i:stop]
            if body.strip() and not body.lstrip().startswith("#"):
                orphans.append(self.line_of(i))
            if not body.rstrip().endswith("\\") or j < 0:
                break
            i = j + 1
        where = (f"lines {orphans[0]}-{orphans[-1]} are" if len(orphans) > 1 else
                 f"line {orphans[0]} is" if orphans else "the lines after it are")
        return Note(message="a commented-out line inside a \\-continued command ends it, as in bash: "
                            f"{where} not part of the command (bash runs them as a separate command)",
                    source=f"{self.label}:{line}")

    def _redirect_at(self, pos: int) -> bool:
        """``>``, ``2>&1``, ``&>`` ... (an fd number only directly before the operator)."""
        after = _FD.match(self.text, pos, self.end).end()  # type: ignore[union-attr]
        return after < self.end and self.text.startswith(_REDIRECTS, after) and (
            self.text[after] in "<>" or self.text.startswith("&>", after))

    def _redirect(self) -> Redir:
        line = self.line_of(self.pos)
        m = _REDIRECT.match(self.text, self.pos, self.end)
        fd, op = m.group(1), m.group(2)  # type: ignore[union-attr]
        self.pos = m.end()  # type: ignore[union-attr]
        redir = Redir(op=op, fd=fd, target=None, line=line)
        if self.pos >= self.end or self.text[self.pos] in METACHARS:
            return redir
        bare = _BARE_TARGET.match(self.text, self.pos, self.end)
        if bare:  # the common file name: no quote, escape or expansion
            redir.target = Word.bare(bare.group(0), self.line_of(self.pos))
            self.pos = bare.end()
        else:
            redir.target = self._word(assign_ok=False)  # the file name (or heredoc delimiter)
        if op in ("<<", "<<-"):
            redir.heredoc = Heredoc(body="", line=0, expand=not redir.target.quoted,
                                    delimiter=redir.target.literal() or "".join(p.raw for p in redir.target.parts))
            self._heredocs.append(redir)
        return redir

    def _read_heredocs(self) -> None:
        """The bodies of heredocs opened on the line just ended (``cat > x.toml <<EOF``), in order."""
        for redir in self._heredocs:
            doc = redir.heredoc
            assert doc is not None
            strip_tabs = redir.op == "<<-"
            doc.line = self.line_of(self.pos)
            lines = []
            closed = False
            while self.pos < self.end:
                nl = self.text.find("\n", self.pos, self.end)
                stop = self.end if nl < 0 else nl
                body_line = self.text[self.pos:stop]
                self.pos = stop + 1 if nl >= 0 else self.end
                if strip_tabs:
                    body_line = body_line.lstrip("\t")
                if body_line == doc.delimiter:
                    closed = True
                    break
                lines.append(body_line)
            if not closed:  # bash warns and takes the rest of the file as the body
                self.pending.append(Note(message=f"heredoc <<{doc.delimiter} is never closed: bash takes the rest "
                                                 "of the file as its body", source=f"{self.label}:{redir.line}"))
            doc.body = "".join(ln + "\n" for ln in lines)
        self._heredocs = []

    # -- words ----------------------------------------------------------------------------------------------------
