"""What the notebook literal reader (``_pyliteral``) and its call rules (``_pybuiltins``) share: the Unknown
signal, the size bounds, the values that stand for a config's TOML text or an unknown entry, and the few functions,
string methods and os.path functions a cell may call on known values."""

from __future__ import annotations

import ast
import posixpath
import re
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from contextvars import ContextVar
from typing import Any

_MAX_LEN = 100_000
_ASSIGNED: ContextVar[AbstractSet[str]] = ContextVar("assigned", default=frozenset())
# how a call to one of the notebook's own functions is valued (set by the notebook reader while it evaluates)
CALL_HOOK: ContextVar[Callable[[str, ast.Call], Any] | None] = ContextVar("call_hook", default=None)


class Unknown(Exception):
    """The expression's value is not known from the notebook's text alone."""


_FUNCS: dict[str, Callable[..., Any]] = {"int": int, "float": float, "str": str, "bool": bool, "len": len,
                                         "round": round, "min": min, "max": max, "abs": abs, "repr": repr}


def _format(value: Any, spec: str = "") -> str:
    if any(len(d) > 3 for d in re.findall(r"\d+", spec)):
        raise Unknown("format width")
    return format(value, spec)


_FUNCS["format"] = _format
_STR_METHODS = {"strip", "lstrip", "rstrip", "lower", "upper", "replace", "split", "join", "title",
                "startswith", "endswith"}
_PATH_FUNCS: dict[str, Callable[..., Any]] = {"join": posixpath.join, "basename": posixpath.basename,
                                              "dirname": posixpath.dirname}


def _check(v: Any) -> Any:
    if isinstance(v, (str, list, tuple, dict)) and len(v) > _MAX_LEN:
        raise Unknown("too large")
    return v


def _dotted(node: ast.AST) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


class TomlText:
    """``toml.dumps(data)``: the TOML text of a dict, kept as the dict (written to a file, it is that config)."""

    def __init__(self, data: Any):
        self.data = data


class _UnknownValue:
    """A dict entry whose value is not known: left out of a config the notebook writes, with a warning."""

    def __repr__(self) -> str:
        return "<unknown>"


UNKNOWN_VALUE = _UnknownValue()


_MAX_ITEMS = 1000


def iterate(value: Any) -> list[Any]:
    """The items a ``for`` over a known value goes through (bounded); Unknown for anything else."""
    if isinstance(value, dict):
        value = list(value)
    if isinstance(value, (list, tuple, str, range)) and len(value) <= _MAX_ITEMS:
        return list(value)
    raise Unknown("iterable")
