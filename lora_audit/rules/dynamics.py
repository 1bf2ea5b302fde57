"""Findings from what training did: loss curves (always; stdlib) and LoRA weights (``audit --weights``; numpy).

The words and impacts are data (``dynamics.toml``); this module computes the facts per run and decides which
findings fire for a good→bad pair.
"""

from __future__ import annotations

import tomllib
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from lora_audit.errors import EvidenceError
from lora_audit.kohya.epoch_files import epoch_order
from lora_audit.model import Run
from lora_audit.rules.engine import _LEVEL, _RANK, Finding

SCALE_RATIO = 3.0  # median losses this far apart: another objective or data
UNUSED_RANK = 0.25  # median rank99 at most this share of network_dim: capacity unused


@cache
def _texts() -> dict[str, dict[str, str]]:
    data = tomllib.loads((resources.files("lora_audit.rules") / "dynamics.toml").read_text("utf-8"))
    return {f["id"]: f for f in data["finding"]}


def _finding(fid: str, g: str, b: str, evidence: list[str], params: list[str] | None = None,
             **values: Any) -> Finding:
    t = _texts()[fid]
    return Finding(id=fid, kind="fact", params=params or [], level=_LEVEL[t["impact"]], impact=t["impact"],
                   title=t["title"].format(**values), rationale=" ".join(t["why"].format(**values).split()),
                   evidence=evidence, good=g, bad=b)


def lora_file(run: Run) -> str | None:
    """The run's LoRA to analyse: its final file, else the latest per-epoch one."""
    files = [e.path for e in run.evidence if e.kind == "safetensors" and Path(e.path).is_file()]
    if not files:
        return None
    return max(files, key=epoch_order)


def run_dynamics(run: Run, weights: bool = False) -> dict[str, Any]:
    """``{"curves": curve facts | None, "weights": weight facts | None, "weights_file": path | None}``."""
    from lora_audit.curves import curve_facts, run_curves

    out: dict[str, Any] = {"curves": None, "weights": None, "weights_file": None, "weights_error": None}
    curves = run_curves(run.path)
    if curves is not None:
        p = run.params.get("lr_scheduler")
        out["curves"] = curve_facts(curves, p.value if p is not None else None)
    if weights:
        f = lora_file(run)
        if f is not None:
            from lora_audit.weights import analyse_file, facts

            try:
                out["weights"] = facts(analyse_file(f))
                out["weights_file"] = f
            except EvidenceError as e:
                out["weights_error"] = str(e)
    return out


def _median_loss(d: dict[str, Any]) -> float | None:
    loss = (d.get("curves") or {}).get("loss") or {}
    return loss.get("median")


def dynamics_findings(good: Run, bad: Run, dg: dict[str, Any], db: dict[str, Any],
                      findings: list[Finding]) -> list[Finding]:
    """The pair's findings with those of the curves and weights added, ranked again (dim findings may move down)."""
    g, b = good.name, bad.name
    new: list[Finding] = []
    for run, d in ((b, db), (g, dg)):
        c = d.get("curves") or {}
        files = c.get("files", [])[:3]
        loss = c.get("loss") or {}
        if run == b and loss.get("nonfinite_step") is not None:
            new.append(_finding("loss-nonfinite", g, b, files, run=run, step=loss["nonfinite_step"],
                                tag=c["loss_tag"]))
        if run == b and loss.get("rising"):
            new.append(_finding("loss-rising", g, b, files, run=run, minimum=loss["minimum"], end=loss["end"],
                                tag=c["loss_tag"]))
        lr = c.get("lr") or {}
        if lr.get("fits_configured") is False:
            new.append(_finding("lr-schedule-mismatch", g, b, files, params=["lr_scheduler"], run=run,
                                shape=lr["shape"], configured=lr["configured"]))
    mg, mb = _median_loss(dg), _median_loss(db)
    if mg and mb and mg > 0 and mb > 0 and max(mg, mb) / min(mg, mb) >= SCALE_RATIO:
        new.append(_finding("loss-scale-differs", g, b, (dg["curves"]["files"] + db["curves"]["files"])[:4],
                            ratio=max(mg, mb) / min(mg, mb), good=g, bad=b, good_median=mg, bad_median=mb))
    w = db.get("weights")
    if w:
        wf = [db["weights_file"]]
        name = Path(db["weights_file"]).name
        if w["nonfinite_modules"]:
            new.append(_finding("weights-nonfinite", g, b, wf, count=w["nonfinite_modules"], file=name,
                                names=", ".join(w["nonfinite_names"][:3])))
        total = w.get("modules") or 0
        if total and w["dead_modules"] >= max(1, total // 2):
            new.append(_finding("dead-modules", g, b, wf, count=w["dead_modules"], total=total, file=name))
        dim, r99 = w.get("stored_rank"), w.get("median_rank99")
        dim_findings = [f for f in findings if "network_dim" in f.params and f.kind == "change"]
        if dim and r99 is not None and r99 <= UNUSED_RANK * dim and dim_findings:
            new.append(_finding("rank-unused", g, b, wf, params=["network_dim"], dim=dim, rank=r99, file=name,
                                entropy=w.get("median_entropy_rank") or 0.0))
            order = ["primary", "secondary", "unlikely"]
            for f in dim_findings:
                if f.level in order[:-1]:
                    f.level = order[order.index(f.level) + 1]  # type: ignore[assignment]
                f.rationale += (f" The weights weigh against it: {name} uses an effective rank of ~{r99:.0f} of "
                                f"{dim}.")
    out = findings + new
    out.sort(key=lambda f: (_RANK[f.level], {"high": 0, "medium": 1, "low": 2}.get(f.impact, 3)))
    return out
