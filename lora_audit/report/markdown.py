"""Markdown reports rendered through jinja2 templates (templates/, shipped as lora_audit._templates)."""

from __future__ import annotations

from pathlib import Path

import jinja2

from lora_audit.audit import Audit
from lora_audit.diff import Cell
from lora_audit.format import format_value
from lora_audit.kohya.catalog import CATEGORIES
from lora_audit.model import Param
from lora_audit.report.templates import environment


def _cell(c: Cell | Param | None) -> str:
    if c is None or c.origin == "unknown":
        return "*unknown*"
    v = format_value(c.value)
    if isinstance(c, Param) and c.alternatives:
        v += " (or " + ", ".join(format_value(a.value) for a in c.alternatives) + ")"
    return {"explicit": v, "default": f"{v} *(default)*", "inferred": f"{v} *(inferred)*"}.get(c.origin, v)


def _environment(template: str | Path | None) -> tuple[jinja2.Environment, str]:
    if template:
        p = Path(template)
        return environment(p.parent), p.name
    return environment(), "audit.md.j2"


def render_audit(a: Audit, template: str | Path | None = None) -> str:
    """The Markdown report of an audit (``template``: your own jinja2 template instead of templates/audit.md.j2)."""
    env, name = _environment(template)
    runs = {r.name: r for r in a.runs}

    def unknown_note(run: str) -> str:
        notes = [p.note for p in runs[run].params.values() if p.origin == "unknown" and p.note]
        return (notes[0][0].upper() + notes[0][1:] + ".") if notes else ""

    text = env.get_template(name).render(audit=a, categories=CATEGORIES, cell=_cell, unknown_note=unknown_note)
    # collapse the blank-line runs jinja leaves between blocks: GitHub renders them anyway, diffs stay small
    out, blank = [], 0
    for line in text.splitlines():
        blank = blank + 1 if not line.strip() else 0
        if blank <= 1:
            out.append(line.rstrip())
    return "\n".join(out).strip() + "\n"
