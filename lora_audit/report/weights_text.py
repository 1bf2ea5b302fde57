"""Text rendering of the weight analysis (``lora-audit weights``, ``inspect --weights``)."""

from __future__ import annotations

from typing import Any

from lora_audit.report.console import table


def _f(v: Any, fmt: str = ".3g") -> str:
    return "-" if v is None else format(v, fmt)


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def render_weights(data: dict[str, Any], blocks: bool = True) -> str:
    """One file's analysis (``WeightReport.to_json()``) as a header line, a per-group table and a per-block table."""
    s = data["summary"]
    out = [f"{data['path']}: {data['kind']} ({data['format']}, {data['arch'] or 'arch unknown'}), "
           f"{s['modules']} modules, stored rank {s['stored_rank'] or '-'}",
           f"  total update norm {_f(s['norm'])}; text encoder share of energy {_pct(s['text_encoder_share'])}; "
           f"median effective rank: {_f(s['median_rank90'], '.0f')} (90% energy), "
           f"{_f(s['median_rank99'], '.0f')} (99%), {_f(s['median_entropy_rank'], '.1f')} (entropy)"]
    for what in ("nonfinite", "dead", "skipped"):
        if s[what]:
            names = ", ".join(s[what][:3]) + (f" and {len(s[what]) - 3} more" if len(s[what]) > 3 else "")
            label = {"nonfinite": "NaN/inf modules", "dead": "dead (all-zero) modules", "skipped": "skipped"}[what]
            out.append(f"  {label}: {len(s[what])} ({names})")
    for note in data.get("notes", []):
        out.append(f"  note: {note}")
    keys = [("group", data["groups"])] + ([("block", data["blocks"])] if blocks else [])
    for key, rows in keys:
        out.append("")
        out.append(table([[r[key], r["modules"], _f(r["norm"]), _pct(r["energy_share"]),
                           _f(r["median_entropy_rank"], ".1f"), _f(r["median_rank90"], ".0f"),
                           _f(r["median_rank99"], ".0f"), r["max_rank"] or "-",
                           (f"{r['dead']} dead " if r["dead"] else "") + (f"{r['nonfinite']} NaN/inf"
                                                                          if r["nonfinite"] else "")]
                          for r in rows],
                         [key, "modules", "norm", "energy", "entropy rank", "rank90", "rank99", "dim", "problems"]))
    return "\n".join(line.rstrip() for line in out)


def render_trajectory(stem: str, rows: list[dict[str, Any]]) -> str:
    groups = list(dict.fromkeys(g for r in rows for g in r["groups"]))
    body = [[r["at"], _f(r["norm"]), _pct(r["text_encoder_share"]), _f(r["median_entropy_rank"], ".1f"),
             _f(r["median_rank90"], ".0f"), _f(r["median_rank99"], ".0f"), r["dead"], r["nonfinite"]]
            + [_f(r["groups"].get(g)) for g in groups] for r in rows]
    return f"trajectory of {stem} ({len(rows)} files):\n" + table(
        body, ["at", "norm", "te share", "entropy rank", "rank90", "rank99", "dead", "NaN/inf"]
        + [f"norm {g}" for g in groups])


def render_curve_facts(f: dict[str, Any]) -> str:
    """One or two lines: the loss curve's start/end/min, NaN step, plateau or rise; the lr schedule's shape."""
    out = []
    loss = f.get("loss")
    if loss:
        words = [f"{loss['points']} points, steps {loss['first_step']}-{loss['last_step']}"]
        if "start" in loss:
            words.append(f"start {loss['start']:.4g}, end {loss['end']:.4g}, min {loss['minimum']:.4g}")
        if loss.get("nonfinite_step") is not None:
            words.append(f"NaN/inf from step {loss['nonfinite_step']}")
        if loss.get("rising"):
            words.append("rising (diverging)")
        if loss.get("plateau"):
            words.append("plateau")
        out.append(f"loss ({f['loss_tag']}): " + "; ".join(words))
    lr = f.get("lr")
    if lr:
        line = f"lr ({f['lr_tag']}): {lr['shape']}"
        if "configured" in lr:
            line += f"; configured lr_scheduler {lr['configured']}: " + ("fits" if lr["fits_configured"]
                                                                         else "does NOT fit")
        out.append(line)
    for w in f.get("warnings", []):
        out.append(f"curves warning: {w}")
    return "\n".join(out) or "curves: " + ", ".join(f.get("tags", []))
