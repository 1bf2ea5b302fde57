"""Plain-text rendering for the terminal (the CLI prints what these return)."""

from __future__ import annotations

from lora_audit.format import format_value, one_line
from lora_audit.kohya.catalog import CATEGORIES, category
from lora_audit.model import Run


def table(rows: list[list[str]], headers: list[str]) -> str:
    rows, headers = [[one_line(c) for c in r] for r in rows], [one_line(h) for h in headers]
    widths = [max(len(str(r[i])) for r in rows + [headers]) for i in range(len(headers))]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip()
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join(out)


def render_run(run: Run, show_all: bool = False) -> str:
    out = [one_line(f"run {run.name}  verdict: {run.verdict}  script: {run.script or 'unknown'}")]
    out.append(one_line("evidence: " + ", ".join(f"{e.path} ({e.kind})" for e in run.evidence)))
    groups: dict[str, list[list[str]]] = {}
    hidden = 0
    for name, p in sorted(run.params.items()):
        if p.origin == "default" and not show_all:
            hidden += 1
            continue
        value = format_value(p.value) if p.origin != "unknown" else "?"
        if p.alternatives:
            value += " (or " + ", ".join(format_value(a.value) for a in p.alternatives) + ")"
        groups.setdefault(category(name), []).append([name, value, p.origin, p.source or "", p.note or ""])
    for cat in CATEGORIES:
        if cat in groups:
            out.append(f"\n## {cat}")
            out.append(table(groups[cat], ["param", "value", "origin", "source", "note"]))
    if hidden:
        out.append(f"\n({hidden} parameters at kohya's defaults hidden; --all shows them)")
    if run.conflicts:
        out.append("\nconflicts:")
        for c in run.conflicts:
            out.append(one_line(f"  {c.param}: " + " vs ".join(f"{format_value(v.value)} ({v.source})"
                                                             for v in c.values)))
    if run.warnings:
        out.append("\nwarnings:")
        for w in run.warnings:
            out.append(one_line(f"  {w.source + ': ' if w.source else ''}{w.message}"))
    return "\n".join(out)


def render_diff(d) -> str:
    """A table per category: parameter, each run's value (origin), the change in words."""
    out = [one_line(f"baseline: {d.runs[0]}")]
    rows_by_cat: dict[str, list[list[str]]] = {}
    origin_mark = {"explicit": "", "default": " (default)", "inferred": " (inferred)", "unknown": "?"}
    for c in d.changes + [x.model_copy(update={"category": "Derived"}) for x in d.derived]:
        cells = [("?" if v.origin == "unknown" else format_value(v.value) + origin_mark[v.origin])
                 for v in c.values.values()]
        words = c.words + (" [nominal]" if c.nominal else "") + (
            " [inert in " + ", ".join(c.inert) + "]" if c.inert else "")
        rows_by_cat.setdefault(c.category, []).append([c.param, *cells, words])
    for cat in CATEGORIES + ["Derived"]:
        if cat in rows_by_cat:
            out.append(f"\n## {cat}")
            out.append(table(rows_by_cat[cat], ["param", *d.runs, "change"]))
    if len(out) == 1:
        out.append("no differences")
    return "\n".join(out)


def render_plan(p) -> str:
    out = [one_line(f"plan: {p.strategy}, good {p.good}, bad {', '.join(p.bad)}")]
    atomic = [c for c in p.change_sets if c.atomic_reason]
    for c in atomic:
        out.append(f"atomic change set {c.id} ({', '.join(c.params)}): {c.atomic_reason}")
    rows = [[v.id, v.baseline, "; ".join(f"{c.param} {format_value(c.from_)}→{format_value(c.to)}"
                                         + (" (default)" if c.to_origin == "default" else "")
                                         + (" (inferred)" if c.to_origin == "inferred" else "")
                                         for c in v.changes) or "(unchanged)",
             "?" if v.steps is None else str(v.steps)] for v in p.variants]
    out.append(table(rows, ["variant", "baseline", "changes", "steps"]))
    hours = p.gpu_hours()
    known = [v.steps for v in p.variants if v.steps is not None]
    out.append(f"{len(p.variants)} trainings" + (f", {sum(known)} optimizer steps" if known else "")
               + (f", {hours} GPU-hours at {p.seconds_per_step} s/step" if hours is not None else ""))
    for e in p.excluded:
        out.append(f"not ablated: {e}")
    for x in getattr(p, "skipped", []):
        what = "; ".join(f"{c.param} {format_value(c.from_)}→{format_value(c.to)}" for c in x.changes)
        out.append(f"skipped {x.id}" + (f" ({what})" if what else "") + f": {x.reason}")
    for n in getattr(p, "notes", []):
        out.append(f"note: {n}")
    return "\n".join(out)
