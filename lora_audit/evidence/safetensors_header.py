"""A LoRA ``.safetensors`` file as evidence, from its header alone.

Reads the 8-byte header length, checks it against the file size before reading anything else, reads the JSON
header, and then only the bytes of the ``alpha`` scalars. Never the weights: a 1.7 GB SDXL LoRA costs a few hundred
KB of reads. What it gives:

- the ``ss_*`` / ``modelspec.*`` metadata as explicit Settings (``kohya.metadata_keys``), source ``file:key``;
- from tensor names and shapes (inferred, with the reasoning in the note): network kind, rank -> network_dim,
  3x3 conv rank -> conv_dim, alphas -> network_alpha / conv_alpha, text encoders present ->
  network_train_unet_only, dtype -> save_precision, base architecture (``facts["arch"]``).

When the metadata and the shapes disagree (ss_network_dim 32, shapes rank 64) both Settings are emitted, so the
run reports a conflict naming both, and the evidence carries a warning; when they agree only the explicit one is.
"""

from __future__ import annotations

import json
import os
import struct
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from lora_audit.errors import EvidenceError
from lora_audit.evidence._io import open_regular, parse_failure, without_surrogates
from lora_audit.format import format_value
from lora_audit.kohya.lora_keys import LoraShapes, analyse
from lora_audit.kohya.metadata_keys import read_metadata
from lora_audit.model import Alternative, Evidence, Note, Setting

MAX_HEADER_BYTES = 100_000_000  # safetensors refuses larger headers too (MAX_HEADER_SIZE)
ITEMSIZE = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "F8_E8M0": 1, "I16": 2, "U16": 2, "F16": 2,
            "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "F64": 8, "I64": 8, "U64": 8, "C64": 8}
# bits per element (safetensors' Dtype::bitsize), with the sub-byte types safetensors knows besides
BITS = {**{k: 8 * v for k, v in ITEMSIZE.items()}, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6}
_U64 = 2 ** 64  # safetensors' offsets and sizes are usize: beyond this it reports ValidationOverflow
SAVE_PRECISION = {"F16": "fp16", "BF16": "bf16", "F32": "float"}  # kohya's --save_precision names


@dataclass(frozen=True)
class TensorInfo:
    dtype: str
    shape: tuple[int, ...]
    begin: int  # offsets into the data section
    end: int


@dataclass
class Header:
    file_size: int
    data_start: int  # 8 + header length
    tensors: dict[str, TensorInfo]
    metadata: dict[str, str] | None
    # what safetensors itself would refuse although the header is readable (overlaps, gaps, stray bytes, ...)
    problems: list[str] = field(default_factory=list)

    @property
    def data_end(self) -> int:
        return self.data_start + max((t.end for t in self.tensors.values()), default=0)


def read_header(path: str | os.PathLike, label: str | None = None) -> Header:
    """Validate and read a safetensors header; bad input raises a one-line EvidenceError, without a big read."""
    label = label or str(path)
    f = open_regular(path, label)  # a FIFO, device or symlink loop: one line, never opened for reading
    with f:
        size = os.fstat(f.fileno()).st_size
        if size < 8:
            raise EvidenceError(f"too short for a safetensors file ({size} bytes)", label)
        n = int.from_bytes(f.read(8), "little")
        if n > size - 8:
            raise EvidenceError(f"header length {n} is larger than the file ({size} bytes): not a safetensors "
                                "file, or its header is cut", label)
        if n > MAX_HEADER_BYTES:
            raise EvidenceError(f"header length {n} is over safetensors' limit of {MAX_HEADER_BYTES} bytes", label)
        raw = f.read(n)
    if len(raw) != n:
        raise EvidenceError(f"the header is cut: {len(raw)} of {n} bytes", label)
    try:
        head = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise EvidenceError("the header is not UTF-8 text: not a safetensors file", label) from None
    except json.JSONDecodeError as e:
        raise EvidenceError(f"the header is not valid JSON ({e.msg} at byte {8 + e.pos})", label) from None
    except (RecursionError, ValueError, MemoryError) as e:  # a depth bomb, a 5000-digit number
        raise EvidenceError(f"the header is not usable JSON ({parse_failure(e) or e})", label) from None
    if not isinstance(head, dict):
        raise EvidenceError(f"the header is JSON but not an object ({type(head).__name__})", label)
    head = without_surrogates(head)  # "\ud800" in a name or a metadata value: printable, as U+FFFD
    metadata = head.pop("__metadata__", None)
    if metadata is not None and not isinstance(metadata, dict):
        raise EvidenceError("__metadata__ in the header is not an object", label)
    header = Header(file_size=size, data_start=8 + n, tensors={k: _tensor(k, v, label) for k, v in head.items()},
                    metadata=metadata)
    header.problems = _layout_problems(header)
    return header


def _layout_problems(h: Header) -> list[str]:
    """What safetensors' own ``Metadata::validate`` and ``read_metadata`` refuse in a header that reads fine here:
    tensors sorted by ``data_offsets`` must tile the data section from 0 without gap or overlap
    (``InvalidOffset``), the data must end where the file does (``MetadataIncompleteBuffer``; a file that is cut
    short is reported apart, as "cut short"), and ``__metadata__`` must map text to text."""
    out: list[str] = []
    start, prev = 0, None
    for name, t in sorted(h.tensors.items(), key=lambda kv: (kv[1].begin, kv[1].end)):
        if t.begin != start:
            if t.begin < start:
                out.append(f"the data of {name!r} (bytes {t.begin}-{t.end}) overlaps {prev!r}, which ends at {start}")
            else:
                out.append(f"{t.begin - start} bytes of the data section before {name!r} belong to no tensor")
            break  # safetensors stops at the first one too (InvalidOffset)
        start, prev = t.end, name
    end = h.data_start + start
    if not out and h.tensors and end < h.file_size:
        out.append(f"{h.file_size - end} bytes follow the last tensor's data")
    if h.metadata and any(not isinstance(v, str) for v in h.metadata.values()):
        bad = next(k for k, v in h.metadata.items() if not isinstance(v, str))
        out.append(f"__metadata__ value {bad!r} is not text")
    return out


def _tensor(name: str, entry: Any, label: str) -> TensorInfo:
    """One header entry checked as safetensors checks it (``TensorInfo`` deserialization, then
    ``Metadata::validate``): dtype known, shape of naturals, ``data_offsets`` [begin, end] with begin <= end,
    element count x dtype bits a whole number of bytes equal to end - begin, nothing past 64 bits."""
    shown = name if len(name) <= 80 else name[:77] + "..."
    what = f"header entry {shown!r}"
    if not isinstance(entry, dict):
        raise EvidenceError(f"{what} is not a tensor description (dtype, shape, data_offsets)", label)
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if type(dtype) is not str:
        raise EvidenceError(f"{what} has no dtype", label)
    if dtype not in BITS:
        raise EvidenceError(f"{what} has an unknown dtype {dtype[:20]!r}", label)
    if type(shape) is not list or not all(type(d) is int for d in shape):
        raise EvidenceError(f"{what}: shape is not a list of whole numbers", label)
    if any(d < 0 for d in shape):
        raise EvidenceError(f"{what}: shape {_short(shape)} has a negative dimension", label)
    if type(offsets) is not list or len(offsets) != 2 or not all(type(o) is int for o in offsets):
        raise EvidenceError(f"{what}: data_offsets is not [begin, end]", label)
    begin, end = offsets
    if begin < 0 or end >= _U64 or begin > end:
        raise EvidenceError(f"{what}: data_offsets [{_short(begin)}, {_short(end)}] are not a byte range", label)
    count = 1
    for d in shape:
        count *= d
        if count >= _U64:
            raise EvidenceError(f"{what}: shape {_short(shape)} overflows 64 bits", label)
    bits = count * BITS[dtype]
    if bits % 8:
        raise EvidenceError(f"{what}: {count} elements of {dtype} are not a whole number of bytes", label)
    if end - begin != bits // 8:
        raise EvidenceError(f"{what}: {dtype} {_short(shape)} needs {bits // 8} bytes but its data_offsets "
                            f"span {end - begin}", label)
    return TensorInfo(dtype, tuple(shape), begin, end)


def _short(v: Any) -> str:
    r = repr(v) if not isinstance(v, int) or abs(v) < 10 ** 30 else f"<{v.bit_length()}-bit number>"
    return r if len(r) <= 60 else r[:57] + "..."


def read_scalars(path: str | os.PathLike, header: Header, names: list[str]) -> dict[str, float]:
    """Values of the named scalar tensors, reading only their bytes (those past the end of a cut file are skipped)."""
    out: dict[str, float] = {}
    with open_regular(path) as f:
        fd = f.fileno()
        for name in names:
            t = header.tensors[name]
            if t.dtype not in ("F16", "BF16", "F32", "F64") or t.end - t.begin != ITEMSIZE[t.dtype]:
                continue
            if header.data_start + t.end > header.file_size:
                continue
            if hasattr(os, "pread"):  # one syscall per scalar
                b = os.pread(fd, t.end - t.begin, header.data_start + t.begin)
            else:  # Windows
                f.seek(header.data_start + t.begin)
                b = f.read(t.end - t.begin)
            out[name] = _scalar(b, t.dtype)
    return out


def _scalar(b: bytes, dtype: str) -> float:
    """The value, written with the fewest digits that store back to the same bits (fp16 0.2998 -> 0.3)."""
    if dtype == "BF16":
        v = struct.unpack("<f", b"\0\0" + b)[0]
    else:
        v = struct.unpack({"F16": "<e", "F32": "<f", "F64": "<d"}[dtype], b)[0]
    for digits in range(1, 18):
        short = float(f"{v:.{digits}g}")
        if _store(short, dtype) == b:
            return short
    return v


def _store(v: float, dtype: str) -> bytes:
    try:
        if dtype == "BF16":
            bits = struct.unpack("<I", struct.pack("<f", v))[0]
            bits += 0x7FFF + ((bits >> 16) & 1)
            return struct.pack("<H", (bits >> 16) & 0xFFFF)
        return struct.pack({"F16": "<e", "F32": "<f", "F64": "<d"}[dtype], v)
    except (OverflowError, struct.error):
        return b""


# --- the evidence ---------------------------------------------------------------------------------------------------

def parse_safetensors(path: str | os.PathLike, label: str | None = None) -> Evidence:
    """Evidence (kind "safetensors") from a LoRA file's header, metadata and alpha scalars."""
    label = label or str(path)
    header = read_header(path, label)
    ev = Evidence(path=label, kind="safetensors")
    facts: dict[str, Any] = {"file_size": header.file_size, "header_bytes": header.data_start,
                             "tensor_count": len(header.tensors)}
    if header.file_size < header.data_end:
        have = max(0, header.file_size - header.data_start)
        want = header.data_end - header.data_start
        ev.warnings.append(Note(message=f"the file is cut short: its header describes {want:,} bytes of tensors but "
                                        f"only {have:,} follow; what is shown is what the header says", source=label))
        facts["truncated"] = True
    for problem in header.problems:
        ev.warnings.append(Note(message=f"{problem}: safetensors refuses to load this file, though its header is "
                                        "readable (shown is what the header says)", source=label))
    if header.problems:
        facts["layout_problems"] = header.problems

    meta_settings: list[Setting] = []
    if header.metadata:
        md = {k: v if isinstance(v, str) else json.dumps(v) for k, v in header.metadata.items()}
        reading = read_metadata(md, label)
        meta_settings = reading.settings
        ev.warnings.extend(reading.warnings)
        facts.update(reading.facts)
        facts["metadata"] = md
    else:
        facts["metadata"] = {}

    shapes = analyse(header.tensors, header.metadata or {})
    alphas = read_scalars(path, header, shapes.alpha_tensors)
    shape_settings = _shape_settings(shapes, alphas, label, ev)
    facts.update(shapes.facts())
    if "arch" not in facts and header.metadata:
        from lora_audit.kohya.trainers import from_metadata

        said = from_metadata({k: str(v) for k, v in header.metadata.items()})
        if said:  # the keys do not say it (no modules, or a layout we do not know): the metadata does
            facts["arch"], facts["arch_reason"] = said
    facts.update(_alpha_facts(shapes, alphas))
    ev.settings = meta_settings + _reconcile(meta_settings, shape_settings, ev, label)
    ev.facts = facts
    return ev


def _alpha_settings(s: LoraShapes, alphas: dict[str, float], label: str) -> list[Setting]:
    """network_alpha and conv_alpha from the alpha tensors read (the most common value, and how they vary)."""
    out: list[Setting] = []
    for name, mods in (("network_alpha", s.linear_modules), ("conv_alpha", s.conv_modules)):
        vals = [alphas[m + ".alpha"] for m in mods if m + ".alpha" in alphas]
        if not vals:
            continue
        value, note = _summary(vals, "alpha")
        if len(vals) < len(mods):
            note += f" (read for {len(vals)} of {len(mods)} modules)"
        rank_counts = s.ranks if name == "network_alpha" else s.conv_ranks
        if rank_counts and value == Counter(rank_counts).most_common(1)[0][0]:
            note += "; alpha equal to the rank is also what an alpha of 0 or None gives (LoRAModule)"
        out.append(Setting(name=name, value=float(value), source=f"{label}:alpha_tensors", origin="inferred",
                           note=note))
    return out


def _shape_settings(s: LoraShapes, alphas: dict[str, float], label: str, ev: Evidence) -> list[Setting]:
    out: list[Setting] = []
    names_src, shapes_src = f"{label}:tensor_names", f"{label}:tensor_shapes"
    if not s.modules:
        ev.warnings.append(Note(message="no LoRA modules in this file (kohya lora_unet_* / lora_te*_*, diffusers/peft "
                                        "lora_A/lora_B, OneTrainer, ComfyUI)", source=label))
        return out
    out.append(Setting(name="network_kind", value=s.kind, source=names_src, origin="inferred", note=s.kind_reason))
    if s.network_module:
        module, alts, why = s.network_module
        out.append(Setting(name="network_module", value=module, source=names_src, origin="inferred", note=why,
                           alternatives=[Alternative(value=a, note=n) for a, n in alts]))
    for name, ranks in (("network_dim", s.ranks), ("conv_dim", s.conv_ranks)):
        if ranks:
            value, note = _summary(ranks, "rank")
            out.append(Setting(name=name, value=value, source=shapes_src, origin="inferred", note=note))
    out += _alpha_settings(s, alphas, label)
    if s.format != "kohya" and not s.alpha_tensors and s.ranks:
        # diffusers/peft files usually carry no alpha: loaders (diffusers, ComfyUI) then scale by 1 (alpha = rank)
        value, _ = _summary(s.ranks, "rank")
        out.append(Setting(name="network_alpha", value=float(value), source=f"{label}:alpha_tensors",
                           origin="inferred", note="no alpha: scale 1 (loaders take alpha = rank when the file has "
                                                   "no alpha tensors)"))
    out.append(Setting(name="lora_format", value=s.format, source=names_src, origin="inferred",
                       note=s.format_reason))
    missing = len(s.alpha_tensors) - len(alphas)
    if missing:
        ev.warnings.append(Note(message=f"{missing} alpha values could not be read (past the end of the file, or "
                                        "not a float scalar)", source=label))
    te = s.text_encoder_included
    out.append(Setting(name="text_encoder_included", value=te, source=names_src, origin="inferred",
                       note=f"{s.counts_text()}"))
    out.append(Setting(name="network_train_unet_only", value=not te, source=names_src, origin="inferred",
                       note=("text encoder modules present" if te else
                             "no text encoder modules: --network_train_unet_only (or cached text encoder outputs)")))
    if not s.unet_included:
        out.append(Setting(name="network_train_text_encoder_only", value=True, source=names_src, origin="inferred",
                           note="no U-Net modules"))
    if s.dtype in SAVE_PRECISION:
        prec = SAVE_PRECISION[s.dtype]
        unset = [Alternative(value=None, note="an unset --save_precision also saves the fp32 training weights")] \
            if prec == "float" else []
        out.append(Setting(name="save_precision", value=prec, source=f"{label}:tensor_dtypes", origin="inferred",
                           note=f"weights are {s.dtype}", alternatives=unset))
    elif s.dtype:
        ev.warnings.append(Note(message=f"weights are {s.dtype}, which is none of kohya's --save_precision choices",
                                source=label))
    if len(s.dtypes) > 1:
        ev.warnings.append(Note(message="mixed dtypes: " + ", ".join(f"{k} x{v}" for k, v in s.dtypes.items()),
                                source=label))
    if s.arch in ("sd15", "sd2"):
        out.append(Setting(name="v2", value=s.arch == "sd2", source=shapes_src, origin="inferred", note=s.arch_reason))
    for w in s.warnings:
        ev.warnings.append(Note(message=w, source=label))
    return out


def _summary(values: list, what: str) -> tuple[Any, str]:
    c = Counter(values)
    value, count = max(c.items(), key=lambda kv: (kv[1], kv[0]))
    if len(c) == 1:
        return value, f"every one of the {count} modules has {what} {format_value(value)}"
    return value, (f"{what}s vary over {len(values)} modules: min {format_value(min(values))}, "
                   f"max {format_value(max(values))}, "
                   f"most common {format_value(value)} ({count} modules); block-wise dims or a resized LoRA")


def _alpha_facts(s: LoraShapes, alphas: dict[str, float]) -> dict[str, Any]:
    if not alphas:
        return {}
    vals = list(alphas.values())
    return {"alpha": {"min": min(vals), "max": max(vals), "most_common": Counter(vals).most_common(1)[0][0]}}


_SHAPE_CHECKED = ("network_dim", "network_alpha", "conv_dim", "conv_alpha", "v2", "network_module")


def _reconcile(meta: list[Setting], shapes: list[Setting], ev: Evidence, label: str) -> list[Setting]:
    """Drop shape Settings the metadata already states; keep both (with a warning) when they disagree."""
    explicit = {s.name: s for s in meta}
    out = []
    for s in shapes:
        m = explicit.get(s.name)
        if m is None or s.name not in _SHAPE_CHECKED:
            out.append(s)
            continue
        if _agree(s.name, m.value, s.value):
            continue
        if s.name == "network_module" and str(m.value) in [str(a.value) for a in s.alternatives]:
            continue
        ev.warnings.append(Note(message=f"{m.source.rsplit(':', 1)[-1]} says {s.name} {m.value!r} but the tensors "
                                        f"say {s.value!r}", source=label))
        out.append(s)
    return out


def _agree(name: str, a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return abs(float(a) - float(b)) <= 1e-2 * max(1.0, abs(float(a)))  # alphas stored in 16 bits
    return a == b
