"""Reading a LoRA's tensor names and shapes back: network kind, ranks, parts, base architecture.

The inverse of ``lora_layout``: kohya names every tensor ``<module>.<what>`` with ``<module>`` like
``lora_unet_down_blocks_0_attentions_0_proj_in`` (no dots) and ``<what>`` one of

- ``lora_down.weight`` / ``lora_up.weight`` / ``alpha``: kohya ``networks.lora`` (LoRA; with 3x3 conv modules it is
  LoCon), also ``networks.dylora`` (DyLoRA saves the same keys: ``DyLoRAModule.state_dict``) and LyCORIS' LoCon;
- ``hada_w1_a`` ... ``hada_w2_b`` (``hada_t1``/``hada_t2`` with Tucker): LyCORIS LoHa;
- ``lokr_w1`` / ``lokr_w1_a`` ... ``lokr_w2_b`` (``lokr_t2``): LyCORIS LoKr.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Protocol

from lora_audit.kohya.lora_layout import ARCH_LABELS, ARCHES, arch_for_cross_attention, modules, text_encoder_widths

_PREFIX = re.compile(r"^lora_(unet|te1|te2|te)_")
_SGM = re.compile(r"^lora_unet_(input_blocks|middle_block|output_blocks)_")
_TE_LAYER = re.compile(r"^lora_te_text_model_encoder_layers_(\d+)_")


class _Tensor(Protocol):
    dtype: str
    shape: tuple[int, ...]


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
                               "modules_conv3x3": len(self.conv_modules), "dtypes": dict(self.dtypes)}
        if self.arch:
            out["arch"], out["arch_reason"] = self.arch, self.arch_reason
        for key, ranks in (("rank", self.ranks), ("conv_rank", self.conv_ranks)):
            if ranks:
                out[key] = {"min": min(ranks), "max": max(ranks),
                            "most_common": Counter(ranks).most_common(1)[0][0]}
        if self.other_tensors:
            out["other_tensors"] = self.other_tensors
        return out


def analyse(tensors: dict[str, _Tensor], metadata: dict[str, str] | None = None) -> LoraShapes:
    s = LoraShapes()
    for name, t in tensors.items():
        module, dot, what = name.partition(".")
        m = _PREFIX.match(module)
        if not dot or not m:
            s.other_tensors += 1
            continue
        s.modules.setdefault(module, {})[what] = tuple(t.shape)
        if what != "alpha":
            s.dtypes[t.dtype] += 1
        elif not t.shape or t.shape == (1,):
            s.alpha_tensors.append(name)
    for module in s.modules:
        s.parts[_PREFIX.match(module).group(1)] += 1
    if not s.modules:
        return s
    _kind(s, metadata or {})
    _ranks(s)
    _arch(s, metadata or {})
    if s.other_tensors:
        s.warnings.append(f"{s.other_tensors} tensors are not kohya LoRA modules (lora_unet_* / lora_te*_*)")
    return s


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
    elif "lora_down.weight" in whats:
        conv = any(len(p.get("lora_down.weight", ())) == 4 and p["lora_down.weight"][2] > 1
                   for p in s.modules.values())
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


def _in_width(parts: dict[str, tuple[int, ...]]) -> int | None:
    for what in ("lora_down.weight", "hada_w1_b"):
        if what in parts and len(parts[what]) >= 2:
            return parts[what][1]
    return None


def _is_conv3x3(module: str, parts: dict[str, tuple[int, ...]]) -> bool:
    down = parts.get("lora_down.weight")
    if down is not None:
        return len(down) == 4 and down[2] > 1
    return module in _CONV3X3  # LoHa/LoKr flatten conv kernels; the layer's name says what it is


def _ranks(s: LoraShapes) -> None:
    for module, parts in s.modules.items():
        conv = _is_conv3x3(module, parts)
        (s.conv_modules if conv else s.linear_modules).append(module)
        r = _rank(parts)
        if r is not None:
            (s.conv_ranks if conv else s.ranks).append(r)


def _arch(s: LoraShapes, md: dict[str, str]) -> None:
    reason = None
    for module, parts in s.modules.items():
        if module.endswith("attn2_to_k"):
            width = _in_width(parts)
            arch = arch_for_cross_attention(width) if width else None
            if arch:
                s.arch = arch
                reason = (f"the U-Net's cross-attention (attn2 to_k) reads {width}-wide text embeddings: "
                          f"{ARCH_LABELS[arch]}")
                break
    if s.arch is None:
        if any(_SGM.match(m) for m in s.modules) or {"te1", "te2"} & set(s.parts):
            s.arch, reason = "sdxl", "SDXL key names (input_blocks/middle_block/output_blocks, lora_te1/lora_te2)"
        else:
            widths = {_in_width(p) for m, p in s.modules.items() if m.startswith("lora_te_") and
                      m.endswith("self_attn_q_proj")}
            layers = {int(x.group(1)) for m in s.modules if (x := _TE_LAYER.match(m))}
            for arch in ("sd15", "sd2"):
                if text_encoder_widths(arch)["lora_te"] in widths:
                    s.arch, reason = arch, (f"text encoder layers are {text_encoder_widths(arch)['lora_te']} wide: "
                                            f"{ARCH_LABELS[arch]}")
            if s.arch is None and layers:
                s.arch = "sd2" if max(layers) >= 12 else "sd15"
                reason = f"text encoder has {max(layers) + 1}+ layers: {ARCH_LABELS[s.arch]}"
    if s.arch is None:
        s.warnings.append("the base architecture cannot be told from these keys")
        return
    s.arch_reason = reason
    _check_against_layout(s)
    _check_against_metadata(s, md)


def _check_against_layout(s: LoraShapes) -> None:
    """Modules kohya's networks.lora would not create for this architecture suggest another trainer."""
    if s.kind not in ("LoRA", "LoCon", "DyLoRA"):
        return
    expected = {m.name for m in modules(s.arch, conv=True)}  # type: ignore[arg-type]
    extra = [m for m in s.modules if m not in expected]
    if extra:
        s.warnings.append(f"{len(extra)} modules are not ones kohya's networks.lora creates for "
                          f"{ARCH_LABELS[s.arch]} (e.g. {extra[0]})")


def _check_against_metadata(s: LoraShapes, md: dict[str, str]) -> None:
    version = md.get("ss_base_model_version", "")
    says = "sdxl" if version.startswith("sdxl") else "sd2" if version.startswith("sd_v2") else \
        "sd15" if version.startswith("sd_v1") else None
    if says and says != s.arch:
        s.warnings.append(f"ss_base_model_version {version!r} says {ARCH_LABELS[says]} but the tensors say "
                          f"{ARCH_LABELS[s.arch]} ({s.arch_reason})")  # type: ignore[index]
