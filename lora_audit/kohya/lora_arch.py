"""The base architecture of a LoRA read back from its module names and widths (``lora_keys.analyse`` calls
``detect_arch``): kohya's DiT networks by their paths, SD1.x/SD2.x/SDXL by key names and text encoder widths, then
the modules checked against the layout kohya would write for that architecture and against the metadata."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from lora_audit.kohya import lora_layout_dit as dit
from lora_audit.kohya import trainers
from lora_audit.kohya.lora_layout import ARCHES, arch_for_cross_attention, modules, text_encoder_widths

if TYPE_CHECKING:
    from lora_audit.kohya.lora_keys import LoraShapes

ARCH_LABELS = trainers.LABELS
_SGM = re.compile(r"^lora_unet_(input_blocks|middle_block|output_blocks)_")
_TE_LAYER = re.compile(r"^lora_te_text_model_encoder_layers_(\d+)_")
KOHYA_MODULES = {"flux": "networks.lora_flux", "sd3": "networks.lora_sd3", "lumina": "networks.lora_lumina",
                  "hunyuan_image": "networks.lora_hunyuan_image", "anima": "networks.lora_anima"}



def _in_width(parts: dict[str, tuple[int, ...]]) -> int | None:
    for what in ("lora_down.weight", "hada_w1_b"):
        if what in parts and len(parts[what]) >= 2:
            return parts[what][1]
    return None


def _in_of(s: LoraShapes, suffixes: tuple[str, ...]) -> int | None:
    for module, parts in s.modules.items():
        if s.module_parts[module] == "unet" and s.canonical[module].endswith(suffixes):
            width = _in_width(parts)
            if width:
                return width
    return None


def _dit_arch(s: LoraShapes) -> tuple[str, str] | None:
    """FLUX.1 / HunyuanImage / SD3 / Lumina / Anima from module paths (kohya, BFL, diffusers and OneTrainer spellings)
    and the width the blocks read."""
    names = {c for m, c in s.canonical.items() if s.module_parts[m] == "unet"}
    te = {p for p in s.parts if p != "unet"}
    if any(c.startswith(("double_blocks_", "single_blocks_")) for c in names):
        width = _in_of(s, ("_img_attn_qkv", "_linear1", "_linear2", "_img_mod_lin", "_modulation_lin"))
        if width == 3584:
            return "hunyuan_image", "double_blocks/single_blocks 3584 wide: HunyuanImage 2.1"
        why = "double_blocks/single_blocks (FLUX.1's DoubleStreamBlock/SingleStreamBlock)"
        if width and width != dit.FLUX_DEV["hidden_size"] and not s.layout_options:
            s.warnings.append(f"FLUX-style blocks {width} wide, not FLUX.1's {dit.FLUX_DEV['hidden_size']} "
                              "(another model of the FLUX family?)")
        return "flux", why + (f", {width} wide" if width else "")
    if any(c.startswith("single_transformer_blocks_") for c in names):
        return "flux", "single_transformer_blocks (diffusers FluxTransformer2DModel)"
    if any(c.startswith("joint_blocks_") for c in names):
        width = _in_of(s, ("_attn_qkv", "_mlp_fc1"))
        attn2 = any("_attn2_" in c for c in names)
        s.variant = dit.sd3_variant_for_width(width, attn2=attn2) if width else None
        return "sd3", "joint_blocks context_block/x_block (SD3 MMDiT)" + (f", {width} wide: {s.variant}"
                                                                          if s.variant else "")
    if any(c.startswith("transformer_blocks_") and "_attn_add_q_proj" in c for c in names):
        width = _in_of(s, ("_attn_to_q", "_attn_to_k"))
        if width == dit.FLUX_DEV["hidden_size"]:
            return "flux", "transformer_blocks with add_q_proj, 3072 wide (diffusers FLUX.1, double blocks only)"
        variant = dit.sd3_variant_for_width(width, attn2=any("_attn2_" in c for c in names)) if width else None
        if variant:
            s.variant = variant
            return "sd3", (f"transformer_blocks with add_q_proj, {width} wide (diffusers SD3Transformer2DModel: "
                           f"{variant})")
    if any(re.match(r"(layers|noise_refiner|context_refiner)_\d+_(attention|feed_forward)", c) for c in names):
        return "lumina", "layers/noise_refiner with attention/feed_forward (Lumina 2 NextDiT)"
    if any(re.match(r"blocks_\d+_(self_attn|cross_attn|mlp)", c) for c in names) or any(
            c.startswith("llm_adapter") for c in names):
        return "anima", "blocks with self_attn/cross_attn (Anima)"
    if "te3" in te and not names:
        return "flux", "T5-XXL text encoder modules (lora_te3) only"
    return None


def detect_arch(s: LoraShapes, md: dict[str, str]) -> None:
    reason = None
    found = _dit_arch(s)
    if found:
        s.arch, s.arch_reason = found
        if s.arch == "flux":
            s.layout_options.update(_flux_options(s))
        if s.parts.get("te3"):
            s.layout_options["train_t5xxl"] = True
        _check_against_layout(s, s.arch)
        _check_against_metadata(s, s.arch, md)
        return
    for module, parts in s.modules.items():
        if s.canonical[module].endswith("attn2_to_k"):
            width = _in_width(parts)
            arch = arch_for_cross_attention(width) if width else None
            if arch:
                s.arch = arch
                reason = (f"the U-Net's cross-attention (attn2 to_k) reads {width}-wide text embeddings: "
                          f"{ARCH_LABELS[arch]}")
                break
    if s.arch is None:
        if any(_SGM.match(m) for m in s.modules) or {"te1", "te2"} & set(s.parts) or any(
                c.startswith(("input_blocks_", "middle_block_", "output_blocks_")) for c in s.canonical.values()):
            s.arch, reason = "sdxl", "SDXL key names (input_blocks/middle_block/output_blocks, lora_te1/lora_te2)"
        else:
            widths = {_in_width(p) for m, p in s.modules.items() if s.module_parts[m] in ("te", "te1") and
                      s.canonical[m].endswith("self_attn_q_proj")}
            layers = {int(x.group(1)) for m in s.modules
                      if (x := _TE_LAYER.match("lora_te_" + s.canonical[m])) and s.module_parts[m] in ("te", "te1")}
            for te_arch in ARCHES[:2]:  # sd15, sd2
                if text_encoder_widths(te_arch)["lora_te"] in widths:
                    s.arch, reason = te_arch, (f"text encoder layers are {text_encoder_widths(te_arch)['lora_te']} "
                                               f"wide: {ARCH_LABELS[te_arch]}")
            if s.arch is None and layers:
                s.arch = "sd2" if max(layers) >= 12 else "sd15"
                reason = f"text encoder has {max(layers) + 1}+ layers: {ARCH_LABELS[s.arch]}"
    if s.arch is None:
        s.warnings.append("the base architecture cannot be told from these keys")
        return
    s.arch_reason = reason
    _check_against_layout(s, s.arch)
    _check_against_metadata(s, s.arch, md)


def _flux_options(s: LoraShapes) -> dict[str, Any]:
    """What of lora_flux's layout options the kohya-named modules show (train_blocks, embedders, modulation)."""
    if s.format not in ("kohya", "ComfyUI/BFL"):
        return {}
    names = {c for m, c in s.canonical.items() if s.module_parts[m] == "unet"}
    double = any(c.startswith("double_blocks_") for c in names)
    single = any(c.startswith("single_blocks_") for c in names)
    out: dict[str, Any] = {}
    if double != single:
        out["train_blocks"] = "double" if double else "single"
    if names and not any(c.endswith(("_mod_lin", "_modulation_lin")) for c in names):
        out["modulation"] = False
    if any(c.endswith(("img_in", "txt_in")) or c.startswith(("time_in_", "vector_in_", "guidance_in_"))
           for c in names):
        out["in_dims"] = True
    return out


def _expected_modules(s: LoraShapes) -> set[str] | None:
    if s.arch == "flux":
        return {m.name for blocks in ("all",) for m in dit.flux_modules(text_encoders="clip+t5", train_blocks=blocks,
                                                                           embedders=True)}
    if s.arch == "sd3":
        variants = [s.variant] if s.variant else list(dit.SD3_VARIANTS)
        return {m.name for v in variants for m in dit.sd3_modules(v, text_encoders="clip+t5")}
    if s.arch == "lumina":
        return {m.name for b in dit.LUMINA_TRAIN_BLOCKS
                for m in dit.lumina_modules(text_encoders="clip", train_blocks=b)}
    if s.arch == "hunyuan_image":
        return {m.name for m in dit.hunyuan_image_modules()}
    if s.arch == "anima":
        return None  # embedders, modulation, final layer, LLM adapter and Qwen3 are all optional: no check
    if s.arch in ARCHES:
        return {m.name for m in modules(s.arch, conv=True)}
    return None


def _check_against_layout(s: LoraShapes, arch: str) -> None:
    """Modules kohya's network would not create for this architecture suggest another trainer."""
    if s.kind not in ("LoRA", "LoCon", "DyLoRA") or s.format != "kohya":
        return
    expected = _expected_modules(s)
    if expected is None:
        return
    extra = [m for m in s.modules if m not in expected]
    if extra:
        module = KOHYA_MODULES.get(arch, "networks.lora")
        s.warnings.append(f"{len(extra)} modules are not ones kohya's {module} creates for "
                          f"{ARCH_LABELS[arch]} (e.g. {extra[0]})")


def _check_against_metadata(s: LoraShapes, arch: str, md: dict[str, str]) -> None:
    says = trainers.from_metadata(md)
    if says and says[0] != arch:
        s.warnings.append(f"{says[1]} says {ARCH_LABELS[says[0]]} but the tensors say "
                          f"{ARCH_LABELS[arch]} ({s.arch_reason})")
