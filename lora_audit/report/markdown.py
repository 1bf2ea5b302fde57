"""Markdown reports rendered through jinja2 templates (templates/, shipped as lora_audit._templates)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import jinja2

from lora_audit.audit import Audit
from lora_audit.diff import Cell, Change
from lora_audit.kohya.catalog import CATEGORIES
from lora_audit.model import Param
from lora_audit.report.console import fmt_value


def _cell(c: Cell | Param | None) -> str:
    if c is None or c.origin == "unknown":
        return "*unknown*"
    v = fmt_value(c.value)
    if isinstance(c, Param) and c.alternatives:
        v += " (or " + ", ".join(fmt_value(a.value) for a in c.alternatives) + ")"
    return {"explicit": v, "default": f"{v} *(default)*", "inferred": f"{v} *(inferred)*"}.get(c.origin, v)


def _md(text) -> str:
    return str(text if text is not None else "").replace("|", "\\|").replace("\n", " ")


def _basename(path: str) -> str:
    """`runs/x/run_a/file.sh:12` -> `run_a/file.sh:12`: the run's folder and the file, not the whole path."""
    return "/".join(path.replace("\\", "/").split("/")[-2:]) if path else ""


def _shown(c: Change) -> bool:
    return c.kind in ("changed", "added", "removed") or c.nominal or any(
        v.origin in ("explicit", "inferred") for v in c.values.values())


def _environment(template: str | Path | None) -> tuple[jinja2.Environment, str]:
    if template:
        p = Path(template)
        loader = jinja2.FileSystemLoader(str(p.parent))
        name = p.name
    else:
        loader = jinja2.FileSystemLoader(str(resources.files("lora_audit._templates")))
        name = "audit.md.j2"
    env = jinja2.Environment(loader=loader, undefined=jinja2.StrictUndefined, trim_blocks=False,
                             lstrip_blocks=False, keep_trailing_newline=True, autoescape=False)
    env.filters.update(md=_md, basename=_basename, code=lambda s: f"`{s}`")
    env.tests["shown"] = _shown
    return env, name


def render_audit(a: Audit, template: str | Path | None = None) -> str:
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
