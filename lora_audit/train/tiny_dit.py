"""Tiny FLUX.1 and SD3 pipelines made locally: the real transformer / VAE / text-encoder classes at toy width, random
weights, local tokenizers (CLIP's BPE and a T5 Unigram; nothing is downloaded).

What the tiny models keep of the real ones is what LoRA keys and sampling depend on: FLUX's double and single
blocks (``transformer_blocks`` / ``single_transformer_blocks``), 16 latent channels packed 2x2 into 64 transformer
inputs, CLIP-L's pooled output and T5's sequence as conditioning, the guidance embedding of FLUX.1-dev (absent in
schnell), and the flow-matching scheduler configs of black-forest-labs/FLUX.1-dev / -schnell; SD3's joint blocks
with a ``context_pre_only`` last block and SD3.5-medium's second attention (``attn2``) in block 0, two CLIP
encoders with projection, T5, and stabilityai/stable-diffusion-3.5-medium's scheduler config. Widths and depths are
shrunk so a 32 px image takes milliseconds on a CPU.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

DIT_ARCHES: tuple[str, ...] = ("flux", "flux-schnell", "sd3")

_CLIP_L: dict[str, Any] = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
           "max_position_embeddings": 77, "hidden_act": "quick_gelu", "projection_dim": 32}
_CLIP_G = {**_CLIP_L, "hidden_size": 48, "intermediate_size": 96, "projection_dim": 48, "hidden_act": "gelu"}
# T5 v1.1 encoder (gated GELU, relative attention); d_model is the width of the transformer's text stream. For SD3 it
# must hold CLIP-L + CLIP-G concatenated (32 + 48), as 4096 holds 768 + 1280 in the real one.
_T5 = {"d_kv": 8, "d_ff": 64, "num_layers": 2, "num_heads": 4, "feed_forward_proj": "gated-gelu",
       "relative_attention_num_buckets": 8, "relative_attention_max_distance": 16, "dense_act_fn": "gelu_new",
       "is_gated_act": True}
_T5_WIDTH = {"flux": 32, "sd3": 80}
# T5 tokens read per prompt: the real tokenizer's model_max_length is 512 (FLUX.1-dev reads 512, SD3 256); 64 keeps a
# tiny model's joint attention small, and compare reads min(pipeline default, this)
_T5_TOKENS = 64

# AutoencoderKL of FLUX.1 / SD3 (16 latent channels, no quant convs) with their latent scale and shift
_VAE = {"in_channels": 3, "out_channels": 3, "latent_channels": 16, "layers_per_block": 1,
        "down_block_types": ["DownEncoderBlock2D"] * 4, "up_block_types": ["UpDecoderBlock2D"] * 4,
        "block_out_channels": [8, 16, 16, 16], "norm_num_groups": 8, "sample_size": 32,
        "use_quant_conv": False, "use_post_quant_conv": False}
_VAE_SCALE = {"flux": {"scaling_factor": 0.3611, "shift_factor": 0.1159},
              "sd3": {"scaling_factor": 1.5305, "shift_factor": 0.0609}}

_FLUX = {"patch_size": 1, "in_channels": 64, "num_layers": 1, "num_single_layers": 1, "attention_head_dim": 16,
         "num_attention_heads": 2, "joint_attention_dim": _T5_WIDTH["flux"],
         "pooled_projection_dim": _CLIP_L["hidden_size"], "axes_dims_rope": (4, 6, 6)}
_SD3: dict[str, Any] = {"sample_size": 4, "patch_size": 2, "in_channels": 16, "out_channels": 16, "num_layers": 2,
        "attention_head_dim": 16, "num_attention_heads": 2, "joint_attention_dim": _T5_WIDTH["sd3"],
        "caption_projection_dim": 32, "pooled_projection_dim": _CLIP_L["projection_dim"] + _CLIP_G["projection_dim"],
        "pos_embed_max_size": 16, "dual_attention_layers": (0,), "qk_norm": "rms_norm"}

# FlowMatchEulerDiscreteScheduler configs of the real repositories (scheduler/scheduler_config.json)
SCHEDULERS: dict[str, dict[str, Any]] = {
    "flux": {"num_train_timesteps": 1000, "shift": 3.0, "use_dynamic_shifting": True, "base_shift": 0.5,
             "max_shift": 1.15, "base_image_seq_len": 256, "max_image_seq_len": 4096},
    "flux-schnell": {"num_train_timesteps": 1000, "shift": 1.0, "use_dynamic_shifting": False},
    "sd3": {"num_train_timesteps": 1000, "shift": 3.0},
}


def make_tiny_dit(path: Path, arch: str, seed: int) -> None:
    """Write the pipeline of ``arch`` (flux, flux-schnell, sd3) into the empty folder ``path``."""
    import torch
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler
    from transformers import (
        CLIPTextConfig,
        CLIPTextModel,
        CLIPTextModelWithProjection,
        CLIPTokenizer,
        T5Config,
        T5EncoderModel,
        T5TokenizerFast,
    )

    from lora_audit.train.tokenizer import write_t5_tokenizer, write_tokenizer

    family = "sd3" if arch == "sd3" else "flux"

    def seeded(k: int) -> None:
        torch.manual_seed(seed * 1000 + k)

    def clip(sub: str, cfg: dict, cls: Any, pad: str | None = None) -> tuple[Any, Any]:
        vocab = write_tokenizer(path / sub, pad_token=pad) if pad else write_tokenizer(path / sub)
        tok = CLIPTokenizer.from_pretrained(path / sub, local_files_only=True)
        ids = {"bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id, "pad_token_id": tok.pad_token_id}
        return tok, cls(CLIPTextConfig(vocab_size=vocab, **cfg, **ids))

    t5_sub = "tokenizer_3" if family == "sd3" else "tokenizer_2"
    t5_vocab = write_t5_tokenizer(path / t5_sub, model_max_length=_T5_TOKENS)
    t5_tok = T5TokenizerFast.from_pretrained(path / t5_sub, local_files_only=True)
    seeded(1)
    t5 = T5EncoderModel(T5Config(vocab_size=t5_vocab, d_model=_T5_WIDTH[family], pad_token_id=0, eos_token_id=1,
                                 decoder_start_token_id=0, **_T5))
    seeded(2)
    vae = AutoencoderKL(**_VAE, **_VAE_SCALE[family])
    scheduler = FlowMatchEulerDiscreteScheduler(**SCHEDULERS[arch])
    if family == "flux":
        from diffusers import FluxPipeline, FluxTransformer2DModel

        seeded(3)
        tok, te = clip("tokenizer", _CLIP_L, CLIPTextModel)  # FLUX conditions on CLIP-L's pooled output
        seeded(4)
        transformer = FluxTransformer2DModel(**_FLUX, guidance_embeds=arch == "flux")  # schnell: no guidance
        pipe: Any = FluxPipeline(scheduler=scheduler, vae=vae, text_encoder=te, tokenizer=tok, text_encoder_2=t5,
                                 tokenizer_2=t5_tok, transformer=transformer)
    else:
        from diffusers import SD3Transformer2DModel, StableDiffusion3Pipeline

        seeded(3)
        tok, te = clip("tokenizer", _CLIP_L, CLIPTextModelWithProjection)
        seeded(4)
        tok2, te2 = clip("tokenizer_2", _CLIP_G, CLIPTextModelWithProjection, pad="!")  # as SD3's CLIP-G pads
        seeded(5)
        transformer = SD3Transformer2DModel(**_SD3)
        pipe = StableDiffusion3Pipeline(transformer=transformer, scheduler=scheduler, vae=vae, text_encoder=te,
                                        tokenizer=tok, text_encoder_2=te2, tokenizer_2=tok2, text_encoder_3=t5,
                                        tokenizer_3=t5_tok)
    pipe.save_pretrained(path, safe_serialization=True)
