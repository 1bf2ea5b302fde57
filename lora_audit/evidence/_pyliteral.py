"""The Python a notebook cell runs, read without running it: literal values only.

``Env`` holds the variables a cell assigns from literals and from expressions of literals and known variables
(``f"{x}"``, ``a if c else b``, ``os.path.join``, ``int()``...). Anything else (a function call, a loop, input())
makes the variable *unknown*, never guessed. Sizes are bounded: no value grows past ``_MAX_LEN``.
"""

from __future__ import annotations

import ast
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lora_audit.evidence._pybase import (
    _ASSIGNED,
    _MAX_LEN,
    CALL_HOOK,
    UNKNOWN_VALUE,
    TomlText,
    Unknown,
    _check,
    _dotted,
    iterate,
)
from lora_audit.evidence._pybuiltins import _call

# read from here by the notebook reader (_pywalk, _pycalls, notebook, _pysession)
__all__ = ["CALL_HOOK", "UNKNOWN_VALUE", "Env", "TomlText", "Unknown", "bind", "evaluate", "iterate"]



@dataclass
class Env:
    values: dict[str, Any] = field(default_factory=dict)
    # variable -> the line that set it ("nb.ipynb:cell 3:12")
    sources: dict[str, str] = field(default_factory=dict)
    # every name the code assigns, known or not (IPython expands those; others are left to the shell)
    assigned: set[str] = field(default_factory=set)
    environ: dict[str, str] = field(default_factory=dict)  # os.environ / %env
    # dict literal -> {key: source of its line}
    key_sources: dict[int, dict[str, str]] = field(default_factory=dict)
    # the dicts key_sources describes, kept alive so that no other object ever gets their id
    keep: list[Any] = field(default_factory=list)

    def sources_of(self, d: dict, lines: dict[str, str]) -> None:
        self.key_sources[id(d)] = lines
        self.keep.append(d)

    def set(self, name: str, value: Any, source: str) -> None:
        self.values[name] = value
        self.sources[name] = source
        self.assigned.add(name)

    def forget(self, name: str) -> None:
        self.values.pop(name, None)
        self.sources.pop(name, None)
        self.assigned.add(name)


_BIN: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow,
}
_CMP: dict[type, Callable[[Any, Any], bool]] = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt,
    ast.GtE: operator.ge, ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b,
    ast.Is: lambda a, b: a is b, ast.IsNot: lambda a, b: a is not b,
}
def evaluate(node: ast.AST, env: Env, label: str | None = None, line_offset: int = 0) -> Any:
    """The value of an expression of literals and known variables; raises Unknown otherwise."""
    token = _ASSIGNED.set(env.assigned)
    try:
        v = _Evaluator(env, label, line_offset).ev(node)
    except (RecursionError, MemoryError, OverflowError, ValueError, TypeError, AttributeError) as e:
        raise Unknown(type(e).__name__) from None
    finally:
        _ASSIGNED.reset(token)
    if v is UNKNOWN_VALUE:
        raise Unknown("value")
    return v


class _Evaluator:
    """One evaluation: a method per kind of expression node (``_NODES``); any other node is Unknown."""

    def __init__(self, env: Env, label: str | None, line_offset: int):
        self.env, self.label, self.line_offset = env, label, line_offset

    def ev(self, n: ast.AST) -> Any:
        step = _NODES.get(type(n))
        if step is None:
            raise Unknown(type(n).__name__)
        return step(self, n)

    def constant(self, n: ast.Constant) -> Any:
        return n.value

    def name(self, n: ast.Name) -> Any:
        if n.id in self.env.values:
            return self.env.values[n.id]
        if n.id in ("True", "False", "None"):
            return {"True": True, "False": False, "None": None}[n.id]
        raise Unknown(n.id)

    def joined_str(self, n: ast.JoinedStr) -> Any:
        out = []
        for part in n.values:
            if isinstance(part, ast.Constant):
                out.append(str(part.value))
            elif isinstance(part, ast.FormattedValue):
                v = self.ev(part.value)
                v = repr(v) if part.conversion == ord("r") else v
                spec = self.ev(part.format_spec) if part.format_spec is not None else ""
                if any(len(d) > 3 for d in re.findall(r"\d+", str(spec))):
                    raise Unknown("format width")
                out.append(format(v, spec))
        return _check("".join(out))

    def sequence(self, n: ast.List | ast.Tuple | ast.Set) -> Any:
        items = []
        for e in n.elts:
            if isinstance(e, ast.Starred):
                items.extend(self.ev(e.value))
            else:
                items.append(self.ev(e))
        return _check(tuple(items) if isinstance(n, ast.Tuple) else items)

    def mapping(self, n: ast.Dict) -> Any:
        env = self.env
        d: dict[Any, Any] = {}
        lines: dict[str, str] = {}
        for k, v in zip(n.keys, n.values, strict=True):
            if k is None:  # {**other}
                other = self.ev(v)
                if not isinstance(other, dict):
                    raise Unknown("**")
                d.update(other)
                lines.update(env.key_sources.get(id(other), {}))
                continue
            key = self.ev(k)
            try:
                d[key] = self.ev(v)
            except Unknown:
                d[key] = UNKNOWN_VALUE
            if self.label is not None:
                src = env.sources.get(v.id) if isinstance(v, ast.Name) else None
                lines[str(key)] = src or f"{self.label}:{k.lineno + self.line_offset}"
        env.sources_of(d, lines)
        return _check(d)

    def bin_op(self, n: ast.BinOp) -> Any:
        if type(n.op) not in _BIN:
            raise Unknown("BinOp")
        a, b = self.ev(n.left), self.ev(n.right)
        if isinstance(n.op, ast.Pow) and (not isinstance(b, (int, float)) or abs(b) > 64):
            raise Unknown("**")
        if isinstance(n.op, ast.Mult):
            seq, times = (a, b) if isinstance(a, (str, list, tuple)) else (b, a)
            if isinstance(seq, (str, list, tuple)) and isinstance(times, int) and len(seq) * times > _MAX_LEN:
                raise Unknown("too large")
        if isinstance(n.op, ast.Mod) and isinstance(a, str):
            raise Unknown("%-format")
        try:
            return _check(_BIN[type(n.op)](a, b))
        except Exception as e:  # TypeError, ZeroDivisionError ...: what Python would raise at run time
            raise Unknown(str(e)) from None

    def unary_op(self, n: ast.UnaryOp) -> Any:
        v = self.ev(n.operand)
        if isinstance(n.op, ast.Not):
            return not v
        if isinstance(n.op, ast.USub) and isinstance(v, (int, float)):
            return -v
        if isinstance(n.op, ast.UAdd) and isinstance(v, (int, float)):
            return v
        raise Unknown("unary")

    def bool_op(self, n: ast.BoolOp) -> Any:
        v = self.ev(n.values[0])
        for rest in n.values[1:]:
            if isinstance(n.op, ast.And) and not v or isinstance(n.op, ast.Or) and v:
                return v
            v = self.ev(rest)
        return v

    def compare(self, n: ast.Compare) -> Any:
        left = self.ev(n.left)
        for op, right_node in zip(n.ops, n.comparators, strict=True):
            right = self.ev(right_node)
            try:
                if not _CMP[type(op)](left, right):
                    return False
            except TypeError:
                raise Unknown("compare") from None
            left = right
        return True

    def if_exp(self, n: ast.IfExp) -> Any:
        return self.ev(n.body) if self.ev(n.test) else self.ev(n.orelse)

    def attribute(self, n: ast.Attribute) -> Any:
        if _dotted(n) == "sys.executable":
            return "python"  # the notebook's own interpreter
        raise Unknown("Attribute")

    def subscript(self, n: ast.Subscript) -> Any:
        container, index = self.ev(n.value), self.ev(n.slice)
        try:
            return container[index]
        except (KeyError, IndexError, TypeError):
            raise Unknown("subscript") from None

    def call(self, n: ast.Call) -> Any:
        return _call(n, self.ev)

    def comprehension(self, n: ast.DictComp | ast.ListComp | ast.SetComp) -> Any:
        if len(n.generators) != 1:
            raise Unknown(type(n).__name__)
        return _comprehension(n, self.ev, self.env)


_NODES: dict[type, Callable[[_Evaluator, Any], Any]] = {
    ast.Constant: _Evaluator.constant, ast.Name: _Evaluator.name, ast.JoinedStr: _Evaluator.joined_str,
    ast.List: _Evaluator.sequence, ast.Tuple: _Evaluator.sequence, ast.Set: _Evaluator.sequence,
    ast.Dict: _Evaluator.mapping, ast.BinOp: _Evaluator.bin_op, ast.UnaryOp: _Evaluator.unary_op,
    ast.BoolOp: _Evaluator.bool_op, ast.Compare: _Evaluator.compare, ast.IfExp: _Evaluator.if_exp,
    ast.Attribute: _Evaluator.attribute, ast.Subscript: _Evaluator.subscript, ast.Call: _Evaluator.call,
    ast.DictComp: _Evaluator.comprehension, ast.ListComp: _Evaluator.comprehension,
    ast.SetComp: _Evaluator.comprehension,
}


def bind(target: ast.AST, item: Any, env: Env, source: str) -> None:
    """``for target in ...``: a name or a tuple of names."""
    if isinstance(target, ast.Name):
        env.set(target.id, item, source)
    elif isinstance(target, (ast.Tuple, ast.List)) and isinstance(item, (list, tuple)) and \
            len(item) == len(target.elts):
        for t, v in zip(target.elts, item):
            bind(t, v, env, source)
    else:
        raise Unknown("target")


def _comprehension(n: ast.DictComp | ast.ListComp | ast.SetComp, ev: Callable[[ast.AST], Any], env: Env) -> Any:
    gen = n.generators[0]
    items = iterate(ev(gen.iter))
    names = {x.id for x in ast.walk(gen.target) if isinstance(x, ast.Name)}
    saved = {k: (k in env.values, env.values.get(k)) for k in names}
    out_d: dict = {}
    out_l: list = []
    try:
        for item in items:
            bind(gen.target, item, env, "")
            if not all(ev(c) for c in gen.ifs):
                continue
            if isinstance(n, ast.DictComp):
                out_d[ev(n.key)] = ev(n.value)
            else:
                out_l.append(ev(n.elt))
    finally:
        for k, (had, v) in saved.items():
            env.values.pop(k, None)
            if had:
                env.values[k] = v
    return out_d if isinstance(n, ast.DictComp) else out_l


