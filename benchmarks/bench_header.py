"""Header-only inspection of many large LoRA files against loading them whole, side by side in one run.

    python benchmarks/bench_header.py                  # 20 SDXL LoRAs, dim 32 fp16 (~229 MB each)
    python benchmarks/bench_header.py --count 8 --arch sdxl --dim 128 --precision float   # 1.8 GB each

The files are real kohya LoRA layouts (tests/loras.py) written sparse: a valid header and alpha scalars, the
weights a hole, so they take no disk space and reading them whole costs memory bandwidth, not disk. Real files on
a disk make loading them whole slower still, so the printed ratio is a lower bound.

"Whole" is ``safetensors.safe_open`` + ``get_tensor`` of every tensor (torch, else numpy, when installed), else
``safetensors.deserialize`` of the file's bytes: either way every byte of every tensor is read.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # tests/loras.py writes the files

import safetensors  # noqa: E402
from loras import kohya_metadata, write_lora  # noqa: E402

from lora_audit.evidence.safetensors_header import parse_safetensors  # noqa: E402


def _whole_loader():
    for framework in ("pt", "numpy"):
        try:
            __import__("torch" if framework == "pt" else "numpy")
        except ImportError:
            continue

        def load(path: Path, framework=framework) -> int:
            n = 0
            with safetensors.safe_open(str(path), framework=framework) as f:
                for k in f.keys():
                    n += f.get_tensor(k).nbytes
            return n

        return f"safe_open(framework={framework!r}) + get_tensor of every tensor", load

    def load(path: Path) -> int:
        return sum(len(t["data"]) for _, t in safetensors.deserialize(path.read_bytes()))

    return "safetensors.deserialize(file bytes)", load


def _time(fn, files: list[Path]) -> float:
    start = time.perf_counter()
    for f in files:
        fn(f)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=20, help="number of LoRA files (default 20)")
    ap.add_argument("--arch", default="sdxl", choices=["sd15", "sd2", "sdxl"])
    ap.add_argument("--dim", type=int, default=32)
    ap.add_argument("--precision", default="fp16", choices=["fp16", "bf16", "float"])
    ap.add_argument("--repeat", type=int, default=3, help="rounds; the median is reported (default 3)")
    ap.add_argument("--dir", type=Path, help="where to write the files (default: a temporary folder)")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        files = [write_lora(Path(tmp) / f"lora_{i:03d}.safetensors", args.arch, args.dim, args.precision,
                            metadata=kohya_metadata(args.arch, args.dim, args.dim / 2), sparse=True)
                 for i in range(args.count)]
        size = files[0].stat().st_size
        label, load = _whole_loader()
        ev = parse_safetensors(files[0])
        assert ev.facts["rank"]["most_common"] == args.dim
        assert load(files[0]) > 0  # the files are valid for the safetensors library too
        header, whole = [], []
        for _ in range(args.repeat):  # interleaved rounds, so both see the same machine state
            header.append(_time(parse_safetensors, files))
            whole.append(_time(load, files))
        h, w = statistics.median(header), statistics.median(whole)

    print(f"{args.count} x {args.arch} LoRA, dim {args.dim} {args.precision}: {size / 1e6:,.1f} MB each, "
          f"{args.count * size / 1e9:,.2f} GB in all (sparse)")
    print(f"header only  (parse_safetensors): {h:8.3f} s   {h / args.count * 1e3:8.2f} ms/file")
    print(f"whole file   ({label}): {w:8.3f} s   {w / args.count * 1e3:8.2f} ms/file")
    print(f"ratio whole / header-only: {w / h:,.0f}x  (median of {args.repeat} rounds)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
