"""lora-audit weights: the factored spectrum (QR of the factors + SVD of the r×r core) against the SVD of the full
out×in products, side by side in one run, on an SDXL LoRA with kohya's real key names and layer widths.

    python benchmarks/bench_weights.py                      # SDXL dim 128 fp32 (1.8 GB), dense SVD on 24 modules
    python benchmarks/bench_weights.py --dim 32 --sample 48 # --arch --dim --precision --sample --dir --keep

Prints: the whole-file analysis time and its peak extra memory (tracemalloc: numpy's buffers), then, on the same
sample of modules (every n-th, all kinds of layer), the factored and the dense time and their ratio, and the largest
relative difference of the singular values (the two must agree).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import tracemalloc
from pathlib import Path

# as `lora-audit weights` does (cli._one_blas_thread): small matrices, threads only contend. Override with the env.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from safetensors.numpy import save_file  # noqa: E402

from lora_audit.weights import _as_2d, analyse_file, spectrum_of_product  # noqa: E402
from lora_audit.kohya.filesize import tensors  # noqa: E402

_NP = {"F32": np.float32, "F16": np.float16}


def write(path: Path, arch: str, dim: int, precision: str) -> dict[str, tuple]:
    rng = np.random.default_rng(0)
    out, shapes = {}, {}
    for name, dtype, shape in tensors(arch, dim, precision, True, None):  # type: ignore[arg-type]
        if name.endswith(".alpha"):
            out[name] = np.array(dim / 2, np.float32)
            continue
        out[name] = (rng.standard_normal(shape, dtype=np.float32) * 0.01).astype(_NP.get(dtype, np.float32))
        shapes[name] = shape
    save_file(out, str(path))
    return shapes


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", default="sdxl")
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--precision", default="float", choices=["float", "fp16"])
    ap.add_argument("--sample", type=int, default=24, help="modules timed with the dense SVD")
    ap.add_argument("--dir", default=None)
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args()
    d = Path(a.dir or tempfile.mkdtemp())
    f = d / f"bench-{a.arch}-{a.dim}.safetensors"
    t0 = time.perf_counter()
    write(f, a.arch, a.dim, a.precision)
    print(f"wrote {f} ({f.stat().st_size / 1e9:.2f} GB) in {time.perf_counter() - t0:.1f} s")
    try:
        tracemalloc.start()
        t0 = time.perf_counter()
        rep = analyse_file(f)
        whole = time.perf_counter() - t0
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        print(f"analyse_file: {len(rep.modules)} modules in {whole:.1f} s, peak extra memory {peak / 1e6:.0f} MB")
        from safetensors import safe_open

        with safe_open(str(f), framework="np") as st:
            mods = [m for m in rep.modules if m.shape]
            step = max(1, len(mods) // a.sample)
            fact = dense = 0.0
            worst = 0.0
            for m in mods[::step][: a.sample]:
                up = _as_2d(st.get_tensor(m.name + ".lora_up.weight").astype(np.float64))
                down = _as_2d(st.get_tensor(m.name + ".lora_down.weight").astype(np.float64))
                t0 = time.perf_counter()
                s1 = spectrum_of_product(up, down, m.scale)
                t1 = time.perf_counter()
                s2 = np.linalg.svd(m.scale * (up @ down), compute_uv=False)[: len(s1)]
                t2 = time.perf_counter()
                fact += t1 - t0
                dense += t2 - t1
                worst = max(worst, float(np.max(np.abs(np.sort(s1)[::-1] - s2) / s2.max())))
        n = len(mods[::step][: a.sample])
        print(f"sample of {n} modules: factored {fact:.3f} s, dense SVD {dense:.2f} s, ratio {dense / fact:.0f}x; "
              f"largest singular value difference {worst:.1e} (relative to the top one)")
        print(f"estimated dense SVD of the whole file: {dense / n * len(mods):.0f} s")
    finally:
        if not a.keep:
            f.unlink()


if __name__ == "__main__":
    main()
