"""Votes become bisection verdicts: the win rate of each pending variant against the base model, read against a
threshold. Here in ``votes`` (downstream of ``ablate``): the bisection takes verdicts and knows nothing of votes."""

from __future__ import annotations

import re
from pathlib import Path

from lora_audit.ablate import bisect as bis
from lora_audit.ablate import study as st
from lora_audit.errors import EvidenceError
from lora_audit.votes.data import load_folder
from lora_audit.votes.stats import folder_votes, head_to_head


def verdicts_from_votes(study: Path, folder: Path, threshold: float = 0.6, kind: str | None = None,
                        variants: list[str] | None = None) -> list[dict]:
    """For each variant of the current round (or ``variants``): its win rate against the base model in the votes
    of comparison ``folder`` (``lora-audit compare --study``, then ``vote``), and the verdict it supports: ``good``
    when the LoRA wins at least ``threshold`` of its decided comparisons with the base (the comparison guide's
    "training improved" reading), ``bad`` below, ``unsure`` when the 95% Wilson interval of the win rate holds the
    threshold (the votes cannot tell: the bisection asks again rather than branch on it), None without votes.
    Human votes unless ``kind`` says otherwise or
    the folder has only machine votes. A variant's row is its final LoRA (not a per-epoch file), at strength 1 when
    it was compared at several."""
    bs = st.load(study)
    ids = variants or [t.id for t in bis.pending(bs.state)]
    if not ids:
        raise EvidenceError("no variant waits for a verdict in this round", str(st.bisect_file(study)))
    cf = load_folder(folder)
    if cf.base_model is None:
        raise EvidenceError("the comparison has no base-model row to measure win rates against", str(folder))
    votes = folder_votes(folder)
    if kind is None:
        kind = "human" if any(v.kind == "human" for v in votes) else "machine"
    votes = [v for v in votes if v.kind == kind]
    out = []
    for vid in ids:
        rows = [m for m in cf.models if re.fullmatch(rf"{re.escape(vid)}( @[0-9.]+)?", m)]
        if not rows:
            raise EvidenceError(f"variant {vid} is not in this comparison (models: {', '.join(cf.models)}); run "
                                f"lora-audit compare --study {study} after training it", str(folder))
        row = next((m for m in rows if m.endswith(" @1")), rows[0])
        h = head_to_head(votes, row, cf.base_model)
        # the 95% Wilson interval on both sides of the threshold: the votes cannot tell, so no verdict is forced
        verdict = None if not h["n"] else "unsure" if h["ci_lo"] < threshold < h["ci_hi"] else \
            ("good" if h["win_rate"] >= threshold else "bad")
        out.append({"variant": vid, "model": row, "kind": kind, "threshold": threshold, "verdict": verdict, **h})
    return out


def verdicts_to_record(rows: list[dict], verdict: str) -> tuple[list[str], list[str]]:
    """``bisect good|bad|unsure --from-votes``: of :func:`verdicts_from_votes`' rows, (the variants the votes mark
    ``verdict``, those they mark unsure instead: recorded unsure, never forced good or bad)."""
    chosen = [r["variant"] for r in rows if r["verdict"] == verdict]
    unsure = [r["variant"] for r in rows if r["verdict"] == "unsure" and verdict != "unsure"]
    return chosen, unsure
