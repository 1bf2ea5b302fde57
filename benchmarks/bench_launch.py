"""Makespan of a study of V stand-in variants on G slots against one slot (serial), side by side in one run.

    python benchmarks/bench_launch.py                         # V = 8 variants of 0.5 s on G = 1, 2, 4, 8 slots
    python benchmarks/bench_launch.py --variants 12 --seconds 1 --slots 3 4

Each variant's train.sh sleeps a fixed time, printing a kohya-style progress bar as it goes. The launcher
(lora_audit.launch.executor.Launcher, what ``lora-audit launch --max-parallel G`` runs) is timed from start to
its last variant done, state in SQLite included. The ideal ratio to serial is ⌈V/G⌉/V; the rest is the
launcher's overhead (polling, process start, state writes).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lora_audit.launch.executor import Launcher, Options  # noqa: E402


def _study(root: Path, n: int, seconds: float) -> Path:
    root.mkdir(parents=True)
    (root / "study.toml").write_text("variants = [" + ", ".join(f'"v{i:02d}"' for i in range(n)) + "]\n")
    ticks = 10
    for i in range(n):
        d = root / f"v{i:02d}"
        d.mkdir()
        (d / "variant.json").write_text(json.dumps({"id": d.name, "hash": f"bench-{i}"}))
        (d / "train.sh").write_text(
            "#!/usr/bin/env bash\nmkdir -p output\n"
            f"for i in $(seq 1 {ticks}); do sleep {seconds / ticks:.4f}; "
            f"printf '\\rsteps: %d%%|#| %d/{ticks} [00:00<00:00, avr_loss=0.1]' $((i*10)) $i; done\n"
            "echo w > output/lora.safetensors\n")
    return root


def _makespan(root: Path, n: int, seconds: float, slots: int) -> float:
    study = _study(root, n, seconds)
    t0 = time.perf_counter()
    result = Launcher(study, Options(max_parallel=slots, poll=0.02)).run()
    took = time.perf_counter() - t0
    if result["counts"] != {"done": n}:
        raise SystemExit(f"benchmark variants did not all finish: {result}")
    return took


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=0.5, help="length of each stand-in job")
    ap.add_argument("--slots", type=int, nargs="+", default=[2, 4, 8])
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-launch-") as tmp:
        serial = _makespan(Path(tmp) / "serial", args.variants, args.seconds, 1)
        print(f"{args.variants} variants × {args.seconds:g} s each; serial (1 slot): {serial:.2f} s "
              f"(ideal {args.variants * args.seconds:.2f} s)")
        print("| slots | makespan | ratio to serial | ideal ⌈V/G⌉/V |")
        print("|---|---|---|---|")
        for g in args.slots:
            took = _makespan(Path(tmp) / f"g{g}", args.variants, args.seconds, g)
            ideal = math.ceil(args.variants / g) / args.variants
            print(f"| {g} | {took:.2f} s | {took / serial:.3f} | {ideal:.3f} |")


if __name__ == "__main__":
    main()
