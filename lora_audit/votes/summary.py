"""What an audit report says of a comparison folder: a link to its report.md, each model's distance to base and
speed, the findings, and the win rates from votes (human and machine apart). Stdlib + pydantic only."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from lora_audit.errors import EvidenceError
from lora_audit.votes.data import load_folder
from lora_audit.votes.stats import folder_stats
from lora_audit.votes.store import has_votes


class ComparedModel(BaseModel):
    name: str
    lora_strength: float | None = None
    distance_to_base: float | None = None
    images_per_s: float | None = None
    human: str | None = None  # "7 of 10 (70%, 95% CI 39.7–89.2%)" against the base
    machine: str | None = None


class ComparisonLink(BaseModel):
    folder: str
    report: str  # relative to the audit report, for a Markdown link
    base: str | None
    images: int
    models: list[ComparedModel]
    furthest: str | None = None
    findings: list[str] = Field(default_factory=list)
    human_votes: int = 0
    machine_votes: int = 0
    judges: list[str] = Field(default_factory=list)
    sentences: list[str] = Field(default_factory=list)  # human votes against the base
    machine_sentences: list[str] = Field(default_factory=list)


def _rate(h: dict[str, Any]) -> str | None:
    if not h or not h.get("n"):
        return None
    return (f"{h['wins']} of {h['n']} ({100 * h['win_rate']:.0f}%, 95% CI {100 * h['ci_lo']:.1f}–"
            f"{100 * h['ci_hi']:.1f}%)")


def link_comparison(folder: Path | str, report_path: Path | str) -> ComparisonLink:
    """The summary of one comparison folder for the audit report written at ``report_path``."""
    folder = Path(folder)
    cf = load_folder(folder)
    stats = cf.data.get("statistics") or {}
    per_model = {m.get("model_name"): m for m in stats.get("models") or [] if isinstance(m, dict)}
    votes = folder_stats(folder) if has_votes(folder) else {}
    human, machine = votes.get("human") or {}, votes.get("machine") or {}
    vs_human = {v["model"]: v for v in human.get("versus_base") or []}
    vs_machine = {v["model"]: v for v in machine.get("versus_base") or []}
    models = []
    for name in cf.models:
        m = per_model.get(name, {})
        shots = [s for it in cf.items for s in it.shots if s.model == name]
        dist = [s.distance_to_base for s in shots if s.distance_to_base is not None]
        models.append(ComparedModel(
            name=name, lora_strength=m.get("lora_strength", shots[0].lora_strength if shots else None),
            distance_to_base=(m.get("distance_to_base") or {}).get("mean",
                                                                   sum(dist) / len(dist) if dist else None),
            images_per_s=(m.get("timing") or {}).get("images_per_s"),
            human=_rate(vs_human.get(name, {})), machine=_rate(vs_machine.get(name, {}))))
    report = folder / "report.md"
    link = os.path.relpath(report.resolve(), Path(report_path).resolve().parent).replace(os.sep, "/")
    return ComparisonLink(
        folder=str(folder), report=link, base=cf.base_model, images=sum(len(i.shots) for i in cf.items),
        models=models, furthest=stats.get("furthest_from_base"), findings=list(cf.data.get("findings") or []),
        human_votes=human.get("votes", 0), machine_votes=machine.get("votes", 0),
        judges=list(machine.get("judges") or []),
        sentences=[v["sentence"] for v in vs_human.values() if v.get("n")],
        machine_sentences=[v["sentence"] for v in vs_machine.values() if v.get("n")])


def comparison_folders(study: Path | str) -> list[Path]:
    """The comparison folders of a study (``<study>/compare`` and any other folder with a comparison.json, two
    levels deep at most)."""
    study = Path(study)
    if not study.is_dir():
        raise EvidenceError("study folder not found", str(study))
    found = sorted({p.parent for pattern in ("comparison.json", "*/comparison.json", "*/*/comparison.json")
                    for p in study.glob(pattern)})
    if not found:
        raise EvidenceError("no comparison in this study yet (no comparison.json): run lora-audit compare --study "
                            "on it first", str(study))
    return found
