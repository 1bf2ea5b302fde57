"""Exact minimax over knowledge states: can ANY adaptive search meet given worst-case budgets? (A proof tool.)

Used by tests and ``benchmarks/bench_bisect.py --prove`` to show where the issue's bound
min(k, c·⌈log2(k/c)⌉ + c + 1) cannot be met when the search does not know c: no strategy at all, not only the one
``group_testing`` computes. Small k only: k = 7 in about a second; at k = 8 a feasible answer comes in seconds, an
infeasible one with the interaction check in minutes, and some stay open.

Model (classical adaptive group testing, "OR" model, Du & Hwang, *Combinatorial Group Testing and Its
Applications*, 2nd ed., World Scientific 2000, ch. 1-2): the hypotheses are the sets D of culprits (any size,
not empty: the bad run is bad), a test of a group S is bad exactly when S meets D. The knowledge state is the set
of hypotheses still consistent with the verdicts (a bitmask). A search is done when one hypothesis is left. The
budgets say, per c = 1..3, how many tests a search may use on any D of size c; other D are unconstrained (any
finish will do). ``feasible`` is the AND-OR search: some test whose both answers stay feasible, memoised by state,
with two exact cuts: changes no test so far has told apart are interchangeable (one test per class of them), and
Kraft's inequality on the leaves (a constrained hypothesis needs its own leaf within its budget).

Hypotheses with 5+ culprits need not be modelled: when D (size <= 3) and some E (size >= 5) are both consistent,
so is D plus one element of E \\ D (size <= 4), so ruling out the size-4 hypotheses rules out the larger ones.
Optionally (``interactions=True``) the hypotheses also include "bad only together" sets M (|M| >= 2, a test is bad
when it holds all of M): then a leaf must also rule those out, as ``bisect`` does before it names a culprit.
Leaving them out only makes the search easier, so an infeasible answer without them is a proof with them too.
"""

from __future__ import annotations

import itertools
import math
import sys
import time
from functools import lru_cache


def bound(k: int, c: int) -> int:
    return min(k, c * math.ceil(math.log2(k / c)) + c + 1) if k >= c else k


@lru_cache(maxsize=8)
def _space(k: int, interactions: bool) -> tuple[tuple[int, ...], tuple[int, ...], int]:
    """(bad-answer bitmask per test, class bitmask per c = 1..3, all hypotheses)."""
    full = (1 << k) - 1
    hyps = [("or", d) for d in range(1, full + 1) if bin(d).count("1") <= 4]
    if interactions:
        hyps += [("and", m) for m in range(1, full + 1) if bin(m).count("1") >= 2]
    cls = [0, 0, 0]
    for i, (kind, m) in enumerate(hyps):
        if kind == "or" and bin(m).count("1") <= 3:
            cls[bin(m).count("1") - 1] |= 1 << i
    bad = []
    for t in range(1, full):  # the empty group is the good run, the full one the bad run: both known
        b = 0
        for i, (kind, m) in enumerate(hyps):
            if (t & m) if kind == "or" else (t & m) == m:
                b |= 1 << i
        bad.append(b)
    return tuple(bad), tuple(cls), (1 << len(hyps)) - 1


def feasible(k: int, budgets: tuple[int, int, int], interactions: bool = False,
             seconds: float | None = None) -> bool:
    """Is there an adaptive search over k changes that identifies every culprit set of size c = 1..3 within
    ``budgets[c-1]`` tests, not knowing c (and, with ``interactions``, telling them from groups bad only together)?
    Past ``seconds`` of work: TimeoutError (the question stays open)."""
    bad, cls, everything = _space(k, interactions)
    stop = None if seconds is None else time.monotonic() + seconds
    calls = [0]
    memo: dict[tuple[int, tuple[int, ...]], bool] = {}  # recursion depth: at most max(budgets)
    full = (1 << k) - 1

    def go(s: int, left: tuple[int, ...], classes: tuple[tuple[int, ...], ...]) -> bool:
        if s & (s - 1) == 0:
            return True  # one hypothesis left (or none: a branch no hypothesis reaches)
        need = [s & m for m in cls]
        if not any(need):
            return True
        if any(need[c] and left[c] <= 0 for c in range(3)):
            return False
        # Kraft: the leaves of a binary tree satisfy sum 2^-depth <= 1; class-c leaves sit at depth <= left[c], and
        # any other hypothesis left needs a leaf of its own (so the sum must then stay below 1)
        top = max(left)
        kraft = sum(bin(need[c]).count("1") << (top - left[c]) for c in range(3))
        if kraft > 1 << top or (kraft == 1 << top and s != need[0] | need[1] | need[2]):
            return False
        key = (s, left)
        if key in memo:
            return memo[key]
        calls[0] += 1
        if stop is not None and not calls[0] % 4096 and time.monotonic() > stop:
            raise TimeoutError(f"k={k} {budgets}: not settled in {seconds:.0f} s")
        nxt = tuple(x - 1 for x in left)
        ok = False
        # changes that every test so far treated alike are interchangeable: a test is tried once per how many it
        # takes of each such class (an exact symmetry reduction, not a heuristic)
        for take in itertools.product(*(range(len(cl) + 1) for cl in classes)):
            t = 0
            for cl, n in zip(classes, take):
                for i in cl[:n]:
                    t |= 1 << i
            if not t or t == full:
                continue
            yes = s & bad[t - 1]
            if not yes or yes == s:
                continue
            split = tuple(p for cl, n in zip(classes, take) for p in (cl[:n], cl[n:]) if p)
            if go(yes, nxt, split) and go(s & ~bad[t - 1], nxt, split):
                ok = True
                break
        memo[key] = ok
        return ok

    return go(everything, tuple(budgets), (tuple(range(k)),))


def main(argv: list[str] | None = None) -> int:
    """``python -m lora_audit.ablate.gt_exact K [c1,c2,c3] [--interactions]``: can any search meet the bound (or the
    budgets)? Exit 0 if so, 1 if not."""
    args = list(sys.argv[1:] if argv is None else argv)
    inter = "--interactions" in args
    args = [a for a in args if a != "--interactions"]
    k = int(args[0])
    budgets = tuple(int(x) for x in args[1].split(",")) if len(args) > 1 else tuple(bound(k, c) for c in (1, 2, 3))
    ok = feasible(k, budgets, inter)  # type: ignore[arg-type]
    print(f"k={k} budgets c=1..3 {budgets}: {'feasible' if ok else 'infeasible: no adaptive search meets them'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
