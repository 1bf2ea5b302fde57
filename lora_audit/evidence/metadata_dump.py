"""Metadata dumps: a LoRA's ``ss_*`` metadata saved as JSON, read as that LoRA's metadata.

Where people keep them: the output of kohya's ``tools/show_metadata.py`` (``json.dumps(metadata, indent=2)`` of
the header's ``__metadata__``), metadata saved by lora-inspector or a web UI's "copy metadata", a whole safetensors
header (``{"__metadata__": {...}, "tensor": {...}}``), and the block pasted into a README (a ```json fence with
``ss_`` keys, read by ``notes``). Values are strings as kohya wrote them (``"16"``, ``"(512, 512)"``) or, after
pretty-printing tools, decoded JSON (``16``, ``{"10_x": {...}}``); both are read the same
(``kohya.metadata_keys.read_metadata``). Sources are ``file:line`` of each key.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lora_audit.evidence._json_lines import key_lines, read_json
from lora_audit.kohya.metadata_keys import read_metadata
from lora_audit.model import Evidence

_WRAPPERS = ("__metadata__", "metadata", "ss_metadata")


def metadata_of(obj: Any) -> dict[str, Any] | None:
    """The ``ss_*`` metadata an object holds (itself, or under ``__metadata__``/``metadata``), else None."""
    if not isinstance(obj, dict):
        return None
    if sum(1 for k in obj if isinstance(k, str) and k.startswith("ss_")) >= 2:
        return obj
    for w in _WRAPPERS:
        inner = obj.get(w)
        if isinstance(inner, dict) and sum(1 for k in inner if str(k).startswith("ss_")) >= 2:
            return inner
    return None


def is_metadata_dump(obj: Any) -> bool:
    return metadata_of(obj) is not None


def metadata_evidence(md: dict[str, Any], label: str, lines: dict[str, int] | None = None,
                      first_line: int = 1) -> Evidence:
    """Evidence (kind ``metadata``) from a dict of ``ss_*`` keys; ``lines``: key → line in its text."""
    flat = {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in md.items()}
    reading = read_metadata(flat, label)
    lines = lines or {}

    def src(source: str | None) -> str | None:
        if not source or not source.startswith(label + ":"):
            return source
        key = source[len(label) + 1:]
        return f"{label}:{lines[key] + first_line - 1}" if key in lines else source

    settings = [s.model_copy(update={"source": src(s.source)}) for s in reading.settings]
    warnings = [w.model_copy(update={"source": src(w.source)}) for w in reading.warnings]
    facts = dict(reading.facts)
    facts["metadata"] = flat
    return Evidence(path=label, kind="metadata", settings=settings, warnings=warnings, facts=facts)


def parse_metadata_dump(path: str | Path, label: str | None = None) -> Evidence:
    """A JSON file of ``ss_*`` metadata → Evidence; a file without such keys gives an Evidence with no settings."""
    path = Path(path)
    label = label or str(path)
    data, text, _ = read_json(path, label)
    md = metadata_of(data) or {}
    lines = key_lines(text) if md is data else _inner_lines(text)
    return metadata_evidence(md, label, lines)


def python_repr_dump(path: str | Path, label: str | None = None) -> Evidence | None:
    """Metadata printed with ``pprint`` (single quotes, True/None) and saved as ``.json`` (a PowerShell
    ``Inspect-Lora`` helper does this): read with ``ast.literal_eval``, literals only; None when it is not that."""
    import ast

    from lora_audit.evidence._io import read_text

    label = label or str(path)
    text = read_text(path, label)
    if "ss_" not in text:
        return None
    try:
        obj = ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None
    md = metadata_of(obj)
    if md is None:
        return None
    return metadata_evidence(md, label, _inner_lines(text))


def _inner_lines(text: str) -> dict[str, int]:
    """Line of each ``"ss_..."`` key anywhere in the text (for a dump wrapped in ``__metadata__``)."""
    import re

    out: dict[str, int] = {}
    for n, line in enumerate(text.split("\n"), 1):
        for m in re.finditer(r'["\']((?:ss_|sshs_|modelspec\.)[\w.]+)["\']\s*:', line):
            out.setdefault(m.group(1), n)
    return out
