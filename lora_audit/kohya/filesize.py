"""How big a kohya LoRA file is, and which trainings a file size fits.

A kohya ``networks.lora`` file (``LoRANetwork.save_weights``) holds, per wrapped module, ``lora_down.weight``
``[dim, in]`` (``[dim, in, k, k]`` for convs), ``lora_up.weight`` ``[out, dim]`` (``[out, dim, 1, 1]``) and a scalar
``alpha``, all cast to the save dtype; safetensors writes an 8-byte header length, the JSON header (padded with
spaces to a multiple of 8), then the tensor bytes. Module names and widths come from ``lora_layout``.

The size alone is ambiguous by nature: dim 64 at fp16 and dim 32 at fp32 have the same number of bytes, and fp16
and bf16 always do. ``candidates`` lists every fit, ``settings_from_size`` says so in its notes.
"""

from __future__ import annotations

import json
import re
from functools import cache
from typing import Any

from pydantic import BaseModel

from lora_audit.kohya.lora_layout import ARCHES, Arch, modules
from lora_audit.kohya.trainers import LABELS as _LABELS
from lora_audit.model import Alternative, Setting

# kohya's --save_precision choices and their safetensors dtypes. "float" is kohya's name for fp32; an unset
# --save_precision saves the trained weights as they are, which for a LoRA is fp32 too.
PRECISIONS: dict[str, tuple[str, int]] = {"fp16": ("F16", 2), "bf16": ("BF16", 2), "float": ("F32", 4)}
# Ranks people use (powers of two and the usual steps between them).
COMMON_RANKS: tuple[int, ...] = (1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256)
# conv_dim (LoCon through networks.lora's network_args) values people use; None = no 3x3 conv modules.
COMMON_CONV_DIMS: tuple[int | None, ...] = (None, 1, 4, 8, 16, 32, 64)
# An ESTIMATE of the JSON kohya's train_network.py writes into __metadata__ (about 80 ss_* keys, the modelspec.*
# keys and the sshs_* hashes, plus ss_datasets / ss_tag_frequency / ss_bucket_info, which grow with the dataset).
# Real files range from ~3 KiB to a few hundred KiB (tag frequencies of large datasets).
TYPICAL_METADATA_BYTES = 12 * 1024
# How far a real file's metadata may be from the estimate, for sizes given to the byte.
METADATA_SLACK_BYTES = 256 * 1024
# Fits whose distances differ by less than this are equally good: the metadata estimate cannot tell them apart.
_SAME_FIT_BYTES = 64 * 1024
_HEADER_ALIGN = 8  # safetensors pads the header with spaces to this (safetensors >= 0.3)


class Candidate(BaseModel):
    """One training a file size fits (an element of ``lora-audit infer-dim --json``'s ``candidates``)."""

    arch: str
    network_dim: int
    save_precision: str  # kohya's names: fp16, bf16, float (fp32)
    text_encoder: bool
    conv_dim: int | None
    expected_bytes: int
    delta_bytes: int  # expected_bytes - the size as given (in the reading of its unit that fits best)
    variant: str | None = None  # SD3: sd3.5-large, sd3.5-medium, sd3-medium
    layout: str | None = None  # DiT LoRAs: text encoders and network_args that shape the file (filesize_dit)
    network_args: list[str] = []  # e.g. train_blocks=single, split_qkv=True, train_t5xxl=True


# --- the exact file layout ----------------------------------------------------------------------------------------

def tensors(arch: Arch, network_dim: int, save_precision: str, text_encoder: bool = True,
            conv_dim: int | None = None, unet: bool = True) -> list[tuple[str, str, list[int]]]:
    """(name, safetensors dtype, shape) of every tensor kohya saves, in no particular order."""
    dtype = _dtype(save_precision)
    out: list[tuple[str, str, list[int]]] = []
    for m in modules(arch, text_encoder=text_encoder, unet=unet, conv=conv_dim is not None):
        rank = conv_dim if m.is_conv3x3 else network_dim
        assert rank is not None  # modules(conv=False) yields no 3x3 conv module
        down, up = m.shapes(rank)
        out += [(f"{m.name}.alpha", dtype, []), (f"{m.name}.lora_down.weight", dtype, down),
                (f"{m.name}.lora_up.weight", dtype, up)]
    return out


def header_bytes(items: list[tuple[str, str, list[int]]], metadata: dict[str, str] | None = None) -> bytes:
    """The safetensors header (8-byte little-endian length + padded JSON) for tensors of one dtype.

    Written the way safetensors' ``serialize`` does: ``__metadata__`` first, tensors sorted by name (they sort by
    dtype first, which is one dtype here), ``data_offsets`` running over the sorted order, compact JSON with
    non-ASCII kept as UTF-8, then spaces up to a multiple of 8.
    """
    head: dict[str, Any] = {}
    if metadata:
        head["__metadata__"] = metadata
    offset = 0
    for name, dtype, shape in sorted(items, key=lambda t: t[0]):
        n = _itemsize(dtype)
        for d in shape:
            n *= d
        head[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + n]}
        offset += n
    text = json.dumps(head, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % _HEADER_ALIGN)
    return len(text).to_bytes(8, "little") + text


def expected_size(arch: Arch, network_dim: int, save_precision: str, text_encoder: bool = True,
                  conv_dim: int | None = None, metadata: bool | dict[str, str] = True) -> int:
    """Bytes of the kohya LoRA file with these settings.

    ``metadata``: True adds ``TYPICAL_METADATA_BYTES`` (an estimate of kohya's usual metadata); False means no
    ``__metadata__`` at all (exact); a dict is the exact metadata to write (exact).
    """
    if isinstance(metadata, dict):
        items = tensors(arch, network_dim, save_precision, text_encoder, conv_dim)
        return len(header_bytes(items, metadata)) + _data_bytes(arch, network_dim, save_precision, text_encoder,
                                                                 conv_dim)
    base = _exact_size(arch, network_dim, save_precision, text_encoder, conv_dim)
    return base + (TYPICAL_METADATA_BYTES if metadata else 0)


@cache
def _exact_size(arch: Arch, network_dim: int, save_precision: str, text_encoder: bool,
                conv_dim: int | None) -> int:
    items = tensors(arch, network_dim, save_precision, text_encoder, conv_dim)
    return len(header_bytes(items)) + _data_bytes(arch, network_dim, save_precision, text_encoder, conv_dim)


def _data_bytes(arch: Arch, network_dim: int, save_precision: str, text_encoder: bool,
                conv_dim: int | None) -> int:
    lin, conv, count = _params_per_rank(arch, text_encoder, conv_dim is not None)
    return _dtype_size(save_precision) * (network_dim * lin + (conv_dim or 0) * conv + count)


@cache
def _params_per_rank(arch: Arch, text_encoder: bool, conv: bool) -> tuple[int, int, int]:
    """(weights per unit of network_dim, per unit of conv_dim, number of modules = alpha scalars)."""
    mods = modules(arch, text_encoder=text_encoder, conv=conv)
    lin = sum(m.params_per_rank() for m in mods if not m.is_conv3x3)
    cv = sum(m.params_per_rank() for m in mods if m.is_conv3x3)
    return lin, cv, len(mods)


_PRECISION_ALIASES = {"fp32": "float", "float32": "float", "float16": "fp16", "bfloat16": "bf16"}


def _dtype(save_precision: str) -> str:
    p = _PRECISION_ALIASES.get(save_precision, save_precision)
    try:
        return PRECISIONS[p][0]
    except KeyError:
        raise ValueError(f"save_precision must be one of {', '.join(PRECISIONS)} (or fp32), "
                         f"not {save_precision!r}") from None


def _dtype_size(save_precision: str) -> int:
    return _itemsize(_dtype(save_precision))


def _itemsize(dtype: str) -> int:
    return {"F16": 2, "BF16": 2, "F32": 4, "F64": 8}[dtype]


# --- sizes as people write them -----------------------------------------------------------------------------------

_SIZE = re.compile(r"^\s*(\d+(?:[.,]\d+)?|\.\d+)\s*([kmgt]?i?b?|bytes?)\s*$", re.IGNORECASE)
_UNITS = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4}


MAX_SIZE_BYTES = 10 ** 13  # 10 TB: far above any LoRA (an SDXL rank-256 fp32 one is ~3 GB); keeps the arithmetic finite


def _shown(size: Any) -> str:
    if isinstance(size, int) and abs(size) > 10 ** 40:
        return f"an integer of {int(size.bit_length() * 0.30103) + 1} digits"
    r = repr(size)
    return r if len(r) <= 60 else r[:57] + "..."


def size_windows(size: str | int) -> list[tuple[str, int, int, int]]:
    """Readings of a size: (label, nominal bytes, lowest, highest) for each plausible unit.

    "72MB" is read as MB (10^6) and as MiB (2^20), each rounded to the digits shown: to the nearest (most file
    browsers) or up (``ls -lh``, ``du -h``), so 72MB covers 71..72.5 MB. A byte count is exact up to the metadata
    the file may carry beyond the estimate (``METADATA_SLACK_BYTES``).
    """
    if isinstance(size, bool) or not isinstance(size, (int, str)):
        raise ValueError(f"cannot read a file size from {_shown(size)}; write e.g. 72MB, 1.7GB or a byte count")
    if isinstance(size, int):
        if size < 0:
            raise ValueError(f"a file size cannot be negative ({_shown(size)})")
        if size > MAX_SIZE_BYTES:
            raise ValueError(f"{_shown(size)} (bytes) is larger than any LoRA file (limit {MAX_SIZE_BYTES:,} bytes)")
        return [(f"{size} bytes", size, size - METADATA_SLACK_BYTES, size + METADATA_SLACK_BYTES)]
    text = str(size).strip()
    if re.fullmatch(r"\d{1,3}(,\d{3})+", text):  # 75,497,472
        text = text.replace(",", "")
    if text.startswith("-") and _SIZE.match(text[1:]):
        raise ValueError(f"a file size cannot be negative ({_shown(size)})")
    m = _SIZE.match(text) if len(text) <= 40 else None  # no size has more digits; a 5000-digit one is not read
    if not m:
        raise ValueError(f"cannot read a file size from {_shown(size)}; write e.g. 72MB, 1.7GB, 36 MiB or a byte "
                         "count")
    num, unit = m.group(1).replace(",", "."), m.group(2).lower()
    if unit.startswith("byte") or unit in ("", "b"):
        if "." in num:
            raise ValueError(f"a byte count must be a whole number, not {size!r}")
        return size_windows(int(num))
    if float(num) * 1024 ** _UNITS[unit[0]] > MAX_SIZE_BYTES:
        raise ValueError(f"{_shown(size)} is larger than any LoRA file (limit {MAX_SIZE_BYTES:,} bytes)")
    power = _UNITS[unit[0]]
    binary_only = "i" in unit  # MiB, GiB: the writer said binary
    decimals = len(num.split(".")[1]) if "." in num else 0
    value, ulp = float(num), 10.0 ** -decimals
    out = []
    for base, suffix in ((1024, "iB"), (1000, "B")):
        if binary_only and base == 1000:
            continue
        mult = base ** power
        label = f"{num} {unit[0].upper()}{suffix}"
        out.append((label, round(value * mult), int((value - ulp) * mult), int((value + ulp / 2) * mult)))
    return out


# --- inference ------------------------------------------------------------------------------------------------------

def candidates(size: str | int, arch: str | None = None) -> list[Candidate]:
    """Every (arch, network_dim, save precision, text encoder, conv_dim) whose file fits ``size``, best first.

    Best = smallest distance to the size as given. Fits closer to each other than ``_SAME_FIT_BYTES`` (the
    metadata estimate cannot separate them) are ordered by how common the training is: no conv_dim, text encoder
    trained, rank up to 128 (192/256 are rare), fp16 before bf16 before float, smaller rank. Raises ValueError for a
    size it cannot read or an unknown arch.
    """
    from lora_audit.kohya import filesize_dit

    windows = size_windows(size)
    wanted = (*ARCHES, *filesize_dit.DIT_ARCHES) if arch is None else (canonical_arch(arch, dit=True),)
    arches = tuple(a for a in ARCHES if a in wanted)
    lo_all, hi_all = min(w[2] for w in windows), max(w[3] for w in windows)
    found: list[tuple[int, tuple, Candidate]] = []
    for a in filesize_dit.DIT_ARCHES:
        if a in wanted:
            found += [(d, prior, Candidate(**fields)) for d, prior, fields in filesize_dit.fits(a, windows)]
    for a in arches:
        for te in (True, False):
            for conv in COMMON_CONV_DIMS:
                lin, cv, count = _params_per_rank(a, te, conv is not None)
                header_margin = 3 * count * 256 + TYPICAL_METADATA_BYTES  # generous bound on header + metadata
                for prec, (_, item) in PRECISIONS.items():
                    for dim in COMMON_RANKS:
                        if conv is not None and conv > dim:
                            continue  # conv_dim above network_dim is not a setting people use
                        data = item * (dim * lin + (conv or 0) * cv + count)
                        if data > hi_all or data + header_margin < lo_all:
                            continue
                        exp = expected_size(a, dim, prec, te, conv)
                        fits = [exp - nominal for _, nominal, lo, hi in windows if lo <= exp <= hi]
                        if not fits:
                            continue
                        delta = min(fits, key=abs)
                        c = Candidate(arch=a, network_dim=dim, save_precision=prec, text_encoder=te, conv_dim=conv,
                                      expected_bytes=exp, delta_bytes=delta)
                        prior = (conv is not None, not te, dim > 128, list(PRECISIONS).index(prec), dim,
                                 ARCHES.index(a))
                        found.append((abs(delta), prior, c))
    found.sort(key=lambda t: t[0])
    # group fits that are equally close (within the metadata estimate's uncertainty), then order each group by prior
    groups: list[list[tuple[int, tuple, Candidate]]] = []
    for fit in found:
        if groups and fit[0] - groups[-1][0][0] < _SAME_FIT_BYTES:
            groups[-1].append(fit)
        else:
            groups.append([fit])
    return [c for g in groups for _, _, c in sorted(g, key=lambda t: t[1])]


def settings_from_size(size: str | int, arch: str | None, source: str) -> list[Setting]:
    """Inferred Settings from a file size alone (an artifact remembered only by its size).

    Plain LoRA fits (no conv_dim, kohya's default) are preferred when there are any; a value is stated plainly only
    where every such fit agrees, otherwise it is the best fit's value with the others as ``alternatives``.
    """
    cands = candidates(size, arch)
    if not cands:
        return []
    plain = [c for c in cands if c.conv_dim is None]
    pool = plain or cands
    best = pool[0]
    shown = str(size) if not isinstance(size, int) else f"{size} bytes"
    combos = _combos(pool, arch is None)
    if len(combos) > 1:
        summary = f"{shown}: {' or '.join(combos[:6])}" + (f" (+{len(combos) - 6} more)" if len(combos) > 6 else "")
        summary += "; the size alone cannot tell them apart"
    else:
        summary = f"{shown} fits {combos[0]} (expected {best.expected_bytes:,} bytes with typical metadata)"
    if plain and len(plain) < len(cands):
        summary += f"; {len(cands) - len(plain)} more fits with conv_dim (LoCon) are not counted"
    fields: list[tuple[str, Any]] = [
        ("network_dim", lambda c: c.network_dim),
        ("save_precision", lambda c: c.save_precision),
        ("text_encoder_included", lambda c: c.text_encoder),
        ("network_train_unet_only", lambda c: not c.text_encoder),
    ]
    if not plain:
        fields.append(("conv_dim", lambda c: c.conv_dim))
    out = []
    for name, get in fields:
        values = list(dict.fromkeys(get(c) for c in pool))
        alts = [Alternative(value=v, note=_why(name, v, pool, get, arch is None)) for v in values[1:]]
        note = summary
        if name == "save_precision" and "float" in values:
            note += "; float is also what an unset --save_precision writes"
        out.append(Setting(name=name, value=get(best), source=source, origin="inferred", note=note,
                           alternatives=alts))
    return out


def _combos(pool: list[Candidate], with_arch: bool) -> list[str]:
    """Distinct readings, fp16 and bf16 merged (their files have the same size)."""
    seen: dict[tuple, list[str]] = {}
    for c in pool:
        key = (c.arch, c.network_dim, c.text_encoder, c.conv_dim, c.save_precision == "float", c.layout)
        seen.setdefault(key, [])
        if c.save_precision not in seen[key]:
            seen[key].append(c.save_precision)
    out = []
    for (a, dim, te, conv, _, layout), precs in seen.items():
        s = f"dim {dim} @ {'/'.join(precs)}"
        if conv is not None:
            s += f" + conv_dim {conv}"
        if layout:
            s += f" [{layout}]"
        elif not te:
            s += " (U-Net only)"
        if with_arch:
            s += f" ({_LABELS.get(a, a)})"
        out.append(s)
    return out


def _why(name: str, value: Any, pool: list[Candidate], get, with_arch: bool) -> str:
    first = next(c for c in pool if get(c) == value)
    return f"fits as {_combos([first], with_arch)[0]} (expected {first.expected_bytes:,} bytes)"


def canonical_arch(arch: Any, dit: bool = False) -> Any:
    """"sd1.5", "SD_XL"... -> "sd15" / "sd2" / "sdxl"; ValueError for anything else (``arch = "sd99"``).
    With ``dit``, also "flux" / "flux1" and "sd3" / "sd3.5" (the DiT LoRAs of filesize_dit)."""
    if dit:
        key = str(arch).lower().replace("_", "").replace("-", "").replace(".", "")
        if key in ("flux", "flux1"):
            return "flux"
        if key in ("sd3", "sd35"):
            return "sd3"
        if key in ("lumina", "lumina2"):
            return "lumina"
        if key in ("hunyuanimage", "hunyuanimage21", "hunyuan"):
            return "hunyuan_image"
        if key == "anima":
            return "anima"
    return _arch(arch)


def _arch(arch: str) -> Arch:
    a = {"sd1": "sd15", "sd1.5": "sd15", "sd15": "sd15", "sd2": "sd2", "sd2.x": "sd2", "sdxl": "sdxl"}.get(
        str(arch).lower().replace("_", ""))
    if a is None:
        raise ValueError(f"unknown architecture {arch!r} (choose from {', '.join(ARCHES)})")
    return a  # type: ignore[return-value]
