"""JSON reading with line numbers: json gives the values, a scan of the text gives each top-level key's line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lora_audit.errors import EvidenceError


def read_json(path: Path, label: str) -> tuple[dict[str, Any], str, list[str]]:
    """(object, text, keys that repeat) of a JSON file holding one object; EvidenceError with the line otherwise."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise EvidenceError("file not found", label) from None
    except UnicodeDecodeError as e:
        raise EvidenceError(f"not UTF-8 text ({e.reason})", label) from None
    dupes: list[str] = []

    def pairs(items: list[tuple[str, Any]]) -> dict:
        seen: dict[str, Any] = {}
        for k, v in items:
            if k in seen:
                dupes.append(k)
            seen[k] = v
        return seen

    try:
        data = json.loads(text, object_pairs_hook=pairs)
    except json.JSONDecodeError as e:
        raise EvidenceError(f"invalid JSON: {e.msg} (column {e.colno})", label, e.lineno) from None
    if not isinstance(data, dict):
        raise EvidenceError("not a kohya_ss GUI config: the JSON is not an object", label, 1)
    return data, text, dupes


def key_lines(text: str) -> dict[str, int]:
    """Line (1-based) of each key of the top-level object; the last one when a key repeats (json keeps it)."""
    lines: dict[str, int] = {}
    depth, line, i, n = 0, 1, 0, len(text)
    while i < n:
        c = text[i]
        if c == "\n":
            line += 1
        elif c in "{[":
            depth += 1
        elif c in "}]":
            depth -= 1
        elif c == '"':
            start_line, j, buf = line, i + 1, []
            while j < n and text[j] != '"':
                if text[j] == "\\" and j + 1 < n:
                    buf.append(text[j:j + 2])
                    j += 2
                    continue
                if text[j] == "\n":
                    line += 1
                buf.append(text[j])
                j += 1
            k = j + 1
            while k < n and text[k] in " \t\r\n":
                k += 1
            if depth == 1 and k < n and text[k] == ":":
                try:
                    key = json.loads('"' + "".join(buf) + '"')
                except json.JSONDecodeError:
                    key = "".join(buf)
                lines[key] = start_line
            i = j
        i += 1
    return lines

