"""What a LoRA file's weights did: the norm and spectrum of every module's effective update, per block.

For a kohya LoRA module the update merged into the base weight is ``ΔW = (alpha / rank) · up · down``
(``networks.lora.LoRAModule.forward``: ``lora_up(lora_down(x)) * multiplier * scale`` with
``scale = alpha / lora_dim``; no alpha tensor means ``alpha = lora_dim``, i.e. scale 1, which is also how
diffusers/peft files without alpha are loaded). Its singular values are found WITHOUT forming the out×in matrix:
``up = Q_u R_u`` and ``down^T = Q_d R_d``, so ``ΔW = s · Q_u (R_u R_d^T) Q_d^T`` and the singular values of ΔW are
those of the r×r core ``s · R_u R_d^T`` (R from the factors' Gram matrices by default, or their QR: see
``spectrum_of_product``). A 3x3 conv LoRA (LoCon) is reshaped to 2D first
(``down`` (r, in, kh, kw) -> (r, in·kh·kw), ``up`` (out, r, 1, 1) -> (out, r)), the flattening kohya's merge uses.

- LoHa (LyCORIS): ``ΔW = s · (w1a w1b) ⊙ (w2a w2b)``. A Hadamard product of two rank-r products is exactly a
  product with inner size r1·r2 (row-wise Kronecker of the ``a`` factors times column-wise Kronecker of the ``b``
  factors), so it goes through the same QR route, exactly; nothing is approximated. Tucker LoHa (``hada_t1``) is
  skipped with a note.
- LoKr (LyCORIS): ``ΔW = s · kron(W1, W2)``; the singular values of a Kronecker product are all products of the
  factors' singular values: exact. ``s = alpha / rank`` when a factor is decomposed (``lokr_w*_a/_b``), else 1
  (LyCORIS sets alpha to the dim when both factors are full). Tucker LoKr (``lokr_t2``) is skipped with a note.
- DoRA: the low-rank part only; the magnitude rescale (``dora_scale``) is not included (said in a note).

Effective rank per module: the number of singular values holding 90% / 99% of the energy (Σσ²), and the entropy
effective rank of Roy & Vetterli (2007): ``exp(H(p))`` with ``p_i = σ_i / Σσ``.

Reads only the tensors' bytes (the header through ``evidence.safetensors_header``), never unpickles; needs numpy
(the ``ml`` extra). bf16 is widened to fp32 by bit shifting, as numpy has no bf16.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from lora_audit.errors import EvidenceError
from lora_audit.evidence._io import open_regular
from lora_audit.evidence.safetensors_header import Header, read_header
from lora_audit.kohya.epoch_files import epoch_key, epoch_order, series_files
from lora_audit.kohya.lora_keys import analyse
from lora_audit.spectra import effective_ranks, row_kron, spectrum_of_product

MAX_TENSOR_BYTES = 1 << 30
_NP = {"F16": np.float16, "F32": np.float32, "F64": np.float64}
_BLOCKS = [  # canonical module name -> (group, block); first match wins
    (re.compile(r"^(down_blocks|up_blocks)_(\d+)_"), lambda m: (m.group(1)[:-7], f"{m.group(1)}_{m.group(2)}")),
    (re.compile(r"^mid_block_"), lambda m: ("mid", "mid_block")),
    (re.compile(r"^input_blocks_(\d+)_"), lambda m: ("down", f"input_blocks_{m.group(1)}")),
    (re.compile(r"^middle_block_"), lambda m: ("mid", "middle_block")),
    (re.compile(r"^output_blocks_(\d+)_"), lambda m: ("up", f"output_blocks_{m.group(1)}")),
    (re.compile(r"^double_blocks_(\d+)_"), lambda m: ("double", f"double_blocks_{m.group(1)}")),
    (re.compile(r"^single_blocks_(\d+)_"), lambda m: ("single", f"single_blocks_{m.group(1)}")),
    (re.compile(r"^single_transformer_blocks_(\d+)_"), lambda m: ("single", f"single_transformer_blocks_{m.group(1)}")),
    (re.compile(r"^transformer_blocks_(\d+)_"), lambda m: ("double", f"transformer_blocks_{m.group(1)}")),
    (re.compile(r"^joint_blocks_(\d+)_"), lambda m: ("joint", f"joint_blocks_{m.group(1)}")),
    (re.compile(r"^(layers|blocks|noise_refiner|context_refiner)_(\d+)_"),
     lambda m: (m.group(1), f"{m.group(1)}_{m.group(2)}")),
]
_TE_LAYER = re.compile(r"encoder_(?:layers|block)_(\d+)_")


def block_of(part: str, canonical: str) -> tuple[str, str]:
    """(group, block) of a module: down/mid/up (U-Net), double/single (FLUX), joint (SD3), te1/te2 (text encoders)."""
    if part != "unet":
        m = _TE_LAYER.search(canonical)
        return part, f"{part}_layers_{m.group(1)}" if m else part
    for pattern, name in _BLOCKS:
        m = pattern.match(canonical)
        if m:
            return name(m)
    return "other", "_".join(canonical.split("_")[:2]) or "other"


@dataclass
class ModuleWeights:
    name: str
    part: str
    group: str
    block: str
    kind: str  # LoRA / LoCon / LoHa / LoKr / DoRA
    rank: int | None
    alpha: float | None
    scale: float
    shape: tuple[int, int] | None  # (out, in) of the 2D update
    status: str = "ok"  # ok / dead / nonfinite / skipped
    norm: float | None = None
    spectrum: list[float] = field(default_factory=list)
    rank90: int | None = None
    rank99: int | None = None
    entropy_rank: float | None = None
    note: str | None = None

    def to_json(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in ("name", "part", "group", "block", "kind", "rank", "alpha", "scale", "status",
                                            "norm", "rank90", "rank99", "entropy_rank", "note")}
        d["shape"] = list(self.shape) if self.shape else None
        d["spectrum"] = [float(f"{x:.6g}") for x in self.spectrum]
        return d


@dataclass
class WeightReport:
    path: str
    format: str | None
    arch: str | None
    kind: str | None
    modules: list[ModuleWeights]
    notes: list[str] = field(default_factory=list)

    @property
    def analysed(self) -> list[ModuleWeights]:
        return [m for m in self.modules if m.status in ("ok", "dead")]

    @property
    def energy(self) -> float:
        return sum(m.norm ** 2 for m in self.analysed if m.norm is not None)

    @property
    def text_encoder_share(self) -> float | None:
        total = self.energy
        if not total:
            return None
        return sum(m.norm ** 2 for m in self.analysed if m.part != "unet" and m.norm is not None) / total

    def median(self, attr: str) -> float | None:
        vals = [getattr(m, attr) for m in self.modules if m.status == "ok" and getattr(m, attr) is not None]
        return float(np.median(vals)) if vals else None

    @property
    def stored_rank(self) -> int | None:
        ranks = [m.rank for m in self.modules if m.rank]
        return max(set(ranks), key=ranks.count) if ranks else None

    def groups(self, by: str = "block") -> list[dict[str, Any]]:
        """Per block (or group): modules, Frobenius norm of all their updates, share of the file's energy, medians."""
        total = self.energy or 1.0
        out: dict[str, list[ModuleWeights]] = {}
        for m in self.modules:
            out.setdefault(getattr(m, by), []).append(m)
        rows = []
        for key, ms in out.items():
            ok = [m for m in ms if m.status == "ok"]
            e = sum(m.norm ** 2 for m in ms if m.status in ("ok", "dead") and m.norm is not None)
            rows.append({by: key, "modules": len(ms), "norm": float(np.sqrt(e)), "energy_share": e / total,
                         "median_entropy_rank": float(np.median([m.entropy_rank for m in ok])) if ok else None,
                         "median_rank90": float(np.median([m.rank90 for m in ok])) if ok else None,
                         "median_rank99": float(np.median([m.rank99 for m in ok])) if ok else None,
                         "max_rank": max((m.rank for m in ms if m.rank), default=None),
                         "dead": sum(m.status == "dead" for m in ms),
                         "nonfinite": sum(m.status == "nonfinite" for m in ms)})
        return rows

    def summary(self) -> dict[str, Any]:
        return {"modules": len(self.modules), "analysed": len(self.analysed), "norm": float(np.sqrt(self.energy)),
                "text_encoder_share": self.text_encoder_share, "stored_rank": self.stored_rank,
                "median_rank90": self.median("rank90"), "median_rank99": self.median("rank99"),
                "median_entropy_rank": self.median("entropy_rank"),
                "dead": [m.name for m in self.modules if m.status == "dead"],
                "nonfinite": [m.name for m in self.modules if m.status == "nonfinite"],
                "skipped": [m.name for m in self.modules if m.status == "skipped"]}

    def to_json(self, modules: bool = True) -> dict[str, Any]:
        d: dict[str, Any] = {"path": self.path, "format": self.format, "arch": self.arch, "kind": self.kind,
                             "summary": self.summary(), "groups": self.groups("group"), "blocks": self.groups("block"),
                             "notes": self.notes}
        if modules:
            d["modules"] = [m.to_json() for m in self.modules]
        return d


class _Reader:
    def __init__(self, path: str, header: Header):
        self.path, self.header = path, header
        self.f = open_regular(path, path)

    def close(self) -> None:
        self.f.close()

    def get(self, name: str) -> np.ndarray:
        t = self.header.tensors[name]
        start, n = self.header.data_start + t.begin, t.end - t.begin
        if start + n > self.header.file_size:
            raise EvidenceError(f"the file is cut: tensor {name} ends past its end", self.path)
        if n > MAX_TENSOR_BYTES:  # a LoRA factor is a few MB (SDXL dim 128 fp32: 2.6 MB at most)
            raise EvidenceError(f"tensor {name} is {n} bytes, over {MAX_TENSOR_BYTES}: not a LoRA factor", self.path)
        if hasattr(os, "pread"):
            b = os.pread(self.f.fileno(), n, start)
        else:  # Windows
            self.f.seek(start)
            b = self.f.read(n)
        if t.dtype == "BF16":
            a = (np.frombuffer(b, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
        elif t.dtype in _NP:
            a = np.frombuffer(b, dtype=np.dtype(_NP[t.dtype]).newbyteorder("<"))
        else:
            raise EvidenceError(f"tensor {name} has dtype {t.dtype}, not a float type this analysis reads", self.path)
        expected = int(np.prod(t.shape)) if t.shape else 1
        if a.size != expected:
            raise EvidenceError(f"tensor {name}: {a.size} values for shape {list(t.shape)}", self.path)
        return a.astype(np.float64).reshape(t.shape)


def _as_2d(a: np.ndarray) -> np.ndarray:
    return a.reshape(a.shape[0], -1) if a.ndim != 2 else a


def analyse_file(path: str | os.PathLike) -> WeightReport:
    """The weight analysis of one LoRA ``.safetensors`` file (kohya, LyCORIS, diffusers/peft, OneTrainer keys)."""
    label = str(path)
    header = read_header(path, label)
    shapes = analyse(header.tensors, header.metadata)
    if not shapes.modules:
        raise EvidenceError("no LoRA modules in this file (no lora_down/lora_up, lora_A/lora_B, hada_ or lokr_ "
                            "tensors)", label)
    names: dict[str, dict[str, str]] = {}  # module -> what -> full tensor name
    for name in header.tensors:
        for w in _WHATS:
            module = name[: -len(w) - 1]
            if name.endswith("." + w) and module in shapes.modules:
                names.setdefault(module, {})[w] = name
                break
    report = WeightReport(path=label, format=shapes.format, arch=shapes.arch, kind=shapes.kind, modules=[])
    reader = _Reader(label, header)
    try:
        for module in shapes.modules:
            report.modules.append(_module(reader, module, names.get(module, {}), shapes.module_parts[module],
                                          shapes.canonical[module], shapes.kind or "LoRA"))
    finally:
        reader.close()
    kinds = {m.kind for m in report.modules}
    if "LoHa" in kinds:
        report.notes.append("LoHa: the Hadamard product is factored exactly (inner size rank²); nothing approximated")
    if "LoKr" in kinds:
        report.notes.append("LoKr: singular values are products of the Kronecker factors' (exact)")
    if "DoRA" in kinds:
        report.notes.append("DoRA: the low-rank update only; the magnitude rescale (dora_scale) is not included")
    if any(m.status == "skipped" for m in report.modules):
        report.notes.append(f"{sum(m.status == 'skipped' for m in report.modules)} modules skipped (see their notes)")
    return report


_WHATS = ("lora_down.weight", "lora_up.weight", "lora_A.weight", "lora_B.weight", "lora.down.weight",
          "lora.up.weight", "down.weight", "up.weight", "alpha", "dora_scale", "lora_magnitude_vector",
          "hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b", "hada_t1", "hada_t2",
          "lokr_w1", "lokr_w1_a", "lokr_w1_b", "lokr_w2", "lokr_w2_a", "lokr_w2_b", "lokr_t2")
_CANON = {"lora_A.weight": "lora_down.weight", "lora_B.weight": "lora_up.weight",
          "lora.down.weight": "lora_down.weight",
          "lora.up.weight": "lora_up.weight", "down.weight": "lora_down.weight", "up.weight": "lora_up.weight",
          "lora_magnitude_vector": "dora_scale"}


def _module(reader: _Reader, module: str, names: dict[str, str], part: str, canonical: str,
            file_kind: str) -> ModuleWeights:
    t = {_CANON.get(w, w): n for w, n in names.items()}
    group, block = block_of(part, canonical)
    alpha = None
    if "alpha" in t:
        a = reader.get(t["alpha"]).ravel()
        alpha = float(a[0]) if a.size else None
    if "hada_w1_a" in t:
        kind = "LoHa"
    elif any(w.startswith("lokr_") for w in t):
        kind = "LoKr"
    else:
        kind = "DoRA" if "dora_scale" in t else ("LoCon" if file_kind == "LoCon" else "LoRA")
    mw = ModuleWeights(name=module, part=part, group=group, block=block, kind=kind, rank=None, alpha=alpha,
                       scale=1.0, shape=None)
    try:
        factors, sv_fn = _factors(reader, t, mw)
    except _Skip as e:
        mw.status, mw.note = "skipped", str(e)
        return mw
    if not all(np.isfinite(f).all() for f in factors) or (alpha is not None and not np.isfinite(alpha)):
        mw.status, mw.note = "nonfinite", "NaN or inf in its tensors"
        return mw
    sv = np.sort(sv_fn())[::-1]
    mw.norm = float(np.sqrt((sv ** 2).sum()))
    if not np.isfinite(mw.norm):
        mw.status, mw.note, mw.norm = "nonfinite", "the update overflows", None
        return mw
    if mw.norm == 0.0:
        mw.status = "dead"
        mw.note = "all-zero update (lora_up zero: never trained, or the optimizer did not reach it)"
    mw.spectrum = [float(x) for x in sv[: max(mw.rank or 0, 1) if kind in ("LoRA", "LoCon", "DoRA") else len(sv)]]
    mw.rank90, mw.rank99, mw.entropy_rank = effective_ranks(sv)
    return mw


class _Skip(Exception):
    pass


def _factors(reader: _Reader, t: dict[str, str], mw: ModuleWeights):
    """The module's factors (for the finiteness check) and a function giving the singular values of its update."""
    if mw.kind == "LoHa":
        if "hada_t1" in t or "hada_t2" in t:
            raise _Skip("Tucker LoHa (hada_t1/hada_t2): not analysed")
        need = ("hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b")
        if any(n not in t for n in need):
            raise _Skip("LoHa module lacks " + ", ".join(n for n in need if n not in t))
        w1a, w1b, w2a, w2b = (_as_2d(reader.get(t[n])) for n in need)
        mw.rank = w1b.shape[0]
        mw.scale = (mw.alpha / mw.rank) if mw.alpha is not None and mw.rank else 1.0
        mw.shape = (w1a.shape[0], w1b.shape[1])
        return [w1a, w1b, w2a, w2b], lambda: spectrum_of_product(
            row_kron(w1a, w2a), row_kron(w1b.T, w2b.T).T, mw.scale)
    if mw.kind == "LoKr":
        if "lokr_t2" in t:
            raise _Skip("Tucker LoKr (lokr_t2): not analysed")
        sides: list[tuple[tuple[int, ...], Callable[[], Any]]] = []
        factors = []
        decomposed_rank = None
        for i in ("1", "2"):
            if f"lokr_w{i}" in t:
                w = _as_2d(reader.get(t[f"lokr_w{i}"]))
                factors.append(w)
                sides.append((w.shape, partial(np.linalg.svd, w, compute_uv=False)))
            elif f"lokr_w{i}_a" in t and f"lokr_w{i}_b" in t:
                a, b = _as_2d(reader.get(t[f"lokr_w{i}_a"])), _as_2d(reader.get(t[f"lokr_w{i}_b"]))
                factors += [a, b]
                decomposed_rank = b.shape[0]
                sides.append(((a.shape[0], b.shape[1]), partial(spectrum_of_product, a, b)))
            else:
                raise _Skip(f"LoKr module lacks lokr_w{i} (or lokr_w{i}_a/_b)")
        mw.rank = decomposed_rank
        # LyCORIS LoKrModule: alpha only scales when a factor is decomposed (both full: alpha = lora_dim, scale 1)
        mw.scale = (mw.alpha / decomposed_rank) if decomposed_rank and mw.alpha is not None else 1.0
        (o1, i1), (o2, i2) = sides[0][0], sides[1][0]
        mw.shape = (o1 * o2, i1 * i2)
        return factors, lambda: mw.scale * np.outer(sides[0][1](), sides[1][1]()).ravel()
    if "lora_down.weight" not in t or "lora_up.weight" not in t:
        raise _Skip("lacks lora_down or lora_up")
    down, up = _as_2d(reader.get(t["lora_down.weight"])), _as_2d(reader.get(t["lora_up.weight"]))
    if up.shape[1] != down.shape[0]:
        raise EvidenceError(f"{mw.name}: lora_up {list(up.shape)} and lora_down {list(down.shape)} do not chain",
                            reader.path)
    mw.rank = down.shape[0]
    # networks.lora.LoRAModule.__init__: alpha None or 0 -> alpha = lora_dim; scale = alpha / lora_dim
    mw.scale = (mw.alpha / mw.rank) if mw.alpha else 1.0
    mw.shape = (up.shape[0], down.shape[1])
    return [down, up], lambda: spectrum_of_product(up, down, mw.scale)


def trajectory(reports: list[WeightReport]) -> list[dict[str, Any]]:
    """Norm / rank rows across the files of one series, in training order (numbered files, then the final one)."""
    rows = []
    for r in sorted(reports, key=lambda r: epoch_order(r.path)):
        _, n, what = epoch_key(r.path)
        s = r.summary()
        row = {"file": r.path, "at": f"{what} {n}" if n is not None else "final", "norm": s["norm"],
               "text_encoder_share": s["text_encoder_share"], "median_rank90": s["median_rank90"],
               "median_rank99": s["median_rank99"], "median_entropy_rank": s["median_entropy_rank"],
               "dead": len(s["dead"]), "nonfinite": len(s["nonfinite"])}
        row["groups"] = {g["group"]: g["norm"] for g in r.groups("group")}
        rows.append(row)
    return rows


def series(paths: list[str]) -> dict[str, list[str]]:
    """Files grouped by series stem (a run's per-epoch files and its final file share one)."""
    out: dict[str, list[str]] = {}
    for p in paths:
        out.setdefault(str(Path(p).parent / epoch_key(p)[0]), []).append(p)
    return out


def facts(report: WeightReport) -> dict[str, Any]:
    """What the audit's rules read (``weights.*`` facts)."""
    s = report.summary()
    return {"modules": s["modules"], "stored_rank": s["stored_rank"], "median_rank90": s["median_rank90"],
            "median_rank99": s["median_rank99"],
            "median_entropy_rank": s["median_entropy_rank"], "text_encoder_share": s["text_encoder_share"],
            "dead_modules": len(s["dead"]), "nonfinite_modules": len(s["nonfinite"]), "norm": s["norm"],
            "nonfinite_names": s["nonfinite"][:5], "dead_names": s["dead"][:5]}


def expand_files(paths: list[str]) -> list[str]:
    """FILE arguments as ``weights`` takes them: a folder stands for the .safetensors files directly in it, in
    training order."""
    expanded: list[str] = []
    for f in paths:
        if Path(f).is_dir():
            found = sorted((str(p) for p in Path(f).glob("*.safetensors") if p.is_file()), key=epoch_order)
            if not found:
                raise EvidenceError("no .safetensors file in this folder", f)
            expanded += found
        else:
            expanded.append(f)
    return expanded


def analyse_series(paths: list[str]) -> tuple[dict[str, WeightReport], dict[str, list[dict[str, Any]]]]:
    """Each file analysed once, and the trajectory of every series with more than one file (by series stem)."""
    reports = {f: analyse_file(f) for f in dict.fromkeys(paths)}
    trajectories = {stem: trajectory([reports[f] for f in fs]) for stem, fs in series(list(reports)).items()
                    if len(fs) > 1}
    return reports, trajectories


def lora_series(lora_paths: list[str]) -> list[str]:
    """A run's LoRA files with their per-epoch siblings (``name-000001.safetensors`` ...)."""
    return [f for path in lora_paths for f in series_files(path)]
