"""Every module kohya's ``networks/lora.py`` wraps, per base architecture, with kohya's key names and layer widths.

Derived in pure Python from each architecture's config numbers (no torch, no table of sizes typed by hand):

- ``LoRANetwork.create_modules`` walks ``named_modules()`` of the U-Net and the text encoder(s); inside every module
  whose class is a target (U-Net: ``Transformer2DModel``; with ``conv_dim`` also ``ResnetBlock2D``,
  ``Downsample2D``, ``Upsample2D``; text encoders: ``CLIPAttention``/``CLIPMLP``) it wraps every ``Linear`` and
  ``Conv2d``. The LoRA's name is ``prefix.<module path>.<child path>`` with dots turned into underscores.
- Linear and 1x1 convs get ``network_dim``; 3x3 convs get ``conv_dim`` (and only exist when it is given). Note that
  with ``conv_dim`` a ResnetBlock2D's ``time_emb_proj`` (Linear) and 1x1 ``conv_shortcut`` join at ``network_dim``.
- SD1.x/SD2.x train kohya's ``library/original_unet.py`` (diffusers-style paths: ``down_blocks_0_attentions_0_...``);
  SDXL trains ``library/sdxl_original_unet.py`` (SGM-style paths: ``input_blocks_4_1_...``,
  ``middle_block_1_...``, ``output_blocks_2_2_conv``).
- Prefixes: ``lora_unet``, ``lora_te`` (SD1/SD2), ``lora_te1``/``lora_te2`` (SDXL's two text encoders).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any, Literal

Arch = Literal["sd15", "sd2", "sdxl"]
ARCHES: tuple[Arch, ...] = ("sd15", "sd2", "sdxl")
ARCH_LABELS = {"sd15": "SD1.x", "sd2": "SD2.x", "sdxl": "SDXL"}

# --- configs (numbers of the models kohya trains) -------------------------------------------------------------
# SD1.5 (runwayml/stable-diffusion-v1-5 unet/config.json; kohya's original_unet.py constants). "attention_head_dim"
# is diffusers' historical misnomer for the number of heads; the width of a transformer is its block's channels.
_SD15_UNET: dict[str, Any] = dict(
    block_out_channels=(320, 640, 1280, 1280),
    layers_per_block=2,
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    attention_head_dim=8,
    cross_attention_dim=768,
    use_linear_projection=False,
)
# SD2.x: same U-Net shape, OpenCLIP-H context (1024) and per-block heads. kohya loads a .ckpt/.safetensors SD2 with
# proj_in/proj_out as 1x1 convs (train_util.load_target_model: unet_use_linear_projection_in_v2=False); a diffusers
# folder keeps Linear. Only the header's shape text differs (",1,1"), a few hundred bytes in all.
_SD2_UNET: dict[str, Any] = dict(_SD15_UNET, attention_head_dim=(5, 10, 20, 20), cross_attention_dim=1024,
                 use_linear_projection=False)
# SDXL base (sgm UNetModel params, as in sdxl_original_unet.py's docstring)
_SDXL_UNET: dict[str, Any] = dict(
    model_channels=320,
    channel_mult=(1, 2, 4),
    num_res_blocks=2,
    transformer_depth=(0, 2, 10),  # per level; 0 = no attention at that level
    num_head_channels=64,
    context_dim=2048,
    use_linear_in_transformer=True,
)
# Text encoders (transformers CLIPTextConfig values kohya builds: model_util / sdxl_model_util)
_CLIP_L: dict[str, Any] = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12)
# SD2 drops the last layer
_OPENCLIP_H: dict[str, Any] = dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=23)
_OPENCLIP_BIGG: dict[str, Any] = dict(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32)

_TEXT_ENCODERS: dict[str, list[tuple[str, dict]]] = {
    "sd15": [("lora_te", _CLIP_L)],
    "sd2": [("lora_te", _OPENCLIP_H)],
    "sdxl": [("lora_te1", _CLIP_L), ("lora_te2", _OPENCLIP_BIGG)],
}


@dataclass(frozen=True)
class Module:
    """One wrapped layer: kohya's LoRA name and the original layer's widths.

    ``kernel`` is 0 for Linear, 1 for a 1x1 Conv2d, 3 for a 3x3 Conv2d (which takes ``conv_dim``).
    """

    name: str
    in_features: int
    out_features: int
    kernel: int = 0

    @property
    def part(self) -> str:
        """unet, te, te1 or te2."""
        return self.name.split("_", 2)[1]

    @property
    def is_conv3x3(self) -> bool:
        return self.kernel == 3

    def shapes(self, rank: int) -> tuple[list[int], list[int]]:
        """(lora_down, lora_up) weight shapes at ``rank`` (LoRAModule.__init__: the up conv is always 1x1)."""
        if self.kernel == 0:
            return [rank, self.in_features], [self.out_features, rank]
        k = self.kernel
        return [rank, self.in_features, k, k], [self.out_features, rank, 1, 1]

    def params_per_rank(self) -> int:
        k2 = self.kernel * self.kernel if self.kernel else 1
        return self.in_features * k2 + self.out_features


# --- U-Net builders ---------------------------------------------------------------------------------------------

def _transformer(path: str, channels: int, heads: int, context: int, depth: int, linear: bool) -> list[Module]:
    """Transformer2DModel (original_unet / sdxl_original_unet): proj_in, depth x BasicTransformerBlock, proj_out."""
    inner = heads * (channels // heads)
    proj = 0 if linear else 1
    out = [Module(f"{path}_proj_in", channels, inner, proj), Module(f"{path}_proj_out", inner, channels, proj)]
    for b in range(depth):
        blk = f"{path}_transformer_blocks_{b}"
        for attn, kv_width in (("attn1", inner), ("attn2", context)):
            out += [
                Module(f"{blk}_{attn}_to_q", inner, inner),
                Module(f"{blk}_{attn}_to_k", kv_width, inner),
                Module(f"{blk}_{attn}_to_v", kv_width, inner),
                Module(f"{blk}_{attn}_to_out_0", inner, inner),
            ]
        # FeedForward: net.0 is GEGLU (Linear dim -> 2 * 4 * dim), net.2 is Linear(4 * dim -> dim)
        out += [Module(f"{blk}_ff_net_0_proj", inner, inner * 4 * 2), Module(f"{blk}_ff_net_2", inner * 4, inner)]
    return out


def _resnet(path: str, cin: int, cout: int, temb: int, sgm: bool) -> list[Module]:
    """ResnetBlock2D's convs and time projection (only wrapped when conv_dim is given)."""
    names = ("in_layers_2", "emb_layers_1", "out_layers_3", "skip_connection") if sgm else (
        "conv1", "time_emb_proj", "conv2", "conv_shortcut")
    out = [Module(f"{path}_{names[0]}", cin, cout, 3), Module(f"{path}_{names[1]}", temb, cout),
           Module(f"{path}_{names[2]}", cout, cout, 3)]
    if cin != cout:
        out.append(Module(f"{path}_{names[3]}", cin, cout, 1))
    return out


def _diffusers_unet(cfg: dict, conv: bool) -> list[Module]:
    """kohya's original_unet.UNet2DConditionModel (SD1.x/SD2.x), block by block as its __init__ builds them."""
    ch = cfg["block_out_channels"]
    n = len(ch)
    heads = cfg["attention_head_dim"]
    heads = (heads,) * n if isinstance(heads, int) else tuple(heads)
    ctx, linear, layers = cfg["cross_attention_dim"], cfg["use_linear_projection"], cfg["layers_per_block"]
    temb = ch[0] * 4
    mods: list[Module] = []
    p = "lora_unet"

    out_ch = ch[0]
    for i, kind in enumerate(cfg["down_block_types"]):
        in_ch, out_ch = out_ch, ch[i]
        for j in range(layers):
            if conv:
                mods += _resnet(f"{p}_down_blocks_{i}_resnets_{j}", in_ch if j == 0 else out_ch, out_ch, temb, False)
            if kind.startswith("CrossAttn"):
                mods += _transformer(f"{p}_down_blocks_{i}_attentions_{j}", out_ch, heads[i], ctx, 1, linear)
        if conv and i < n - 1:
            mods.append(Module(f"{p}_down_blocks_{i}_downsamplers_0_conv", out_ch, out_ch, 3))

    mid = ch[-1]
    if conv:
        mods += _resnet(f"{p}_mid_block_resnets_0", mid, mid, temb, False)
        mods += _resnet(f"{p}_mid_block_resnets_1", mid, mid, temb, False)
    mods += _transformer(f"{p}_mid_block_attentions_0", mid, heads[-1], ctx, 1, linear)

    rev, rev_heads = list(reversed(ch)), list(reversed(heads))
    out_ch = rev[0]
    for i, kind in enumerate(cfg["up_block_types"]):
        prev_out, out_ch = out_ch, rev[i]
        in_ch = rev[min(i + 1, n - 1)]
        for j in range(layers + 1):
            skip = in_ch if j == layers else out_ch
            res_in = prev_out if j == 0 else out_ch
            if conv:
                mods += _resnet(f"{p}_up_blocks_{i}_resnets_{j}", res_in + skip, out_ch, temb, False)
            if kind.startswith("CrossAttn"):
                mods += _transformer(f"{p}_up_blocks_{i}_attentions_{j}", out_ch, rev_heads[i], ctx, 1, linear)
        if conv and i < n - 1:
            mods.append(Module(f"{p}_up_blocks_{i}_upsamplers_0_conv", out_ch, out_ch, 3))
    return mods


def _sgm_unet(cfg: dict, conv: bool) -> list[Module]:
    """kohya's sdxl_original_unet.SdxlUNet2DConditionModel: input_blocks / middle_block / output_blocks (SGM)."""
    mc, mult, nres = cfg["model_channels"], cfg["channel_mult"], cfg["num_res_blocks"]
    depth, hc, ctx, linear = (cfg["transformer_depth"], cfg["num_head_channels"], cfg["context_dim"],
                              cfg["use_linear_in_transformer"])
    temb = mc * 4
    mods: list[Module] = []
    p = "lora_unet"

    ch = mc
    skips = [mc]  # input_blocks[0] is conv_in (not a target)
    idx = 1
    for level, m in enumerate(mult):
        for _ in range(nres):
            if conv:
                mods += _resnet(f"{p}_input_blocks_{idx}_0", ch, m * mc, temb, True)
            ch = m * mc
            if depth[level]:
                mods += _transformer(f"{p}_input_blocks_{idx}_1", ch, ch // hc, ctx, depth[level], linear)
            skips.append(ch)
            idx += 1
        if level != len(mult) - 1:
            if conv:
                mods.append(Module(f"{p}_input_blocks_{idx}_0_op", ch, ch, 3))  # Downsample2D in a Sequential
            skips.append(ch)
            idx += 1

    if conv:
        mods += _resnet(f"{p}_middle_block_0", ch, ch, temb, True)
        mods += _resnet(f"{p}_middle_block_2", ch, ch, temb, True)
    mods += _transformer(f"{p}_middle_block_1", ch, ch // hc, ctx, depth[-1], linear)

    idx = 0
    for level in reversed(range(len(mult))):
        m = mult[level]
        for i in range(nres + 1):
            cin = ch + skips.pop()
            ch = m * mc
            if conv:
                mods += _resnet(f"{p}_output_blocks_{idx}_0", cin, ch, temb, True)
            pos = 1
            if depth[level]:
                mods += _transformer(f"{p}_output_blocks_{idx}_1", ch, ch // hc, ctx, depth[level], linear)
                pos = 2
            if level and i == nres and conv:
                mods.append(Module(f"{p}_output_blocks_{idx}_{pos}_conv", ch, ch, 3))  # Upsample2D
            idx += 1
    return mods


def clip_modules(prefix: str, cfg: dict) -> list[Module]:
    """CLIPAttention (k/v/q/out_proj) and CLIPMLP (fc1, fc2) of every encoder layer."""
    h, inter = cfg["hidden_size"], cfg["intermediate_size"]
    mods: list[Module] = []
    for i in range(cfg["num_hidden_layers"]):
        base = f"{prefix}_text_model_encoder_layers_{i}"
        mods += [Module(f"{base}_self_attn_{x}_proj", h, h) for x in ("k", "v", "q", "out")]
        mods += [Module(f"{base}_mlp_fc1", h, inter), Module(f"{base}_mlp_fc2", inter, h)]
    return mods


@cache
def modules(arch: Arch, *, text_encoder: bool = True, unet: bool = True, conv: bool = False) -> tuple[Module, ...]:
    """Every module of a kohya ``networks.lora`` LoRA for ``arch`` (``conv``: trained with ``conv_dim``)."""
    if arch not in ARCHES:
        raise ValueError(f"unknown architecture {arch!r} (choose from {', '.join(ARCHES)})")
    mods: list[Module] = []
    if text_encoder:
        for prefix, cfg in _TEXT_ENCODERS[arch]:
            mods += clip_modules(prefix, cfg)
    if unet:
        mods += _sgm_unet(_SDXL_UNET, conv) if arch == "sdxl" else _diffusers_unet(
            _SD2_UNET if arch == "sd2" else _SD15_UNET, conv)
    return tuple(mods)


def cross_attention_width(arch: Arch) -> int:
    """Width of the text embeddings the U-Net's attn2 to_k/to_v read: tells the architectures apart."""
    return {"sd15": _SD15_UNET["cross_attention_dim"], "sd2": _SD2_UNET["cross_attention_dim"],
            "sdxl": _SDXL_UNET["context_dim"]}[arch]


def text_encoder_widths(arch: Arch) -> dict[str, int]:
    """Hidden width of each text encoder by its kohya prefix (lora_te, or lora_te1/lora_te2)."""
    return {prefix: cfg["hidden_size"] for prefix, cfg in _TEXT_ENCODERS[arch]}


def arch_for_cross_attention(width: int) -> Arch | None:
    return next((a for a in ARCHES if cross_attention_width(a) == width), None)
