"""A tiny, safe expression language for rules (``rules/impact.toml``) and kohya's inertness conditions
(``kohya/semantics``): both use it, so it sits below both in the flow. Examples:
``good.network_alpha / good.network_dim != bad.network_alpha / bad.network_dim``, ``not run.enable_bucket``,
``ratio(bad.resolution_pixels, good.resolution_pixels) > 1``.

Only names bound by the caller (run views) and a few functions are reachable; no attribute of Python objects,
no calls of anything else. Unknown values are None, and arithmetic on None gives None (so an unknown never
makes a rule fire by accident: comparisons with None are False).
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable
from typing import Any

_BIN = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}
_CMP = {ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt,
        ast.GtE: operator.ge}


def _ratio(a, b):
    try:
        return None if a is None or b in (None, 0) else float(a) / float(b)
    except (TypeError, ValueError):
        return None


_FUNCS: dict[str, Callable[..., Any]] = {"ratio": _ratio, "abs": lambda x: None if x is None else abs(x),
          "known": lambda x: x is not None, "lower": lambda x: None if x is None else str(x).lower()}


class View:
    """Attribute access to a mapping of values; missing names read as None."""

    def __init__(self, values: dict[str, Any]):
        self._values = values

    def get(self, name: str) -> Any:
        return self._values.get(name)


class ExprError(ValueError):
    pass


def compile_expr(text: str) -> ast.Expression:
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as e:
        raise ExprError(f"bad rule expression {text!r}: {e.msg}") from None
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and not (isinstance(node.func, ast.Name) and node.func.id in _FUNCS):
            raise ExprError(f"only {', '.join(_FUNCS)} may be called in {text!r}")
        if isinstance(node, ast.Attribute) and (not isinstance(node.value, ast.Name) or node.attr.startswith("_")):
            raise ExprError(f"only name.param attributes are allowed in {text!r}")
    return tree


def evaluate(text: str | ast.Expression, env: dict[str, View]) -> Any:
    tree = compile_expr(text) if isinstance(text, str) else text
    return _eval(tree.body, env)


def _eval(node: ast.AST, env: dict[str, View]) -> Any:
    step = _STEPS.get(type(node))
    if step is None:
        raise ExprError(f"unsupported expression: {ast.unparse(node)}")
    return step(node, env)


def _name(node: ast.Name, env: dict[str, View]) -> Any:
    if node.id in ("True", "False", "None"):
        return {"True": True, "False": False, "None": None}[node.id]
    if node.id not in env:
        raise ExprError(f"unknown name {node.id!r}")
    return env[node.id]


def _attribute(node: ast.Attribute, env: dict[str, View]) -> Any:
    view = _eval(node.value, env)
    if not isinstance(view, View):
        raise ExprError("attributes are only read from run views")
    return view.get(node.attr)


def _bool_op(node: ast.BoolOp, env: dict[str, View]) -> Any:
    # Python's and/or: the first value that decides, else the last one
    stop_on = not isinstance(node.op, ast.And)
    result: Any = not stop_on
    for v in node.values:
        result = _eval(v, env)
        if bool(result) == stop_on:
            return result
    return result


def _unary(node: ast.UnaryOp, env: dict[str, View]) -> Any:
    v = _eval(node.operand, env)
    if isinstance(node.op, ast.Not):
        return not v
    if isinstance(node.op, ast.USub):
        return None if v is None else -v
    raise ExprError(f"unsupported expression: {ast.unparse(node)}")


def _bin_op(node: ast.BinOp, env: dict[str, View]) -> Any:
    if type(node.op) not in _BIN:
        raise ExprError(f"unsupported expression: {ast.unparse(node)}")
    a, b = _eval(node.left, env), _eval(node.right, env)
    if a is None or b is None:
        return None
    try:
        return _BIN[type(node.op)](a, b)
    except (TypeError, ZeroDivisionError):
        return None


def _holds(op: ast.cmpop, left: Any, right: Any) -> bool:
    if isinstance(op, (ast.In, ast.NotIn)):
        return right is not None and (left in right) == isinstance(op, ast.In)
    if left is None or right is None:
        return False if not isinstance(op, (ast.Eq, ast.NotEq)) else _CMP[type(op)](left, right)
    try:
        return _CMP[type(op)](left, right)
    except TypeError:
        return False


def _compare(node: ast.Compare, env: dict[str, View]) -> bool:
    left = _eval(node.left, env)
    for op, comp in zip(node.ops, node.comparators, strict=True):
        right = _eval(comp, env)
        if not _holds(op, left, right):
            return False
        left = right
    return True


def _call(node: ast.Call, env: dict[str, View]) -> Any:
    assert isinstance(node.func, ast.Name)  # compile_expr lets no other call through
    return _FUNCS[node.func.id](*[_eval(a, env) for a in node.args])


_STEPS: dict[type, Callable[[Any, dict[str, View]], Any]] = {
    ast.Constant: lambda node, env: node.value,
    ast.List: lambda node, env: [_eval(e, env) for e in node.elts],
    ast.Tuple: lambda node, env: [_eval(e, env) for e in node.elts],
    ast.Name: _name,
    ast.Attribute: _attribute,
    ast.BoolOp: _bool_op,
    ast.UnaryOp: _unary,
    ast.BinOp: _bin_op,
    ast.Compare: _compare,
    ast.Call: _call,
    ast.IfExp: lambda node, env: _eval(node.body, env) if _eval(node.test, env) else _eval(node.orelse, env),
}
