"""PowerShell ``if (...)`` conditions evaluated on the values the script sets: True, False, or None (unknown).

Truthiness is PowerShell's: ``0``, ``""``, ``$null``, ``$false`` and an empty array are false; the string ``"0"`` is
true. Comparisons are case-insensitive unless ``-c`` prefixed; a number on the left compares numerically.
Anything else (a cmdlet call such as ``(Test-Path x)``, a method) is unknown.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from fnmatch import fnmatch

from lora_audit.evidence._script import Value

_TOKEN = re.compile(r"""\s*(?:(?P<s>"(?:[^"`]|`.|"")*"|'(?:[^']|'')*')|(?P<v>\$\{[^}]+\}|\$[\w:]+)|"""
                    r"""(?P<op>-[A-Za-z]+|!|\(|\))|(?P<n>-?\d+(?:\.\d+)?(?:e-?\d+)?)|(?P<w>[^\s()]+))""")
_CMP = {"eq", "ne", "gt", "ge", "lt", "le", "like", "notlike", "match", "notmatch"}

Lookup = Callable[[str], "Value | None | bool"]  # False: not set in the script (unknown)


class _Unknown(Exception):
    pass


def evaluate(text: str, lookup: Lookup, expand: Callable[[str], str | None]) -> bool | None:
    """``expand`` gives a double-quoted string's text (None when it holds something unknown)."""
    tokens = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            if text[pos:].strip():
                return None
            break
        pos = m.end()
        kind = m.lastgroup
        if kind is None:  # not reached: every alternative of _TOKEN is a named group
            return None
        tokens.append((kind, m.group(kind)))
    try:
        p = _P(tokens, lookup, expand)
        v = p.or_()
        if p.i != len(tokens):
            return None
        return _truth(v)
    except _Unknown:
        return None


class _P:
    def __init__(self, tokens, lookup: Lookup, expand):
        self.t, self.lookup, self.expand, self.i = tokens, lookup, expand, 0

    def _peek_op(self) -> str | None:
        if self.i < len(self.t) and self.t[self.i][0] == "op":
            return self.t[self.i][1].lower()
        return None

    def or_(self):
        v = self.and_()
        while self._peek_op() in ("-or", "-xor"):
            op = self._peek_op()
            self.i += 1
            w = self.and_()
            v = (_truth(v) != _truth(w)) if op == "-xor" else (_truth(v) or _truth(w))
        return v

    def and_(self):
        v = self.not_()
        while self._peek_op() == "-and":
            self.i += 1
            w = self.not_()
            v = _truth(v) and _truth(w)
        return v

    def not_(self):
        if self._peek_op() in ("-not", "!"):
            self.i += 1
            return not _truth(self.not_())
        return self.cmp()

    def cmp(self):
        left = self.primary()
        op = self._peek_op()
        name = op.lstrip("-") if op else ""
        if name and (name in _CMP or (name[:1] in "ic" and name[1:] in _CMP)):
            case = name[:1] == "c" and name[1:] in _CMP
            name = name if name in _CMP else name[1:]
            self.i += 1
            right = self.primary()
            return _compare(left, name, right, case)
        return left

    def primary(self):
        if self.i >= len(self.t):
            raise _Unknown
        kind, text = self.t[self.i]
        self.i += 1
        if kind == "op" and text == "(":
            v = self.or_()
            if self._peek_op() != ")":
                raise _Unknown
            self.i += 1
            return v
        if kind == "s":
            if text.startswith("'"):
                return text[1:-1].replace("''", "'")
            v = self.expand(text)
            if v is None:
                raise _Unknown
            return v
        if kind == "n":
            return float(text) if any(c in text for c in ".e") else int(text)
        if kind == "v":
            name = text[2:-1] if text.startswith("${") else text[1:]
            low = name.lower()
            if low == "true":
                return True
            if low == "false":
                return False
            if low == "null":
                return None
            got = self.lookup(name)
            if got is False:
                raise _Unknown
            return _value(got)  # type: ignore[arg-type]
        raise _Unknown  # a bare word: a command call, a type, ...


def _value(v: Value | None):
    if v is None:
        return None
    if v.runtime:
        raise _Unknown
    texts = ["".join(c for c, _ in item) for item in v.items]
    if v.array:
        return texts
    text = texts[0] if texts else ""
    if v.kind == "number":
        try:
            return float(text) if any(c in text for c in ".eE") else int(text)
        except ValueError:
            return text
    if v.kind == "bool":
        return text.lower() in ("true", "$true")
    return text


def _truth(v) -> bool:
    if isinstance(v, list):
        return len(v) > 1 or (len(v) == 1 and _truth(v[0]))
    if isinstance(v, str):
        return v != ""
    return bool(v)


def _compare(left, op: str, right, case: bool) -> bool:
    if isinstance(left, list):
        raise _Unknown  # an array on the left filters: not a condition we read
    a: float | str
    b: float | str
    if isinstance(left, (int, float)) and not isinstance(left, bool):
        try:
            r = float(right) if not isinstance(right, (int, float)) else right
        except (TypeError, ValueError):
            return op == "ne"
        a, b = left, r
    else:
        sa = "" if left is None else str(left)
        sb = "" if right is None else str(right)
        if left is None and op in ("eq", "ne"):
            return (right is None) == (op == "eq")
        a, b = (sa, sb) if case else (sa.lower(), sb.lower())
    if op == "eq":
        return a == b
    if op == "ne":
        return a != b
    if op in ("like", "notlike"):
        return fnmatch(str(a), str(b)) == (op == "like")
    if op in ("match", "notmatch"):
        return (re.search(str(b), str(a)) is not None) == (op == "match")
    try:
        return {"gt": a > b, "ge": a >= b, "lt": a < b, "le": a <= b}[op]  # type: ignore[operator]
    except TypeError:
        raise _Unknown from None
