"""Tiny Stable Diffusion pipelines made locally: SD1.x or SDXL block layout at toy width, random weights.

The block structure (block types, layers per block, cross-attention placement, linear vs 1×1-conv projections,
SDXL's two text encoders and size conditioning) is the real architecture's, so LoRA module names are those of the
real models and kohya / diffusers key conversion applies unchanged; only the widths (and SDXL's transformer depth)
are shrunk. Same seed → same weights, byte for byte.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from lora_audit.errors import EvidenceError
from lora_audit.loaders.pipelines import detect_arch  # noqa: F401  (the architecture of a folder, kept here for callers)
from lora_audit.train.tiny_dit import DIT_ARCHES, make_tiny_dit
from lora_audit.train.tokenizer import write_tokenizer

Arch = Literal["sd15", "sdxl", "flux", "flux-schnell", "sd3"]
ARCHES: tuple[str, ...] = ("sd15", "sdxl", "flux", "flux-schnell", "sd3")  # the DiT ones are made by tiny_dit

# Scheduler configs of the real pipelines (runwayml/stable-diffusion-v1-5, stabilityai/stable-diffusion-xl-base-1.0).
_BETAS = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "num_train_timesteps": 1000}

_TEXT = {  # CLIP-L at toy width; max_position_embeddings stays 77 so max_token_length chunking is kohya's
    "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 3, "num_attention_heads": 4,
    "max_position_embeddings": 77, "hidden_act": "quick_gelu", "projection_dim": 32,
}

# SDXL's second encoder (OpenCLIP bigG) is wider than the first, as here: code that mixes the two up fails on these
_TEXT_2 = {"hidden_size": 48, "intermediate_size": 96, "projection_dim": 48, "hidden_act": "gelu"}

_VAE = {
    "in_channels": 3, "out_channels": 3, "latent_channels": 4, "layers_per_block": 1,
    "down_block_types": ["DownEncoderBlock2D"] * 4, "up_block_types": ["UpDecoderBlock2D"] * 4,
    "block_out_channels": [8, 16, 16, 16], "norm_num_groups": 8, "sample_size": 64,
}

_UNET = {
    "sd15": {
        "sample_size": 8, "in_channels": 4, "out_channels": 4, "layers_per_block": 2,
        "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
        "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
        "block_out_channels": [32, 32, 64, 64], "norm_num_groups": 32, "attention_head_dim": 4,
        "cross_attention_dim": 32,
    },
    "sdxl": {
        "sample_size": 8, "in_channels": 4, "out_channels": 4, "layers_per_block": 2,
        "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
        "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
        "block_out_channels": [32, 64, 64], "norm_num_groups": 32, "attention_head_dim": [2, 4, 4],
        "transformer_layers_per_block": [1, 2, 2], "use_linear_projection": True,
        "cross_attention_dim": 80,  # text encoder 1 (32) + text encoder 2 (48), concatenated as in SDXL
        "addition_embed_type": "text_time", "addition_time_embed_dim": 8,
        "projection_class_embeddings_input_dim": 48 + 6 * 8,  # pooled text (48) + six size embeddings
    },
}
_SCALING = {"sd15": 0.18215, "sdxl": 0.13025}  # VAE latent scale of each family (kohya uses the same constants)


def make_tiny_model(path: Path | str, arch: Arch = "sd15", seed: int = 0) -> Path:
    """Write a diffusers pipeline folder loadable with ``from_pretrained`` and return its path."""
    if arch not in ARCHES:
        raise EvidenceError(f"unknown architecture {arch!r}: choose from {', '.join(ARCHES)}")
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    from lora_audit.loaders.pipelines import quiet_libraries

    quiet_libraries()
    path = Path(path)
    if path.exists() and any(path.iterdir()):
        raise EvidenceError("folder exists and is not empty; choose a new path", str(path))
    path.mkdir(parents=True, exist_ok=True)

    if arch in DIT_ARCHES:
        make_tiny_dit(path, arch, seed)
        return path

    def seeded(k: int) -> None:
        torch.manual_seed(seed * 1000 + k)

    vocab_size = write_tokenizer(path / "tokenizer")
    tok = CLIPTokenizer.from_pretrained(path / "tokenizer")
    ids = {"bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id, "pad_token_id": tok.pad_token_id}
    text_cfg = CLIPTextConfig(vocab_size=vocab_size, **_TEXT, **ids)
    seeded(1)
    text_encoder = CLIPTextModel(text_cfg)
    seeded(2)
    vae = AutoencoderKL(**_VAE, scaling_factor=_SCALING[arch], force_upcast=arch == "sdxl")
    seeded(3)
    unet = UNet2DConditionModel(**_UNET[arch])

    if arch == "sd15":
        from diffusers import PNDMScheduler, StableDiffusionPipeline

        scheduler = PNDMScheduler(**_BETAS, skip_prk_steps=True, set_alpha_to_one=False, steps_offset=1)
        pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tok, unet=unet,
                                       scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                       requires_safety_checker=False)
    else:
        from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline

        # SDXL's second tokenizer pads with "!" (id 0), as the real one does
        write_tokenizer(path / "tokenizer_2", pad_token="!")
        tok2 = CLIPTokenizer.from_pretrained(path / "tokenizer_2")
        seeded(4)
        text_encoder_2 = CLIPTextModelWithProjection(CLIPTextConfig(
            vocab_size=vocab_size, **{**_TEXT, **_TEXT_2}, **{**ids, "pad_token_id": tok2.pad_token_id}))
        scheduler = EulerDiscreteScheduler(**_BETAS, steps_offset=1, timestep_spacing="leading")
        pipe = StableDiffusionXLPipeline(vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2,
                                         tokenizer=tok, tokenizer_2=tok2, unet=unet, scheduler=scheduler)
    pipe.save_pretrained(path, safe_serialization=True)
    return path
