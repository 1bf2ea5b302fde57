"""Shell-script reading is linear: time and peak memory per MB stay flat as the script grows.

For each shape of script (many training commands, one command continued over many lines, an array grown by
``+=``, a string grown by ``+=``, many assignments, many ``if`` blocks, bat and ps1 scripts), it writes scripts of
growing size and reads each with ``parse_shell`` in a fresh process (so peak RSS is that read's), printing seconds and
MB of RSS, and the ratio of seconds per MB at each size to seconds per MB at the smallest: a linear reader keeps it
near 1, a quadratic one doubles it with every doubling of size.

    python benchmarks/bench_shell.py                       # 0.5, 1, 2, 4 MB of every shape
    python benchmarks/bench_shell.py --sizes 1 2 4 8 10 --shapes commands if_blocks
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

SHAPES = {
    "commands": (".sh", 'accelerate launch train_network.py --network_dim 32 --output_name "a b" --seed=$S\n'),
    "one_command": (".sh", '  --network_args "conv_dim=4" \\\n'),
    "array_append": (".sh", "ARGS+=(--seed 1)\n"),
    "string_append": (".sh", 'EXTRA+=" --seed 1"\n'),
    "assigns": (".sh", 'V="value $W"; A$V=1\n'),
    "if_blocks": (".sh", 'if [ "$V" = "x" ]; then ARGS+=(--v2); elif [ -f a ]; then ARGS+=(--clip_skip 2); fi\n'),
    "bat": (".bat", "set /a N=N+1\r\nset ARGS=%N% --seed 1 ^\r\n  --network_dim 8\r\n"),
    "ps1": (".ps1", '[void]$a.Add("--seed=1")\n$x = "v $y"\n'),
}
_HEAD = {"one_command": "accelerate launch train_network.py \\\n", "ps1": "$a = [System.Collections.ArrayList]::new()\n"}
_TAIL = {".sh": 'accelerate launch train_network.py "${ARGS[@]}" $EXTRA --seed 1\n', ".bat": "python train_network.py %ARGS%\r\n",
         ".ps1": "python train_network.py $a\n"}

_CHILD = r"""
import json, resource, sys, time
from lora_audit.evidence.shell import parse_shell
t = time.perf_counter()
evs = parse_shell(sys.argv[1])
s = time.perf_counter() - t
print(json.dumps({"s": s, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "evidence": len(evs)}))
"""


def write(folder: Path, shape: str, mb: float) -> Path:
    suffix, line = SHAPES[shape]
    n = max(1, int(mb * 1_000_000 / len(line)))
    p = folder / f"{shape}-{mb}{suffix}"
    head = _HEAD.get(shape, "")
    tail = "  --seed 1\n" if shape == "one_command" else _TAIL[suffix]
    p.write_text(head + line * n + tail, encoding="utf-8", newline="")
    return p


def measure(path: Path) -> dict:
    out = subprocess.run([sys.executable, "-c", _CHILD, str(path)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=float, nargs="+", default=[0.5, 1, 2, 4], help="script sizes in MB")
    ap.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    args = ap.parse_args()
    base = measure_baseline()
    print(f"python start-up and import: {base['s']:.2f} s, {base['rss_mb']:.0f} MB RSS (included below)")
    print(f"{'shape':<14}{'MB':>6}{'seconds':>10}{'RSS MB':>9}{'s/MB':>8}{'ratio':>8}{'RSS/MB':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        for shape in args.shapes:
            first = None
            for mb in args.sizes:
                r = measure(write(Path(tmp), shape, mb))
                per = r["s"] / mb
                first = first or per
                extra = (r["rss_mb"] - base["rss_mb"]) / mb
                print(f"{shape:<14}{mb:>6}{r['s']:>10.2f}{r['rss_mb']:>9.0f}{per:>8.2f}{per / first:>8.2f}{extra:>8.0f}")


def measure_baseline() -> dict:
    code = ("import json, resource, time; t = time.perf_counter(); import lora_audit.evidence.shell; "
            "print(json.dumps({'s': time.perf_counter() - t, "
            "'rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
