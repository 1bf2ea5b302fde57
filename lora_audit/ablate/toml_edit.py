"""Line-preserving edits of a TOML file (a kohya config or dataset TOML): the value on the line a parameter came
from (its provenance, ``file:line``) is replaced, and nothing else of the file changes — not the key's spelling
(``batch_size`` in a dataset TOML is kohya's ``train_batch_size``), not its table, not its comment.

A value that no line of the file sets, or one written over several lines, is set through tomlkit where its key is
(or added at the top), which also keeps comments and order. The result is parsed back before it is returned.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from typing import Any

import tomlkit
from tomlkit.exceptions import TOMLKitError

from lora_audit.ablate.files import comment_text

_KEY = r"""(?:[A-Za-z0-9_-]+|"(?:[^"\\\r\n]|\\.)*"|'[^'\r\n]*')"""
_ASSIGN = re.compile(rf"^(?P<indent>[ \t]*)(?P<key>{_KEY}(?:[ \t]*\.[ \t]*{_KEY})*)(?P<eq>[ \t]*=[ \t]*)(?P<rest>.*)$")


class TomlEditError(ValueError):
    """The file cannot be edited as TOML text (it does not parse, or the edit would not)."""


@dataclass
class Edit:
    key: str  # the kohya name, for keys set through tomlkit
    value: Any = None
    remove: bool = False
    line: int | None = None  # 1-based line of the file that sets it (provenance), if any
    comment: str | None = None  # for a key added or set through tomlkit


def _render(value: Any) -> str:
    return tomlkit.item(value).as_string()


def _set_line(line: str, value: Any) -> str | None:
    """``line`` with the value of its ``key = value`` replaced (comment and spacing kept); None if the line is not
    a one-line assignment."""
    cr = "\r" if line.endswith("\r") else ""
    body = line[:-1] if cr else line
    m = _ASSIGN.match(body)
    if m is None:
        return None
    try:
        doc = tomlkit.parse("x = " + m.group("rest"))
        item = doc.item("x")
    except (TOMLKitError, ValueError, RecursionError, KeyError):
        return None  # a value continued on the next lines: not editable on this line alone
    trivia = getattr(item, "trivia", None)  # a scalar Item's (never a table proxy here: "x = value")
    if trivia is None:
        return None
    tail = (trivia.comment_ws + trivia.comment) if trivia.comment else ""
    return m.group("indent") + m.group("key") + m.group("eq") + _render(value) + tail + cr


def edit_toml(text: str, edits: list[Edit], by_key: bool = True) -> str:
    """Apply ``edits``: at their lines when they have one that holds a one-line assignment, else through tomlkit
    (``by_key``; without it such an edit is a TomlEditError: a dataset TOML's keys are not kohya's names)."""
    lines: list[str | None] = list(text.split("\n"))
    rest: list[Edit] = []
    for e in edits:
        i = (e.line or 0) - 1
        current = lines[i] if e.line is not None and 0 <= i < len(lines) else None
        if current is None:
            rest.append(e)
            continue
        new = None if e.remove else _set_line(current, e.value)
        if e.remove and _ASSIGN.match(current.rstrip("\r")):
            lines[i] = None
            continue
        if new is None:
            rest.append(e)
            continue
        lines[i] = new
    out = "\n".join(line for line in lines if line is not None)
    if rest and not by_key:
        raise TomlEditError(f"{rest[0].key} is not on a line of its own that can be edited"
                            + (f" (line {rest[0].line})" if rest[0].line else ""))
    if rest:
        try:
            doc = tomlkit.parse(out)
        except (TOMLKitError, ValueError, RecursionError) as err:
            raise TomlEditError(f"not TOML lora-audit can edit: {comment_text(str(err))[:200]}") from None
        for e in rest:
            set_key(doc, e.key, e.value, e.remove, e.comment)
        out = tomlkit.dumps(doc)
    try:
        tomllib.loads(out)  # what we write must parse
    except (tomllib.TOMLDecodeError, ValueError, RecursionError) as err:
        raise TomlEditError(f"the edit would not parse: {err}") from None
    return out


def _tables(doc) -> list:
    out = [doc]
    for _, v in doc.items():
        if isinstance(v, tomlkit.items.Table):
            out.append(v)
        elif isinstance(v, tomlkit.items.AoT):
            for t in v:
                out.append(t)
                for _, sub in t.items():
                    if isinstance(sub, tomlkit.items.AoT):
                        out.extend(sub)
    return out


def has_key(doc, key: str) -> bool:
    return any(key in t for t in _tables(doc))


def set_key(doc, key: str, value: Any, remove: bool, comment: str | None = None) -> bool:
    """Edit ``key`` where it is (any table; kohya flattens them, train_util.read_config_from_file); add it at the
    top when absent. True if the document had it."""
    found = False
    item = tomlkit.item(value) if not remove else None
    if item is not None and comment:
        item.comment(comment_text(comment))
    for t in _tables(doc):
        if key in t:
            found = True
            if remove:
                del t[key]
            else:
                old = t[key]
                old_trivia = getattr(old, "trivia", None)
                old_comment = old_trivia.comment if old_trivia is not None else ""
                if comment is None or old_comment:
                    item = tomlkit.item(value)  # keep the user's own comment on the line
                    if old_comment:
                        item.trivia.comment_ws = old.trivia.comment_ws
                        item.trivia.comment = old.trivia.comment
                t[key] = item
    if not found and not remove:
        doc[key] = item
    return found
