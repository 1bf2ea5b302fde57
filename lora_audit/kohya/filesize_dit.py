"""The file-size model for kohya's DiT LoRAs (FLUX.1: ``networks.lora_flux``; SD3/SD3.5: ``networks.lora_sd3``).

Same file format as ``filesize`` describes (safetensors: 8-byte length, JSON header padded to 8, tensor bytes),
with the modules of ``lora_layout_dit.layouts``: every text-encoder set (DiT only, + CLIP, + CLIP + T5-XXL), FLUX's
``train_blocks`` and ``split_qkv``, SD3's variants. The size alone cannot tell many of these apart; ``fits`` returns
every one within the windows, with a prior that puts the common trainings first (DiT only, no options, rank up to
128).
"""

from __future__ import annotations

from functools import cache

from lora_audit.kohya import filesize as fs
from lora_audit.kohya.lora_layout_dit import Layout, layouts

DIT_ARCHES = ("flux", "sd3", "lumina", "hunyuan_image", "anima")
_TE_ORDER = {"none": 0, "clip": 1, "clip+t5": 2}


def layout_tensors(layout: Layout, network_dim: int, save_precision: str) -> list[tuple[str, str, list[int]]]:
    """(name, dtype, shape) of every tensor kohya saves for this layout (LoRANetwork.state_dict)."""
    dtype = fs._dtype(save_precision)
    out: list[tuple[str, str, list[int]]] = []
    for m in layout.modules:
        down, up = m.shapes(network_dim)
        out += [(f"{m.name}.alpha", dtype, []), (f"{m.name}.lora_down.weight", dtype, down),
                (f"{m.name}.lora_up.weight", dtype, up)]
    return out


@cache
def _per_rank(layout: Layout) -> tuple[int, int]:
    return sum(m.params_per_rank() for m in layout.modules), len(layout.modules)


@cache
def exact_size(layout: Layout, network_dim: int, save_precision: str) -> int:
    """Bytes of the file without metadata (header + data)."""
    lin, count = _per_rank(layout)
    head = fs.header_bytes(layout_tensors(layout, network_dim, save_precision))
    return len(head) + fs._dtype_size(save_precision) * (network_dim * lin + count)


def expected_size(layout: Layout, network_dim: int, save_precision: str, metadata: bool = True) -> int:
    return exact_size(layout, network_dim, save_precision) + (fs.TYPICAL_METADATA_BYTES if metadata else 0)


def fits(arch: str, windows: list[tuple[str, int, int, int]]) -> list[tuple[int, tuple, dict]]:
    """(distance, prior, Candidate fields) for every layout, rank and precision of ``arch`` within the windows."""
    lo_all, hi_all = min(w[2] for w in windows), max(w[3] for w in windows)
    out: list[tuple[int, tuple, dict]] = []
    for layout in layouts(arch):
        lin, count = _per_rank(layout)
        header_margin = 3 * count * 300 + fs.TYPICAL_METADATA_BYTES
        for prec, (_, item) in fs.PRECISIONS.items():
            for dim in fs.COMMON_RANKS:
                data = item * (dim * lin + count)
                if data > hi_all or data + header_margin < lo_all:
                    continue
                exp = expected_size(layout, dim, prec)
                deltas = [exp - nominal for _, nominal, lo, hi in windows if lo <= exp <= hi]
                if not deltas:
                    continue
                delta = min(deltas, key=abs)
                prior = (_TE_ORDER[layout.text_encoders], len(layout.options), dim > 128,
                         list(fs.PRECISIONS).index(prec), dim, 10 + DIT_ARCHES.index(arch))
                out.append((abs(delta), prior, dict(
                    arch=arch, network_dim=dim, save_precision=prec, text_encoder=layout.text_encoder,
                    conv_dim=None, expected_bytes=exp, delta_bytes=delta, variant=layout.variant,
                    layout=layout.describe(), network_args=list(layout.options))))
    return out
