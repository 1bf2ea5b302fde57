"""Bisect over a set of changes: find the smallest set of changes that turns the good run into the bad one.

Like ``git bisect``, but over a set instead of a line of commits. A test applies a subset S of the k changes to the
good run; training and judging it says "good" or "bad". Applying none is the good run, applying all is the bad run:
both known, never trained.

The search assumes that adding changes never turns a bad run good (monotone), which covers a single culprit,
several independent culprits (each alone is bad) and interactions (bad only together). Over a fixed order of the
changes it looks for one element of a minimal bad set at a time (the "progressive" scheme behind QuickXplain):

* with F the elements found so far and P the pool still in play (F ∪ P known bad), binary-search the shortest
  prefix P[:j] with F ∪ P[:j] bad; its last element e belongs to the minimal set. Then F += e, P = P[:j-1];
* first ask whether F alone is already bad (the single-culprit case ends there), and with a second slot in the
  round ask at once whether the bad run with F reverted is still bad (another, independent culprit);
* when F is bad it is one minimal group: removing any element of it gave a good run. Then the rest R = all
  changes minus every group found: if R is still bad, search R for the next group; if good, done.

When a group needs 3+ changes together and the rest being bad rests only on the original bad run, one variant
re-makes the bad run (all changes applied): if it is judged good, the failure does not follow from the changes at
all (noise, machine, versions) and the bisection stops there instead of chasing an interaction of everything.

New bisections (``method = "group-testing"``) search first for changes that are each alone bad, by adaptive group
testing (``ablate.group_testing``: Hwang's generalized binary splitting, never more trainings than one change at a
time for up to 3 culprits), and hand over to the search above only when the verdicts show changes bad only
together. State files written before have no ``method`` and go on with the search above.

A verdict may be ``unsure`` (the judge cannot tell): the search never branches on it; it asks the same group again
(``retry`` > 0: the variant is re-emitted with another seed). ``controls`` are extra trainings of the good run with
other seeds (control replicates): how many of them are judged bad estimates how often seed noise alone flips a
verdict, and ``basis`` says what the answer rests on.

Every verdict is kept; a subset of a known-good test is good and a superset of a known-bad one bad, so nothing is
trained twice. A single culprit costs at most ⌈log2 k⌉ + 2 trainings: the binary search, then the round "is it
alone bad / is the rest good". Rounds hold up to ``parallel`` tests; extra slots split a search interval in more
parts only where that does not cost more trainings in the worst case. Every step shrinks the interval, the pool or
the rest, so the bisection ends even on noisy, non-monotone verdicts: they are flagged in ``notes``.

This module is the public API and the explanation of the answer (``basis``, ``log``); the state models live in
``ablate.bisect_state`` and the search in ``ablate.bisect_search`` (every name is importable from here).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, cast

from lora_audit.ablate import bisect_search
from lora_audit.ablate.bisect_state import (
    MAX_RETRIES,
    BisectState,
    Round,
    Test,
    _ids,
    verdicts,
)
from lora_audit.ablate.verdict import Judgement

__all__ = ["MAX_RETRIES", "BisectState", "Round", "Test", "advance", "log", "pending", "record", "simulate", "start",
           "trainings", "verdicts"]

# --- public API -----------------------------------------------------------------------------------------------


def start(changes: list[str], parallel: int = 2, replicates: int = 0,
          method: Literal["progressive", "group-testing"] = "group-testing") -> BisectState:
    """A new bisection over ``changes`` (good run = none applied, bad run = all), with its first round, and
    ``replicates`` control replicates (the good run with other seeds) to judge alongside."""
    if not changes:
        raise ValueError("nothing to bisect: the good and bad runs have no change between them")
    dup = sorted({c for c in changes if changes.count(c) > 1})
    if dup:
        raise ValueError(f"change ids must be unique; repeated: {', '.join(dup)}")
    if parallel < 1:
        raise ValueError(f"parallel must be at least 1, got {parallel}")
    if not 0 <= replicates <= 100:
        raise ValueError(f"replicates must be 0..100, got {replicates}")
    if method not in ("progressive", "group-testing"):
        raise ValueError(f"method must be 'progressive' or 'group-testing', got {method!r}")
    state = BisectState(changes=list(changes), parallel=parallel, pool=list(changes), method=method,
                        controls=[Test(id=f"ctl-{i}", changes=[], retry=i,
                                       purpose=f"control replicate {i}: the good run with another seed; judged bad, "
                                               "it measures seed noise") for i in range(1, replicates + 1)])
    if len(changes) == 1:
        state.notes.append(f"only one change ({changes[0]}): the bad run is the good run plus it, so it is the "
                           "culprit without training anything (train the control to tell it from noise)")
    return _advance(state)


def record(state: BisectState, test_id: str, verdict: str) -> BisectState:
    """The verdict of one test of the current round (a new verdict replaces one not yet used by ``advance``)."""
    if verdict not in ("good", "bad", "unsure"):
        raise ValueError(f"verdict must be 'good', 'bad' or 'unsure', got {verdict!r}")
    judgement = cast(Judgement, verdict)  # checked just above
    if any(t.id == test_id for t in state.controls):
        new = state.model_copy(deep=True)
        next(t for t in new.controls if t.id == test_id).verdict = judgement
        new.basis = _basis(new) if new.status == "found" else []
        return new
    if state.status == "found":
        raise ValueError(f"the bisection is finished (culprits: {', '.join(state.culprits)}); "
                         f"{test_id} cannot be judged any more")
    current = state.rounds[-1] if state.rounds else None
    for rnd in state.rounds[:-1]:  # the rounds before the current one (none when there is no round)
        for t in rnd.tests:
            if t.id == test_id and current is not None:
                raise ValueError(f"{test_id} belongs to round {rnd.number}, whose verdicts are already used; "
                                 f"the current round is {current.number}: {_ids(current)}")
    if current is None or test_id not in {t.id for t in current.tests}:
        raise ValueError(f"unknown test {test_id!r}; the current round"
                         + (f" is {current.number}: {_ids(current)}" if current else " has none"))
    new = state.model_copy(deep=True)
    next(t for t in new.rounds[-1].tests if t.id == test_id).verdict = judgement
    return new


def advance(state: BisectState) -> BisectState:
    """The next round once every test of the current one has a verdict (else ``state`` unchanged), or the result."""
    if state.status == "found" or pending(state):
        return state
    new = state.model_copy(deep=True)
    if new.rounds:
        new.notes.extend(_inconsistencies(new))
    return _advance(new)


def pending(state: BisectState) -> list[Test]:
    """Tests of the current round still waiting for a verdict."""
    if state.status == "found" or not state.rounds:
        return []
    return [t for t in state.rounds[-1].tests if t.verdict is None]


def trainings(state: BisectState) -> int:
    """Variants trained (or to train) so far: every test of every round."""
    return sum(len(r.tests) for r in state.rounds)



def log(state: BisectState) -> list[str]:
    """Human-readable history, like ``git bisect log``."""
    k = len(state.changes)
    out = [f"# bisect over {k} change{'s' if k != 1 else ''}: {', '.join(state.changes)}",
           f"# good run = none applied (known good), bad run = all {k} applied (known bad); "
           f"up to {state.parallel} variant{'s' if state.parallel != 1 else ''} per round"]
    for rnd in state.rounds:
        out.append(f"# round {rnd.number}")
        for t in rnd.tests:
            applied = ", ".join(t.changes) if t.changes else "(none)"
            out.append(f"{t.id}  {t.verdict or 'pending':7}  +{applied}" + (f"   # {t.purpose}" if t.purpose else ""))
    if state.controls:
        out.append("# control replicates (the good run with other seeds)")
        out.extend(f"{t.id}  {t.verdict or 'pending':7}  +(none)" for t in state.controls)
    out.extend(f"# note: {n}" for n in state.notes)
    n, r = trainings(state), len(state.rounds)
    if state.status == "found":
        for g in state.groups:
            why = ("not reproduced: the changes still in play" if state.reproduced is False else
                   "alone makes the run bad" if len(g) == 1 else "bad only together")
            out.append(f"# culprit group: {' + '.join(g)} ({why})")
        out.extend(f"# rests on: {b}" for b in state.basis)
        out.append(f"# found: {', '.join(state.culprits)} after {n} training{'s' if n != 1 else ''} "
                   f"in {r} round{'s' if r != 1 else ''}")
    else:
        out.append(f"# running: round {r}, waiting for {', '.join(t.id for t in pending(state))}")
    return out


def simulate(changes: list[str], oracle: Callable[[frozenset[str]], bool],
             parallel: int = 2, method: Literal["progressive", "group-testing"] = "group-testing"
             ) -> tuple[list[str], int]:
    """Run a bisection against ``oracle`` (True = bad); returns (culprits, trainings)."""
    state = start(changes, parallel, method=method)
    while state.status == "running":
        for t in pending(state):
            state = record(state, t.id, "bad" if oracle(frozenset(t.changes)) else "good")
        state = advance(state)
    return state.culprits, trainings(state)


def _advance(state: BisectState) -> BisectState:
    """Step the search (``ablate.bisect_search``, in place) until it needs trainings or is done; a finished state
    gets ``basis``, what the answer rests on."""
    state = bisect_search.advance(state)
    if state.status == "found":
        state.basis = _basis(state)
    return state


# --- what the answer rests on -----------------------------------------------------------------------------------


def _basis(state: BisectState) -> list[str]:
    """What the answer rests on: for each group the verdicts that make it bad and minimal, then whether reverting
    them was trained, then how noisy the verdicts were (unsure, contradictions, control replicates)."""
    tests = [t for r in state.rounds for t in r.tests]
    out, assumed = _groups_basis(state, tests)
    unsure = [t.id for t in tests if t.verdict == "unsure"]
    noisy = [n for n in state.notes if "judged good but holds every change" in n]
    ctl = [t for t in state.controls if t.verdict in ("good", "bad")]
    ctl_bad = [t.id for t in ctl if t.verdict == "bad"]
    level = "sure" if not assumed else "likely (rests on independent culprits)"
    if unsure or noisy or ctl_bad:
        level = "uncertain"
    if any("stays open" in n or "stayed unsure" in n for n in state.notes):
        level = "undecided"
    if unsure:
        out.append(f"{len(unsure)} verdict(s) unsure ({', '.join(unsure[:6])}), asked again with another seed")
    if noisy:
        out.append(f"{len(noisy)} pair(s) of verdicts contradict each other (see the notes)")
    if ctl:
        from lora_audit.intervals import wilson

        lo, hi = wilson(len(ctl_bad), len(ctl))
        out.append(f"control replicates: {len(ctl_bad)} of {len(ctl)} judged bad (the good run with other seeds): "
                   f"seed noise alone flips a verdict in {100 * lo:.0f}-{100 * hi:.0f}% of trainings (95% CI)")
    elif state.controls:
        out.append(f"control replicates: none judged yet of {len(state.controls)} "
                   f"({', '.join(t.id for t in state.controls)}): seed noise not measured")
    out.append(f"how sure: {level}")
    return out


def _groups_basis(state: BisectState, tests: list[Test]) -> tuple[list[str], bool]:
    """``_basis``'s lines on each group and on the changes outside them, and whether any rests on independence."""
    judged: dict[frozenset[str], list[Test]] = {}
    for t in tests:
        if t.verdict in ("good", "bad"):
            judged.setdefault(frozenset(t.changes), []).append(t)
    out: list[str] = []
    assumed = False
    for g in state.groups:
        own = judged.get(frozenset(g), [])
        bad = [t.id for t in own if t.verdict == "bad"]
        if bad and state.reproduced is not False:
            why = f"{' + '.join(g)}: {', '.join(bad)} (the good run with {'it' if len(g) == 1 else 'them'} " \
                  "applied) judged bad"
            subs = [t.id for t in tests if t.verdict == "good" and len(g) > 1 and set(t.changes) < set(g)]
            if len(g) > 1:
                why += f"; smaller parts judged good ({', '.join(subs[:4])})" if subs else \
                    "; its smaller parts good only by inference"
            out.append(why)
        elif state.reproduced is False:
            out.append(f"{' + '.join(g)}: not reproduced: the changes still in play, no variant was judged bad")
        else:
            assumed = True
            out.append(f"{' + '.join(g)}: found by elimination (a group holding it judged bad, the rest of the group "
                       "good); never trained alone: this rests on the culprits being independent")
    if state.groups and state.reproduced is not False:
        rest = frozenset(state.changes) - {c for g in state.groups for c in g}
        rt = [t.id for t in tests if t.verdict == "good" and rest <= set(t.changes)]  # it, or a superset, good
        if not rest:
            pass
        elif rt:
            out.append(f"reverting them fixes the run: {', '.join(rt[:3])} (holding every other change) judged good")
        else:
            assumed = True
            out.append("the other changes were cleared group by group (each judged good), never trained all "
                       "together: an interaction among them would go unseen (rests on independence)")
    return out, assumed


def _inconsistencies(state: BisectState) -> list[str]:
    """Pairs of verdicts, one of them from the last round, that break monotonicity: a variant judged good although
    it holds every change of one judged bad. (The re-made bad run judged good has its own note.)"""
    tests = [t for r in state.rounds for t in r.tests if t.verdict and set(t.changes) != set(state.changes)]
    last = {t.id for t in state.rounds[-1].tests}
    return [f"{g.id} was judged good but holds every change of {b.id}, judged bad: noise between trainings, or a "
            "change that hides another; the bisection goes on with the verdicts as given (re-train both, and the "
            "control, to check)"
            for g in tests if g.verdict == "good" for b in tests
            if b.verdict == "bad" and (g.id in last or b.id in last) and set(b.changes) <= set(g.changes)]

