"""``[ ... ]``, ``test ...`` and ``[[ ... ]]`` evaluated as bash does, on the values the script itself sets.

Three-valued: True, False, or None when the answer depends on the machine or the moment the script ran (a file
test, a value from the environment, ``$(...)``). ``&&``/``||``/``!`` combine them as logic does with "unknown".
"""

from __future__ import annotations

import re
from collections.abc import Callable
from fnmatch import fnmatchcase

Arg = tuple[str | None, bool]  # the word's text (None: known only at run time) and whether it was quoted
_FILE_TESTS = set("abcdefghkprsuwxGLNOS") | {"t"}
_INT_OPS = {"-eq": lambda a, b: a == b, "-ne": lambda a, b: a != b, "-lt": lambda a, b: a < b,
            "-le": lambda a, b: a <= b, "-gt": lambda a, b: a > b, "-ge": lambda a, b: a >= b}
_STR_OPS = frozenset(("=", "==", "!=", "<", ">", "=~", "-nt", "-ot", "-ef", *_INT_OPS))
_UNARY = re.compile(r"-[a-zA-Z]")  # a unary operator's shape (known ones: _unary)


def _not(v: bool | None) -> bool | None:
    return None if v is None else not v


def _and(a: bool | None, b: bool | None) -> bool | None:
    if a is False or b is False:
        return False
    return None if a is None or b is None else True


def _or(a: bool | None, b: bool | None) -> bool | None:
    if a is True or b is True:
        return True
    return None if a is None or b is None else False


def evaluate(args: list[Arg], double: bool, is_set: Callable[[str], bool | None]) -> bool | None:
    """The status of ``[ args ]`` (double=False) or ``[[ args ]]`` (double=True) as True/False/None.

    The forms scripts write nearly always (``[ X ]``, ``[ -f X ]``, ``[ A = B ]``) are answered directly, with the
    same steps the parser would take for them (``_direct``); the others go through the parser (``parse``)."""
    n = len(args)
    if 0 < n < 4:
        first, quoted = args[0]
        if quoted or (first != "!" and first != "("):  # neither a negation nor a group: one primary
            if n == 3:
                op = args[1][0] if not args[1][1] else None
                if op in _STR_OPS:  # the parser's primary: a binary operator as the second word
                    try:
                        return _binary(args[0], op, args[2], double)
                    except _Syntax:
                        return False
            elif n == 2:
                if first is not None and not quoted and _UNARY.fullmatch(first):  # the parser's unary primary
                    try:
                        return _unary(first, args[1][0], is_set)
                    except _Syntax:
                        return False
            else:  # one word: true when not empty
                return None if first is None else first != ""
    return parse(args, double, is_set)


def parse(args: list[Arg], double: bool, is_set: Callable[[str], bool | None]) -> bool | None:
    """``evaluate`` by the test's grammar alone (-o, -a, !, parentheses, unary and binary operators)."""
    p = _Parser(args, double, is_set)
    try:
        v = p.expr()
    except _Syntax:
        return False  # bash prints "syntax error" / "unary operator expected" and the test fails
    return v if p.i >= len(args) else False


class _Syntax(Exception):
    pass


class _Parser:
    def __init__(self, args: list[Arg], double: bool, is_set: Callable[[str], bool | None]):
        self.args, self.double, self.is_set, self.i = args, double, is_set, 0

    def _peek(self, k: int = 0) -> str | None:
        j = self.i + k
        return self.args[j][0] if j < len(self.args) and not self.args[j][1] else (
            "\0quoted" if j < len(self.args) else None)

    def expr(self) -> bool | None:
        v = self.conj()
        while self._peek() in ("-o", "||"):
            self.i += 1
            v = _or(v, self.conj())
        return v

    def conj(self) -> bool | None:
        v = self.neg()
        while self._peek() in ("-a", "&&"):
            self.i += 1
            v = _and(v, self.neg())
        return v

    def neg(self) -> bool | None:
        if self._peek() == "!" and self.i + 1 < len(self.args):
            self.i += 1
            return _not(self.neg())
        return self.primary()

    def primary(self) -> bool | None:
        if self.i >= len(self.args):
            raise _Syntax
        if self._peek() == "(":
            self.i += 1
            v = self.expr()
            if self._peek() != ")":
                raise _Syntax
            self.i += 1
            return v
        text, _quoted = self.args[self.i]
        # binary operator?
        if self.i + 2 < len(self.args):
            op = self._peek(1)
            if op in _STR_OPS:
                left = self.args[self.i]
                right = self.args[self.i + 2]
                self.i += 3
                return self._binary(left, op, right)
        # unary operator?
        if text is not None and not _quoted and _UNARY.fullmatch(text) and self.i + 1 < len(self.args):
            arg = self.args[self.i + 1]
            self.i += 2
            return _unary(text, arg[0], self.is_set)
        self.i += 1
        return None if text is None else text != ""  # one word: true when not empty

    def _binary(self, left: Arg, op: str, right: Arg) -> bool | None:
        return _binary(left, op, right, self.double)


def _unary(op: str, arg: str | None, is_set: Callable[[str], bool | None]) -> bool | None:
    """``-z X``, ``-n X``, ``-v NAME`` or a file test (op matches _UNARY); _Syntax for an unknown operator."""
    if op == "-z":
        return None if arg is None else arg == ""
    if op == "-n":
        return None if arg is None else arg != ""
    if op == "-v":
        return None if arg is None else is_set(arg)
    if op[1] in _FILE_TESTS:
        return None  # a file on the machine that ran the script
    raise _Syntax


def _binary(left: Arg, op: str, right: Arg, double: bool) -> bool | None:
    """``A op B`` for op in _STR_OPS; _Syntax where bash reports an error (the test then fails)."""
    a, b = left[0], right[0]
    if op in ("-nt", "-ot", "-ef", "=~"):
        return None
    if a is None or b is None:
        return None
    if op in _INT_OPS:
        x, y = _int(a, double), _int(b, double)
        if x is None or y is None:
            raise _Syntax  # "integer expression expected"
        return _INT_OPS[op](x, y)
    if op in ("=", "=="):
        return _match(a, right, double)
    if op == "!=":
        return not _match(a, right, double)
    return a < b if op == "<" else a > b


def _match(a: str, right: Arg, double: bool) -> bool:
    b, quoted = right
    assert b is not None
    if double and not quoted and any(c in b for c in "*?["):
        return fnmatchcase(a, b)  # [[ x == pattern ]]: an unquoted right side is a glob pattern
    return a == b


def _int(s: str, double: bool) -> int | None:
    s = s.strip()
    if not s and double:
        return 0  # [[ "" -eq 0 ]]: an empty arithmetic expression is 0
    try:
        return int(s, 0) if re.fullmatch(r"[+-]?(0[xX][0-9a-fA-F]+|\d+)", s) else None
    except ValueError:
        return None
