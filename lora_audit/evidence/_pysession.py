"""What a notebook walk keeps (``_pywalk``): the session's state from cell to cell, the shell commands found, and
the small helpers on Python names both halves of the walker use."""

from __future__ import annotations

import ast
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lora_audit.evidence._pyliteral import Env
from lora_audit.model import Evidence, Note

SUBPROCESS = {"subprocess.run", "subprocess.call", "subprocess.check_call", "subprocess.check_output",
               "subprocess.Popen", "sp.run", "sp.call", "sp.Popen"}
# Statements read per notebook (loops over known values are unrolled): past it, the rest is not read.
STEP_BUDGET = 50_000


class OverBudget(Exception):
    pass


TRAINING_HINT = re.compile(r"train\w*\.py|fine_tune\.py|accelerate\s+launch")


@dataclass
class Shell:
    """A shell command found in a cell: its text (lines kept) and where it starts."""

    text: str
    line: int  # line in the cell (1-based)
    words: list[str] | None = None  # a subprocess list: already words
    unknown: list[str] = field(default_factory=list)  # expressions of a subprocess list left as {expr}


@dataclass
class Session:
    """What persists from cell to cell: Python variables, the environment, files written, the evidence found."""

    label: str
    path: Path
    tmp: Path
    env: Env = field(default_factory=Env)
    files: dict[str, Path] = field(default_factory=dict)  # created file (as named, and by base name) -> tmp copy
    file_sources: dict[str, dict[str, str]] = field(default_factory=dict)  # tmp path -> key -> notebook source
    out: list[Evidence] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)
    # notebook functions without parameters: name -> (definition, cell label, first line, its cell's ! lines)
    functions: dict[str, tuple[Any, str, int, dict]] = field(default_factory=dict)
    calling: list[str] = field(default_factory=list)
    loops: int = 0  # inside a loop's body
    texts: dict[str, str] = field(default_factory=dict)  # unknown variable -> the expression that sets it
    used: set[str] = field(default_factory=set)  # created files a read command includes
    unread: list[str] = field(default_factory=list)  # sources of training commands built at run time
    scripts: dict[str, tuple[str, str, int]] = field(default_factory=dict)  # written .sh: text, cell, first line
    steps: int = 0
    file_lines: dict[str, tuple[str, int]] = field(default_factory=dict)  # %%writefile tmp -> cell, first line
    walked: set[int] = field(default_factory=set)  # calls of notebook functions that were read
    nodes: dict[str, Any] = field(default_factory=dict)  # unknown variable -> the expression that sets it
    # reads one shell command (notebook._shell): (session, command, cell label, first line, conditional)
    shell: Callable[..., None] = lambda *a, **k: None

    def close(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


def inherit_sources(env: Env, old: Any, new: Any) -> None:
    """``d = {k: v for k, v in d.items() if v is not None}``: the filtered dict keeps the lines of the keys it keeps."""
    if isinstance(old, dict) and isinstance(new, dict) and id(new) not in env.key_sources:
        env.sources_of(new, dict(env.key_sources.get(id(old), {})))


def is_launch_name(name: str) -> bool:
    """A call that runs a command: subprocess, os.system, IPython's system."""
    return name in SUBPROCESS or name in ("os.system", "get_ipython.system") or name.endswith(".system")


def is_launch(c: ast.Call) -> bool:
    return is_launch_name(dotted(c.func) or "")


def dotted(node: ast.AST) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Call):  # get_ipython().system
        inner = dotted(node.func)
        return ".".join([inner, *reversed(parts)]) if inner else None
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None
