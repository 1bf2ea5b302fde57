"""JSON reading with line numbers: json gives the values, a scan of the text gives each top-level key's line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lora_audit.errors import EvidenceError
from lora_audit.evidence._io import parse_failure, problem_line, read_text, structure_problem, without_surrogates


def read_json(path: Path, label: str) -> tuple[dict[str, Any], str, list[str]]:
    """(object, text, keys that repeat) of a JSON file holding one object; EvidenceError with the line otherwise."""
    text = read_text(path, label)
    dupes: list[str] = []

    def pairs(items: list[tuple[str, Any]]) -> dict:
        seen: dict[str, Any] = {}
        for k, v in items:
            if k in seen:
                dupes.append(k)
            seen[k] = v
        return seen

    data = parse_json(text, label, pairs)
    if not isinstance(data, dict):
        raise EvidenceError("not a kohya_ss GUI config: the JSON is not an object", label, 1)
    return data, text, dupes


def parse_json(text: str, label: str, object_pairs_hook: Any = None) -> Any:
    """``json.loads`` whose every failure is a one-line EvidenceError: syntax (with the line), depth bombs,
    integers with thousands of digits; a result nested past ``MAX_DEPTH`` or with an integer outside 64 bits
    is refused too."""
    try:
        data = json.loads(text, object_pairs_hook=object_pairs_hook)
    except json.JSONDecodeError as e:
        raise EvidenceError(f"invalid JSON: {e.msg} (column {e.colno})", label, e.lineno) from None
    except (RecursionError, ValueError, MemoryError) as e:  # depth bombs, 5000-digit integers
        raise EvidenceError(f"invalid JSON: {parse_failure(e) or e}", label) from None
    problem = structure_problem(data)
    if problem:
        raise EvidenceError(f"invalid JSON: {problem}", label, problem_line(text, problem))
    return without_surrogates(data)


def load_json(path: Path, label: str) -> Any:
    """Any JSON value of a file (read through ``_io``), or a one-line EvidenceError."""
    return parse_json(read_text(path, label), label)


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

