"""Trainings needed to find the culprits: group-testing bisect against the issue's bound and one-factor-at-a-time
(ofat), every culprit set tried, then with noisy verdicts.

    python benchmarks/bench_bisect.py                 # k = 4..16 changes, 1..3 hidden culprits (~1-2 min)
    python benchmarks/bench_bisect.py --prove         # also the exact minimax on the cells over the bound (~10 min)
    python benchmarks/bench_bisect.py --strict        # exit 1 where a cell is over the issue's bound itself

What is counted: every variant bisect asks the user to train (lora_audit.ablate.bisect, method group-testing,
``trainings(state)``), the checks at the end ("is it alone bad?", "is the rest good?") included. The good run and
the bad run exist already and are not counted; neither are control replicates (ofat needs the same control).
ofat trains the good run plus one change: k variants, and it cannot see an interaction.

Independent culprits each make the run bad alone (a group is bad when it holds one); every one of the C(k, c) sets
is tried, for every k = 4..16 and c = 1..3. bound = min(k, c·⌈log2(k/c)⌉ + c + 1) (issue 19); margin = bound -
worst. The search does not know c, so one strategy serves all c at once. ``--prove`` asks the exact minimax of
``lora_audit.ablate.gt_exact``, for each cell over the bound at k <= 8, whether ANY adaptive search could do one
training better there while keeping the other cells (never past k): at k = 6, 7 and 8 none can (~10 min).
Interacting culprits are bad only all together (a pair, a triple): every set for k <= --exhaustive-interacting,
--sample seeded sets above; "old" is the progressive search alone (method progressive, state files from before
group testing), side by side on the same sets.

Noisy oracles (--trials seeded sets per cell, k = 8 and 16, independent culprits): each verdict flipped with
probability 0.1 or 0.2, or answered `unsure` with probability 0.2 (asked again with another seed): how often the
exact culprit set comes out, and the mean trainings.

Exit 1 when a noiseless answer is wrong, or a cell needs more than k or more than the search's documented budget
(bound + group_testing.slack); with --strict also when a cell is over the bound itself.
"""

from __future__ import annotations

import argparse
import itertools
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lora_audit.ablate import group_testing as gt  # noqa: E402
from lora_audit.ablate import gt_exact  # noqa: E402
from lora_audit.ablate.bisect import advance, pending, record, start, trainings  # noqa: E402


def _bisect(changes, judge, parallel, method="group-testing"):
    """Judge every pending variant with ``judge`` (group -> 'good' | 'bad' | 'unsure'); (culprits, trainings)."""
    state = start(changes, parallel, method=method)
    while state.status == "running":
        for t in pending(state):
            state = record(state, t.id, judge(frozenset(t.changes)))
        state = advance(state)
    return state.culprits, trainings(state)


def _independent(k, c, parallel):
    """Every culprit set of size c: (worst, mean, wrong)."""
    changes = [f"change{i:02d}" for i in range(k)]
    counts, wrong = [], 0
    for hidden in itertools.combinations(changes, c):
        h = frozenset(hidden)
        found, n = _bisect(changes, lambda s, h=h: "bad" if s & h else "good", parallel)
        wrong += set(found) != h
        counts.append(n)
    return max(counts), statistics.fmean(counts), wrong


def _interacting(k, c, rng, args):
    """Sets of size c bad only all together: ((worst, mean) group testing, (worst, mean) old progressive, wrong)."""
    changes = [f"change{i:02d}" for i in range(k)]
    every = list(itertools.combinations(changes, c))
    sets = every if k <= args.exhaustive_interacting else rng.sample(every, min(args.sample, len(every)))
    new, old, wrong = [], [], 0
    for hidden in sets:
        h = frozenset(hidden)
        for method, out in (("group-testing", new), ("progressive", old)):
            found, n = _bisect(changes, lambda s, h=h: "bad" if h <= s else "good", args.parallel, method)
            wrong += set(found) != h
            out.append(n)
    return (max(new), statistics.fmean(new)), (max(old), statistics.fmean(old)), wrong, len(sets) < len(every)


def _noisy(k, c, mode, p, rng, trials, parallel):
    changes = [f"change{i:02d}" for i in range(k)]
    right, counts = 0, []
    for _ in range(trials):
        h = frozenset(rng.sample(changes, c))

        def judge(s, h=h):
            truth = "bad" if s & h else "good"
            if rng.random() >= p:
                return truth
            return "unsure" if mode == "unsure" else ("good" if truth == "bad" else "bad")
        found, n = _bisect(changes, judge, parallel)
        right += set(found) == h
        counts.append(n)
    return right / trials, statistics.fmean(counts)


def _proofs(over: dict[int, list[int]], seconds: float) -> list[str]:
    """For each cell over the bound at k <= 8: can any adaptive search do one training better there while every
    other cell keeps what this search needs? Asked of the exact minimax without the interaction check (a "no" is then
    a proof for every search) and, where that says yes, with it (what bisect must also rule out)."""
    out = []
    for k, cs in sorted(over.items()):
        if k > 8:
            out.append(f"k={k}: not settled (the exact minimax is too large past k = 8)")
            continue
        ours = tuple(min(k, gt.bound(k, c) + gt.slack(k, c)) for c in (1, 2, 3))
        for c in cs:
            tighter = tuple(x - 1 if i == c else x for i, x in zip((1, 2, 3), ours))
            t0 = time.perf_counter()
            try:
                if not gt_exact.feasible(k, tighter, seconds=seconds):
                    verdict = "impossible for every search"
                elif not gt_exact.feasible(k, tighter, interactions=True, seconds=seconds):
                    verdict = "impossible for every search that also tells an interaction from a lone culprit " \
                              "(possible without that check)"
                else:
                    verdict = "POSSIBLE: this search is not optimal here"
            except TimeoutError:
                verdict = f"not settled in {seconds:.0f} s"
            out.append(f"k={k} c={c}: {ours[c - 1] - 1} with the others at {ours[:c - 1] + ours[c:]}: {verdict} "
                       f"({time.perf_counter() - t0:.0f} s)")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kmin", type=int, default=4)
    p.add_argument("--kmax", type=int, default=16)
    p.add_argument("--exhaustive-interacting", type=int, default=12,
                   help="try every interacting set up to this k (independent sets are always all tried)")
    p.add_argument("--sample", type=int, default=150, help="seeded interacting sets per cell past that k")
    p.add_argument("--trials", type=int, default=60, help="seeded culprit sets per noisy cell")
    p.add_argument("--parallel", type=int, default=2, help="variants per round")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--prove", action="store_true", help="run the exact minimax on the cells over the bound (k <= 8)")
    p.add_argument("--prove-seconds", type=float, default=300, help="time limit of each exact question")
    p.add_argument("--strict", action="store_true", help="exit 1 where a cell needs more than the bound itself")
    args = p.parse_args(argv)
    rng = random.Random(args.seed)
    t0 = time.perf_counter()

    print(f"group-testing bisect: worst (mean) trainings over every set of c independent culprits among k changes, "
          f"up to {args.parallel} variants per round; bound = min(k, c·⌈log2(k/c)⌉ + c + 1), margin = bound - "
          "worst; ofat = k. Interacting (bad only together): group testing then the progressive search, and "
          "[old] the progressive search alone.\n")
    print("| k | ofat | c=1 bound | worst (mean) | c=2 bound | worst (mean) | c=3 bound | worst (mean) "
          "| 2 interacting [old] | 3 interacting [old] |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    failures, over_bound, margins, wrong_total = [], [], [], 0
    over: dict[int, list[int]] = {}
    sampled = False
    for k in range(args.kmin, args.kmax + 1):
        cells = []
        for c in (1, 2, 3):
            worst, mean, wrong = _independent(k, c, args.parallel)
            wrong_total += wrong
            b, sl = gt.bound(k, c), gt.slack(k, c)
            margins.append((b - worst, k, c))
            flag = f" **{wrong} wrong**" if wrong else ""
            if worst > b:
                over_bound.append(f"k={k} c={c}: {worst} > {b}")
                over.setdefault(k, []).append(c)
                flag += f" (+{worst - b})"
            if worst > min(k, b + sl):
                failures.append(f"k={k} c={c}: {worst} > {min(k, b + sl)}")
                flag += " **over budget**"
            cells += [str(b), f"{worst} ({mean:.1f}){flag}"]
        for c in (2, 3):
            (w, m), (ow, om), wrong, part = _interacting(k, c, rng, args)
            sampled |= part
            wrong_total += wrong
            cells.append(f"{w} ({m:.1f}) [{ow} ({om:.1f})]" + (f" **{wrong} wrong**" if wrong else ""))
        print(f"| {k} | {k} | " + " | ".join(cells) + " |")
    if sampled:
        print(f"\n(interacting cells past k = {args.exhaustive_interacting}: {args.sample} seeded sets each)")

    print("\nnoisy verdicts: exact culprit set found (mean trainings), independent culprits, "
          f"{args.trials} seeded sets per cell")
    print("| k | c | flip 0.1 | flip 0.2 | unsure 0.2 |")
    print("|---|---|---|---|---|")
    for k in (8, 16):
        if not args.kmin <= k <= args.kmax:
            continue
        for c in (1, 2, 3):
            cells = []
            for mode, pr in [("flip", 0.1), ("flip", 0.2), ("unsure", 0.2)]:
                acc, mean = _noisy(k, c, mode, pr, rng, args.trials, args.parallel)
                cells.append(f"{100 * acc:.0f}% ({mean:.1f})")
            print(f"| {k} | {c} | " + " | ".join(cells) + " |")

    low = min(margins)
    print(f"\nsmallest margin: {low[0]} (k={low[1]} c={low[2]}); cells at the bound exactly: "
          f"{sum(1 for m in margins if m[0] == 0)} of {len(margins)}; never past k: "
          f"{'yes' if all(k - (gt.bound(k, c) - m) >= 0 for m, k, c in margins) else 'NO'}")
    print(f"cells over the bound itself: {len(over_bound)} ({'; '.join(over_bound) or 'none'})")
    if args.prove and over:
        for line in _proofs(over, args.prove_seconds):
            print(f"  exact minimax, {line}")
    print(f"cells over the documented budget (bound + slack) or over k: {len(failures)}"
          f"{' (' + '; '.join(failures) + ')' if failures else ''}; wrong answers on noiseless oracles: "
          f"{wrong_total}; {time.perf_counter() - t0:.1f} s")
    return 1 if failures or wrong_total or (args.strict and over_bound) else 0


if __name__ == "__main__":
    sys.exit(main())
