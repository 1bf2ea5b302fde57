"""A bisect study on disk: study.toml + bisect.json (the state of ablate.bisect and the change sets), and the
variants of the current round written as study folders. ``lora-audit bisect`` is a thin shell over this."""

from __future__ import annotations

import tomllib
from pathlib import Path

from pydantic import BaseModel

from lora_audit.ablate import bisect as bis
from lora_audit.ablate.emit import write_study, write_variants
from lora_audit.ablate.plan import ChangeSet, _variant, change_sets, plan
from lora_audit.errors import EvidenceError
from lora_audit.evidence import load_run
from lora_audit.model import Run


class BisectStudy(BaseModel):
    good: str
    bad: str
    change_sets: list[ChangeSet]
    state: bis.BisectState


def _file(study: Path) -> Path:
    return Path(study) / "bisect.json"


def load(study: Path) -> BisectStudy:
    f = _file(study)
    if not f.is_file():
        raise EvidenceError("not a bisect study (no bisect.json here): start one with `lora-audit bisect start`",
                            str(study))
    try:
        return BisectStudy.model_validate_json(f.read_text(encoding="utf-8"))
    except ValueError as e:
        raise EvidenceError(f"corrupt bisect state: {str(e).splitlines()[0]}", str(f)) from None


def _save(study: Path, bs: BisectStudy) -> None:
    tmp = _file(study).with_suffix(".json.tmp")
    tmp.write_text(bs.model_dump_json(indent=2), encoding="utf-8")
    tmp.replace(_file(study))  # atomic: a crash never leaves half a state


def _runs(study: Path) -> dict[str, Run]:
    meta = tomllib.loads((Path(study) / "study.toml").read_text(encoding="utf-8"))
    return {name: load_run(path, name=name) for name, path in meta.get("runs", {}).items()}


def _write_round(study: Path, bs: BisectStudy, runs: dict[str, Run]) -> list[Path]:
    meta = tomllib.loads((Path(study) / "study.toml").read_text(encoding="utf-8"))
    by_id = {c.id: c for c in bs.change_sets}
    good = runs[bs.good]
    specs = [_variant(t.id, good, [ch for cid in t.changes for ch in by_id[cid].changes], t.changes, t.purpose)
             for t in bis.pending(bs.state)]
    return write_variants(specs, runs, study, meta.get("backend", "kohya"), meta.get("sd_scripts", "sd-scripts"))


def start(good: Run, bad: Run, out: Path, parallel: int = 2, backend: str = "kohya",
          sd_scripts: str = "sd-scripts") -> BisectStudy:
    if _file(out).exists():
        raise EvidenceError("a bisection is already under way here (bisect.json exists)", str(out))
    sets, _ = change_sets(good, bad)
    try:
        state = bis.start([c.id for c in sets], parallel)
    except ValueError as e:
        raise EvidenceError(str(e)) from None
    p = plan(good, [bad], "bisect", control=True)
    runs = {good.name: good, bad.name: bad}
    write_study(p, runs, out, backend, sd_scripts)
    bs = BisectStudy(good=good.name, bad=bad.name, change_sets=sets, state=state)
    _save(out, bs)
    _write_round(out, bs, runs)
    return bs


def judge(study: Path, verdict: str, variants: list[str]) -> BisectStudy:
    bs = load(study)
    state = bs.state
    for v in variants:
        try:
            state = bis.record(state, v, verdict)
        except ValueError as e:
            raise EvidenceError(str(e), str(_file(study))) from None
    before = len(state.rounds)
    state = bis.advance(state)
    bs = bs.model_copy(update={"state": state})
    _save(study, bs)
    if len(state.rounds) > before and state.status == "running":
        _write_round(study, bs, _runs(study))
    return bs


def status_json(bs: BisectStudy) -> dict:
    by_id = {c.id: c for c in bs.change_sets}
    return {
        "status": bs.state.status,
        "round": len(bs.state.rounds),
        "variants": [{"id": t.id, "changes": t.changes, "purpose": t.purpose,
                      "params": [ch.param for cid in t.changes for ch in by_id[cid].changes]}
                     for t in bis.pending(bs.state)],
        "culprits": [ch.param for cid in bs.state.culprits for ch in by_id[cid].changes],
        "culprit_sets": bs.state.culprits,
        "groups": bs.state.groups,
        "trainings": bis.trainings(bs.state),
        "notes": bs.state.notes,
    }


def verdicts_from_votes(study: Path, folder: Path, threshold: float = 0.6, kind: str | None = None,
                        variants: list[str] | None = None) -> list[dict]:
    """For each variant of the current round (or ``variants``): its win rate against the base model in the votes
    of comparison ``folder`` (``lora-audit compare --study``, then ``vote``), and the verdict it supports: ``good``
    when the LoRA wins at least ``threshold`` of its decided comparisons with the base (the comparison guide's
    "training improved" reading), ``bad`` below, None without votes. Human votes unless ``kind`` says otherwise or
    the folder has only machine votes. A variant's row is its final LoRA (not a per-epoch file), at strength 1 when
    it was compared at several."""
    import re

    from lora_audit.votes.data import load_folder
    from lora_audit.votes.stats import folder_votes, head_to_head

    bs = load(study)
    ids = variants or [t.id for t in bis.pending(bs.state)]
    if not ids:
        raise EvidenceError("no variant waits for a verdict in this round", str(_file(study)))
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
        verdict = None if not h["n"] else ("good" if h["win_rate"] >= threshold else "bad")
        out.append({"variant": vid, "model": row, "kind": kind, "threshold": threshold, "verdict": verdict, **h})
    return out
