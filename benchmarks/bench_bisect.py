"""Trainings needed to find the culprits: group-testing bisect against one-factor-at-a-time (ofat) and the bound,
side by side in one run, then with noisy verdicts.

    python benchmarks/bench_bisect.py                 # k = 4..16 changes, 1..3 hidden culprits
    python benchmarks/bench_bisect.py --strict        # exit 1 also where a cell needs the documented slack

A simulated oracle hides culprits among k changes: "independent" culprits each make the run bad alone, "interacting"
ones only all together. bisect (lora_audit.ablate.bisect, method group-testing) counts every variant it trains; ofat
trains the good run plus one change, k variants, and cannot see an interaction. The bound is
min(k, c·⌈log2(k/c)⌉ + c + 1) for c independent culprits; "slack" is what the search's minimax program needs over it
(group_testing.slack). Independent cells try every culprit set for k <= 12 and --sample seeded sets above;
interacting cells --sample sets. Neither count includes the control variant both strategies add.

Noisy oracles (--trials seeded sets per cell, k = 8 and 16): each verdict flipped with probability 0.1 or 0.2, or
answered `unsure` with probability 0.2 (re-asked with another seed): how often the exact culprit set comes out, and
the mean trainings.

Exit 1 when a noiseless cell needs more than bound + slack (or more than k), or an answer on a noiseless oracle is
wrong (--strict: more than the bound itself).
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
from lora_audit.ablate.bisect import advance, pending, record, start, trainings  # noqa: E402


def _bisect(changes, judge, parallel):
    """Judge every pending variant with ``judge`` (group -> 'good' | 'bad' | 'unsure'); (culprits, trainings)."""
    state = start(changes, parallel)
    while state.status == "running":
        for t in pending(state):
            state = record(state, t.id, judge(frozenset(t.changes)))
        state = advance(state)
    return state.culprits, trainings(state)


def _sets(changes, c, rng, sample):
    sets = list(itertools.combinations(changes, c))
    return sets if len(changes) <= 12 or len(sets) <= sample else rng.sample(sets, sample)


def _noiseless(k, c, kind, rng, args):
    changes = [f"change{i:02d}" for i in range(k)]
    counts, wrong = [], 0
    every = list(itertools.combinations(changes, c))
    sets = _sets(changes, c, rng, args.sample) if kind == "independent" else \
        rng.sample(every, min(args.sample, len(every)))
    for hidden in sets:
        h = frozenset(hidden)
        if kind == "independent":
            out, n, _ = gt.simulate(changes, lambda s: bool(s & h), args.parallel)
            found = out.culprits if not out.fallback else None
            if found is None:
                found, n = _bisect(changes, lambda s: "bad" if s & h else "good", args.parallel)
        else:
            found, n = _bisect(changes, lambda s: "bad" if h <= s else "good", args.parallel)
        wrong += set(found) != h
        counts.append(n)
    return max(counts), statistics.fmean(counts), wrong


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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kmin", type=int, default=4)
    p.add_argument("--kmax", type=int, default=16)
    p.add_argument("--sample", type=int, default=150, help="seeded culprit sets per cell where not all are tried")
    p.add_argument("--trials", type=int, default=60, help="seeded culprit sets per noisy cell")
    p.add_argument("--parallel", type=int, default=2, help="variants per round")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--strict", action="store_true", help="exit 1 where a cell needs more than the bound itself")
    args = p.parse_args(argv)
    rng = random.Random(args.seed)
    t0 = time.perf_counter()

    print(f"group-testing bisect vs ofat: worst (mean) trainings to find the culprits, up to {args.parallel} variants "
          "per round. Independent cells: bound[+slack] then worst (mean); ofat = k trainings.\n")
    print("| k | ofat | 1 culprit | 2 independent | 3 independent | 2 interacting | 3 interacting |")
    print("|---|---|---|---|---|---|---|")
    failures, over_bound, wrong_total = [], [], 0
    for k in range(args.kmin, args.kmax + 1):
        cells = []
        for c, kind in [(1, "independent"), (2, "independent"), (3, "independent"), (2, "interacting"),
                        (3, "interacting")]:
            worst, mean, wrong = _noiseless(k, c, kind, rng, args)
            wrong_total += wrong
            flag = "" if not wrong else f" **{wrong} wrong**"
            if kind == "independent":
                b, sl = gt.bound(k, c), gt.slack(k, c)
                if worst > b:
                    over_bound.append(f"k={k} c={c}: {worst} > {b}")
                if worst > b + sl or worst > k:
                    failures.append(f"k={k} c={c}: {worst} > {b}+{sl}")
                    flag += " **over**"
                cells.append(f"{b}{f'+{sl}' if sl else ''}: {worst} ({mean:.1f}){flag}")
            else:
                cells.append(f"{worst} ({mean:.1f}){flag}")
        print(f"| {k} | {k} | " + " | ".join(cells) + " |")

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

    print(f"\ncells over the bound itself: {len(over_bound)} ({'; '.join(over_bound) or 'none'})")
    print(f"cells over bound + slack or over k: {len(failures)}; wrong answers on noiseless oracles: {wrong_total}; "
          f"{time.perf_counter() - t0:.1f} s")
    return 1 if failures or wrong_total or (args.strict and over_bound) else 0


if __name__ == "__main__":
    sys.exit(main())
