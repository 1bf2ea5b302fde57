"""``lora-audit audit`` from Python: runs' folders in, the audit and its Markdown report (with the loss overlay and
the study's comparisons linked) out.

    from lora_audit import audit_runs
    report = audit_runs(["runs/examples/bespoke-punks"], out="reports/punks.md")
    report.audit.pairs[0].findings[0].title
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lora_audit.audit import Audit, audit, check_report_path, default_report_path


@dataclass
class AuditReport:
    audit: Audit
    path: Path  # the report: written there unless write=False
    loss_plot: Path | None = None  # the PNG next to the report, when it was written and there were curves


def audit_runs(paths: list[str | Path], good: list[str] | None = None, bad: list[str] | None = None, *,
               out: str | Path | None = None, template: str | Path | None = None, report_date: str | None = None,
               study: str | Path | None = None, compare: list[str | Path] | tuple = (), weights: bool = False,
               sd_scripts: str | Path | None = None, write: bool = True) -> AuditReport:
    """Read the runs in ``paths`` (folders, or one folder of run folders), :func:`lora_audit.audit.audit` them and
    write the Markdown report to ``out`` (default ``reports/<runs>.md``; never onto the evidence; ``template``: your
    own jinja2 template). The comparisons of ``study`` (or the ``compare`` folders, which override them) are linked
    with their win rates. ``write=False``: the audit only (what ``--json`` prints), nothing written."""
    from lora_audit.compare.study import study_comparisons
    from lora_audit.evidence import load_runs
    from lora_audit.votes.summary import link_comparison

    inputs = [str(p) for p in paths]
    result = audit(load_runs(list(paths)), good or None, bad or None, weights=weights, sd_scripts=sd_scripts,
                   report_date=report_date)
    path = Path(out) if out else default_report_path(inputs)
    # compare overrides; else every comparison of the study, wherever compare --study wrote it
    folders = [Path(c) for c in compare] if compare else (study_comparisons(study) if study else [])
    if write:
        check_report_path(path, inputs, result.runs, folders)
    result.comparisons = [link_comparison(f, path) for f in dict.fromkeys(folders)]
    if not write:
        return AuditReport(result, path)
    from lora_audit.report.markdown import render_audit
    from lora_audit.report.plots import audit_loss_plot

    path.parent.mkdir(parents=True, exist_ok=True)
    png = audit_loss_plot(result, path)
    path.write_text(render_audit(result, str(template) if template else None), encoding="utf-8")
    return AuditReport(result, path, png)
