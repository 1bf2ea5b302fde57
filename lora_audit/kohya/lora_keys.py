"""Reading a LoRA's tensor names and shapes back: network kind, ranks, parts, base architecture.

The inverse of ``lora_layout``: kohya names every tensor ``<module>.<what>`` with ``<module>`` like
``lora_unet_down_blocks_0_attentions_0_proj_in`` (no dots) and ``<what>`` one of

- ``lora_down.weight`` / ``lora_up.weight`` / ``alpha``: kohya ``networks.lora`` (LoRA; with 3x3 conv modules it is
  LoCon), also ``networks.dylora`` (DyLoRA saves the same keys: ``DyLoRAModule.state_dict``) and LyCORIS' LoCon;
- ``hada_w1_a`` ... ``hada_w2_b`` (``hada_t1``/``hada_t2`` with Tucker): LyCORIS LoHa;
- ``lokr_w1`` / ``lokr_w1_a`` ... ``lokr_w2_b`` (``lokr_t2``): LyCORIS LoKr.

kohya's DiT networks keep that scheme: ``networks.lora_flux`` names ``lora_unet_double_blocks_0_img_attn_qkv``,
``lora_unet_single_blocks_0_linear1``, CLIP-L ``lora_te1_*`` and T5-XXL ``lora_te3_*``; ``networks.lora_sd3``
``lora_unet_joint_blocks_0_x_block_attn_qkv`` with ``lora_te1``/``lora_te2``/``lora_te3``.

LoRAs of other trainers that people mix in are read too (``LoraShapes.format``):
- diffusers / peft (diffusers' own training scripts, ai-toolkit): dotted module paths under ``transformer.``,
  ``unet.``, ``text_encoder.`` with ``lora_A.weight`` / ``lora_B.weight`` (older diffusers: ``lora.down.weight``),
  usually without alpha, which loaders read as scale 1 (alpha = rank);
- OneTrainer: diffusers module paths flattened kohya-style (``lora_transformer_single_transformer_blocks_0_attn_to_q``)
  with ``lora_down``/``lora_up``/``alpha`` (and ``dora_scale`` for DoRA);
- ComfyUI / BFL: the original model's paths under ``diffusion_model.`` (``diffusion_model.double_blocks.0.img_attn.
  qkv.lora_A.weight``), as ComfyUI's converters and BFL-style trainers write them.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from lora_audit.kohya import trainers
from lora_audit.kohya.lora_arch import KOHYA_MODULES, detect_arch
from lora_audit.kohya.lora_layout import ARCHES, modules

ARCH_LABELS = trainers.LABELS
# kohya (lora_unet, lora_te, lora_te1..3) and OneTrainer (lora_transformer, lora_te1..) flat module names
_PREFIX = re.compile(r"^lora_(unet|te1|te2|te3|te|transformer)_")
# dotted module paths: prefix -> (part, format)
_DOTTED_PREFIXES = [
    ("model.diffusion_model.", "unet", "ComfyUI/BFL"), ("diffusion_model.", "unet", "ComfyUI/BFL"),
    ("base_model.model.", "unet", "diffusers/peft"), ("transformer.", "unet", "diffusers/peft"),
    ("unet.", "unet", "diffusers/peft"), ("text_encoder.", "te1", "diffusers/peft"),
    ("text_encoder_2.", "te2", "diffusers/peft"), ("text_encoder_3.", "te3", "diffusers/peft"),
]
# tensor suffix -> kohya's name for it
_DOTTED_WHATS = [(".lora_A.weight", "lora_down.weight"), (".lora_B.weight", "lora_up.weight"),
                 (".lora_down.weight", "lora_down.weight"), (".lora_up.weight", "lora_up.weight"),
                 (".lora.down.weight", "lora_down.weight"), (".lora.up.weight", "lora_up.weight"),
                 (".alpha", "alpha"), (".dora_scale", "dora_scale"), (".lora_magnitude_vector", "dora_scale"),
                 # XLabs FLUX LoRAs: double_blocks.0.processor.qkv_lora1.down.weight
                 (".down.weight", "lora_down.weight"), (".up.weight", "lora_up.weight")]


class _Tensor(Protocol):
    @property
    def dtype(self) -> str: ...

    @property
    def shape(self) -> tuple[int, ...]: ...


@dataclass
class LoraShapes:
    modules: dict[str, dict[str, tuple[int, ...]]] = field(default_factory=dict)  # module -> what -> shape
    kind: str | None = None
    kind_reason: str | None = None
    network_module: tuple[str, list[tuple[str, str]], str] | None = None  # (value, [(alternative, why)], why)
    linear_modules: list[str] = field(default_factory=list)  # Linear and 1x1 conv modules (network_dim)
    conv_modules: list[str] = field(default_factory=list)  # 3x3 conv modules (conv_dim)
    ranks: list[int] = field(default_factory=list)
    conv_ranks: list[int] = field(default_factory=list)
    alpha_tensors: list[str] = field(default_factory=list)
    parts: Counter = field(default_factory=Counter)  # unet / te / te1 / te2 -> modules
    dtypes: Counter = field(default_factory=Counter)
    arch: str | None = None
    arch_reason: str | None = None
    warnings: list[str] = field(default_factory=list)
    other_tensors: int = 0
    format: str = "kohya"  # kohya / diffusers/peft / OneTrainer / ComfyUI/BFL
    format_reason: str | None = None
    canonical: dict[str, str] = field(default_factory=dict)  # module -> its path without prefix, dots as _
    module_parts: dict[str, str] = field(default_factory=dict)  # module -> unet / te / te1 / te2 / te3
    variant: str | None = None  # SD3 variant (sd3.5-large ...)
    layout_options: dict[str, Any] = field(default_factory=dict)  # split_qkv, train_blocks, train_t5xxl

    @property
    def dtype(self) -> str | None:
        return self.dtypes.most_common(1)[0][0] if self.dtypes else None

    @property
    def text_encoder_included(self) -> bool:
        return any(p != "unet" for p in self.parts)

    @property
    def unet_included(self) -> bool:
        return "unet" in self.parts

    def counts_text(self) -> str:
        return ", ".join(f"{n} {p} modules" for p, n in sorted(self.parts.items())) or "no modules"

    def facts(self) -> dict[str, Any]:
        out: dict[str, Any] = {"network_kind": self.kind, "modules": dict(self.parts),
                               "modules_conv3x3": len(self.conv_modules), "dtypes": dict(self.dtypes),
                               "lora_format": self.format}
        if self.format_reason:
            out["lora_format_reason"] = self.format_reason
        if self.arch:
            out["arch"], out["arch_reason"] = self.arch, self.arch_reason
        if self.variant:
            out["arch_variant"] = self.variant
        if self.layout_options:
            out["layout"] = dict(self.layout_options)
        for key, ranks in (("rank", self.ranks), ("conv_rank", self.conv_ranks)):
            if ranks:
                out[key] = {"min": min(ranks), "max": max(ranks),
                            "most_common": Counter(ranks).most_common(1)[0][0]}
        if self.other_tensors:
            out["other_tensors"] = self.other_tensors
        return out


def _split(name: str) -> tuple[str, str, str, str] | None:
    """(module, what, part, format) of one tensor name, or None when it is not a LoRA tensor."""
    module, dot, what = name.partition(".")
    m = _PREFIX.match(module)
    if dot and m and "." not in module:
        fmt = "OneTrainer" if m.group(1) == "transformer" else "kohya"
        part = "unet" if m.group(1) == "transformer" else m.group(1)
        return module, what, part, fmt
    for suffix, what in _DOTTED_WHATS:
        if name.endswith(suffix):
            module = name[: -len(suffix)]
            for prefix, part, fmt in _DOTTED_PREFIXES:
                if module.startswith(prefix):
                    return module, what, part, fmt
            if m is None and "." in module:
                if ".processor." in module:
                    return module, what, "unet", "XLabs"
                return module, what, "unet", "diffusers/peft"  # peft without a component prefix
    return None


def _canonical(module: str) -> str:
    """The module's path without its prefix, dots as underscores (kohya's spelling): for arch detection."""
    m = _PREFIX.match(module)
    if m and "." not in module:
        return module[m.end():]
    for prefix, _, _ in _DOTTED_PREFIXES:
        if module.startswith(prefix):
            module = module[len(prefix):]
            break
    return module.replace(".", "_")


def analyse(tensors: Mapping[str, _Tensor], metadata: dict[str, str] | None = None) -> LoraShapes:
    s = LoraShapes()
    formats: Counter = Counter()
    for name, t in tensors.items():
        split = _split(name)
        if split is None:
            s.other_tensors += 1
            continue
        module, what, part, fmt = split
        s.modules.setdefault(module, {})[what] = tuple(t.shape)
        s.module_parts[module] = part
        formats[fmt] += 1
        if what == "alpha":
            if not t.shape or t.shape == (1,):
                s.alpha_tensors.append(name)
        elif what != "dora_scale":
            s.dtypes[t.dtype] += 1
    for module in s.modules:
        s.parts[s.module_parts[module]] += 1
        s.canonical[module] = _canonical(module)
    if not s.modules:
        return s
    s.format = formats.most_common(1)[0][0]
    s.format_reason = {
        "kohya": "kohya module names (lora_unet_* / lora_te*_*) with lora_down/lora_up/alpha",
        "OneTrainer": "OneTrainer names: diffusers module paths flattened under lora_transformer_*",
        "ComfyUI/BFL": "original model paths under diffusion_model. (ComfyUI / BFL layout)",
        "diffusers/peft": "diffusers/peft module paths (transformer. / unet. / text_encoder.) with lora_A/lora_B",
        "XLabs": "XLabs FLUX LoRA: double_blocks.N.processor.{qkv,proj}_lora1/2 with down/up",
    }[s.format]
    if len(formats) > 1:
        s.warnings.append("mixed key formats: " + ", ".join(f"{f} x{n}" for f, n in formats.most_common()))
    if s.format == "diffusers/peft" and _is_ai_toolkit(metadata or {}):
        s.format_reason += "; metadata names ai-toolkit"
    _kind(s, metadata or {})
    detect_arch(s, metadata or {})
    _ranks(s)
    _network_module(s)
    if s.other_tensors:
        s.warnings.append(f"{s.other_tensors} tensors are not LoRA modules")
    return s


def _is_ai_toolkit(md: dict[str, str]) -> bool:
    return any("ai-toolkit" in str(v) or "ai_toolkit" in str(v) for v in md.values())


_CONV3X3 = frozenset(m.name for a in ARCHES for m in modules(a, conv=True) if m.is_conv3x3)


def _kind(s: LoraShapes, md: dict[str, str]) -> None:
    whats = Counter(w for parts in s.modules.values() for w in parts)
    module = md.get("ss_network_module", "")
    if any(w.startswith("hada_") for w in whats):
        s.kind, s.kind_reason = "LoHa", "hada_w1_a / hada_w2_b tensors (LyCORIS LoHa)"
        s.network_module = ("lycoris.kohya", [], "LoHa is LyCORIS' (algo=loha)")
    elif any(w.startswith("lokr_") for w in whats):
        s.kind, s.kind_reason = "LoKr", "lokr_w1 / lokr_w2 tensors (LyCORIS LoKr)"
        s.network_module = ("lycoris.kohya", [], "LoKr is LyCORIS' (algo=lokr)")
    elif "lora_down.weight" in whats and "dora_scale" in whats:
        s.kind, s.kind_reason = "DoRA", "lora_down/lora_up with dora_scale (weight-decomposed LoRA)"
    elif "lora_down.weight" in whats:
        conv = any(len(p.get("lora_down.weight", ())) == 4 and p["lora_down.weight"][2] > 1
                   for p in s.modules.values())
        if s.format != "kohya":
            s.kind = "LoCon" if conv else "LoRA"
            pair = "lora_A/lora_B" if s.format != "OneTrainer" else "lora_down/lora_up"
            s.kind_reason = f"{pair} tensors ({s.format})"
            return
        if "dylora" in module:
            s.kind, s.kind_reason = "DyLoRA", f"lora_down/lora_up tensors and ss_network_module {module}"
        elif conv:
            s.kind, s.kind_reason = "LoCon", "lora_down/lora_up tensors, some on 3x3 convs"
        else:
            s.kind, s.kind_reason = "LoRA", "lora_down/lora_up tensors, on Linear and 1x1 conv layers only"
        lycoris = [("lycoris.kohya", "LyCORIS LoCon saves the same keys")]
        if s.kind == "DyLoRA":
            s.network_module = ("networks.dylora", [], "ss_network_module")
        elif s.kind == "LoCon":
            s.network_module = ("networks.lora", lycoris,
                                "3x3 conv modules: networks.lora with conv_dim in --network_args (or LyCORIS LoCon)")
        else:
            s.network_module = ("networks.lora", lycoris, "lora_down/lora_up/alpha keys of kohya's networks.lora")
    else:
        s.kind, s.kind_reason = "unknown", "tensor kinds: " + ", ".join(sorted(whats))
        s.warnings.append(f"unrecognised LoRA tensors ({', '.join(sorted(whats)[:5])})")


def _rank(parts: dict[str, tuple[int, ...]]) -> int | None:
    for what, axis in (("lora_down.weight", 0), ("hada_w1_b", 0), ("lokr_w1_b", 0), ("lokr_w2_b", 0)):
        if what in parts and parts[what]:
            return parts[what][axis]
    return None


def _is_conv3x3(module: str, parts: dict[str, tuple[int, ...]]) -> bool:
    down = parts.get("lora_down.weight")
    if down is not None:
        return len(down) == 4 and down[2] > 1
    return module in _CONV3X3  # LoHa/LoKr flatten conv kernels; the layer's name says what it is


def _ranks(s: LoraShapes) -> None:
    merged = _split_qkv(s)
    for module, parts in s.modules.items():
        conv = _is_conv3x3(module, parts)
        (s.conv_modules if conv else s.linear_modules).append(module)
        r = _rank(parts)
        if r is not None:
            (s.conv_ranks if conv else s.ranks).append(r // merged.get(module, 1))


def _split_qkv(s: LoraShapes) -> dict[str, int]:
    """FLUX with split_qkv: lora_flux.LoRANetwork.state_dict merges the split q/k/v (and mlp) LoRAs into one module
    whose rank is 3x (double-block qkv) or 4x (single-block linear1) the others'. Returns module -> factor."""
    if s.arch != "flux" or s.format != "kohya":
        return {}
    factors = {m: 3 for m, c in s.canonical.items() if c.startswith("double_blocks_") and c.endswith("_attn_qkv")}
    factors.update({m: 4 for m, c in s.canonical.items() if c.startswith("single_blocks_") and c.endswith("_linear1")})
    others = Counter(r for m, p in s.modules.items() if m not in factors and s.module_parts[m] == "unet"
                     and (r := _rank(p)) is not None)
    if not factors or not others:
        return {}
    base = others.most_common(1)[0][0]
    if all(_rank(s.modules[m]) == base * f for m, f in factors.items()):
        s.layout_options["split_qkv"] = True
        return factors
    return {}


def _network_module(s: LoraShapes) -> None:
    """kohya's network module for a kohya-format LoRA of this architecture; none for other trainers' files."""
    if s.format != "kohya":
        s.network_module = None
        return
    if s.network_module and s.network_module[0] == "networks.lora" and s.arch in KOHYA_MODULES:
        s.network_module = (KOHYA_MODULES[s.arch], [], f"{ARCH_LABELS[s.arch]} key names are "
                                                        f"{KOHYA_MODULES[s.arch]}'s")
