"""The search of ``ablate.bisect`` (see its docstring for the scheme): from the verdicts so far, step the state until it
needs trainings (a new round) or the answer is found. Group testing first for new bisections
(``ablate.group_testing``), then the progressive search for changes bad only together.

The search works on the state in place. It never writes ``basis`` (what the answer rests on): ``ablate.bisect``
explains a finished state after each step."""

from __future__ import annotations

import math
from functools import cache

from lora_audit.ablate import group_testing as gt
from lora_audit.ablate.bisect_state import (
    MAX_RETRIES,
    BisectState,
    Round,
    Test,
    _and,
    _letter,
    _ordered,
    verdicts,
)


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


def advance(state: BisectState) -> BisectState:
    """Step the search (in place) until it needs trainings (a new round) or is done (``status`` "found")."""
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

