"""Machine votes: let a metric of ``lora-audit compare`` vote, so a study can run unattended (stdlib only).

A judge is ``METRIC[:min|max]``. Default directions (the value that wins):
  grid_fit, grid_fit_2  max  (pixels sit on a grid: pixel art)
  sharpness             max
  clip_score            max  (image matches the prompt; needs compare --clip-model)
  distance_to_base      max  (changes the base image most: says the LoRA acts, not that it is better)
  png_bytes, jpeg_bytes min  (compresses better: flatter, cleaner images)
  palette               min  (fewer colours)
Any other metric in the folder (grid_k, ...) needs its direction spelled out. Votes are stored as
``Vote(kind="machine", voter="judge:METRIC:DIR", judge="METRIC:DIR")``; exact ties are 'tie'."""

from __future__ import annotations

import itertools
from pathlib import Path

from lora_audit.errors import EvidenceError
from lora_audit.votes.data import ComparisonFolder, Item, load_folder
from lora_audit.votes.store import MODES, TIE, Vote, VoteStore

DIRECTIONS = {"grid_fit": "max", "grid_fit_2": "max", "sharpness": "max", "clip_score": "max",
              "distance_to_base": "max", "png_bytes": "min", "jpeg_bytes": "min", "palette": "min"}


def folder_metrics(folder: ComparisonFolder) -> list[str]:
    """Numeric metrics some image of the folder has (distance_to_base included)."""
    names: dict[str, None] = {}
    for it in folder.items:
        for s in it.shots:
            if s.distance_to_base is not None:
                names.setdefault("distance_to_base")
            for k, v in s.metrics.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    names.setdefault(k)
    return list(names)


def parse_judge(spec: str, folder: ComparisonFolder) -> tuple[str, str]:
    """``METRIC[:min|max]`` -> (metric, direction); EvidenceError naming the metrics the folder has."""
    where = str(folder.path / "comparison.json")
    metric, _, direction = spec.strip().partition(":")
    present = folder_metrics(folder)
    if metric not in present:
        raise EvidenceError(f"--judge {spec}: no metric {metric!r} in this comparison; it has: "
                            f"{', '.join(present) or 'none'}", where)
    direction = direction or DIRECTIONS.get(metric, "")
    if direction not in ("min", "max"):
        raise EvidenceError(f"--judge {spec}: say {metric}:min or {metric}:max (which value wins)", where)
    return metric, direction


def _value(folder: ComparisonFolder, it: Item, model: str, metric: str) -> float:
    shot = it.shot(model)
    v = shot.distance_to_base if metric == "distance_to_base" else shot.metrics.get(metric)
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        raise EvidenceError(f"comparison {it.comparison_id}: model {model!r} has no {metric} value to judge by",
                            str(folder.path / "comparison.json"))
    return float(v)


def cast_machine_votes(folder: Path | str, spec: str, mode: str = "best-of") -> list[Vote]:
    """Cast (and store) one machine vote per item not yet judged by this judge: best-of, every model of each
    (prompt, seed); pairwise, each pair of them. The best value wins; equal best values make a 'tie'. Every value is
    checked before anything is stored. Returns the votes cast now (none when all were judged before)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    cf = load_folder(folder)
    metric, direction = parse_judge(spec, cf)
    judge = f"{metric}:{direction}"
    voter = f"judge:{judge}"
    store = VoteStore(cf.path)
    done = store.judged(voter, "machine")
    sign = 1.0 if direction == "max" else -1.0
    votes: list[Vote] = []
    for it in cf.items:
        groups = [tuple(it.models)] if mode == "best-of" else list(itertools.combinations(it.models, 2))
        for shown in groups:
            if (it.comparison_id, frozenset(shown)) in done:
                continue
            vals = {m: _value(cf, it, m, metric) for m in shown}
            best = max(sign * v for v in vals.values())
            top = [m for m in shown if sign * vals[m] == best]
            notes = f"{metric} ({direction} wins): " + ", ".join(f"{m}={vals[m]:g}" for m in shown)
            votes.append(Vote(comparison_id=it.comparison_id, prompt=it.prompt, seed=it.seed, mode=mode, shown=shown,
                              choice=top[0] if len(top) == 1 else TIE, voter=voter, kind="machine", notes=notes,
                              judge=judge))
    if votes:
        store.add_many(votes)
    return votes
