"""Trainings needed to find the culprits: bisect against one-factor-at-a-time (ofat), side by side in one run.

    python benchmarks/bench_bisect.py                      # k = 4..16 changes, 1..3 hidden culprits, 2 per round
    python benchmarks/bench_bisect.py --trials 200 --parallel 1 --seed 3

A simulated oracle hides culprits among k changes (chosen at random, seeded): "independent" culprits each make the
run bad alone, "interacting" ones only all together. bisect (lora_audit.ablate.bisect.simulate) counts every variant
it trains; ofat trains the good run plus one change, k variants, and cannot see an interaction (every variant with a
single change is good). Neither count includes the control variant both strategies add. Each bisect answer is
checked against the hidden culprits.
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lora_audit.ablate.bisect import BisectState, advance, pending, record, start, trainings  # noqa: E402

SCENARIOS = [(1, "independent"), (2, "independent"), (2, "interacting"), (3, "independent"), (3, "interacting")]


def _bisect(changes: list[str], bad) -> tuple[list[str], int, int]:
    state: BisectState = start(changes, ARGS.parallel)
    while state.status == "running":
        for t in pending(state):
            state = record(state, t.id, "bad" if bad(frozenset(t.changes)) else "good")
        state = advance(state)
    return state.culprits, trainings(state), len(state.rounds)


def _cell(k: int, n: int, kind: str, rng: random.Random) -> dict:
    changes = [f"change{i:02d}" for i in range(k)]
    counts, rounds, wrong = [], [], 0
    for _ in range(ARGS.trials):
        hidden = frozenset(rng.sample(changes, n))
        if kind == "independent":
            def bad(s, hidden=hidden):
                return bool(s & hidden)
        else:
            def bad(s, hidden=hidden):
                return hidden <= s
        found, t, r = _bisect(changes, bad)
        wrong += set(found) != hidden
        counts.append(t)
        rounds.append(r)
    return {"mean": statistics.fmean(counts), "max": max(counts), "rounds": statistics.fmean(rounds),
            "wrong": wrong, "ofat": k, "ofat_finds": kind == "independent" or n == 1}


def main(argv: list[str] | None = None) -> int:
    global ARGS
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kmin", type=int, default=4)
    p.add_argument("--kmax", type=int, default=16)
    p.add_argument("--trials", type=int, default=100, help="random hidden sets per cell")
    p.add_argument("--parallel", type=int, default=2, help="variants per round")
    p.add_argument("--seed", type=int, default=0)
    ARGS = p.parse_args(argv)
    rng = random.Random(ARGS.seed)

    head = [f"{n} {kind}" if n > 1 else "1 culprit" for n, kind in SCENARIOS]
    print(f"bisect vs ofat: trainings to find the culprits ({ARGS.trials} seeded random hidden sets per cell, "
          f"seed {ARGS.seed}, up to {ARGS.parallel} variants per round). Cell: bisect mean (max) · rounds · "
          "bisect/ofat; ofat = k trainings.\n")
    print("| k | ofat | ⌈log2 k⌉+2 | " + " | ".join(head) + " |")
    print("|---|---|---|" + "---|" * len(head))
    ratios: dict[str, list[float]] = {h: [] for h in head}
    over_target, wrong = 0, 0
    for k in range(ARGS.kmin, ARGS.kmax + 1):
        target = math.ceil(math.log2(k)) + 2
        cells = []
        for h, (n, kind) in zip(head, SCENARIOS):
            c = _cell(k, n, kind, rng)
            wrong += c["wrong"]
            if n == 1 and c["max"] > target:
                over_target += 1
            ratios[h].append(c["mean"] / k)
            ofat = f"{c['mean'] / k:.2f}×" if c["ofat_finds"] else "ofat misses"
            cells.append(f"{c['mean']:.1f} ({c['max']}) · {c['rounds']:.1f} r · {ofat}")
        print(f"| {k} | {k} | {target} | " + " | ".join(cells) + " |")
    print()
    for h in head:
        print(f"{h:>16}: bisect needs {statistics.fmean(ratios[h]):.2f}× the trainings of ofat on average "
              f"(k={ARGS.kmin}..{ARGS.kmax}; {min(ratios[h]):.2f}× at best, {max(ratios[h]):.2f}× at worst)"
              + ("; ofat cannot find it at all" if "interacting" in h else ""))
    print(f"\nsingle culprit over ⌈log2 k⌉+2 trainings: {over_target} value(s) of k; wrong answers: {wrong}")
    return 1 if over_target or wrong else 0


ARGS: argparse.Namespace

if __name__ == "__main__":
    sys.exit(main())
