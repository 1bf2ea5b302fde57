"""``compare --epochs``: the per-epoch files of a run or variant compared like LoRAs (same prompts, seeds and
noise), and the best epoch picked by a rule stated in the report and comparison.json (no torch: the command
imports it before anything heavy).

kohya saves ``<output_name>-<epoch:06d>.safetensors`` every ``save_every_n_epochs`` and the final file as
``<output_name>.safetensors`` after the last epoch (``train_util.get_epoch_ckpt_name`` / ``get_last_ckpt_name``;
names read by :mod:`lora_audit.kohya.epoch_files`).

The pick, per series (one run's files at one strength), by the first measure every file of the series has:
1. human votes on this comparison folder (``lora-audit vote``; compare run again on the folder reads them):
   the highest win rate, wins / times shown;
2. ``--clip-model`` with ``--reference``: the lowest Fréchet distance (CLIP embeddings) to the reference images;
3. ``--clip-model``: the highest mean CLIP score (prompt–image agreement).
Ties go to the earlier epoch (less training for the same result; the final file counts as the last). With none of
these the series is listed with no pick, and the rule says what would give one.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any, Literal

from lora_audit.compare.schema import EpochScore, EpochSeries
from lora_audit.compare.spec import LoraSpec
from lora_audit.errors import EvidenceError
from lora_audit.kohya.epoch_files import epoch_key, series_files

RULES = {
    "human_win_rate": "highest human win rate (wins / times shown, blind votes on this comparison); ties go to "
                      "the earlier epoch",
    "fd_clip": "lowest Fréchet distance (CLIP embeddings) to the --reference images; ties go to the earlier epoch",
    "clip_score": "highest mean CLIP score (prompt-image agreement, local CLIP weights); ties go to the earlier "
                  "epoch",
    None: "no pick: no measure of quality for every epoch (give --clip-model, with --reference for a distance to "
          "reference images, or vote on this comparison and run compare on it again)",
}
_HIGHER_IS_BETTER = {"human_win_rate": True, "fd_clip": False, "clip_score": True}


def epoch_specs(spec: LoraSpec) -> list[LoraSpec]:
    """``spec`` and the other files of its series (``name-000001.safetensors`` ... ``name.safetensors``) in
    training order, each labelled with its epoch (``name e1``); the final file keeps ``spec``'s label."""
    files = [Path(f) for f in series_files(spec.path)]
    epochs = [(f, epoch_key(f)) for f in files]
    kept = [(f, n, kind) for f, (_, n, kind) in epochs if kind in ("epoch", "final")]
    if len([k for k in kept if k[2] == "epoch"]) == 0:
        raise EvidenceError("--epochs: no per-epoch files beside it (kohya names them <output_name>-000001"
                            ".safetensors, ... with --save_every_n_epochs)", str(spec.path))
    stem = epoch_key(spec.path)[0]
    name = spec.label or stem
    return [LoraSpec(f, spec.strengths, label=name if kind == "final" else f"{name} e{n}") for f, n, kind in kept]


def _order(epoch: int | None) -> float:
    return float("inf") if epoch is None else float(epoch)


def epoch_series(cmp: Any, stats: list[dict[str, Any]]) -> list[EpochSeries]:
    """One :class:`EpochSeries` per run's series of files in the comparison (rows of LoRAs whose files are
    ``name-NNNNNN`` epoch saves and the final ``name``, at one strength), each with its best epoch. ``stats``:
    :func:`lora_audit.compare.export.model_stats`; ``cmp.votes``: {row label: (times shown, wins)} of the human votes
    on the comparison folder (:func:`lora_audit.votes.stats.row_votes`), handed in by the caller."""
    groups: dict[tuple[str, str, float], list[tuple[int | None, dict[str, Any]]]] = defaultdict(list)
    for st in stats:
        if not st.get("lora"):
            continue
        path = Path(st["lora"])
        stem, n, kind = epoch_key(path)
        if kind in ("epoch", "final"):
            groups[(str(path.parent), stem, float(st["lora_strength"] or 0))].append((n, st))
    votes: dict[str, tuple[int, int]] = dict(getattr(cmp, "votes", None) or {})
    out = []
    for (_, stem, strength), rows in groups.items():
        if len(rows) < 2 or all(n is None for n, _ in rows):
            continue
        rows.sort(key=lambda r: _order(r[0]))
        scores = []
        for n, st in rows:
            shown, wins = votes.get(st["model_name"], (0, 0))
            scores.append(EpochScore(model_name=st["model_name"], lora=st["lora"], epoch=n, metric=None, votes=shown,
                                     wins=wins, win_rate=wins / shown if shown else None))
        metric = _metric(scores, rows)
        if metric is not None and metric != "human_win_rate":
            key = "fd_clip" if metric == "fd_clip" else None
            scores = [s.model_copy(update={"metric": st.get(key) if key else (st.get("metrics") or {}).get(metric)})
                      for s, (_, st) in zip(scores, rows)]
        elif metric == "human_win_rate":
            scores = [s.model_copy(update={"metric": s.win_rate}) for s in scores]
        best = _best(scores, metric)
        out.append(EpochSeries(series=f"{stem} @{strength:g}", rule=RULES[metric], metric=metric,
                               best=best.model_name if best else None, best_epoch=best.epoch if best else None,
                               epochs=scores))
    return out


Metric = Literal["human_win_rate", "fd_clip", "clip_score"]


def _metric(scores: list[EpochScore], rows: list[tuple[int | None, dict[str, Any]]]) -> Metric | None:
    if all(s.votes for s in scores):
        return "human_win_rate"
    if all(st.get("fd_clip") is not None for _, st in rows):
        return "fd_clip"
    if all((st.get("metrics") or {}).get("clip_score") is not None for _, st in rows):
        return "clip_score"
    return None


def _best(scores: list[EpochScore], metric: Metric | None) -> EpochScore | None:
    if metric is None:
        return None
    sign = -1.0 if _HIGHER_IS_BETTER[metric] else 1.0
    # sorted() is stable and scores are in training order: a tie keeps the earlier epoch first
    return sorted(scores, key=lambda s: sign * float(s.metric or 0.0))[0]  # every metric is set (_metric)
