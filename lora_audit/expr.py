"""A tiny, safe expression language for rules: ``good.network_alpha / good.network_dim != bad.network_alpha /
bad.network_dim``, ``not run.enable_bucket``, ``ratio(bad.resolution_pixels, good.resolution_pixels) > 1``.

Only names bound by the caller (run views) and a few functions are reachable; no attribute of Python objects,
no calls of anything else. Unknown values are None, and arithmetic on None gives None (so an unknown never
makes a rule fire by accident: comparisons with None are False).
"""

from __future__ import annotations

import ast
import operator
from typing import Any

_BIN = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}
_CMP = {ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt,
        ast.GtE: operator.ge}


def _ratio(a, b):
    try:
        return None if a is None or b in (None, 0) else float(a) / float(b)
    except (TypeError, ValueError):
        return None


_FUNCS = {"ratio": _ratio, "abs": lambda x: None if x is None else abs(x),
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
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_eval(e, env) for e in node.elts]
    if isinstance(node, ast.Name):
        if node.id in ("True", "False", "None"):
            return {"True": True, "False": False, "None": None}[node.id]
        if node.id not in env:
            raise ExprError(f"unknown name {node.id!r}")
        return env[node.id]
    if isinstance(node, ast.Attribute):
        view = _eval(node.value, env)
        if not isinstance(view, View):
            raise ExprError("attributes are only read from run views")
        return view.get(node.attr)
    if isinstance(node, ast.BoolOp):
        if isinstance(node.op, ast.And):
            result = True
            for v in node.values:
                result = _eval(v, env)
                if not result:
                    return result
            return result
        result = False
        for v in node.values:
            result = _eval(v, env)
            if result:
                return result
        return result
    if isinstance(node, ast.UnaryOp):
        v = _eval(node.operand, env)
        if isinstance(node.op, ast.Not):
            return not v
        if isinstance(node.op, ast.USub):
            return None if v is None else -v
    if isinstance(node, ast.BinOp) and type(node.op) in _BIN:
        a, b = _eval(node.left, env), _eval(node.right, env)
        if a is None or b is None:
            return None
        try:
            return _BIN[type(node.op)](a, b)
        except (TypeError, ZeroDivisionError):
            return None
    if isinstance(node, ast.Compare):
        left = _eval(node.left, env)
        for op, comp in zip(node.ops, node.comparators):
            right = _eval(comp, env)
            if isinstance(op, (ast.In, ast.NotIn)):
                ok = right is not None and (left in right) == isinstance(op, ast.In)
            elif left is None or right is None:
                ok = False if not isinstance(op, (ast.Eq, ast.NotEq)) else _CMP[type(op)](left, right)
            else:
                try:
                    ok = _CMP[type(op)](left, right)
                except TypeError:
                    ok = False
            if not ok:
                return False
            left = right
        return True
    if isinstance(node, ast.Call):
        return _FUNCS[node.func.id](*[_eval(a, env) for a in node.args])
    if isinstance(node, ast.IfExp):
        return _eval(node.body, env) if _eval(node.test, env) else _eval(node.orelse, env)
    raise ExprError(f"unsupported expression: {ast.unparse(node)}")
