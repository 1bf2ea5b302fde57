"""The calls a notebook cell may make on known values (``_pyliteral``'s ``_Evaluator.call``): the notebook's own
functions (through ``CALL_HOOK``), ``toml.dumps``, ``globals()``, ``isinstance``, sequences, dict and str methods,
and a few builtins and os.path functions. Each rule gives the value, raises Unknown, or says the call is not its
kind (``_NOT_MINE``)."""

from __future__ import annotations

import ast
from collections.abc import Callable
from typing import Any

from lora_audit.evidence._pybase import (
    _ASSIGNED,
    _FUNCS,
    _MAX_ITEMS,
    _MAX_LEN,
    _PATH_FUNCS,
    _STR_METHODS,
    CALL_HOOK,
    TomlText,
    Unknown,
    _check,
    _dotted,
    iterate,
)

_TYPES = {"dict": dict, "list": list, "str": str, "int": int, "float": float, "bool": bool, "tuple": tuple}


def _call(n: ast.Call, ev: Callable[[ast.AST], Any]) -> Any:
    if any(isinstance(a, ast.Starred) for a in n.args):
        raise Unknown("*args")
    name = _dotted(n.func)
    for step in _CALLS:  # each gives the value, raises Unknown, or says it is not its kind of call (_NOT_MINE)
        v = step(n, name, ev)
        if v is not _NOT_MINE:
            return v
    raise Unknown(name or "call")


_NOT_MINE = object()
_Ev = Callable[[ast.AST], Any]


def _notebook_function(n: ast.Call, name: str | None, ev: _Ev) -> Any:
    hook = CALL_HOOK.get()
    if hook is not None and isinstance(n.func, ast.Name):
        try:
            return hook(n.func.id, n)
        except Unknown:
            if n.func.id not in _FUNCS and n.func.id not in ("isinstance", "list", "tuple", "enumerate", "sorted",
                                                              "range", "globals"):
                raise
    return _NOT_MINE


def _toml_dumps(n: ast.Call, name: str | None, ev: _Ev) -> Any:
    if name in ("toml.dumps", "tomlkit.dumps", "tomli_w.dumps", "rtoml.dumps") and n.args:
        data = ev(n.args[0])
        if isinstance(data, dict):
            return TomlText(data)
        raise Unknown(name)
    return _NOT_MINE


def _globals(n: ast.Call, name: str | None, ev: _Ev) -> Any:
    if name == "globals" and not n.args:
        # `"x" not in globals()` (a notebook's first-run guards): the names assigned so far, read in order
        return {k: None for k in _ASSIGNED.get()}
    return _NOT_MINE


def _isinstance(n: ast.Call, name: str | None, ev: _Ev) -> Any:
    if name == "isinstance" and len(n.args) == 2:
        obj = ev(n.args[0])
        kinds = n.args[1].elts if isinstance(n.args[1], ast.Tuple) else [n.args[1]]
        types = tuple(_TYPES[k.id] for k in kinds if isinstance(k, ast.Name) and k.id in _TYPES)
        if len(types) != len(kinds):
            raise Unknown("isinstance")
        return isinstance(obj, types)
    return _NOT_MINE


def _sequence(n: ast.Call, name: str | None, ev: _Ev) -> Any:
    if name in ("list", "tuple", "enumerate", "sorted") and len(n.args) == 1 and not n.keywords:
        items = iterate(ev(n.args[0]))
        return list(enumerate(items)) if name == "enumerate" else sorted(items) if name == "sorted" else (
            tuple(items) if name == "tuple" else items)
    if name == "range" and 1 <= len(n.args) <= 3:
        r = range(*[ev(a) for a in n.args])
        if len(r) > _MAX_ITEMS:
            raise Unknown("range")
        return r
    return _NOT_MINE


def _dict_method(n: ast.Call, name: str | None, ev: _Ev) -> Any:
    if isinstance(n.func, ast.Attribute) and n.func.attr in ("items", "keys", "values", "get") and \
            _dotted(n.func) not in ("os.environ.get",):
        obj = ev(n.func.value)
        if isinstance(obj, dict):
            if n.func.attr == "get":
                args = [ev(a) for a in n.args]
                return obj.get(*args)
            return list(getattr(obj, n.func.attr)())
    return _NOT_MINE


def _function(n: ast.Call, name: str | None, ev: _Ev) -> Any:
    if name in _FUNCS and not n.keywords:
        try:
            return _FUNCS[name](*[ev(a) for a in n.args])
        except (TypeError, ValueError, OverflowError):
            raise Unknown(name) from None
    if name and name.startswith(("os.path.", "posixpath.")) and name.rsplit(".", 1)[1] in _PATH_FUNCS:
        args = [ev(a) for a in n.args]
        if not all(isinstance(a, str) for a in args):
            raise Unknown(name)
        return _check(_PATH_FUNCS[name.rsplit(".", 1)[1]](*args))
    return _NOT_MINE


def _str_method(n: ast.Call, name: str | None, ev: _Ev) -> Any:
    if isinstance(n.func, ast.Attribute) and n.func.attr in _STR_METHODS:
        obj = ev(n.func.value)
        if isinstance(obj, str):
            args = [ev(a) for a in n.args]
            kwargs = {k.arg: ev(k.value) for k in n.keywords if k.arg}
            if n.func.attr == "replace" and len(args) >= 2 and len(obj) * max(1, len(str(args[1]))) > _MAX_LEN:
                raise Unknown("too large")
            if n.func.attr == "join" and args and len(obj) * len(args[0]) > _MAX_LEN:
                raise Unknown("too large")
            try:
                return _check(getattr(obj, n.func.attr)(*args, **kwargs))
            except (TypeError, ValueError, KeyError, IndexError):
                raise Unknown(n.func.attr) from None
    return _NOT_MINE


_CALLS = (_notebook_function, _toml_dumps, _globals, _isinstance, _sequence, _dict_method, _function, _str_method)
