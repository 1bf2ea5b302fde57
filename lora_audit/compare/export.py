"""Per-model statistics, findings, and the exports: comparison.json / comparison.csv (the comparison guide's schema,
extended) and report.md (jinja2)."""

from __future__ import annotations

import csv
import html
import json
import statistics
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lora_audit.compare import metrics as mx
from lora_audit.compare.epochs import epoch_series
from lora_audit.compare.run import ComparisonRun
from lora_audit.compare.schema import Comparison, ComparisonEntry, ComparisonStatistics, ModelStats, Shot
from lora_audit.format import csv_row

VERSION = "1.0.0"
GUIDE_COLUMNS = ["comparison_id", "prompt", "seed", "model_name", "base_model", "lora", "lora_strength",
                 "generation_time_s", "winner", "notes", "completed_at"]
METRIC_COLUMNS = ["png_bytes", "jpeg_bytes", "palette", "grid_k", "grid_fit", "grid_fit_2", "sharpness"]


def model_stats(cmp: ComparisonRun) -> list[dict[str, Any]]:
    by_lora = {lo.adapter: lo for lo in cmp.loras}
    out = []
    for row in cmp.rows:
        recs = [r for r in cmp.records if r["model_name"] == row.label]
        lo = by_lora.get(row.adapter)
        entry: dict[str, Any] = {"model_name": row.label, "lora": str(lo.spec.path) if lo else None,
                                 "lora_strength": row.strength if lo else None,
                                 "timing": mx.timing([r["generation_time_s"] for r in recs]),
                                 "distance_to_base": {"mean": _mean(recs, "distance_to_base"),
                                                      "max": max((r["distance_to_base"] for r in recs), default=0)}}
        entry["metrics"] = {k: _mean([r["metrics"] for r in recs], k) for k in _metric_columns(cmp)}
        if cmp.fd_clip:
            entry["fd_clip"] = cmp.fd_clip.get(row.label)
        if lo:
            entry.update(lora_size_bytes=lo.size_bytes, lora_parameters=lo.params, lora_arch=lo.arch,
                         modules_in_file=lo.modules_in_file, modules_matched=lo.matched,
                         modules_unmatched=lo.unmatched, lora_sha256=lo.sha256)
        out.append(entry)
    return out


def _metric_columns(cmp: ComparisonRun) -> list[str]:
    return METRIC_COLUMNS + (["clip_score"] if any("clip_score" in r["metrics"] for r in cmp.records) else [])


def _mean(recs: list[dict[str, Any]], key: str) -> float | None:
    vals = [r[key] for r in recs if r.get(key) is not None]
    return round(statistics.fmean(vals), 4) if vals else None


def findings(cmp: ComparisonRun, stats: list[dict[str, Any]]) -> list[str]:
    out = []
    for lo in cmp.loras:
        rows = [st for st in stats if st["lora"] == str(lo.spec.path) and st["lora_strength"]]
        if lo.matched == 0:
            out.append(f"NOT LOADED: {lo.spec.name}: none of its {lo.modules_in_file} modules matched the model")
        elif lo.unmatched:
            out.append(f"{lo.spec.name}: {lo.unmatched} of {lo.modules_in_file} modules did not match the model")
        if rows and max(st["distance_to_base"]["max"] for st in rows) < mx.NO_EFFECT_LEVELS:
            out.append(f"NO VISIBLE EFFECT: {lo.spec.name}: its images differ from base by under "
                       f"{mx.NO_EFFECT_LEVELS:g} levels of 255 at every strength tried: not loaded, or too weak")
    return out


def furthest(stats: list[dict[str, Any]]) -> dict[str, Any] | None:
    loras = [st for st in stats if st["lora"]]
    return max(loras, key=lambda st: st["distance_to_base"]["mean"] or 0) if loras else None


def comparison(cmp: ComparisonRun) -> Comparison:
    """The comparison as comparison.json's model (:class:`lora_audit.compare.schema.Comparison`)."""
    stats = model_stats(cmp)
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in cmp.records:
        groups.setdefault(r["comparison_id"], []).append(r)
    s = cmp.settings
    entries = [ComparisonEntry(
        comparison_id=cid, prompt=recs[0]["prompt"], seed=recs[0]["seed"],
        models=[Shot(name=r["model_name"], base_model=r["base_model"], lora=r["lora"] or None,
                     lora_strength=r["lora_strength"], generation_time_s=r["generation_time_s"], image=r["image"],
                     distance_to_base=r["distance_to_base"], metrics=r["metrics"], completed_at=r["completed_at"])
                for r in recs],
        winner=None, notes="") for cid, recs in groups.items()]
    best = furthest(stats)
    out = Comparison(
        metadata={"generated_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                  "version": VERSION, "total_comparisons": len(entries), "tool": "lora-audit compare",
                  "base_model": cmp.model, "settings": {
                      "prompts": s.prompts, "seeds": s.seeds, "steps": s.steps, "cfg": s.cfg,
                      "size": f"{s.width}x{s.height}", "scheduler": cmp.model["scheduler"], "negative": s.negative,
                      "batch": s.batch},
                  "resumed_images": cmp.resumed, "grids": cmp.grids},
        comparisons=entries,
        statistics=ComparisonStatistics(
            total_comparisons=len(entries), comparisons_with_preference=0, preference_rate=0.0, model_wins=[],
            models=[ModelStats(**st) for st in stats], furthest_from_base=best["model_name"] if best else None),
        findings=findings(cmp, stats))
    series = epoch_series(cmp, stats)
    if series:
        out.epochs = series
    return out


def to_json(cmp: ComparisonRun) -> dict[str, Any]:
    """comparison.json's object."""
    return comparison(cmp).to_data()


def write_csv(cmp: ComparisonRun, path: Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        cols = _metric_columns(cmp)
        w.writerow(GUIDE_COLUMNS + ["image", "distance_to_base"] + cols)
        for r in cmp.records:  # prompts, labels and paths that would start a formula get a leading '
            w.writerow(csv_row([r[c] for c in GUIDE_COLUMNS] + [r["image"], r["distance_to_base"]]
                               + [r["metrics"].get(c) for c in cols]))


_MARKDOWN_ESCAPES = str.maketrans({"|": "\\|", "`": "\\`", "[": "\\[", "]": "\\]", "\\": "\\\\",
                                   "\n": " ", "\r": " "})


def md_text(value: Any) -> Any:
    """Text safe anywhere in report.md's prose and table cells: HTML (``<script>``, ``<img onerror>``) shown as
    text, no link or image syntax, no code span, no table cell break, no new line. Non-text is left to the
    template's filters."""
    if not isinstance(value, str):
        return value
    return html.escape(value, quote=False).translate(_MARKDOWN_ESCAPES)


def write_report(data: dict[str, Any], path: Path) -> None:
    from lora_audit.report.templates import environment

    # finalize: every {{ }} of the template goes through md_text, so prompts, labels, paths and findings written by
    # users cannot inject HTML or Markdown into the report
    env = environment(finalize=md_text, trim_blocks=True, lstrip_blocks=True)  # table rows stay adjacent
    text = env.get_template("compare.md.j2").render(d=data)
    out, blank = [], 0
    for line in text.splitlines():  # no runs of blank lines where blocks were skipped
        blank = blank + 1 if not line.strip() else 0
        if blank <= 1:
            out.append(line.rstrip())
    path.write_text("\n".join(out).strip() + "\n", encoding="utf-8")


def write_all(cmp: ComparisonRun) -> dict[str, Any]:
    data = to_json(cmp)
    (cmp.out / "comparison.json").write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    write_csv(cmp, cmp.out / "comparison.csv")
    write_report(data, cmp.out / "report.md")
    return data
