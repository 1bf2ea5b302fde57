"""Write a diffusers SD1.x / SDXL pipeline folder as one original-layout ``.safetensors`` checkpoint (the layout of
the files people download and hand to kohya: ``model.diffusion_model.*``, ``first_stage_model.*``,
``cond_stage_model.*`` / ``conditioner.embedders.*``).

Used to make tiny single-file checkpoints, so ``compare --base model.safetensors --model-config DIR`` (diffusers'
``from_single_file``) is tested offline. The renaming is written here from the two layouts' module structure (the
CompVis/SGM ``openaimodel`` UNet: ``input_blocks`` / ``middle_block`` / ``output_blocks``, resnets as ``in_layers`` /
``emb_layers`` / ``out_layers``; the VAE's ``down.i.block.j``; open_clip's fused ``in_proj``), and checked by loading
the file back with diffusers and comparing every tensor (tests/train/test_single_file.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lora_audit.errors import EvidenceError

_RESNET = [("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("time_emb_proj", "emb_layers.1"),
           ("norm2", "out_layers.0"), ("conv2", "out_layers.3"), ("conv_shortcut", "skip_connection")]
_VAE_ATTN = [("group_norm", "norm"), ("to_q", "q"), ("to_k", "k"), ("to_v", "v"), ("to_out.0", "proj_out")]


def _sub(name: str, pairs: list[tuple[str, str]]) -> str:
    for a, b in pairs:
        if name == a or name.startswith(a + "."):
            return b + name[len(a):]
    return name


def unet_key(k: str, layers: int) -> str:
    """One diffusers UNet2DConditionModel key in the original openaimodel layout."""
    p = k.split(".")
    fixed = {"time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
             "add_embedding.linear_1": "label_emb.0.0", "add_embedding.linear_2": "label_emb.0.2",
             "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2"}
    for a, b in fixed.items():
        if k.startswith(a + "."):
            return b + k[len(a):]
    if p[0] == "down_blocks":
        i = int(p[1])
        if p[2] == "downsamplers":  # down_blocks.i.downsamplers.0.conv -> input_blocks.n.0.op
            return f"input_blocks.{(layers + 1) * (i + 1)}.0.op." + ".".join(p[5:])
        n = (layers + 1) * i + int(p[3]) + 1
        rest = ".".join(p[4:])
        return f"input_blocks.{n}.0.{_sub(rest, _RESNET)}" if p[2] == "resnets" else f"input_blocks.{n}.1.{rest}"
    if p[0] == "mid_block":
        rest = ".".join(p[3:])
        if p[1] == "attentions":
            return f"middle_block.1.{rest}"
        return f"middle_block.{2 * int(p[2])}.{_sub(rest, _RESNET)}"
    if p[0] == "up_blocks":
        i = int(p[1])
        if p[2] == "upsamplers":  # placed after the block's last resnet (and its attention, when it has one)
            return f"output_blocks.{(layers + 1) * i + layers}.{{up}}.conv." + ".".join(p[5:])
        n = (layers + 1) * i + int(p[3])
        rest = ".".join(p[4:])
        return f"output_blocks.{n}.0.{_sub(rest, _RESNET)}" if p[2] == "resnets" else f"output_blocks.{n}.1.{rest}"
    raise EvidenceError(f"UNet key with no place in the original layout: {k}")


def vae_key(k: str, n_blocks: int) -> str:
    p = k.split(".")
    if p[0] in ("quant_conv", "post_quant_conv"):
        return k
    side, rest = p[0], p[1:]
    if rest[0] in ("conv_in", "conv_out"):
        return k
    if rest[0] == "conv_norm_out":
        return f"{side}.norm_out." + ".".join(rest[1:])
    if rest[0] == "mid_block":
        tail = ".".join(rest[3:])
        if rest[1] == "attentions":
            return f"{side}.mid.attn_1.{_sub(tail, _VAE_ATTN)}"
        return f"{side}.mid.block_{int(rest[2]) + 1}.{_sub(tail, [('conv_shortcut', 'nin_shortcut')])}"
    i = int(rest[1])
    blk = "down" if rest[0] == "down_blocks" else "up"
    i_orig = i if blk == "down" else n_blocks - 1 - i  # the decoder's blocks are numbered from the bottom
    if rest[2] in ("downsamplers", "upsamplers"):
        return f"{side}.{blk}.{i_orig}.{'downsample' if blk == 'down' else 'upsample'}.conv." + ".".join(rest[5:])
    tail = ".".join(rest[4:])
    return f"{side}.{blk}.{i_orig}.block.{rest[3]}.{_sub(tail, [('conv_shortcut', 'nin_shortcut')])}"


def _open_clip(sd: dict[str, Any], prefix: str) -> dict[str, Any]:
    """A transformers CLIPTextModelWithProjection state dict in open_clip's layout (SDXL's second text encoder)."""
    import torch

    out: dict[str, Any] = {}
    layers = sorted({int(k.split(".")[3]) for k in sd if k.startswith("text_model.encoder.layers.")})
    for i in layers:
        src, dst = f"text_model.encoder.layers.{i}.", f"{prefix}transformer.resblocks.{i}."
        for w in ("weight", "bias"):
            out[dst + f"attn.in_proj_{w}"] = torch.cat([sd[src + f"self_attn.{x}_proj.{w}"] for x in "qkv"])
            out[dst + f"attn.out_proj.{w}"] = sd[src + f"self_attn.out_proj.{w}"]
            out[dst + f"ln_1.{w}"] = sd[src + f"layer_norm1.{w}"]
            out[dst + f"ln_2.{w}"] = sd[src + f"layer_norm2.{w}"]
            out[dst + f"mlp.c_fc.{w}"] = sd[src + f"mlp.fc1.{w}"]
            out[dst + f"mlp.c_proj.{w}"] = sd[src + f"mlp.fc2.{w}"]
    out[prefix + "token_embedding.weight"] = sd["text_model.embeddings.token_embedding.weight"]
    out[prefix + "positional_embedding"] = sd["text_model.embeddings.position_embedding.weight"]
    out[prefix + "ln_final.weight"] = sd["text_model.final_layer_norm.weight"]
    out[prefix + "ln_final.bias"] = sd["text_model.final_layer_norm.bias"]
    out[prefix + "text_projection"] = sd["text_projection.weight"].T.contiguous()
    return out


def _text_model_keys(sd: dict[str, Any]) -> dict[str, Any]:
    """transformers 5 saves CLIP text models without the ``text_model.`` prefix the original layout keeps."""
    return {k if k.startswith("text_model.") or k.startswith("text_projection") else "text_model." + k: v
            for k, v in sd.items()}


def to_single_file(model_dir: Path | str, out: Path | str) -> Path:
    """Write ``model_dir`` (a diffusers SD1.x or SDXL folder) as one original-layout ``.safetensors`` file."""
    from safetensors.torch import load_file, save_file

    model_dir, out = Path(model_dir), Path(out)
    index = model_dir / "model_index.json"
    if not index.is_file():
        raise EvidenceError("not a diffusers model folder (no model_index.json)", str(model_dir))
    from lora_audit.loaders.pipelines import detect_arch

    arch = detect_arch(model_dir)
    if arch not in ("sd15", "sdxl"):
        raise EvidenceError(f"--single-file is written for SD1.x and SDXL models only, not {arch}", str(model_dir))
    sdxl = arch == "sdxl"

    def weights(sub: str) -> dict[str, Any]:
        files = sorted((model_dir / sub).glob("*.safetensors"))
        if not files:
            raise EvidenceError("no .safetensors weights (a single file is written from safetensors only)",
                                str(model_dir / sub))
        sd: dict[str, Any] = {}
        for f in files:
            sd.update(load_file(f))
        return sd

    def config(sub: str) -> dict[str, Any]:
        return json.loads((model_dir / sub / "config.json").read_text(encoding="utf-8"))

    ckpt: dict[str, Any] = {}
    ucfg = config("unet")
    layers, has_attn = ucfg["layers_per_block"], [("CrossAttn" in t) for t in ucfg["up_block_types"]]
    for k, v in weights("unet").items():
        name = unet_key(k, layers)
        if "{up}" in name:
            name = name.replace("{up}", "2" if has_attn[int(k.split(".")[1])] else "1")
        ckpt["model.diffusion_model." + name] = v
    n_blocks = len(config("vae")["block_out_channels"])
    for k, v in weights("vae").items():
        name = vae_key(k, n_blocks)
        if ".mid.attn_1." in name and v.ndim == 2:  # the original VAE attention projections are 1×1 convolutions
            v = v[:, :, None, None]
        ckpt["first_stage_model." + name] = v
    te = _text_model_keys(weights("text_encoder"))
    te_prefix = "conditioner.embedders.0.transformer." if sdxl else "cond_stage_model.transformer."
    ckpt.update({te_prefix + k: v for k, v in te.items() if not k.endswith("position_ids")})
    if sdxl:
        ckpt.update(_open_clip(_text_model_keys(weights("text_encoder_2")), "conditioner.embedders.1.model."))
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in ckpt.items()}, out)
    return out
