"""Line-preserving edits of a training script (bash, .bat/.cmd, .ps1): the variant of a script baseline is the
original text with only the changed flags' lines edited, plus the per-variant output paths.

Each parameter's source (``file:line``, from the evidence parser) says on which line its flag is written; only
that line changes. A flag kohya does not need any more is removed (its line too, when nothing else is left on
it); a new flag goes on a line of its own after the command's last flag. Values are quoted for the script's
shell, so nothing in them can run.
"""

from __future__ import annotations

import re
import shlex
from typing import Any

from lora_audit.kohya.catalog import catalog

_CONT = {"shell": "\\", "bat": "^", "ps1": "`"}


_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_SCRIPT_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\.py")
_PS_QUOTES = "'\u2018\u2019\u201a\u201b"  # PowerShell ends a single-quoted string at any of these


def quote(value: Any, kind: str) -> str:
    """``value`` as one word of the script's shell, taken literally. Raises ScriptEditError when that cannot be
    done (a NUL anywhere; in a .bat: a line break, or ``!`` that delayed expansion would expand)."""
    text = value if isinstance(value, str) else _plain(value)
    if "\0" in text:
        raise ScriptEditError("a value holds a NUL character, which no shell can pass")
    if kind == "bat":
        if any(ch in text for ch in "\r\n\x1a!"):
            raise ScriptEditError("a value holds a line break or '!', which cmd.exe cannot take literally")
        return '"' + text.replace("%", "%%").replace('"', '""') + '"'
    if kind == "ps1":
        for ch in _PS_QUOTES:
            text = text.replace(ch, ch * 2)
        return "'" + text + "'"
    return shlex.quote(text)


def _plain(value: Any) -> str:
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _flag_pattern(name: str) -> re.Pattern:
    value = r"""(?P<value>"(?:[^"\\]|\\.)*"|'[^']*'|[^\s\\^`"']+)"""
    return re.compile(rf"(?P<flag>--{re.escape(name)})(?![\w-])(?:(?P<sep>=|[ \t]+){value})?")


def _render(name: str, value: Any, kind: str) -> list[str]:
    arg = catalog().get(name)
    if arg is not None and arg.is_flag:
        return [f"--{name}"] if value else []
    values = value if isinstance(value, (list, tuple)) else [value]
    return [f"--{name}"] + [quote(v, kind) for v in values] if arg is not None and arg.is_list else \
        [f"--{name}={quote(value, kind)}"]


class ScriptEditError(ValueError):
    """The edit cannot be made textually (e.g. a flag inside a variable): the caller falls back to a config."""


def edit_script(text: str, kind: str, edits: dict[str, tuple[Any, bool]], lines: dict[str, int]) -> str:
    """Apply ``edits`` (param -> (value, remove)) to ``text``; ``lines`` gives each existing flag's line."""
    bad = [n for n in edits if not _NAME.fullmatch(n)]
    if bad:
        raise ScriptEditError(f"{bad[0]!r} is not a kohya argument name that can be written as a flag")
    out: list[str | None] = list(text.split("\n"))  # None: a line emptied by the edit, left out
    cont = _CONT.get(kind, "\\")
    last_line = max(lines.values()) if lines else None
    additions: list[str] = []
    for name, (value, remove) in edits.items():
        arg = catalog().get(name)
        new = [] if remove or (arg is not None and arg.is_flag and not value) else _render(name, value, kind)
        if name in lines:
            _edit_line(out, name, lines[name], " ".join(new), arg, cont)
        elif new:
            additions.append(" ".join(new))
    _end_cut_commands(out, text.split("\n"), cont)
    if additions:
        if last_line is None:
            raise ScriptEditError("no flag of the training command to add new ones after")
        _add_flags(out, additions, last_line, cont, kind)
    return "\n".join(line for line in out if line is not None)


def _edit_line(out: list[str | None], name: str, line_no: int, replacement: str, arg: Any, cont: str) -> None:
    """``--name`` on line ``line_no`` replaced by ``replacement`` (a line left empty becomes None)."""
    i = line_no - 1
    text = out[i] if 0 <= i < len(out) else None
    if text is None:
        raise ScriptEditError(f"line {line_no} of --{name} is not in the script")
    m = _flag_pattern(name).search(text)
    if m is not None and text[:m.start()].count('"') % 2 == 1:
        raise ScriptEditError(f"--{name} is inside a quoted variable on line {line_no}")
    if m is None or (arg is not None and arg.is_list and m.group("value") is not None):
        raise ScriptEditError(f"--{name} is not written literally on line {line_no}")
    if arg is not None and not arg.is_flag and m.group("value") is None:
        raise ScriptEditError(f"the value of --{name} is not on line {line_no}")
    line = text[:m.start()] + replacement + text[m.end():]
    if not replacement:
        out[i] = re.sub(r"[ \t]{2,}", " ", line) if line.strip(" \t\r" + cont) else None
        return
    out[i] = line


def _end_cut_commands(out: list[str | None], original: list[str], cont: str) -> None:
    """Where the command's last line went, the line before it must not continue onto what follows the command."""
    for k, line in enumerate(out):
        if line is None and not original[k].rstrip().endswith(cont):
            p = k - 1
            while p >= 0 and out[p] is None:
                p -= 1
            prev = out[p] if p >= 0 else None
            if prev is not None and prev.rstrip().endswith(cont):
                body = prev.rstrip()
                out[p] = body[:-1].rstrip() + ("\r" if prev.endswith("\r") else "")


def _add_flags(out: list[str | None], additions: list[str], last_line: int, cont: str, kind: str) -> None:
    """New flags after the command's last flag line: as continuation lines, or at the end of a one-line command."""
    i = last_line - 1
    while i > 0 and out[i] is None:
        i -= 1
    line = out[i]
    assert line is not None  # the first line of a command is never emptied: it names the script
    indent = line[:len(line) - len(line.lstrip(" \t"))] or "  "
    cr = "\r" if line.endswith("\r") else ""  # CRLF scripts (.bat, .ps1) keep their line ends
    if line.rstrip().endswith(cont):
        out[i + 1:i + 1] = [f"{indent}{a} {cont}{cr}" for a in additions]
    else:
        body, comment = _split_comment(line.removesuffix("\r"), kind)
        out[i] = body.rstrip() + " " + " ".join(additions) + comment + cr


def _split_comment(line: str, kind: str) -> tuple[str, str]:
    if kind in ("shell", "ps1"):
        m = re.search(r"\s#[^'\"]*$", line)
        if m:
            return line[:m.start()], line[m.start():]
    return line, ""


def rename_script(text: str, old: str, new: str) -> str:
    """``train_network.py`` → ``sdxl_train_network.py`` where the command names it (a path may precede it)."""
    if not _SCRIPT_NAME.fullmatch(new):
        raise ScriptEditError(f"{new!r} is not a training script name that can be written into a script")
    pattern = re.compile(rf"(?<![\w.-]){re.escape(old)}(?![\w.-])")
    if not pattern.search(text):
        raise ScriptEditError(f"{old} is not named in the script")
    return pattern.sub(new, text)
