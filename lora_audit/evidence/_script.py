"""What the script tokenizers (bash, batch, PowerShell) share.

A tokenizer turns a script into commands of ``Token``s (one word after quote removal and variable expansion, with
the line it was written on). Characters keep their own line through variable expansion, so a flag written inside
``ARGS="--network_dim 32"`` points at the line of that assignment, not at the line that uses ``$ARGS``.
"""

from __future__ import annotations

import ast
import operator
import re
from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from lora_audit.errors import EvidenceError
from lora_audit.evidence.invocation import Token
from lora_audit.model import Note

# The longest command line a program can be started with, which bounds what a reader keeps of one command or one
# variable. Linux execve(2): ARG_MAX, arguments and environment together, 1/4 of the 8 MB default stack limit
# ("Argument list too long" past it). Windows CreateProcess: 32,767 characters (PowerShell starting python.exe);
# cmd.exe's own line limit (8,191) is _batch._CMD_MAX.
ARG_MAX = 2 * 1024 * 1024
WINDOWS_COMMAND_LINE = 32767
# Training commands kept from one script (one Evidence each): a file of thousands is generated, not a record of
# training runs, and would hold memory without bound.
MAX_LAUNCHES = 1000


def check_launches(kept: list, label: str, line: int) -> None:
    """One line when a script holds more than MAX_LAUNCHES training commands."""
    if len(kept) >= MAX_LAUNCHES:
        raise EvidenceError(f"more than {MAX_LAUNCHES} training commands in one file: lora-audit reads at most that "
                            "many (one run's evidence holds a few)", label, line)


# One character of a word: (text, line, kind). LIT is taken as written; SPLIT came from an unquoted expansion and
# is subject to word splitting on blanks; BREAK separates the elements of a quoted array expansion ("${A[@]}").
Char = tuple[str, int, int]
LIT, SPLIT, BREAK = 0, 1, 2


@dataclass
class Command:
    """One simple command of a script, its words expanded, and what went wrong while expanding them."""

    words: list[Token]
    notes: list[Note] = field(default_factory=list)
    # the script's variables this command used: {"name", "value", "defined": "file:line"}
    variables: list[dict] = field(default_factory=list)
    # what makes the command unreadable, raised only if it turns out to be a training command (cmd.exe runs the
    # other lines of a batch file whatever one line's quotes do)
    error: EvidenceError | None = None
    # when a variable the command uses has several possible values (set in a branch the script cannot decide):
    # the command's words under each combination, and which branches that combination takes
    variants: list[tuple[list[Token], str]] = field(default_factory=list)
    # files the script wrote before this command (heredocs): name as written -> (text, "file:line" of its first line)
    created: dict[str, tuple[str, str, int]] = field(default_factory=dict)


@dataclass
class Value:
    """A script variable: one item (a string) or several (an array), each character with its line."""

    items: list[list[tuple[str, int]]]
    line: int
    array: bool = False
    notes: list[Note] = field(default_factory=list)
    runtime: bool = False  # only known when the script runs (set in a branch the script cannot decide)
    kind: str = "string"  # PowerShell: "number", "bool" or "string" (0 is false, "0" is true)
    size: int = -1  # characters of its items, kept by appends (-1: not counted yet)

    def text(self) -> str | list[str]:
        texts = ["".join(c for c, _ in item) for item in self.items]
        return texts if self.array else (texts[0] if texts else "")


class Lines:
    """Position in a text → 1-based line (offset by ``first_line`` for a block inside a larger file)."""

    def __init__(self, text: str, first_line: int = 1):
        self._newlines = [m.start() for m in re.finditer("\n", text)]
        self.first = first_line
        self._lo, self._hi, self._line = 0, -1, first_line  # the last line asked for: positions lo..hi

    def __call__(self, pos: int) -> int:
        if self._lo <= pos <= self._hi:  # readers ask for the same line many times in a row
            return self._line
        nl = self._newlines
        i = bisect_left(nl, pos)
        self._lo = nl[i - 1] + 1 if i else 0
        self._hi = nl[i] if i < len(nl) else 1 << 62
        self._line = self.first + i
        return self._line


def fields(chars: list[Char], line: int, keep_empty: bool) -> list[Token]:
    """Split expanded characters into words: on blanks from unquoted expansions and on array breaks."""
    out: list[Token] = []
    cur: list[Char] = []
    for ch in chars:
        text, _, kind = ch
        if kind == BREAK or (kind == SPLIT and text in " \t\n"):
            if cur:
                out.append(_token(cur))
                cur = []
            continue
        cur.append(ch)
    if cur:
        out.append(_token(cur))
    if not out and keep_empty:
        out.append(Token("", line))
    return out


def joined(chars: list[Char], line: int) -> Token:
    """The characters as one word (no splitting: assignments, quoted strings)."""
    kept = [c for c in chars if c[2] != BREAK]
    return _token(kept) if kept else Token("", line)


def _token(chars: list[Char]) -> Token:
    return Token("".join(c[0] for c in chars), chars[0][1])


def lit(text: str, line: int, kind: int = LIT) -> list[Char]:
    return [(c, line, kind) for c in text]


def read_script(path: Path, label: str) -> str:
    """A script's text: BOM-aware (PowerShell often saves UTF-16), CRLF folded to LF."""
    from lora_audit.evidence._io import read_text  # regular files only, 20 MB cap, any encoding (one line otherwise)

    text = read_text(path, label)
    return text.replace("\r\n", "\n").replace("\r", "\n")


# `$(dirname "$0")`, `$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)`, ...: the script's own folder, which is where
# the evidence file lies, so "." resolves relative files (config_file, dataset_config) the same way.
_SCRIPT_DIR_WORDS = {"cd", "dirname", "pwd", "realpath", "readlink", "f", "P", "e", "BASH_SOURCE", "0"}


def is_script_dir(raw: str) -> bool:
    s = raw.replace('"', " ").replace("'", " ")
    if "dirname" not in s or not re.search(r"\$\{?(0\}?|BASH_SOURCE)", s):
        return False
    return set(re.findall(r"[A-Za-z_][\w]*|\d+", s)) <= _SCRIPT_DIR_WORDS


_ARITH_OPS: dict[type, Callable[[int, int], int]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Mod: operator.mod,
    ast.Div: lambda a, b: int(a / b), ast.FloorDiv: lambda a, b: int(a / b),
}


def arith(expr: str, lookup: Callable[[str], str | None]) -> int | None:
    """Integer arithmetic as ``$(( ))`` and ``set /a`` do it, on literals and known variables; None if it can't."""
    expr = re.sub(r"\$\{?([A-Za-z_]\w*)\}?", r"\1", expr.strip())
    try:
        tree = ast.parse(expr, mode="eval")
    except SyntaxError:
        return None

    def ev(node: ast.AST) -> int:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int) and not isinstance(node.value, bool):
            return node.value
        if isinstance(node, ast.Name):
            v = lookup(node.id)
            if v is None:
                raise ValueError(node.id)
            return int(v.strip() or 0)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            return -ev(node.operand) if isinstance(node.op, ast.USub) else ev(node.operand)
        if isinstance(node, ast.BinOp) and type(node.op) in _ARITH_OPS:
            return _ARITH_OPS[type(node.op)](ev(node.left), ev(node.right))
        raise ValueError(type(node).__name__)

    try:
        return ev(tree)
    except (ValueError, ZeroDivisionError):
        return None


def commented_continuation(text: str, start: int, stop: int, continuation: str) -> bool:
    """A comment that fills its line and ends with the continuation character: a line commented out of a command."""
    line_start = text.rfind("\n", 0, start) + 1
    return not text[line_start:start].strip() and text[start:stop].rstrip().endswith(continuation)


def unique_notes(notes: list[Note]) -> list[Note]:
    seen: set[tuple[str, str | None]] = set()
    out = []
    for n in notes:
        if (n.message, n.source) not in seen:
            seen.add((n.message, n.source))
            out.append(n)
    return out
