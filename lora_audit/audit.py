"""The audit: runs with verdicts → for each good→bad pair, the diff, the findings, the missing data and what to
try next. A pydantic model the report renders; the CLI prints it as JSON."""

from __future__ import annotations

from collections import Counter
from datetime import date
from pathlib import Path

from pydantic import BaseModel, Field

from lora_audit.diff import RunDiff, diff_runs
from lora_audit.errors import EvidenceError
from lora_audit.evidence.pick import pick_runs
from lora_audit.kohya.catalog import CATEGORIES
from lora_audit.model import Run
from lora_audit.rules.engine import Finding, find_suspects
from lora_audit.sd_scripts_version import VersionChange, version_changes
from lora_audit.votes.summary import ComparisonLink


class Pair(BaseModel):
    good: str
    bad: str
    diff: RunDiff
    findings: list[Finding]
    counts: dict[str, int]  # effective changes per category
    nominal: int
    same: list[str]  # parameters set explicitly in both runs to the same value
    recommendations: list[str]
    # sd_scripts_commit differs: how far apart, with a checkout (sd_scripts_version.VersionChange)
    version: VersionChange | None = None


class Audit(BaseModel):
    date: str
    runs: list[Run]
    good: list[str]
    bad: list[str]
    overview: RunDiff  # all runs side by side (baseline: the first good run)
    pairs: list[Pair]
    missing: dict[str, list[str]] = Field(default_factory=dict)  # run -> unknown key params
    comparisons: list[ComparisonLink] = Field(default_factory=list)  # image comparisons of the study, with votes
    # run -> what training did: loss-curve facts, weight facts (rules/dynamics.py); only runs that have any
    dynamics: dict[str, dict] = Field(default_factory=dict)
    # the loss overlay PNG next to the report (report.plots.audit_loss_plot), as the report links it, or why not
    loss_plot: str | None = None
    loss_plot_note: str | None = None
    loss_plot_smoothing: str | None = None

    def to_json(self) -> dict:
        return {
            "date": self.date,
            "runs": [{"name": r.name, "verdict": r.verdict, "script": r.script,
                      "evidence": [e.model_dump() for e in r.evidence]} for r in self.runs],
            "good": self.good, "bad": self.bad,
            "diff": self.overview.to_json(),
            "pairs": [p.model_dump() for p in self.pairs],
            "missing": self.missing,
            "comparisons": [c.model_dump() for c in self.comparisons],
            "dynamics": self.dynamics,
        }


def _recommendations(pair_findings: list[Finding], good: Run, bad: Run, diff: RunDiff) -> list[str]:
    primary = [f for f in pair_findings if f.level == "primary"]
    recs = []
    arch = next((f for f in primary if f.id == "architecture-switched"), None)
    changes = diff.effective_changes()
    if arch:
        recs.append(f"The architecture changed ({arch.title.split(': ')[-1]}): test it as one atomic change set "
                    f"(script, base model and resolution move together): `groups` strategy — {good.name} with only "
                    "the architecture switched, every other parameter kept.")
    singles = [f for f in primary if f.id != "architecture-switched" and f.kind == "change"]
    if singles:
        recs.append("`ofat` (one factor at a time, forward): " + "; ".join(
            f"{good.name} + only {', '.join(f.params)} as in {bad.name}" for f in singles[:6]) + ".")
        if any(p.origin == "explicit" for p in bad.params.values()):
            recs.append(f"`reverse`: {bad.name} with one parameter restored from {good.name} at a time, starting "
                        "with " + ", ".join(dict.fromkeys(p for f in singles for p in f.params)) + ".")
        else:
            recs.append(f"`reverse` is not possible: nothing of {bad.name}'s configuration is known explicitly.")
    from lora_audit.ablate.plan import change_sets

    sets, _ = change_sets(good, bad, diff)
    if len(sets) > 4:
        recs.append(f"`bisect` over the {len(sets)} change sets: about {max(1, (len(sets) - 1).bit_length())}"
                    " rounds of trainings find a single culprit, fewer runs than one per change.")
    dim = next((c for c in changes if c.param == "network_dim"), None)
    if dim:
        a = dim.values[good.name].value
        b = dim.values[bad.name].value
        if isinstance(a, int) and isinstance(b, int) and a != b and min(a, b) > 0:  # dim 0 or -5: no doubling
            lo, hi = sorted((a, b))
            sweep = [lo // 2] if lo > 1 else []
            v = lo
            while v < hi:
                sweep.append(v)
                v *= 2
            sweep.append(hi)
            recs.append(f"`sweep network_dim={','.join(map(str, sorted(set(sweep))))}` on {good.name}'s settings "
                        "shows where quality turns.")
    recs.append("Always train a `control` variant (the good run unchanged): the same seed does not give the same "
                "LoRA across machines and versions, so a control tells noise from effect.")
    unknown = [f for f in pair_findings if f.level == "unknown"]
    if unknown:
        recs.append("Settle the unknowns first where it is cheap: " + "; ".join(f.title for f in unknown) + ".")
    return recs


def audit(runs: list[Run], good: list[str] | None = None, bad: list[str] | None = None,
          weights: bool = False, sd_scripts: str | Path | None = None, report_date: str | None = None) -> Audit:
    """Diagnose ``runs``: for each good→bad pair the diff, the ranked findings and what to try next. ``good`` and
    ``bad`` name runs (default: their run.toml verdicts; every run not good is bad when none says bad).
    ``weights``: also analyse each run's LoRA file (numpy, the ml extra); loss curves are always read.
    ``sd_scripts``: a checkout in which to count the commits between two runs' ``sd_scripts_commit``.
    ``report_date``: the date the report prints (YYYY-MM-DD; default today)."""
    if len(runs) < 2:
        raise EvidenceError(f"an audit needs at least two runs, got {len(runs)}")
    goods, bads = pick_runs(runs, good, bad, others_are_bad=True)
    g, b = [r.name for r in goods], [r.name for r in bads]
    runs = list({r.name: r for r in [*runs, *goods, *bads]}.values())  # a run named by its folder joins them
    runs = sorted(runs, key=lambda r: 0 if r.name in g else (1 if r.name in b else 2))
    by = {r.name: r for r in runs}
    order = [by[g[0]]] + [r for r in runs if r.name != g[0]]
    overview = diff_runs(order, include_same=True)
    from lora_audit.rules.dynamics import dynamics_findings, run_dynamics

    dynamics = {r.name: run_dynamics(r, weights) for r in runs}
    pairs = []
    for gn in g:
        for bn in b:
            if gn == bn:
                continue
            d = diff_runs([by[gn], by[bn]], include_same=True)
            findings = dynamics_findings(by[gn], by[bn], dynamics[gn], dynamics[bn], find_suspects(by[gn], by[bn], d))
            version = next(iter(version_changes([by[gn], by[bn]], sd_scripts)), None)
            if version is not None and version.commits is not None:
                for f in findings:
                    if f.params == ["sd_scripts_commit"] and f.kind == "change":
                        f.rationale += (f" sd-scripts {version.summary()}" + (": " + "; ".join(
                            f"{c.sha[:10]} {c.subject}" for c in version.training_commits[:5]) if
                            version.training_commits else "") + ".")
            eff = d.effective_changes()
            counts = Counter(c.category for c in eff if c.kind != "unknown")
            same = [c.param for c in d.changes if c.kind == "same" and not c.nominal
                    and all(v.origin == "explicit" for v in c.values.values())]
            pairs.append(Pair(good=gn, bad=bn, diff=d, findings=findings,
                              counts={k: counts[k] for k in CATEGORIES if counts[k]},
                              nominal=len(d.nominal_changes()), same=same,
                              recommendations=_recommendations(findings, by[gn], by[bn], d), version=version))
    missing = {r.name: [k for k, p in r.params.items() if p.origin == "unknown"] for r in runs}
    return Audit(date=report_date or date.today().isoformat(), runs=runs, good=g, bad=b, overview=overview, pairs=pairs,
                 missing={k: v for k, v in missing.items() if v},
                 dynamics={k: v for k, v in dynamics.items() if v["curves"] or v["weights"] or v.get("weights_error")})


def default_report_path(paths: list[str]) -> Path:
    """reports/<name>.md: the folder's name for one folder of runs, the run names joined otherwise."""
    names = [Path(p).resolve().name for p in paths]
    stem = names[0] if len(names) == 1 else "-vs-".join(names)
    return Path("reports") / f"{stem}.md"


def _resolved(p: Path | str) -> Path | None:
    try:
        return Path(p).resolve()
    except (OSError, RuntimeError):  # a symlink loop
        return None


def check_report_path(out: Path | str, inputs: list[str], runs: list[Run],
                      comparison_folders: list[Path] | None = None) -> None:
    """``audit --out``: never onto the evidence. Refused: a folder or a special file; a path inside any folder
    given as RUNS (a report there would be read back as evidence of a run next time) or equal to a file given;
    any evidence file a run was read from; an existing file of a comparison folder (its report.md, votes...)."""
    out = Path(out)
    target = _resolved(out)
    if target is None:
        raise EvidenceError("--out cannot be resolved (a symlink loop?)", str(out))
    if out.exists() and not out.is_file():
        raise EvidenceError("--out exists and is not a regular file: give a file path for the report", str(out))
    for p in inputs:
        given = _resolved(p)
        if given is None:
            continue
        if given == target or (Path(p).is_dir() and target.is_relative_to(given)):
            raise EvidenceError(f"--out is inside the evidence given ({p}): write the report elsewhere, e.g. "
                                "reports/", str(out))
    for r in runs:
        for e in r.evidence:
            if _resolved(e.path) == target:
                raise EvidenceError(f"--out is evidence of run {r.name}: write the report elsewhere", str(out))
    for folder in comparison_folders or []:
        f = _resolved(folder)
        if f is not None and target.is_relative_to(f) and out.exists():
            raise EvidenceError(f"--out would overwrite a file of the comparison {folder}: write the report "
                                "elsewhere", str(out))
