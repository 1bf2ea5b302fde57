"""TOML reading with line numbers: tomllib gives the values, a scan of the text gives each key's line."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from lora_audit.errors import EvidenceError
from lora_audit.evidence._io import parse_failure, problem_line, read_text, structure_problem

_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"""^\s*("[^"]+"|'[^']+'|[A-Za-z0-9_.-]+)\s*=""")


def read_toml(path: Path) -> tuple[dict, str]:
    text = read_text(path)
    try:
        data = tomllib.loads(text)
        problem = structure_problem(data)
        if problem:
            raise EvidenceError(f"invalid TOML: {problem}", str(path), problem_line(text, problem))
        return data, text
    except tomllib.TOMLDecodeError as e:
        m = re.search(r"line (\d+)", str(e))
        msg = re.sub(r"\s*\(at (line \d+, column \d+|end of document)\)", "", str(e))
        line = int(m.group(1)) if m else len(text.rstrip("\n").split("\n"))  # "at end of document"
        raise EvidenceError(f"invalid TOML: {msg}", str(path), line) from None
    except (RecursionError, ValueError, MemoryError) as e:  # depth bombs, 5000-digit integers
        raise EvidenceError(f"invalid TOML: {parse_failure(e) or e}", str(path)) from None


class KeyLines:
    """Line of each key, addressed by (table path, occurrence of an array-of-tables, key)."""

    def __init__(self, text: str):
        # list of (table_name, occurrence_index, key, line)
        self._entries: list[tuple[str, int, str, int]] = []
        counts: dict[str, int] = {}
        table, occ = "", 0
        in_multiline = False
        for i, line in enumerate(text.splitlines(), start=1):
            stripped = line.strip()
            if in_multiline:
                if stripped.endswith("]") or stripped.endswith('"""') or stripped.endswith("'''"):
                    in_multiline = False
                continue
            h = _HEADER.match(line)
            if h and not _KEY.match(line):
                table = h.group(2).replace('"', "").replace("'", "")
                if h.group(1) == "[[":
                    counts[table] = counts.get(table, -1) + 1
                    occ = counts[table]
                else:
                    occ = 0
                continue
            k = _KEY.match(line)
            if k:
                key = k.group(1).strip("\"'")
                self._entries.append((table, occ, key, i))
                rest = line[k.end():].strip()
                if (rest.startswith("[") and not rest.rstrip().endswith("]")) or rest.count('"""') == 1 \
                        or rest.count("'''") == 1:
                    in_multiline = True
        # indexes, so each look-up is O(1) and a file of 300,000 keys is read in linear time
        self._exact: dict[tuple[str, int, str], int] = {}
        self._any_occ: dict[tuple[str, str], int] = {}
        self._any: dict[str, int] = {}
        self._tables: dict[tuple[str, int], dict[str, int]] = {}
        for tab, o, name, ln in self._entries:
            self._exact.setdefault((tab, o, name), ln)
            self._any_occ.setdefault((tab, name), ln)
            self._any.setdefault(name, ln)
            self._tables.setdefault((tab, o), {})[name] = ln

    def line(self, key: str, table: str = "", occurrence: int | None = None) -> int | None:
        if occurrence is None:
            return self._any_occ.get((table, key))
        return self._exact.get((table, occurrence, key))

    def line_in_any(self, key: str) -> int | None:
        return self._any.get(key)

    def lines_for_table(self, table: str, occurrence: int) -> dict[str, int]:
        return dict(self._tables.get((table, occurrence), {}))


def flatten_sections(data: dict[str, Any]) -> list[tuple[str, str, Any]]:
    """kohya's read_config_from_file flattening: top-level keys and one level of sections, later wins.

    Returns (section, key, value) in file order; section "" for top-level keys.
    """
    out: list[tuple[str, str, Any]] = []
    for name, value in data.items():
        if isinstance(value, dict):
            for k, v in value.items():
                out.append((name, k, v))
        else:
            out.append(("", name, value))
    return out
