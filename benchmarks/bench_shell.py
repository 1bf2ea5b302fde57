"""Script reading (bash, .bat, .ps1) is linear and bounded: seconds and peak memory of a 10 MB script of each shape.

For each shape of script it writes scripts of the given sizes and reads each with ``parse_shell`` in a fresh process
(so peak RSS is that read's own), printing wall and CPU seconds, peak RSS, CPU seconds per MB, the ratio of seconds
per MB to that at the smallest size (a linear reader keeps it near 1; a quadratic one doubles it with every doubling
of size) and what the read gave (Evidence count, or the one-line error a capped input gets).

The target (README, "Reading limits"): a script of 10 MB (text evidence is capped at 20 MB) read in at most 5 s and
300 MB of RSS. The run exits 1 when a script of 10 MB or more breaks either. Seconds are the reading process's CPU
time (user + system), so that other work on a shared machine does not count; wall seconds are printed beside them.

    python benchmarks/bench_shell.py                             # 1 and 10 MB of every shape
    python benchmarks/bench_shell.py --sizes 1 2 4 8 --shapes commands nesting
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

LIMIT_S, LIMIT_MB, CHECKED_MB = 5.0, 300.0, 10.0

_TRAIN = 'accelerate launch train_network.py --network_dim 32 --output_name "a b" --seed=$S\n'
_OTHER = ('mkdir -p "$OUT/samples"\n', 'python finetune/tag_images_by_wd14_tagger.py --batch_size 8 "$DIR"\n',
          'echo "step $i done" >> log.txt\n', 'cp a.toml "$OUT/"\n', "cd /data && ls -la | grep png > list.txt\n")
_NESTED = ("for i in 1 2; do\n"
           "  if [ \"$V\" = \"$i\" ]; then\n"
           "    case \"$M\" in\n"
           "      a) while [ -f stop ]; do ARGS+=(--v2); done ;;\n"
           "      *) if [ -f x ]; then { EXTRA=\"--clip_skip 2\"; }; elif [ \"$i\" = 2 ]; then N=$i; fi ;;\n"
           "    esac\n"
           "  fi\n"
           "done\n")
_HEREDOC = 'cat > "cfg.toml" <<EOF\n[general]\nshuffle_caption = true\noutput_name = "$NAME"\nEOF\n'

# shape -> (suffix, head, block repeated to the size, tail)
SHAPES: dict[str, tuple[str, str, str, str]] = {
    # many commands, one in 400 a training command (under the cap of 1,000 launches a file)
    "commands": (".sh", "", "".join(_OTHER[i % len(_OTHER)] for i in range(399)) + _TRAIN, ""),
    # every line a training command: the read stops with one line at launch 1,001
    "launches": (".sh", "", _TRAIN, ""),
    "assigns": (".sh", "", 'V="value $W"; A$V=1\n', 'accelerate launch train_network.py --output_name "$V"\n'),
    # one command continued over every line (what passes ARG_MAX is not kept: one line if it is a training command)
    "one_command": (".sh", "accelerate launch train_network.py \\\n", '  --network_args "conv_dim=4" \\\n',
                    "  --seed 1\n"),
    "array_append": (".sh", "", "ARGS+=(--seed 1)\n", 'accelerate launch train_network.py "${ARGS[@]}"\n'),
    "string_append": (".sh", "", 'EXTRA+=" --seed 1"\n', "accelerate launch train_network.py $EXTRA\n"),
    "if_blocks": (".sh", "", 'if [ "$V" = "x" ]; then ARGS+=(--v2); elif [ -f a ]; then ARGS+=(--clip_skip 2); fi\n',
                  'accelerate launch train_network.py "${ARGS[@]}"\n'),
    "nesting": (".sh", "", _NESTED, 'accelerate launch train_network.py "${ARGS[@]}" $EXTRA\n'),
    "heredocs": (".sh", "", _HEREDOC, "accelerate launch train_network.py --config_file cfg.toml\n"),
    "bat": (".bat", "", "set /a N=N+1\r\nset ARGS=%N% --seed 1 ^\r\n  --network_dim 8\r\n",
            "python train_network.py %ARGS%\r\n"),
    "ps1": (".ps1", "$a = [System.Collections.ArrayList]::new()\n", '[void]$a.Add("--seed=1")\n$x = "v $y"\n',
            "python train_network.py $a\n"),
}

_CHILD = r"""
import json, resource, sys, time
from lora_audit.errors import EvidenceError
from lora_audit.evidence.shell import parse_shell
t, c = time.perf_counter(), time.process_time()
try:
    got = f"{len(parse_shell(sys.argv[1]))} evidence"
except EvidenceError as e:
    got = "error: " + e.message[:60]
print(json.dumps({"s": time.perf_counter() - t, "cpu": time.process_time() - c, "got": got,
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def write(folder: Path, shape: str, mb: float) -> Path:
    suffix, head, block, tail = SHAPES[shape]
    n = max(1, int(mb * 1_000_000 / len(block.encode())))
    p = folder / f"{shape}-{mb}{suffix}"
    p.write_text(head + block * n + tail, encoding="utf-8", newline="")
    return p


def measure(path: Path) -> dict:
    out = subprocess.run([sys.executable, "-c", _CHILD, str(path)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=float, nargs="+", default=[1, CHECKED_MB], help="script sizes in MB")
    ap.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    args = ap.parse_args()
    base = measure_baseline()
    print(f"python start-up and import: {base['cpu']:.2f} s CPU, {base['rss_mb']:.0f} MB RSS (included below)")
    print(f"{'shape':<14}{'MB':>6}{'wall s':>8}{'CPU s':>7}{'RSS MB':>8}{'s/MB':>7}{'ratio':>7}  read gave")
    over = []
    with tempfile.TemporaryDirectory() as tmp:
        for shape in args.shapes:
            first = None
            for mb in args.sizes:
                path = write(Path(tmp), shape, mb)
                r = measure(path)
                path.unlink()
                per = r["cpu"] / mb
                first = first or per
                print(f"{shape:<14}{mb:>6g}{r['s']:>8.2f}{r['cpu']:>7.2f}{r['rss_mb']:>8.0f}{per:>7.2f}"
                      f"{per / first:>7.2f}  {r['got']}", flush=True)
                if mb >= CHECKED_MB and (r["cpu"] > LIMIT_S or r["rss_mb"] > LIMIT_MB):
                    over.append(f"{shape} {mb:g} MB: {r['cpu']:.1f} s, {r['rss_mb']:.0f} MB")
    if over:
        print(f"over the target ({LIMIT_S:g} s, {LIMIT_MB:g} MB at {CHECKED_MB:g} MB): " + "; ".join(over))
        return 1
    return 0


def measure_baseline() -> dict:
    code = ("import json, resource, time; c = time.process_time(); import lora_audit.evidence.shell; "
            "print(json.dumps({'cpu': time.process_time() - c, "
            "'rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    sys.exit(main())
