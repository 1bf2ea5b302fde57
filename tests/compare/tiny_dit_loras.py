"""LoRA files for the tiny FLUX / SD3 models (lora_audit.train.tiny_dit), in kohya's and in diffusers' layouts.

kohya names come from the project's kohya layout (``lora_layout_dit.flux_modules`` / ``sd3_modules``, derived from
sd-scripts' ``networks/lora_flux.py`` and ``lora_sd3.py`` for the real models), kept for the blocks the tiny model
has and with widths scaled from the real hidden size to the tiny one (every DiT width is a multiple of it). So the
files are what kohya would write for a model of this size, named independently of the converter under test.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

from lora_audit.kohya.lora_layout_dit import CLIP_G, CLIP_L, FLUX_DEV, flux_modules, sd3_modules

TINY_H = 32  # hidden width of both tiny transformers (2 heads x 16)
_TINY_CLIP = {CLIP_L["hidden_size"]: 32, CLIP_L["intermediate_size"]: 64, CLIP_G["hidden_size"]: 48,
              CLIP_G["intermediate_size"]: 96}


def _tiny_width(width: int, real_h: int, clip: bool = False) -> int:
    if clip:  # (CLIP-L's 3072 is also FLUX's hidden width: the two are told apart by the module, not the number)
        return _TINY_CLIP[width]
    assert width % real_h == 0, width
    return width // real_h * TINY_H


def flux_names(text_encoder: bool = False, t5: bool = False) -> list[tuple[str, int, int]]:
    """(kohya name, in, out) of a kohya FLUX LoRA for the tiny FLUX (1 double block, 1 single block, CLIP-L 2
    layers)."""
    te = "clip+t5" if t5 else "clip" if text_encoder else "none"
    out = []
    for m in flux_modules(text_encoders=te):
        n = m.name
        if n.startswith("lora_unet_double_blocks_") and not n.startswith("lora_unet_double_blocks_0_"):
            continue
        if n.startswith("lora_unet_single_blocks_") and not n.startswith("lora_unet_single_blocks_0_"):
            continue
        if n.startswith("lora_te1_text_model_encoder_layers_") and int(n.split("_")[6]) >= 2:
            continue
        if n.startswith("lora_te3_"):
            if "block_0_" not in n:
                continue
            out.append((n, 32, 32))  # T5 is never loaded (diffusers has no LoRA loader for it): widths moot
            continue
        clip = n.startswith("lora_te1")
        real_h = FLUX_DEV["hidden_size"]
        out.append((n, _tiny_width(m.in_features, real_h, clip), _tiny_width(m.out_features, real_h, clip)))
    return out


def sd3_names(text_encoder: bool = False) -> list[tuple[str, int, int]]:
    """The tiny SD3 has 2 joint blocks, the first with SD3.5-medium's attn2: kohya's block 0 of sd3.5-medium and its
    last (pre-only) block, renumbered 1."""
    real_h = 64 * 24
    last = "lora_unet_joint_blocks_23_"
    out = []
    for m in sd3_modules("sd3.5-medium", text_encoders="clip" if text_encoder else "none"):
        n = m.name
        if n.startswith("lora_te"):
            if int(n.split("_")[6]) >= 2:
                continue
            h = CLIP_L["hidden_size"] if n.startswith("lora_te1") else CLIP_G["hidden_size"]
            out.append((n, _tiny_width(m.in_features, h, True), _tiny_width(m.out_features, h, True)))
            continue
        if n.startswith(last):
            n = "lora_unet_joint_blocks_1_" + n[len(last):]
        elif not n.startswith("lora_unet_joint_blocks_0_"):
            continue
        out.append((n, _tiny_width(m.in_features, real_h), _tiny_width(m.out_features, real_h)))
    return out


def write_kohya(path: Path, names: list[tuple[str, int, int]], rank: int = 4, alpha: float = 2.0,
                scale: float = 0.3, seed: int = 0, zero_up: bool = False, metadata: dict | None = None) -> Path:
    """kohya's tensors for each module: lora_down [rank, in], lora_up [out, rank] (zero: kohya's initial LoRA),
    alpha."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for name, cin, cout in names:
        sd[f"{name}.lora_down.weight"] = torch.randn(rank, cin, generator=g) * scale
        up = torch.randn(cout, rank, generator=g) * scale
        sd[f"{name}.lora_up.weight"] = torch.zeros(cout, rank) if zero_up else up
        sd[f"{name}.alpha"] = torch.tensor(alpha)
    save_file({k: v.to(torch.float16).contiguous() for k, v in sd.items()}, path, metadata=metadata)
    return path


def write_diffusers_flux(path: Path, rank: int = 4, scale: float = 0.3, seed: int = 0) -> Path:
    """A diffusers/PEFT FLUX LoRA (ai-toolkit's and diffusers' trainers): attention and MLP of each block."""
    g = torch.Generator().manual_seed(seed)
    mods = [(f"transformer_blocks.0.attn.{m}", TINY_H, TINY_H) for m in
            ("to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out")]
    mods += [("transformer_blocks.0.ff.net.0.proj", TINY_H, 4 * TINY_H), ("transformer_blocks.0.ff.net.2", 4 * TINY_H,
                                                                         TINY_H)]
    mods += [(f"single_transformer_blocks.0.attn.{m}", TINY_H, TINY_H) for m in ("to_q", "to_k", "to_v")]
    mods += [("single_transformer_blocks.0.proj_mlp", TINY_H, 4 * TINY_H)]
    sd = {}
    for name, cin, cout in mods:
        sd[f"transformer.{name}.lora_A.weight"] = torch.randn(rank, cin, generator=g) * scale
        sd[f"transformer.{name}.lora_B.weight"] = torch.randn(cout, rank, generator=g) * scale
    save_file(sd, path)
    return path
