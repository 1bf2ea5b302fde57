"""LoRA with peft on kohya's target modules, saved under kohya's key names.

Targets are ``networks/lora.py``'s: every ``Linear`` and 1×1 ``Conv2d`` inside the UNet's ``Transformer2DModel``
blocks and inside the text encoders' ``CLIPAttention`` / ``CLIPMLP``. peft's LoRA is kohya's LoRA: down
(``lora_A``) initialised Kaiming-uniform(a=√5), up (``lora_B``) zeros, output scaled by alpha / dim.

Keys are ``lora_unet_<module path with _>`` / ``lora_te_…`` (``lora_te1_`` / ``lora_te2_`` for SDXL) with
``.lora_down.weight``, ``.lora_up.weight`` and ``.alpha``. kohya's SD1.x UNet uses diffusers' module names; its
SDXL UNet uses the original (SGM) names, ``input_blocks.4.1`` for ``down_blocks.1.attentions.0``.
"""

from __future__ import annotations

import re

import torch
from torch import nn

UNET_TARGETS = ("Transformer2DModel",)
TEXT_TARGETS = ("CLIPAttention", "CLIPSdpaAttention", "CLIPMLP")


def target_modules(model: nn.Module, containers: tuple[str, ...]) -> list[str]:
    """Full names of the Linear / 1×1 Conv2d modules inside modules whose class is one of ``containers``."""
    names: list[str] = []
    for name, module in model.named_modules():
        if type(module).__name__ not in containers:
            continue
        for child_name, child in module.named_modules():
            if isinstance(child, nn.Linear) or (isinstance(child, nn.Conv2d) and child.kernel_size == (1, 1)):
                full = f"{name}.{child_name}" if name else child_name
                if full not in names:
                    names.append(full)
    return names


def add_lora(model: nn.Module, containers: tuple[str, ...], dim: int, alpha: float) -> list[str]:
    """Inject peft LoRA layers into ``model`` in place; return the wrapped module names."""
    from peft import LoraConfig, inject_adapter_in_model

    targets = target_modules(model, containers)
    if not targets:
        raise ValueError(f"no LoRA target modules in {type(model).__name__}")
    config = LoraConfig(r=dim, lora_alpha=alpha, lora_dropout=0.0, init_lora_weights=True, target_modules=targets)
    inject_adapter_in_model(config, model)
    return targets


def lora_parameters(model: nn.Module) -> list[nn.Parameter]:
    return [p for n, p in model.named_parameters() if ".lora_A." in n or ".lora_B." in n]


def lora_layers(model: nn.Module) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Module name → (down weight, up weight) of every peft LoRA layer of ``model``."""
    from peft.tuners.lora import LoraLayer

    out = {}
    for name, module in model.named_modules():
        if isinstance(module, LoraLayer) and "default" in module.lora_A:
            out[name] = (module.lora_A["default"].weight, module.lora_B["default"].weight)
    return out


def sgm_unet_name(name: str, layers_per_block: int) -> str:
    """diffusers SDXL UNet module path → the SGM path kohya's SDXL UNet has (attention blocks only)."""
    m = re.match(r"down_blocks\.(\d+)\.attentions\.(\d+)\.(.*)", name)
    if m:
        i, j, rest = int(m[1]), int(m[2]), m[3]
        return f"input_blocks.{1 + i * (layers_per_block + 1) + j}.1.{rest}"
    m = re.match(r"mid_block\.attentions\.0\.(.*)", name)
    if m:
        return f"middle_block.1.{m[1]}"
    m = re.match(r"up_blocks\.(\d+)\.attentions\.(\d+)\.(.*)", name)
    if m:
        i, j, rest = int(m[1]), int(m[2]), m[3]
        return f"output_blocks.{i * (layers_per_block + 1) + j}.1.{rest}"
    raise ValueError(f"not an attention module of the UNet: {name}")


def kohya_state_dict(parts: list[tuple[str, nn.Module]], alpha: float, dtype: torch.dtype | None,
                     sgm_layers_per_block: int | None = None) -> dict[str, torch.Tensor]:
    """The LoRA of each (prefix, model) as kohya's ``LoRANetwork.state_dict()``, cast to ``dtype`` when given.

    ``sgm_layers_per_block`` set: rename the UNet's modules to SGM paths (SDXL).
    """
    sd: dict[str, torch.Tensor] = {}
    for prefix, model in parts:
        for name, (down, up) in lora_layers(model).items():
            if prefix == "lora_unet" and sgm_layers_per_block is not None:
                name = sgm_unet_name(name, sgm_layers_per_block)
            elif prefix != "lora_unet" and not name.startswith("text_model."):
                # transformers 5 dropped CLIPTextModel's text_model wrapper; kohya's names keep it
                name = "text_model." + name
            key = f"{prefix}_{name.replace('.', '_')}"
            for suffix, t in (("lora_down.weight", down), ("lora_up.weight", up), ("alpha", torch.tensor(alpha))):
                t = t.detach().clone().cpu()
                sd[f"{key}.{suffix}"] = t.to(dtype) if dtype is not None else t
    return sd
