"""Modules of kohya's LoRA networks for the DiT architectures: FLUX.1 (``networks/lora_flux.py``) and SD3/SD3.5
(``networks/lora_sd3.py``), with kohya's key names and layer widths.

Derived in pure Python from each model's config numbers, as ``lora_layout`` does for the U-Nets (no torch, no
table of sizes typed by hand); the numbers are sd-scripts' own, cited where they are defined:

FLUX.1 (``library/flux_models.py`` ``configs["dev"]``: hidden_size 3072, mlp_ratio 4.0, depth 19,
depth_single_blocks 38, context_in_dim 4096, vec_in_dim 768, in_channels 64). ``lora_flux.LoRANetwork`` wraps every
Linear inside ``DoubleStreamBlock`` / ``SingleStreamBlock`` (``FLUX_TARGET_REPLACE_MODULE_*``), prefix ``lora_unet``:

- double block: ``img_mod.lin`` (Modulation(double=True): hidden -> 6 x hidden), ``img_attn.qkv`` (hidden -> 3 x
  hidden), ``img_attn.proj``, ``img_mlp.0`` (hidden -> mlp), ``img_mlp.2`` (mlp -> hidden), and the same for ``txt_``;
- single block: ``linear1`` (hidden -> 3 x hidden + mlp), ``linear2`` (hidden + mlp -> hidden), ``modulation.lin``
  (Modulation(double=False): hidden -> 3 x hidden).

Options that change the layout (``lora_flux.create_network``'s network_args): ``train_blocks`` = all / single /
double; ``split_qkv`` (``LoRANetwork.state_dict`` merges the split LoRAs back into one module whose down weight has
3 x rank rows for a double block's qkv and 4 x rank for a single block's linear1); ``train_t5xxl`` (T5-XXL as
``lora_te3`` beside CLIP-L's ``lora_te1``, trained when the text encoder is); ``in_dims`` (the embedders
``img_in``, ``time_in``, ``vector_in``, ``guidance_in``, ``txt_in``); ``img_mod_dim``/``txt_mod_dim``/
``single_mod_dim`` = 0 (no modulation modules) and the other ``*_dim`` type dims.

SD3 / SD3.5 (``library/sd3_models.MMDiT``: hidden_size = 64 x depth, mlp_ratio 4; ``sd3_utils.
analyze_state_dict_state`` tells the variants apart: SD3-medium depth 24, SD3.5-medium depth 24 with attn2 in x
blocks 0-12, SD3.5-large depth 38). ``lora_sd3.LoRANetwork`` wraps every Linear inside ``SingleDiTBlock`` (the
``context_block`` and ``x_block`` of each ``joint_blocks`` entry): ``attn.qkv``, ``attn.proj``, ``attn2.*``,
``mlp.fc1``/``fc2``, ``adaLN_modulation.1``; the last block's context block is ``pre_only`` (qkv and modulation to
2 x hidden only). Text encoders: CLIP-L ``lora_te1``, CLIP-G ``lora_te2``, T5-XXL ``lora_te3`` with train_t5xxl.

Lumina 2 (``library/lumina_models.LuminaParams.get_2b_config``: dim 2304, 26 layers, 24 heads, 8 KV heads,
2 noise and 2 context refiner blocks, FeedForward hidden 4 x dim rounded to 256). ``lora_lumina.LoRANetwork`` wraps
the Linears of every ``JointTransformerBlock`` (``attention.qkv``/``out``, ``feed_forward.w1``/``w2``/``w3``,
``adaLN_modulation.1`` where the block has modulation: not the context refiner) and of ``FinalLayer``; the text
encoder is Gemma2-2B (``lumina_util.GEMMA2_CONFIG``) as ``lora_te``. ``train_blocks`` = transformer / refiners /
noise_refiner / context_refiner keep only those blocks (name filters; the final layer goes with "all" only).

HunyuanImage 2.1 (``library/hunyuan_image_models``: hidden 3584, 20 double and 40 single blocks, mlp ratio 4):
``lora_hunyuan_image`` wraps the Linears of ``MMDoubleStreamBlock`` (``img_mod.linear``, ``img_attn_qkv``,
``img_attn_proj``, ``img_mlp.fc1``/``fc2`` and the ``txt_`` ones) and ``MMSingleStreamBlock`` (``linear1``,
``linear2``, ``modulation.linear``); no text encoder modules.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from lora_audit.kohya.lora_layout import Module, clip_modules

# --- configs (sd-scripts' numbers) ----------------------------------------------------------------------------------
# library/flux_models.py configs["dev"] (schnell and Chroma have the same block shapes)
FLUX_DEV: dict[str, Any] = dict(hidden_size=3072, mlp_ratio=4.0, depth=19, depth_single_blocks=38, context_in_dim=4096,
                vec_in_dim=768, in_channels=64, guidance_embed=True)
# library/sd3_utils.analyze_state_dict_state + sd3_models.MMDiT (hidden = 64 * depth)
SD3_VARIANTS: dict[str, dict[str, Any]] = {
    "sd3.5-large": dict(depth=38, x_block_self_attn_layers=()),
    "sd3.5-medium": dict(depth=24, x_block_self_attn_layers=tuple(range(13))),
    "sd3-medium": dict(depth=24, x_block_self_attn_layers=()),
}
# transformers configs of the text encoders sd-scripts builds (flux_utils / sd3_utils: load_clip_l, load_clip_g,
# load_t5xxl): CLIP-L 12 x 768, CLIP-G 32 x 1280, T5-XXL v1.1 encoder 24 x d_model 4096, 64 heads of 64, d_ff 10240
CLIP_L: dict[str, Any] = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12)
CLIP_G: dict[str, Any] = dict(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32)
T5XXL: dict[str, Any] = dict(d_model=4096, inner_dim=64 * 64, d_ff=10240, num_layers=24)

# library/lumina_models.py get_2b_config, FeedForward (multiple_of 256), NextDiT (n_refiner_layers 2)
LUMINA_2B: dict[str, Any] = dict(dim=2304, n_layers=26, n_heads=24, n_kv_heads=8, n_refiner_layers=2, multiple_of=256,
                 patch_size=2, out_channels=16)
GEMMA2_2B: dict[str, Any] = dict(hidden_size=2304, intermediate_size=9216, num_hidden_layers=26, num_attention_heads=8,
                 num_key_value_heads=4, head_dim=256)
# library/hunyuan_image_models.py HYImageDiffusionTransformer
HUNYUAN_IMAGE_21: dict[str, Any] = dict(hidden_size=3584, double=20, single=40, mlp_ratio=4)
# library/anima_utils.load_anima_model dit_config: model_channels 2048, 28 blocks, 16 heads, cross-attention context
# 1024, mlp_ratio 4 (anima_models.Block)
ANIMA: dict[str, Any] = dict(model_channels=2048, num_blocks=28, num_heads=16, crossattn_emb_channels=1024, mlp_ratio=4)

FLUX_TRAIN_BLOCKS = ("all", "single", "double")
LUMINA_TRAIN_BLOCKS = ("all", "transformer", "refiners", "noise_refiner", "context_refiner")
# text encoder modules in a LoRA: none (U-Net/DiT only), CLIP(s), CLIP(s) + T5-XXL (train_t5xxl=True)
TEXT_ENCODER_SETS = ("none", "clip", "clip+t5")


@dataclass(frozen=True)
class DitModule(Module):
    """A wrapped Linear of a DiT network (or its text encoders), and how many LoRAs kohya merged into it on saving
    (``split_qkv``: 3 for a double block's qkv, 4 for a single block's linear1; else 1)."""

    splits: int = 1

    def shapes(self, rank: int) -> tuple[list[int], list[int]]:
        r = rank * self.splits
        return [r, self.in_features], [self.out_features, r]

    def params_per_rank(self) -> int:
        return self.splits * (self.in_features + self.out_features)


def _t5(prefix: str = "lora_te3") -> list[DitModule]:
    """T5Attention (q, k, v, o) and T5DenseGatedActDense (wi_0, wi_1, wo) of every encoder block."""
    d, inner, ff = T5XXL["d_model"], T5XXL["inner_dim"], T5XXL["d_ff"]
    out: list[DitModule] = []
    for i in range(T5XXL["num_layers"]):
        att = f"{prefix}_encoder_block_{i}_layer_0_SelfAttention"
        mlp = f"{prefix}_encoder_block_{i}_layer_1_DenseReluDense"
        out += [DitModule(f"{att}_q", d, inner), DitModule(f"{att}_k", d, inner), DitModule(f"{att}_v", d, inner),
                DitModule(f"{att}_o", inner, d)]
        out += [DitModule(f"{mlp}_wi_0", d, ff), DitModule(f"{mlp}_wi_1", d, ff), DitModule(f"{mlp}_wo", ff, d)]
    return out


# --- FLUX.1 ---------------------------------------------------------------------------------------------------------

@cache
def flux_modules(*, text_encoders: str = "none", train_blocks: str = "all", split_qkv: bool = False,
                 modulation: bool = True, embedders: bool = False, unet: bool = True) -> tuple[Module, ...]:
    """Every module of a kohya ``networks.lora_flux`` LoRA of FLUX.1-dev."""
    if train_blocks not in FLUX_TRAIN_BLOCKS:
        raise ValueError(f"train_blocks must be one of {', '.join(FLUX_TRAIN_BLOCKS)}, not {train_blocks!r}")
    cfg = FLUX_DEV
    h = cfg["hidden_size"]
    mlp = int(h * cfg["mlp_ratio"])
    out: list[Module] = []
    if text_encoders in ("clip", "clip+t5"):
        out += clip_modules("lora_te1", CLIP_L)
    if text_encoders == "clip+t5":
        out += _t5()
    if not unet:
        return tuple(out)
    p = "lora_unet"
    if train_blocks in ("all", "double"):
        for b in range(cfg["depth"]):
            for s in ("img", "txt"):
                base = f"{p}_double_blocks_{b}_{s}"
                if modulation:
                    out.append(DitModule(f"{base}_mod_lin", h, 6 * h))
                out += [DitModule(f"{base}_attn_qkv", h, 3 * h, splits=3 if split_qkv else 1),
                        DitModule(f"{base}_attn_proj", h, h),
                        DitModule(f"{base}_mlp_0", h, mlp), DitModule(f"{base}_mlp_2", mlp, h)]
    if train_blocks in ("all", "single"):
        for b in range(cfg["depth_single_blocks"]):
            base = f"{p}_single_blocks_{b}"
            out += [DitModule(f"{base}_linear1", h, 3 * h + mlp, splits=4 if split_qkv else 1),
                    DitModule(f"{base}_linear2", h + mlp, h)]
            if modulation:
                out.append(DitModule(f"{base}_modulation_lin", h, 3 * h))
    if embedders:  # in_dims: img, time, vector, guidance, txt (MLPEmbedder: in_layer, out_layer)
        out += [DitModule(f"{p}_img_in", cfg["in_channels"], h),
                DitModule(f"{p}_time_in_in_layer", 256, h), DitModule(f"{p}_time_in_out_layer", h, h),
                DitModule(f"{p}_vector_in_in_layer", cfg["vec_in_dim"], h),
                DitModule(f"{p}_vector_in_out_layer", h, h),
                DitModule(f"{p}_guidance_in_in_layer", 256, h), DitModule(f"{p}_guidance_in_out_layer", h, h),
                DitModule(f"{p}_txt_in", cfg["context_in_dim"], h)]
    return tuple(out)


# --- SD3 / SD3.5 ----------------------------------------------------------------------------------------------------

@cache
def sd3_modules(variant: str = "sd3.5-large", *, text_encoders: str = "none",
                unet: bool = True) -> tuple[Module, ...]:
    """Every module of a kohya ``networks.lora_sd3`` LoRA of an SD3/SD3.5 MMDiT."""
    if variant not in SD3_VARIANTS:
        raise ValueError(f"unknown SD3 variant {variant!r} (choose from {', '.join(SD3_VARIANTS)})")
    depth = SD3_VARIANTS[variant]["depth"]
    attn2 = set(SD3_VARIANTS[variant]["x_block_self_attn_layers"])
    h = 64 * depth
    mlp = 4 * h
    out: list[Module] = []
    if text_encoders in ("clip", "clip+t5"):
        out += clip_modules("lora_te1", CLIP_L) + clip_modules("lora_te2", CLIP_G)
    if text_encoders == "clip+t5":
        out += _t5()
    if not unet:
        return tuple(out)
    for i in range(depth):
        for blk in ("context_block", "x_block"):
            base = f"lora_unet_joint_blocks_{i}_{blk}"
            pre_only = blk == "context_block" and i == depth - 1
            out.append(DitModule(f"{base}_attn_qkv", h, 3 * h))
            if not pre_only:
                out.append(DitModule(f"{base}_attn_proj", h, h))
            if blk == "x_block" and i in attn2:
                out += [DitModule(f"{base}_attn2_qkv", h, 3 * h), DitModule(f"{base}_attn2_proj", h, h)]
            if not pre_only:
                out += [DitModule(f"{base}_mlp_fc1", h, mlp), DitModule(f"{base}_mlp_fc2", mlp, h)]
            n_mods = 2 if pre_only else (9 if blk == "x_block" and i in attn2 else 6)
            out.append(DitModule(f"{base}_adaLN_modulation_1", h, n_mods * h))
    return tuple(out)


def sd3_variant_for_width(width: int, depth: int | None = None, attn2: bool = False) -> str | None:
    """The SD3 variant whose hidden width (64 x depth) is ``width``; with equal widths, attn2 tells 3.5-medium."""
    found = [v for v, c in SD3_VARIANTS.items() if 64 * c["depth"] == width]
    if len(found) > 1:
        found = [v for v in found if bool(SD3_VARIANTS[v]["x_block_self_attn_layers"]) == attn2]
    return found[0] if found else None


# --- Lumina 2 -------------------------------------------------------------------------------------------------------

def _gemma2(prefix: str = "lora_te") -> list[DitModule]:
    """Gemma2Attention (q/k/v/o_proj) and Gemma2MLP (gate/up/down_proj) of every layer (Gemma2Model paths)."""
    c = GEMMA2_2B
    h, q, kv = c["hidden_size"], c["num_attention_heads"] * c["head_dim"], c["num_key_value_heads"] * c["head_dim"]
    out: list[DitModule] = []
    for i in range(c["num_hidden_layers"]):
        b = f"{prefix}_layers_{i}"
        out += [DitModule(f"{b}_self_attn_q_proj", h, q), DitModule(f"{b}_self_attn_k_proj", h, kv),
                DitModule(f"{b}_self_attn_v_proj", h, kv), DitModule(f"{b}_self_attn_o_proj", q, h),
                DitModule(f"{b}_mlp_gate_proj", h, c["intermediate_size"]),
                DitModule(f"{b}_mlp_up_proj", h, c["intermediate_size"]),
                DitModule(f"{b}_mlp_down_proj", c["intermediate_size"], h)]
    return out


@cache
def lumina_modules(*, text_encoders: str = "none", train_blocks: str = "all") -> tuple[DitModule, ...]:
    """Every module of a kohya ``networks.lora_lumina`` LoRA of Lumina-Image 2.0 (NextDiT 2B)."""
    if train_blocks not in LUMINA_TRAIN_BLOCKS:
        raise ValueError(f"train_blocks must be one of {', '.join(LUMINA_TRAIN_BLOCKS)}, not {train_blocks!r}")
    c = LUMINA_2B
    d, hd = c["dim"], c["dim"] // c["n_heads"]
    ff = c["multiple_of"] * ((4 * d + c["multiple_of"] - 1) // c["multiple_of"])
    out: list[DitModule] = _gemma2() if text_encoders != "none" else []

    def block(path: str, modulation: bool) -> list[DitModule]:
        mods = [DitModule(f"{path}_attention_qkv", d, (c["n_heads"] + 2 * c["n_kv_heads"]) * hd),
                DitModule(f"{path}_attention_out", c["n_heads"] * hd, d),
                DitModule(f"{path}_feed_forward_w1", d, ff), DitModule(f"{path}_feed_forward_w2", ff, d),
                DitModule(f"{path}_feed_forward_w3", d, ff)]
        if modulation:
            mods.append(DitModule(f"{path}_adaLN_modulation_1", min(d, 1024), 4 * d))
        return mods

    p = "lora_unet"
    if train_blocks in ("all", "refiners", "context_refiner"):
        for i in range(c["n_refiner_layers"]):
            out += block(f"{p}_context_refiner_{i}", False)
    if train_blocks in ("all", "refiners", "noise_refiner"):
        for i in range(c["n_refiner_layers"]):
            out += block(f"{p}_noise_refiner_{i}", True)
    if train_blocks in ("all", "transformer"):
        for i in range(c["n_layers"]):
            out += block(f"{p}_layers_{i}", True)
    if train_blocks == "all":
        out += [DitModule(f"{p}_final_layer_linear", d, c["patch_size"] ** 2 * c["out_channels"]),
                DitModule(f"{p}_final_layer_adaLN_modulation_1", min(d, 1024), d)]
    return tuple(out)


# --- HunyuanImage 2.1 -----------------------------------------------------------------------------------------------

@cache
def hunyuan_image_modules() -> tuple[DitModule, ...]:
    """Every module of a kohya ``networks.lora_hunyuan_image`` LoRA of HunyuanImage 2.1."""
    c = HUNYUAN_IMAGE_21
    h, mlp = c["hidden_size"], c["hidden_size"] * c["mlp_ratio"]
    out: list[DitModule] = []
    for b in range(c["double"]):
        for s in ("img", "txt"):
            base = f"lora_unet_double_blocks_{b}_{s}"
            out += [DitModule(f"{base}_mod_linear", h, 6 * h), DitModule(f"{base}_attn_qkv", h, 3 * h),
                    DitModule(f"{base}_attn_proj", h, h), DitModule(f"{base}_mlp_fc1", h, mlp),
                    DitModule(f"{base}_mlp_fc2", mlp, h)]
    for b in range(c["single"]):
        base = f"lora_unet_single_blocks_{b}"
        out += [DitModule(f"{base}_linear1", h, 3 * h + mlp), DitModule(f"{base}_linear2", h + mlp, h),
                DitModule(f"{base}_modulation_linear", h, 3 * h)]
    return tuple(out)


# --- Anima ----------------------------------------------------------------------------------------------------------

@cache
def anima_modules() -> tuple[DitModule, ...]:
    """A kohya ``networks.lora_anima`` LoRA with its defaults: the Linears of every ``Block`` (self_attn and cross_attn
    q/k/v/output_proj, mlp layer1/layer2); ``create_network`` excludes ``_modulation|_norm|_embedder|final_layer``
    by default, and the LLM adapter is trained only with ``train_llm_adapter=true``."""
    c = ANIMA
    d, ctx, mlp = c["model_channels"], c["crossattn_emb_channels"], c["model_channels"] * c["mlp_ratio"]
    out: list[DitModule] = []
    for b in range(c["num_blocks"]):
        p = f"lora_unet_blocks_{b}"
        out += [DitModule(f"{p}_self_attn_{x}_proj", d, d) for x in ("q", "k", "v")]
        out.append(DitModule(f"{p}_self_attn_output_proj", d, d))
        out += [DitModule(f"{p}_cross_attn_q_proj", d, d), DitModule(f"{p}_cross_attn_k_proj", ctx, d),
                DitModule(f"{p}_cross_attn_v_proj", ctx, d), DitModule(f"{p}_cross_attn_output_proj", d, d)]
        out += [DitModule(f"{p}_mlp_layer1", d, mlp), DitModule(f"{p}_mlp_layer2", mlp, d)]
    return tuple(out)


# --- layouts for the file-size model --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Layout:
    """One way kohya lays out a LoRA of ``arch``: its modules, and what in the training makes it so."""

    arch: str
    variant: str | None
    text_encoders: str  # none / clip / clip+t5
    options: tuple[str, ...]  # network_args (train_blocks=single, split_qkv=True)
    modules: tuple[Module, ...]

    @property
    def text_encoder(self) -> bool:
        return self.text_encoders != "none"

    def describe(self) -> str:
        bits = [self.variant] if self.variant else []
        te = {"none": "DiT only", "clip": "+ CLIP", "clip+t5": "+ CLIP + T5-XXL"}[self.text_encoders]
        bits += [te.replace("CLIP", "Gemma2") if self.arch == "lumina" else te]
        bits += list(self.options)
        return ", ".join(bits)


@cache
def layouts(arch: str) -> tuple[Layout, ...]:
    """The layouts people train (common first): text encoders, FLUX train_blocks and split_qkv, SD3 variants."""
    out: list[Layout] = []
    if arch == "flux":
        for te in TEXT_ENCODER_SETS:
            for blocks in FLUX_TRAIN_BLOCKS:
                for split in (False, True):
                    opts = ((f"train_blocks={blocks}",) if blocks != "all" else ()) + (
                        ("split_qkv=True",) if split else ())
                    if te == "clip+t5":
                        opts += ("train_t5xxl=True",)
                    out.append(Layout("flux", None, te, opts, flux_modules(text_encoders=te, train_blocks=blocks,
                                                                           split_qkv=split)))
    elif arch == "sd3":
        for variant in SD3_VARIANTS:
            for te in TEXT_ENCODER_SETS:
                opts = ("train_t5xxl=True",) if te == "clip+t5" else ()
                out.append(Layout("sd3", variant, te, opts, sd3_modules(variant, text_encoders=te)))
    elif arch == "lumina":
        for te in ("none", "clip"):  # "clip" stands for the one text encoder, Gemma2
            for blocks in LUMINA_TRAIN_BLOCKS:
                opts = (f"train_blocks={blocks}",) if blocks != "all" else ()
                out.append(Layout("lumina", None, te, opts, lumina_modules(text_encoders=te, train_blocks=blocks)))
    elif arch == "hunyuan_image":
        out.append(Layout("hunyuan_image", None, "none", (), hunyuan_image_modules()))
    elif arch == "anima":
        out.append(Layout("anima", None, "none", (), anima_modules()))
    else:
        raise ValueError(f"no DiT layout for {arch!r}")
    return tuple(out)
