"""Header-only LoRA files of the DiT architectures and of other trainers, with real key names and real sizes.

The header is written exactly as safetensors does (tensors sorted by name, data_offsets tiling the data section);
the data section is a hole (``truncate``) except the alpha scalars, so a 150 MB FLUX.1 LoRA costs a few hundred KB
of disk. Key names: kohya's ``networks.lora_flux`` / ``lora_sd3`` (``lora_audit.kohya.lora_layout_dit``), diffusers'
FluxTransformer2DModel / SD3Transformer2DModel paths (diffusers/peft, ai-toolkit), OneTrainer's flattened diffusers
paths, and ComfyUI/BFL's ``diffusion_model.`` paths.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

from lora_audit.kohya.lora_layout_dit import FLUX_DEV, flux_modules, sd3_modules

_ITEM = {"F16": 2, "BF16": 2, "F32": 4}


def write_lora(path: Path, tensors: dict[str, tuple[str, list[int]]], metadata: dict[str, str] | None = None,
               alphas: dict[str, float] | None = None) -> Path:
    """tensors: name -> (dtype, shape); alphas: name of a scalar tensor -> value (written for real)."""
    head: dict = {}
    if metadata:
        head["__metadata__"] = metadata
    offset = 0
    for name in sorted(tensors):
        dtype, shape = tensors[name]
        n = _ITEM[dtype]
        for d in shape:
            n *= d
        head[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + n]}
        offset += n
    text = json.dumps(head, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    start = 8 + len(text)
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little") + text)
        f.truncate(start + offset)
        for name, value in (alphas or {}).items():
            dtype = tensors[name][0]
            f.seek(start + head[name]["data_offsets"][0])
            if dtype == "F32":
                f.write(struct.pack("<f", value))
            elif dtype == "F16":
                f.write(struct.pack("<e", value))
            else:
                f.write(struct.pack("<f", value)[2:])
    return path


def kohya(modules, rank: int, dtype: str, alpha: float) -> tuple[dict, dict]:
    tensors, alphas = {}, {}
    for m in modules:
        down, up = m.shapes(rank)
        tensors[f"{m.name}.lora_down.weight"] = (dtype, down)
        tensors[f"{m.name}.lora_up.weight"] = (dtype, up)
        tensors[f"{m.name}.alpha"] = (dtype, [])
        alphas[f"{m.name}.alpha"] = alpha
    return tensors, alphas


def kohya_flux(path: Path, rank: int = 16, alpha: float = 8.0, dtype: str = "BF16", metadata: dict | None = None,
               **layout) -> Path:
    tensors, alphas = kohya(flux_modules(**layout), rank, dtype, alpha)
    return write_lora(path, tensors, metadata, alphas)


def kohya_sd3(path: Path, variant: str = "sd3.5-large", rank: int = 16, alpha: float = 16.0, dtype: str = "F16",
              metadata: dict | None = None, text_encoders: str = "none") -> Path:
    tensors, alphas = kohya(sd3_modules(variant, text_encoders=text_encoders), rank, dtype, alpha)
    return write_lora(path, tensors, metadata, alphas)


def diffusers_flux_modules(double: int = 19, single: int = 38) -> list[tuple[str, int, int]]:
    """(path, in, out) of the Linear layers ai-toolkit / diffusers train in FluxTransformer2DModel."""
    h, mlp = FLUX_DEV["hidden_size"], int(FLUX_DEV["hidden_size"] * FLUX_DEV["mlp_ratio"])
    out = []
    for b in range(double):
        p = f"transformer_blocks.{b}"
        out += [(f"{p}.attn.{x}", h, h) for x in ("to_q", "to_k", "to_v", "add_q_proj", "add_k_proj", "add_v_proj",
                                                   "to_add_out")]
        out += [(f"{p}.attn.to_out.0", h, h), (f"{p}.ff.net.0.proj", h, mlp), (f"{p}.ff.net.2", mlp, h),
                (f"{p}.ff_context.net.0.proj", h, mlp), (f"{p}.ff_context.net.2", mlp, h)]
    for b in range(single):
        p = f"single_transformer_blocks.{b}"
        out += [(f"{p}.attn.{x}", h, h) for x in ("to_q", "to_k", "to_v")]
        out += [(f"{p}.proj_mlp", h, mlp), (f"{p}.proj_out", h + mlp, h)]
    return out


def peft(path: Path, modules: list[tuple[str, int, int]], prefix: str, rank: int, dtype: str = "BF16",
         metadata: dict | None = None, alpha: float | None = None) -> Path:
    tensors, alphas = {}, {}
    for name, i, o in modules:
        tensors[f"{prefix}{name}.lora_A.weight"] = (dtype, [rank, i])
        tensors[f"{prefix}{name}.lora_B.weight"] = (dtype, [o, rank])
        if alpha is not None:
            tensors[f"{prefix}{name}.alpha"] = ("F32", [])
            alphas[f"{prefix}{name}.alpha"] = alpha
    return write_lora(path, tensors, metadata, alphas)


def onetrainer_flux(path: Path, rank: int = 16, alpha: float = 1.0, dtype: str = "F16") -> Path:
    tensors, alphas = {}, {}
    for name, i, o in diffusers_flux_modules():
        base = "lora_transformer_" + name.replace(".", "_")
        tensors[f"{base}.lora_down.weight"] = (dtype, [rank, i])
        tensors[f"{base}.lora_up.weight"] = (dtype, [o, rank])
        tensors[f"{base}.alpha"] = (dtype, [])
        alphas[f"{base}.alpha"] = alpha
    return write_lora(path, tensors, None, alphas)


def comfy_flux(path: Path, rank: int = 32, dtype: str = "BF16", alpha: float | None = 16.0) -> Path:
    """A kohya FLUX LoRA as ComfyUI/BFL name it: diffusion_model.double_blocks.0.img_attn.qkv.lora_A.weight."""
    modules = []
    for m in flux_modules():
        rest = m.name[len("lora_unet_"):]
        # double_blocks_0_img_attn_qkv -> double_blocks.0.img_attn.qkv
        kind, _, tail = rest.partition("_blocks_")
        idx, _, layer = tail.partition("_")
        for a, b in (("img_attn_", "img_attn."), ("txt_attn_", "txt_attn."), ("img_mlp_", "img_mlp."),
                     ("txt_mlp_", "txt_mlp."), ("img_mod_", "img_mod."), ("txt_mod_", "txt_mod."),
                     ("modulation_", "modulation.")):
            layer = layer.replace(a, b)
        modules.append((f"{kind}_blocks.{idx}.{layer}", m.in_features, m.out_features))
    return peft(path, modules, "diffusion_model.", rank, dtype, alpha=alpha)


def diffusers_sd3(path: Path, rank: int = 16, depth: int = 38) -> Path:
    h = 64 * depth
    modules = []
    for b in range(depth):
        p = f"transformer_blocks.{b}.attn"
        modules += [(f"{p}.{x}", h, h) for x in ("to_q", "to_k", "to_v", "add_q_proj", "add_k_proj", "add_v_proj")]
        modules.append((f"{p}.to_out.0", h, h))
    return peft(path, modules, "transformer.", rank, "BF16")
