"""A bisect study on disk: study.toml + bisect.json (the state of ablate.bisect and the change sets), and the
variants of the current round written as study folders. ``lora-audit bisect`` is a thin shell over this."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ValidationError

from lora_audit.ablate import bisect as bis
from lora_audit.ablate.emit import write_study, write_variants
from lora_audit.ablate.files import STUDY_CAP, check_id, comment_text, read_study_meta, read_text
from lora_audit.ablate.plan import ChangeSet, ParamChange, VariantSpec, _variant, change_sets, plan
from lora_audit.errors import EvidenceError
from lora_audit.evidence import load_run
from lora_audit.model import Run


class BisectStudy(BaseModel):
    good: str
    bad: str
    change_sets: list[ChangeSet]
    state: bis.BisectState


def bisect_file(study: Path) -> Path:
    return Path(study) / "bisect.json"



def load(study: Path) -> BisectStudy:
    """bisect.json read back: any damage (not JSON, cut short, wrong types, a depth bomb, ids that are not the
    tool's) is one line naming the file."""
    f = bisect_file(study)
    if not os.path.lexists(f):
        raise EvidenceError("not a bisect study (no bisect.json here): start one with `lora-audit bisect start`",
                            str(study))
    text = read_text(f, "bisect.json")
    try:
        bs = BisectStudy.model_validate_json(text)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(x) for x in err["loc"]) or "(top)"
        raise EvidenceError(f"corrupt bisect state: {comment_text(loc)}: {comment_text(err['msg'])[:200]}",
                            str(f)) from None
    except (ValueError, RecursionError, MemoryError) as e:
        raise EvidenceError(f"corrupt bisect state: {type(e).__name__}", str(f)) from None
    _check(bs, str(f))
    return bs


def _check(bs: BisectStudy, where: str) -> None:
    """What the search relies on: ids that name folders, change ids that are the study's, sane counts."""
    st = bs.state
    ids = [c.id for c in bs.change_sets]
    known = set(ids)
    if len(known) != len(ids) or set(st.changes) != known or len(st.changes) != len(known):
        raise EvidenceError("corrupt bisect state: state.changes and change_sets do not name the same changes", where)
    if not 1 <= st.parallel <= 1000:
        raise EvidenceError(f"corrupt bisect state: parallel must be 1..1000, got {comment_text(st.parallel)[:20]}",
                            where)
    lists = [st.culprits, st.fixed, st.pool, *st.groups] + [t.changes for r in st.rounds for t in r.tests] + \
        [t.changes for t in st.controls]
    if any(c not in known for lst in lists for c in lst):
        raise EvidenceError("corrupt bisect state: a round or result names a change that is not in change_sets", where)
    for i, r in enumerate(st.rounds, 1):
        if r.number != i:
            raise EvidenceError(f"corrupt bisect state: round {i} is numbered {comment_text(r.number)[:20]}", where)
        for t in r.tests:
            check_id(t.id, where)
    for t in st.controls:
        check_id(t.id, where)
    if any(not 0 <= t.retry <= 1000 for r in st.rounds for t in r.tests) or any(not 0 <= t.retry <= 1000
                                                                             for t in st.controls):
        raise EvidenceError("corrupt bisect state: a retry count out of 0..1000", where)


def _save(study: Path, bs: BisectStudy) -> None:
    if len(bs.model_dump_json()) > STUDY_CAP:  # pragma: no cover - a bisection never grows this large
        raise EvidenceError("bisect state too large to save", str(bisect_file(study)))
    tmp = bisect_file(study).with_suffix(".json.tmp")
    tmp.write_text(bs.model_dump_json(indent=2), encoding="utf-8")
    tmp.replace(bisect_file(study))  # atomic: a crash never leaves half a state


def _runs(study: Path) -> dict[str, Run]:
    return {name: load_run(path, name=name) for name, path in read_study_meta(study).runs.items()}


def _reseeded(good: Run, changes: list[ParamChange], retry: int) -> list[ParamChange]:
    """A re-test of a variant judged unsure (``retry`` > 0), or a control replicate: the same changes with the seed
    moved by 1000 per retry, so the training is another draw of the seed noise (kohya seeds everything from
    ``--seed``: train_network.py calls accelerate's set_seed(args.seed))."""
    if not retry:
        return changes
    base = next((c.to for c in changes if c.param == "seed"), good.value("seed"))
    try:
        base = int(base)
    except (TypeError, ValueError):
        base = 0  # no seed in the good run: kohya draws a random one per run; make it explicit
    moved = ParamChange(param="seed", **{"from": good.value("seed")}, to=base + 1000 * retry)
    return [c for c in changes if c.param != "seed"] + [moved]


def _spec(t: bis.Test, good: Run, by_id: dict) -> VariantSpec:
    return _variant(t.id, good, _reseeded(good, [ch for cid in t.changes for ch in by_id[cid].changes], t.retry),
                    t.changes, t.purpose)


def _write_round(study: Path, bs: BisectStudy, runs: dict[str, Run]) -> list[Path]:
    meta = read_study_meta(study)
    for name in (bs.good, bs.bad):
        if name not in runs:
            raise EvidenceError(f"study.toml has no run {comment_text(name)!s} in [runs]",
                                str(Path(study) / "study.toml"))
    by_id = {c.id: c for c in bs.change_sets}
    good = runs[bs.good]
    specs = [_spec(t, good, by_id) for t in bis.pending(bs.state)]
    return write_variants(specs, runs, study, meta.backend, meta.sd_scripts, log=meta.log)


def start(good: Run, bad: Run, out: Path, parallel: int = 2, backend: str = "kohya",
          sd_scripts: str = "sd-scripts", inputs: Sequence[str | Path] = (), force: bool = False,
          log: bool = False, replicates: int = 0,
          method: Literal["progressive", "group-testing"] = "group-testing") -> BisectStudy:
    if os.path.lexists(bisect_file(out)):
        raise EvidenceError("a bisection is already under way here (bisect.json exists)", str(out))
    sets, _ = change_sets(good, bad)
    try:
        state = bis.start([c.id for c in sets], parallel, replicates, method)
    except ValueError as e:
        raise EvidenceError(str(e)) from None
    p = plan(good, [bad], "bisect", control=True)
    runs = {good.name: good, bad.name: bad}
    bs = BisectStudy(good=good.name, bad=bad.name, change_sets=sets, state=state)
    by_id = {c.id: c for c in sets}
    first = [_spec(t, good, by_id) for t in bis.pending(state) + state.controls]
    # the control and the first round in one write: an error leaves no half-written study behind
    write_study(p, runs, out, backend, sd_scripts, inputs, force, also=first, log=log)
    _save(out, bs)
    return bs


def judge(study: Path, verdict: str, variants: list[str]) -> BisectStudy:
    return judge_all(study, [(v, verdict) for v in variants])


def judge_all(study: Path, verdicts: list[tuple[str, str]]) -> BisectStudy:
    """Record (variant, 'good' | 'bad' | 'unsure') pairs, then write the next round when this one is complete."""
    bs = load(study)
    state = bs.state
    for v, verdict in verdicts:
        try:
            state = bis.record(state, v, verdict)
        except ValueError as e:
            raise EvidenceError(str(e), str(bisect_file(study))) from None
    before = len(state.rounds)
    state = bis.advance(state)
    bs = bs.model_copy(update={"state": state})
    if len(state.rounds) > before and state.status == "running":
        _write_round(study, bs, _runs(study))  # first: an error here leaves the verdicts unrecorded, to give again
    _save(study, bs)
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
        "method": bs.state.method,
        "controls": [{"id": t.id, "verdict": t.verdict, "purpose": t.purpose} for t in bs.state.controls],
        "basis": bs.state.basis,
    }
