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
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import cache
from typing import Literal, cast

from pydantic import BaseModel, Field

from lora_audit.ablate import group_testing as gt
from lora_audit.ablate.verdict import Judgement, Verdict

MAX_RETRIES = gt.MAX_UNSURE  # re-tests of one variant judged unsure before the search stops with it open


class Test(BaseModel):
    """One variant to train: the good run with ``changes`` applied."""

    __test__ = False  # not a pytest test class, though named like one

    id: str  # r<round>-<letter>, stable
    changes: list[str]
    verdict: Judgement | None = None
    purpose: str = ""  # the question this variant answers, for people
    retry: int = 0  # how many earlier variants asked the same question (judged unsure): the seed is moved this often


class Round(BaseModel):
    number: int
    tests: list[Test]


class BisectState(BaseModel):
    """Durable state of a bisection (stored as ``bisect.json`` in the study folder)."""

    changes: list[str]
    parallel: int = 2
    rounds: list[Round] = Field(default_factory=list)
    status: Literal["running", "found"] = "running"
    culprits: list[str] = Field(default_factory=list)  # union of the groups, in the order of ``changes``
    groups: list[list[str]] = Field(default_factory=list)  # each a minimal set that alone makes the run bad
    notes: list[str] = Field(default_factory=list)
    # True once a trained variant was bad; False when the good run with every change applied was trained and judged
    # good: then the failure does not follow from the changes and ``culprits`` is only the set still in play
    reproduced: bool | None = None
    # where the search stands: found part of the current group, and the pool it is searched in
    phase: Literal["search", "rest", "done"] = "search"
    fixed: list[str] = Field(default_factory=list)
    pool: list[str] = Field(default_factory=list)
    # absent in state files of the first version: they go on with the progressive search
    method: Literal["progressive", "group-testing"] = "progressive"
    controls: list[Test] = Field(default_factory=list)  # the good run again with other seeds (ids ctl-1, ...)
    basis: list[str] = Field(default_factory=list)  # what the answer rests on, one line per claim


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


def verdicts(state: BisectState) -> list[Verdict]:
    """Every verdict given so far, round by round (controls apart)."""
    return [Verdict(changes=tuple(t.changes), verdict=t.verdict, test=t.id)
            for r in state.rounds for t in r.tests if t.verdict is not None]


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


# --- the search -----------------------------------------------------------------------------------------------


class _Knowledge:
    """Every verdict so far, with the two runs; answers by monotonicity (subset of good is good, superset of bad
    is bad)."""

    def __init__(self, state: BisectState):
        self.all = frozenset(state.changes)
        self.trained_good: list[frozenset[str]] = []
        self.trained_bad: list[frozenset[str]] = []
        for rnd in state.rounds:
            for t in rnd.tests:
                if t.verdict in ("good", "bad"):
                    (self.trained_bad if t.verdict == "bad" else self.trained_good).append(frozenset(t.changes))
        self.good: list[frozenset[str]] = [frozenset()] + self.trained_good
        self.bad = [self.all] + self.trained_bad

    def is_bad(self, s: frozenset[str]) -> bool:
        return any(b <= s for b in self.bad)

    def is_good(self, s: frozenset[str]) -> bool:
        return any(s <= g for g in self.good)

    def known(self, s: frozenset[str]) -> bool:
        return self.is_bad(s) or self.is_good(s)

    def trained_is_bad(self, s: frozenset[str]) -> bool:
        """Bad by a variant actually trained, not only because the original bad run is."""
        return any(b <= s for b in self.trained_bad)


def _advance(state: BisectState) -> BisectState:
    """Step the search (in place) until it needs trainings (a new round) or is done."""
    if state.method == "group-testing":
        done = _advance_group_testing(state)
        if done is not None:
            return done
    kb = _Knowledge(state)
    if kb.trained_bad:  # some variant made from the good run failed: the failure follows from the changes
        state.reproduced = True
    for _ in range(4 * len(state.changes) + 8):  # every pass shrinks something: a guard, never reached
        if state.phase == "done":
            return _finish(state)
        if state.phase == "rest":
            asked = _step_rest(state, kb)
            if asked is not None:
                return asked
            continue
        if kb.all in kb.trained_good:
            return _not_reproduced(state)
        lo, hi = _bounds(state.fixed, state.pool, kb)
        if hi == 0:  # F alone is bad: a minimal group
            if not state.fixed:  # only noisy verdicts can get here (the good run is never tested)
                state.notes.append("the verdicts make an empty change set bad: stopping; re-train the control")
                state.phase = "done"
                continue
            state.groups.append(_ordered(state, state.fixed))
            state.phase, state.fixed, state.pool = "rest", [], []
            continue
        if hi - lo == 1:  # pool[hi-1] is needed: with it F ∪ pool[:hi] is bad, without it good
            state.fixed = state.fixed + [state.pool[hi - 1]]
            state.pool = state.pool[:hi - 1]
            continue
        if lo == -1:
            return _new_round(state, _check_tests(state, kb))
        tests = []
        if len(state.fixed) >= 2 and kb.all not in kb.trained_bad and \
                not kb.trained_is_bad(frozenset(state.fixed + state.pool[:hi])):
            # F (2+ changes) alone was good, so the group needs 3+ changes together, and that the rest is bad rests
            # only on the original bad run: check first that applying everything reproduces the failure at all.
            tests.append((list(state.changes), f"is the bad run reproducible at all (all {len(state.changes)} changes "
                                               "applied)? a group of 3+ changes bad only together is rare"))
        if state.parallel > len(tests):
            tests += [(_ordered(state, state.fixed + state.pool[:j]), _probe_purpose(state, j))
                      for j in _probes(lo, hi, state.parallel - len(tests))]
        return _new_round(state, tests)
    raise AssertionError("bisect made no progress")  # pragma: no cover


def _advance_group_testing(state: BisectState) -> BisectState | None:
    """One step of the group-testing search (a new round, or the result); None when it hands over to the
    progressive search (changes bad only together), which then goes on from the groups found."""
    step = gt.next_step(state.changes, verdicts(state), state.parallel)
    if step.outcome is None:
        asked: dict[frozenset[str], int] = {}
        for r in state.rounds:
            for t in r.tests:
                asked[frozenset(t.changes)] = asked.get(frozenset(t.changes), 0) + 1
        return _new_round(state, [(list(q.changes), q.purpose + (f" (asked again: {asked[frozenset(q.changes)]} "
                                                                  "earlier verdict(s) unsure or split; another seed)"
                                                                  if frozenset(q.changes) in asked else ""),
                                   asked.get(frozenset(q.changes), 0)) for q in step.queries])
    o = step.outcome
    if any(t.verdict == "bad" for r in state.rounds for t in r.tests):
        state.reproduced = True
    state.groups = [[c] for c in o.culprits]
    if o.undecided is not None:
        q = o.undecided.changes
        state.notes.append(f"{o.reason}: the search stops here with that question open ("
                           f"{_and(q) if len(q) <= 3 else f'a group of {len(q)}'}); "
                           "the culprits so far are only part of the answer: judge it once more, or train the control "
                           "replicates to see how noisy the verdicts are")
        state.phase = "done"
        return _finish(state)
    if o.fallback:
        state.notes.append(f"{o.reason}; looking for changes that are bad only together")
        state.method = "progressive"
        state.phase, state.fixed, state.pool = "rest", [], []
        return None
    state.phase = "done"
    return _finish(state)


def _bounds(fixed: list[str], pool: list[str], kb: _Knowledge) -> tuple[int, int]:
    """hi: shortest prefix j with F ∪ pool[:j] known bad; lo: longest shorter one known good (-1 if none)."""
    f = frozenset(fixed)
    hi = next((j for j in range(len(pool) + 1) if kb.is_bad(f | frozenset(pool[:j]))), len(pool))
    lo = next((j for j in range(hi - 1, -1, -1) if kb.is_good(f | frozenset(pool[:j]))), -1)
    return lo, hi


def _check_tests(state: BisectState, kb: _Knowledge) -> list[tuple[list[str], str]]:
    """Is F alone bad? With a free slot, also: is the bad run still bad with F (and the groups found) reverted?"""
    fixed = _ordered(state, state.fixed)
    tests = [(fixed, f"is {fixed[0]} alone enough to make it bad?" if len(fixed) == 1 else
              f"are {_and(fixed)} together enough to make it bad?")]
    if state.parallel >= 2:
        out = set(state.fixed) | {c for g in state.groups for c in g}
        rest = [c for c in state.changes if c not in out]
        if rest and not kb.known(frozenset(rest)):
            tests.append((rest, f"is the bad run still bad with {_and(sorted(out, key=state.changes.index))} "
                                "reverted?"))
    return tests


def _probe_purpose(state: BisectState, j: int) -> str:
    part = state.pool[:j]
    where = f"{_and(part)}" if len(part) <= 3 else f"the first {j} of the {len(state.pool)} candidates"
    if state.fixed:
        return f"together with {_and(_ordered(state, state.fixed))}, is the missing change among {where}?"
    return f"is a culprit among {where}?"


def _probes(lo: int, hi: int, parallel: int) -> list[int]:
    """Prefix lengths to test in one round; the answer is in (lo, hi]. Worst-case trainings stay those of a plain
    binary search (⌈log2 n⌉); spare slots only cut rounds."""
    n = hi - lo
    budget = math.ceil(math.log2(n))
    rounds = next(r for r in range(1, budget + 1) if _reach(r, budget, parallel) >= n)
    q = next(q for q in range(1, min(parallel, budget) + 1)
             if (q + 1) * _reach(rounds - 1, budget - q, parallel) >= n)
    # q + 1 contiguous parts, as even as possible (each fits what the remaining rounds and budget can finish)
    sizes = [n // (q + 1) + (1 if i < n % (q + 1) else 0) for i in range(q + 1)]
    cuts, at = [], lo
    for s in sizes[:-1]:
        at += s
        cuts.append(at)
    return cuts


@cache
def _reach(rounds: int, budget: int, parallel: int) -> int:
    """How many candidates ``rounds`` rounds of at most ``parallel`` tests, ``budget`` tests in all, can resolve."""
    if rounds == 0 or budget == 0:
        return 1
    return max((q + 1) * _reach(rounds - 1, budget - q, parallel) for q in range(1, min(parallel, budget) + 1))


def _new_round(state: BisectState, tests: list[tuple]) -> BisectState:
    """A round of (changes, purpose[, retry]) tests. A variant asked before and judged unsure is asked again with
    its seed moved (retry: how many times it was asked); past MAX_RETRIES unsure verdicts the bisection stops there
    with the question open (the progressive search has no way around it)."""
    asked: dict[frozenset[str], int] = {}
    unsure: dict[frozenset[str], int] = {}
    for r in state.rounds:
        for t in r.tests:
            asked[frozenset(t.changes)] = asked.get(frozenset(t.changes), 0) + 1
            unsure[frozenset(t.changes)] = unsure.get(frozenset(t.changes), 0) + (t.verdict == "unsure")
    stuck = [t for t in tests if unsure.get(frozenset(t[0]), 0) > MAX_RETRIES]
    if stuck:
        state.notes.append(f"the verdicts on +{', '.join(stuck[0][0]) or '(none)'} stayed unsure after "
                           f"{MAX_RETRIES + 1} trainings: the bisection stops here with that question open; the "
                           "groups so far are only part of the answer")
        state.phase = "done"
        return _finish(state)
    tests = [(t[0], t[1] + (" (asked again: judged unsure before; another seed)"
                            if unsure.get(frozenset(t[0])) and len(t) < 3 else ""),
              t[2] if len(t) > 2 else asked.get(frozenset(t[0]), 0)) for t in tests]
    number = len(state.rounds) + 1
    state.rounds.append(Round(number=number, tests=[
        Test(id=f"r{number}-{_letter(i)}", changes=t[0], purpose=t[1], retry=t[2] if len(t) > 2 else 0)
        for i, t in enumerate(tests)]))
    return state


def _not_reproduced(state: BisectState) -> BisectState:
    """The good run with every change applied was judged good: the failure does not follow from the changes."""
    remaining = _ordered(state, state.fixed + state.pool)
    test = next(t for r in state.rounds for t in r.tests if set(t.changes) == set(state.changes))
    state.notes.append(f"{test.id}, the bad run re-made from the good one with all {len(state.changes)} changes, was "
                       "judged good: the failure does not reproduce from these changes (noise between trainings, or "
                       "a cause outside them: machine, library versions, data); the result is the full remaining set "
                       f"{_and(remaining)}")
    state.groups.append(remaining)
    state.reproduced = False
    state.phase = "done"
    return _finish(state)


def _finish(state: BisectState) -> BisectState:
    state.status = "found"
    found = {c for g in state.groups for c in g}
    state.culprits = [c for c in state.changes if c in found]
    if len(state.changes) > 1 and len(state.culprits) == len(state.changes) and state.reproduced is not False:
        state.notes.append("every change is needed: an interaction across all of them, or noisy verdicts; "
                           "the result is the full set (train the control to measure the noise)")
    state.basis = _basis(state)
    return state


def _step_rest(state: BisectState, kb: _Knowledge) -> BisectState | None:
    """Phase "rest" (after a group was found): the changes outside every group found so far are done when good,
    searched when bad, else asked about (the new round, returned)."""
    found = _ordered(state, [c for g in state.groups for c in g])
    rest = [c for c in state.changes if c not in found]
    s = frozenset(rest)
    if not rest or (kb.is_good(s) and not kb.is_bad(s)):
        state.phase = "done"
    elif kb.is_bad(s):
        state.phase, state.fixed, state.pool = "search", [], rest
    else:
        return _new_round(state, [(rest, f"is the bad run still bad with {_and(found)} reverted?")])
    return None


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
        from lora_audit.votes.stats import wilson

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


def _ordered(state: BisectState, subset: list[str]) -> list[str]:
    s = set(subset)
    return [c for c in state.changes if c in s]


def _and(items) -> str:
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1] if items else "nothing"


def _ids(rnd: Round) -> str:
    return ", ".join(t.id for t in rnd.tests)


def _letter(i: int) -> str:
    s = ""
    i += 1
    while i:
        i, r = divmod(i - 1, 26)
        s = chr(ord("a") + r) + s
    return s
