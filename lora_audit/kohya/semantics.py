"""kohya's meaning of values (data in data/semantics.toml): what an unset default does, when a parameter is inert."""

from __future__ import annotations

import ast
import tomllib
from functools import cache
from importlib import resources
from typing import Any

from lora_audit.expr import View, compile_expr, evaluate
from lora_audit.model import Run


@cache
def _data() -> dict:
    return tomllib.loads((resources.files("lora_audit.kohya") / "data" / "semantics.toml").read_text("utf-8"))


def effective(name: str, value: Any) -> tuple[Any, str | None]:
    """The value kohya acts on: an unset (None) parameter may mean a concrete value (max_token_length -> 75)."""
    if value is None and name in _data().get("effective", {}):
        e = _data()["effective"][name]
        return e["value"], e["why"]
    return value, None


def run_view(run: Run) -> View:
    return View({k: p.value for k, p in run.params.items() if p.origin != "unknown"})


def inert(name: str, run: Run) -> str | None:
    """Why ``name`` has no effect in ``run``, or None when it may act (or we cannot tell)."""
    rule = _data().get("inert", {}).get(name)
    if not rule:
        return None
    # the condition must be decidable: every parameter it reads must be known in this run
    names = {n.attr for n in ast.walk(compile_expr(rule["when"])) if isinstance(n, ast.Attribute)}
    if any(run.params.get(n) is not None and run.params[n].origin == "unknown" for n in names):
        return None
    if any(n not in run.params for n in names):
        return None
    return rule["why"] if evaluate(rule["when"], {"run": run_view(run)}) else None
