"""Loading the parts of a local diffusers SD1.x / SDXL folder for training (fp32, CPU, frozen, no download)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lora_audit.errors import EvidenceError


@dataclass
class Models:
    tokenizers: list[Any]
    text_encoders: list[Any]
    vae: Any
    unet: Any


def quiet_libraries() -> None:
    """No per-file loading bars or info logs from transformers/diffusers (warnings and errors still show)."""
    import diffusers
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()


def load_models(folder: Path, arch: str) -> Models:
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    subfolders = ["tokenizer", "text_encoder", "vae", "unet"] + (["tokenizer_2", "text_encoder_2"]
                                                                  if arch == "sdxl" else [])
    for sub in subfolders:
        if not (folder / sub).is_dir():
            raise EvidenceError(f"not a diffusers {arch} model folder: {sub}/ is missing", str(folder))
    try:
        tokenizers = [CLIPTokenizer.from_pretrained(folder / "tokenizer", local_files_only=True)]
        text_encoders = [CLIPTextModel.from_pretrained(folder / "text_encoder", local_files_only=True)]
        if arch == "sdxl":
            tokenizers.append(CLIPTokenizer.from_pretrained(folder / "tokenizer_2", local_files_only=True))
            text_encoders.append(CLIPTextModelWithProjection.from_pretrained(folder / "text_encoder_2",
                                                                             local_files_only=True))
        vae = AutoencoderKL.from_pretrained(folder / "vae", local_files_only=True)
        unet = UNet2DConditionModel.from_pretrained(folder / "unet", local_files_only=True)
    except (OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise EvidenceError(f"cannot load the model: {first}", str(folder)) from None
    for model in text_encoders + [vae, unet]:
        model.requires_grad_(False)
        model.to("cpu", dtype=torch.float32)
    vae.eval()
    return Models(tokenizers=tokenizers, text_encoders=text_encoders, vae=vae, unet=unet)
