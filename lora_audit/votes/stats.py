"""Statistics of votes on a comparison folder (stdlib only): win rates with 95% Wilson intervals, the exact sign test
against the base model, Bradley–Terry strengths, and plain sentences that say when a win rate is conclusive.

Counting rules (one vote = one observation; several voters' votes on one item all count):
- best-of with k models shown: the chosen model beats each of the k-1 others; 'tie' and 'both_bad' tie every pair.
- head-to-head (a LoRA versus the base): from every vote that showed both; the LoRA wins when it was chosen, loses
  when the base was chosen, ties on 'tie'/'both_bad'; a vote for a third model says nothing about the pair. The
  head-to-head win rate is wins / (wins + losses): ties are counted and shown but left out, as the sign test does.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from lora_audit.errors import EvidenceError
from lora_audit.intervals import Z95, wilson
from lora_audit.votes.bradley_terry import bradley_terry, bt_prior_used
from lora_audit.votes.data import ComparisonFolder, load_folder
from lora_audit.votes.store import BOTH_BAD, KINDS, TIE, Vote, VoteStore, has_votes

# The comparison guide's "Interpret Results" bands for the LoRA's win rate against the base model.
GUIDE_HIGH, GUIDE_LOW = 0.60, 0.40
GUIDE_READINGS = {
    "above 60%": "training significantly improved quality - use this model",
    "40-60%": "training showed some improvement - may need more data or tuning",
    "below 40%": "training may need adjustment - review training parameters",
}


def row_votes(folder: Path, kind: str = "human") -> dict[str, tuple[int, int]]:
    """{row label: (times shown, wins)} of the votes on a comparison folder ({} when it has none or they cannot be
    read): what ``compare --epochs`` weighs epochs by, handed to :func:`lora_audit.compare.job.compare_loras`."""
    try:
        votes = folder_votes(folder, kind)
    except EvidenceError:
        return {}
    out: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for v in votes:
        for m in v.shown:
            out[m][0] += 1
            out[m][1] += v.winner == m
    return {m: (a, w) for m, (a, w) in out.items()}


def sign_test(wins: int, losses: int) -> float:
    """Exact two-sided sign test (binomial, p = 1/2; ties already dropped): min(1, 2 P(X <= min(wins, losses)))."""
    n = wins + losses
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(wins, losses) + 1))
    return min(1.0, 2 * tail / 2 ** n)


def comparisons_needed(p_hat: float, threshold: float = 0.5, z: float = Z95) -> int | None:
    """About how many comparisons in total make the 95% Wilson interval at win rate ``p_hat`` clear ``threshold``;
    None when p_hat == threshold (never). The Wilson interval is the set of p0 with |p_hat - p0| <= z sqrt(p0 (1 - p0)
    / n), so it clears p0 once n > z^2 p0 (1 - p0) / (p_hat - p0)^2."""
    if math.isclose(p_hat, threshold, abs_tol=1e-12):
        return None
    return math.floor(z * z * threshold * (1 - threshold) / (p_hat - threshold) ** 2) + 1


# --- Votes to numbers ---------------------------------------------------------------------------------------------

def pair_outcomes(votes: Iterable[Vote]) -> list[tuple[str, str, float]]:
    """Every vote as pairwise outcomes: the chosen model beats each other shown model (weight 1); a tie or 'both bad'
    is half a win each way for every pair shown."""
    out: list[tuple[str, str, float]] = []
    for v in votes:
        if v.winner is not None:
            out += [(v.winner, m, 1.0) for m in v.shown if m != v.winner]
        else:
            out += [(a, b, 0.5) for a in v.shown for b in v.shown if a != b]
    return out


def head_to_head(votes: Iterable[Vote], model: str, other: str) -> dict[str, Any]:
    """``model`` against ``other``: wins, losses, ties, n = wins + losses (decided), win rate with its Wilson
    interval, and the exact sign-test p-value."""
    wins = losses = ties = 0
    for v in votes:
        if model not in v.shown or other not in v.shown:
            continue
        if v.winner == model:
            wins += 1
        elif v.winner == other:
            losses += 1
        elif v.winner is None:
            ties += 1
    n = wins + losses
    lo, hi = wilson(wins, n)
    return {"wins": wins, "losses": losses, "ties": ties, "n": n, "win_rate": wins / n if n else None,
            "ci_lo": lo, "ci_hi": hi, "p_value": sign_test(wins, losses)}


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def _edge(x: float) -> str:
    """A CI bound in percent with one decimal (whole numbers would show 39.7% as 40%, on the guide's edge)."""
    return f"{100 * x:.1f}"


def _more(k: int) -> str:
    return f"about {k} more comparison{'s' if k != 1 else ''}"


def verdict(h: dict[str, Any], model: str, base: str) -> tuple[str | None, str]:
    """(guide band or None, sentence) for a head-to-head result of ``model`` against the base. The guide's reading
    is given only when the whole 95% interval lies in its band."""
    w, n, lo, hi = h["wins"], h["n"], h["ci_lo"], h["ci_hi"]
    ties = f"; {h['ties']} tie{'s' if h['ties'] != 1 else ''} not counted" if h["ties"] else ""
    if n == 0:
        return None, f"{model} has no decided comparison against {base} yet{ties.replace(';', ':', 1)}"
    p = w / n
    head = (f"{model} wins {w} of {n} against {base} ({_pct(p)}, 95% CI {_edge(lo)}–{_edge(hi)}%, "
            f"sign test p = {h['p_value']:.3g}{ties})")
    band = ("above 60%" if lo > GUIDE_HIGH else "below 40%" if hi < GUIDE_LOW
            else "40-60%" if lo >= GUIDE_LOW and hi <= GUIDE_HIGH else None)
    if band:
        inside = "inside " if band == "40-60%" else ""
        return band, (f"{head}: the whole interval is {inside}{band}, so the guide's reading holds: "
                      f"{GUIDE_READINGS[band]}")
    if lo > 0.5 or hi < 0.5:  # a preference is shown, but not which of the guide's bands it falls in
        side, edge = ("better", GUIDE_HIGH) if lo > 0.5 else ("worse", GUIDE_LOW)
        more = comparisons_needed(p, edge)
        where = ("above 60%" if p > GUIDE_HIGH else "below 40%" if p < GUIDE_LOW else "inside the guide's 40-60% band")
        tail = (f"; {_more(max(more - n, 1))} would place a {_pct(p)} win rate {where}" if more
                else f"; a win rate of exactly {_pct(edge)} sits on the guide's edge")
        return None, (f"{head}: {side} than {base} (the interval clears 50%), but not conclusive for the guide's "
                      f"reading yet{tail}")
    more = comparisons_needed(p)
    if more is None:
        return None, f"{head}: not conclusive; at a 50% win rate no number of comparisons shows a preference"
    return None, f"{head}: not conclusive yet; {_more(max(more - n, 1))} would settle a {_pct(p)} win rate"


class ModelRecord(BaseModel):
    """One model's votes: shown, won, tied, both bad; win rate with its 95% Wilson interval, and the rate chance
    alone would give (1 / models shown, averaged)."""

    model: str
    appearances: int
    wins: int
    ties: int
    both_bad: int
    losses: int
    win_rate: float
    ci_lo: float
    ci_hi: float
    chance_rate: float


class VersusBase(BaseModel):
    """A LoRA against the base model (:func:`head_to_head`) and what it means (:func:`verdict`)."""

    model: str
    wins: int
    losses: int
    ties: int
    n: int
    win_rate: float | None
    ci_lo: float
    ci_hi: float
    p_value: float
    guide_reading: str | None
    guide_band: str | None
    sentence: str


class Strength(BaseModel):
    model: str
    strength: float
    ci_lo: float
    ci_hi: float


class BradleyTerryFit(BaseModel):
    normalisation: str
    interval: str
    prior: str | None
    strengths: list[Strength]


class VoteSection(BaseModel):
    """The statistics of one kind of votes (human, or machine, or one judge's)."""

    votes: int
    voters: list[str]
    models: list[ModelRecord]
    versus_base: list[VersusBase]
    bradley_terry: BradleyTerryFit | None
    judges: list[str] | None = None  # machine votes: the judges (each apart in by_judge when several)
    by_judge: dict[str, VoteSection] | None = None


class Statistics(BaseModel):
    """What ``lora-audit stats --json`` prints: the comparison's models, a ``human`` section, and a ``machine``
    section when there are machine votes."""

    folder: str
    base_model: str | None
    models: list[str]
    comparisons: int
    human: VoteSection | None = None
    machine: VoteSection | None = None

    def to_data(self) -> dict[str, Any]:
        """The JSON object (a section that was not asked for, or has no votes of its kind, is absent)."""
        return self.model_dump(mode="json", exclude_unset=True)


def _section(votes: list[Vote], folder: ComparisonFolder) -> VoteSection:
    base = folder.base_model
    per: dict[str, dict[str, Any]] = defaultdict(lambda: {"appearances": 0, "wins": 0, "ties": 0, "both_bad": 0,
                                                          "chance": 0.0})
    for v in votes:
        for m in v.shown:
            r = per[m]
            r["appearances"] += 1
            r["chance"] += 1 / len(v.shown)
            r["wins"] += v.winner == m
            r["ties"] += v.choice == TIE
            r["both_bad"] += v.choice == BOTH_BAD
    order = [m for m in folder.models if m in per] + sorted(m for m in per if m not in folder.models)
    models = []
    for m in order:
        r = per[m]
        a = r["appearances"]
        lo, hi = wilson(r["wins"], a)
        models.append(ModelRecord(model=m, appearances=a, wins=r["wins"], ties=r["ties"], both_bad=r["both_bad"],
                                  losses=a - r["wins"] - r["ties"] - r["both_bad"], win_rate=r["wins"] / a,
                                  ci_lo=lo, ci_hi=hi, chance_rate=r["chance"] / a))
    versus = []
    if base:
        for m in folder.models:
            if m == base:
                continue
            h = head_to_head(votes, m, base)
            band, sentence = verdict(h, m, base)
            versus.append(VersusBase(model=m, **h, guide_reading=band and GUIDE_READINGS[band], guide_band=band,
                                     sentence=sentence))
    fit_model = None
    pairs = pair_outcomes(votes)
    if len({m for a, b, _ in pairs for m in (a, b)}) > 2:
        fit = bradley_terry(pairs)
        fit_model = BradleyTerryFit(
            normalisation="geometric mean of strengths = 1; P(i beats j) = s_i / (s_i + s_j)",
            interval="95%, from the observed Fisher information of the log-strengths",
            prior="one virtual tie between every pair of models (some model never won or never lost)"
            if bt_prior_used(pairs) else None,
            strengths=[Strength(model=m, strength=s, ci_lo=lo, ci_hi=hi)
                       for m, (s, lo, hi) in sorted(fit.items(), key=lambda kv: -kv[1][0])])
    return VoteSection(votes=len(votes), voters=sorted({v.voter for v in votes}), models=models,
                       versus_base=versus, bradley_terry=fit_model)


def statistics(votes: list[Vote], folder: ComparisonFolder, kind: str = "all") -> Statistics:
    """The statistics of ``votes`` on ``folder``: a ``human`` section, and a ``machine`` section when there are
    machine votes (each judge apart under ``machine.by_judge`` when there are several). ``kind`` keeps one."""
    if kind not in ("all", *KINDS):
        raise ValueError(f"kind must be all, human or machine, not {kind!r}")
    out = Statistics(folder=str(folder.path), base_model=folder.base_model, models=folder.models,
                     comparisons=len(folder.items))
    human = [v for v in votes if v.kind == "human"]
    machine = [v for v in votes if v.kind == "machine"]
    if kind in ("all", "human"):
        out.human = _section(human, folder)
    if machine and kind in ("all", "machine"):
        sec = _section(machine, folder)
        judges = sorted({v.judge or v.voter for v in machine})
        sec.judges = judges
        if len(judges) > 1:
            sec.by_judge = {j: _section([v for v in machine if (v.judge or v.voter) == j], folder) for j in judges}
        out.machine = sec
    return out


def summarize(votes: list[Vote], folder: ComparisonFolder, kind: str = "all") -> dict[str, Any]:
    """:func:`statistics` as JSON data."""
    return statistics(votes, folder, kind).to_data()


def folder_votes(folder: Path | str, kind: str | None = None) -> list[Vote]:
    """The counted votes of a comparison folder (none when it has no vote store yet; the store is not created)."""
    return VoteStore(folder).votes(kind=kind) if has_votes(folder) else []


def folder_statistics(folder: Path | str, kind: str = "all") -> Statistics:
    """Load a comparison folder and its votes; their :class:`Statistics`."""
    cf = load_folder(folder)
    return statistics(folder_votes(cf.path), cf, kind)


def folder_stats(folder: Path | str, kind: str = "all") -> dict[str, Any]:
    """:func:`folder_statistics` as JSON data (what ``lora-audit stats --json`` prints)."""
    return folder_statistics(folder, kind).to_data()


def versus_base(folder: Path | str, model: str, kind: str | None = "human") -> dict[str, Any]:
    """``model`` against the folder's base model from the folder's votes (``kind`` None: human and machine):
    wins, losses, ties, n (= wins + losses), win_rate (None when n is 0), ci_lo, ci_hi (95% Wilson), p_value
    (exact sign test)."""
    cf = load_folder(folder)
    if cf.base_model is None:
        raise EvidenceError("this comparison has no base model (a row without a LoRA)",
                            str(cf.path / "comparison.json"))
    if model not in cf.models:
        raise EvidenceError(f"no model {model!r} in this comparison (it has: {', '.join(cf.models)})",
                            str(cf.path / "comparison.json"))
    return head_to_head(folder_votes(cf.path, kind), model, cf.base_model)
