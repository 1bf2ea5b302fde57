"""The file-size model for kohya's DiT LoRAs (FLUX.1: ``networks.lora_flux``; SD3/SD3.5: ``networks.lora_sd3``).

Same file format as ``filesize`` describes (safetensors: 8-byte length, JSON header padded to 8, tensor bytes),
with the modules of ``lora_layout_dit.layouts``: every text-encoder set (DiT only, + CLIP, + CLIP + T5-XXL), FLUX's
``train_blocks`` and ``split_qkv``, SD3's variants; and the network_args that add or remove modules
(``option_layouts``): FLUX's modulation off (``img_mod_dim``/``txt_mod_dim``/``single_mod_dim`` = 0), FLUX's
``in_dims`` (the embedders, at their own ranks), Anima's ``train_llm_adapter``. The size alone cannot tell many of
these apart; ``fits`` returns every one within the windows, with a prior that puts the common trainings first (DiT
only, no options, rank up to 128).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from lora_audit.kohya import filesize as fs
from lora_audit.kohya.lora_layout import Module
from lora_audit.kohya.lora_layout_dit import DitModule, Layout, anima_modules, flux_modules, layouts

DIT_ARCHES = ("flux", "sd3", "lumina", "hunyuan_image", "anima")
_TE_ORDER = {"none": 0, "clip": 1, "clip+t5": 2}


# --- network_args that add or remove modules ----------------------------------------------------------------------
# FLUX in_dims = [img, time, vector, guidance, txt]: each embedder gets its own rank (lora_flux.create_network ->
# LoRANetwork: ``create_modules(..., filter=_img_in, default_dim=in_dim)``; 0 = not trained). kohya's docs give
# [4,2,2,2,4] (docs/flux_train_network.md, "Layer-specific Rank Configuration").
FLUX_IN_DIMS_EXAMPLE = (4, 2, 2, 2, 4)
_EMBEDDERS = ("img_in", "time_in", "vector_in", "guidance_in", "txt_in")


def flux_embedder_ranks(in_dims: tuple[int, ...]) -> dict[str, int]:
    """Module name -> rank of the embedder LoRAs ``in_dims`` adds (MLPEmbedder: in_layer and out_layer)."""
    ranks = {}
    for m in flux_modules(embedders=True):
        for key, rank in zip(_EMBEDDERS, in_dims, strict=True):
            if rank and (m.name == f"lora_unet_{key}" or m.name.startswith(f"lora_unet_{key}_")):
                ranks[m.name] = rank
    return ranks


def anima_llm_adapter_modules() -> tuple[DitModule, ...]:
    """``train_llm_adapter=True`` (lora_anima.LoRANetwork: ANIMA_ADAPTER_TARGET_REPLACE_MODULE =
    LLMAdapterTransformerBlock): the Linears of each of the LLM adapter's blocks (anima_models.MiniTrainDIT builds
    ``LLMAdapter(source_dim=1024, target_dim=1024, model_dim=1024, num_layers=6, self_attn=True)``, 16 heads):
    self_attn and cross_attn q/k/v/o_proj (LLMAdapterAttention, no bias) and mlp.0 / mlp.2 (mlp_ratio 4)."""
    model, source, layers, mlp = 1024, 1024, 6, 4 * 1024
    out: list[DitModule] = []
    for b in range(layers):
        p = f"lora_unet_llm_adapter_blocks_{b}"
        out += [DitModule(f"{p}_self_attn_{x}_proj", model, model) for x in "qkvo"]
        out += [DitModule(f"{p}_cross_attn_q_proj", model, model), DitModule(f"{p}_cross_attn_k_proj", source, model),
                DitModule(f"{p}_cross_attn_v_proj", source, model), DitModule(f"{p}_cross_attn_o_proj", model, model)]
        out += [DitModule(f"{p}_mlp_0", model, mlp), DitModule(f"{p}_mlp_2", mlp, model)]
    return tuple(out)


@dataclass(frozen=True)
class Fixed:
    """Modules a layout trains at ranks of their own (FLUX in_dims), whatever network_dim is."""

    modules: tuple[tuple[Module, int], ...] = ()

    def params(self) -> int:
        return sum(m.params_per_rank() * r for m, r in self.modules)


_NONE = Fixed()


@cache
def option_layouts(arch: str) -> tuple[tuple[Layout, Fixed], ...]:
    """Layouts made by network_args beyond ``lora_layout_dit.layouts`` (rarer: counted as options in the prior)."""
    out: list[tuple[Layout, Fixed]] = []
    if arch == "flux":
        no_mod = ("img_mod_dim=0", "txt_mod_dim=0", "single_mod_dim=0")
        for te in ("none", "clip"):
            out.append((Layout("flux", None, te, no_mod, flux_modules(text_encoders=te, modulation=False)), _NONE))
        ranks = flux_embedder_ranks(FLUX_IN_DIMS_EXAMPLE)
        emb = tuple((m, ranks[m.name]) for m in flux_modules(embedders=True) if m.name in ranks)
        in_dims = "in_dims=[" + ",".join(map(str, FLUX_IN_DIMS_EXAMPLE)) + "]"
        out.append((Layout("flux", None, "none", (in_dims,), flux_modules()), Fixed(emb)))
    elif arch == "anima":
        mods = anima_modules() + anima_llm_adapter_modules()
        out.append((Layout("anima", None, "none", ("train_llm_adapter=True",), mods), _NONE))
    return tuple(out)


def layout_tensors(layout: Layout, network_dim: int, save_precision: str,
                   fixed: Fixed = _NONE) -> list[tuple[str, str, list[int]]]:
    """(name, dtype, shape) of every tensor kohya saves for this layout (LoRANetwork.state_dict)."""
    dtype = fs._dtype(save_precision)
    out: list[tuple[str, str, list[int]]] = []
    for m, rank in [(m, network_dim) for m in layout.modules] + list(fixed.modules):
        down, up = m.shapes(rank)
        out += [(f"{m.name}.alpha", dtype, []), (f"{m.name}.lora_down.weight", dtype, down),
                (f"{m.name}.lora_up.weight", dtype, up)]
    return out


@cache
def _per_rank(layout: Layout, fixed: Fixed = _NONE) -> tuple[int, int]:
    """(weights per unit of network_dim, number of modules); the fixed-rank weights are ``fixed.params()``."""
    return sum(m.params_per_rank() for m in layout.modules), len(layout.modules) + len(fixed.modules)


@cache
def exact_size(layout: Layout, network_dim: int, save_precision: str, fixed: Fixed = _NONE) -> int:
    """Bytes of the file without metadata (header + data)."""
    lin, count = _per_rank(layout, fixed)
    head = fs.header_bytes(layout_tensors(layout, network_dim, save_precision, fixed))
    return len(head) + fs._dtype_size(save_precision) * (network_dim * lin + fixed.params() + count)


def expected_size(layout: Layout, network_dim: int, save_precision: str, metadata: bool = True,
                  fixed: Fixed = _NONE) -> int:
    return exact_size(layout, network_dim, save_precision, fixed) + (fs.TYPICAL_METADATA_BYTES if metadata else 0)


def fits(arch: str, windows: list[tuple[str, int, int, int]]) -> list[tuple[int, tuple, dict]]:
    """(distance, prior, Candidate fields) for every layout, rank and precision of ``arch`` within the windows."""
    lo_all, hi_all = min(w[2] for w in windows), max(w[3] for w in windows)
    out: list[tuple[int, tuple, dict]] = []
    for layout, fixed in [(lo, _NONE) for lo in layouts(arch)] + list(option_layouts(arch)):
        lin, count = _per_rank(layout, fixed)
        header_margin = 3 * count * 300 + fs.TYPICAL_METADATA_BYTES
        for prec, (_, item) in fs.PRECISIONS.items():
            for dim in fs.COMMON_RANKS:
                data = item * (dim * lin + fixed.params() + count)
                if data > hi_all or data + header_margin < lo_all:
                    continue
                exp = expected_size(layout, dim, prec, fixed=fixed)
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
