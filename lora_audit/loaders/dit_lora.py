"""kohya FLUX.1 / SD3 LoRA files as diffusers/PEFT state dicts for the pipeline at hand.

kohya names a DiT LoRA's modules after the original (BFL / Stability) model code, which fuses what diffusers keeps
apart: FLUX's ``img_attn.qkv`` is diffusers' ``attn.to_q``/``to_k``/``to_v``, a single block's ``linear1`` is
``to_q``/``to_k``/``to_v``/``proj_mlp``, SD3's ``x_block.attn.qkv`` likewise. A fused LoRA ``up @ down`` splits
exactly into one LoRA per part: the same ``down`` for each, ``up``'s rows cut at the parts' widths (kohya's
``split_qkv`` files, whose ``up`` is block-diagonal, split the same way). kohya scales by ``alpha / rank``
(``networks/lora_flux.LoRAModule``, ``lora_sd3``), which is folded into ``down`` so the adapter runs at scale 1.

The map is built from the loaded model's config (depths, widths, SD3's dual-attention blocks), so it serves the real
models and the tiny ones alike. diffusers' own ``_convert_kohya_flux_lora_to_diffusers`` hard-codes FLUX.1-dev's
widths (3072, 12288) and diffusers has no kohya converter for SD3: hence this one. Module pairs are those of
diffusers' single-file converters (``convert_flux_transformer_checkpoint_to_diffusers``,
``convert_sd3_transformer_checkpoint_to_diffusers``), including the scale/shift swap of SD3's last context block
(``AdaLayerNormContinuous``) and FLUX's final layer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# kohya prefix of each text encoder -> pipeline component (T5 is lora_te3; diffusers cannot load LoRA into it)
_TEXT_ENCODERS = {"flux": {"lora_te1": "text_encoder"},
                  "sd3": {"lora_te1": "text_encoder", "lora_te2": "text_encoder_2"}}


@dataclass(frozen=True)
class Target:
    """The diffusers module(s) a kohya module wraps: ``parts`` (module path, output width) in ``up``'s row order."""

    component: str
    parts: tuple[tuple[str, int], ...]
    # sd-scripts' pre-only modulations chunk (shift, scale) (sd3_models.SingleDiTBlock.pre_attention,
    # flux_models.LastLayer.forward); diffusers' AdaLayerNormContinuous chunks (scale, shift): up's halves swap
    swap_halves: bool = False


@dataclass
class Converted:
    state_dict: dict[str, Any] = field(default_factory=dict)
    matched: list[str] = field(default_factory=list)  # kohya module names converted
    unmatched: list[str] = field(default_factory=list)  # names with no module in this model (e.g. T5's lora_te3)
    wrong_width: list[str] = field(default_factory=list)  # names whose module exists with other widths


def _flux_targets(cfg: dict[str, Any]) -> dict[str, Target]:
    h = cfg["num_attention_heads"] * cfg["attention_head_dim"]
    mlp = 4 * h  # FluxSingleTransformerBlock(mlp_ratio=4.0), BFL's mlp_ratio
    t: dict[str, Target] = {}

    def one(name: str, path: str, width: int) -> None:
        t[name] = Target("transformer", ((path, width),))

    for i in range(cfg["num_layers"]):
        b, k = f"transformer_blocks.{i}", f"lora_unet_double_blocks_{i}"
        for side, qkv, proj, ff, norm in (("img", ("to_q", "to_k", "to_v"), "to_out.0", "ff", "norm1"),
                                          ("txt", ("add_q_proj", "add_k_proj", "add_v_proj"), "to_add_out",
                                           "ff_context", "norm1_context")):
            t[f"{k}_{side}_attn_qkv"] = Target("transformer", tuple((f"{b}.attn.{q}", h) for q in qkv))
            one(f"{k}_{side}_attn_proj", f"{b}.attn.{proj}", h)
            one(f"{k}_{side}_mlp_0", f"{b}.{ff}.net.0.proj", mlp)
            one(f"{k}_{side}_mlp_2", f"{b}.{ff}.net.2", h)
            one(f"{k}_{side}_mod_lin", f"{b}.{norm}.linear", 6 * h)
    for i in range(cfg["num_single_layers"]):
        b, k = f"single_transformer_blocks.{i}", f"lora_unet_single_blocks_{i}"
        t[f"{k}_linear1"] = Target("transformer", ((f"{b}.attn.to_q", h), (f"{b}.attn.to_k", h),
                                                   (f"{b}.attn.to_v", h), (f"{b}.proj_mlp", mlp)))
        one(f"{k}_linear2", f"{b}.proj_out", h)
        one(f"{k}_modulation_lin", f"{b}.norm.linear", 3 * h)
    # in_dims embedders (lora_flux's network_args) and the final layer
    one("lora_unet_img_in", "x_embedder", h)
    one("lora_unet_txt_in", "context_embedder", h)
    for kohya, diff in (("time_in", "timestep_embedder"), ("vector_in", "text_embedder"),
                        ("guidance_in", "guidance_embedder")):
        one(f"lora_unet_{kohya}_in_layer", f"time_text_embed.{diff}.linear_1", h)
        one(f"lora_unet_{kohya}_out_layer", f"time_text_embed.{diff}.linear_2", h)
    one("lora_unet_final_layer_linear", "proj_out", cfg["patch_size"] ** 2 * (cfg["out_channels"]
                                                                              or cfg["in_channels"]))
    t["lora_unet_final_layer_adaLN_modulation_1"] = Target("transformer", (("norm_out.linear", 2 * h),),
                                                           swap_halves=True)
    return t


def _sd3_targets(cfg: dict[str, Any]) -> dict[str, Target]:
    h = cfg["num_attention_heads"] * cfg["attention_head_dim"]
    ctx = cfg["caption_projection_dim"]
    depth, attn2 = cfg["num_layers"], set(cfg.get("dual_attention_layers") or ())
    t: dict[str, Target] = {}
    for i in range(depth):
        b = f"transformer_blocks.{i}"
        x, c = f"lora_unet_joint_blocks_{i}_x_block", f"lora_unet_joint_blocks_{i}_context_block"
        t[f"{x}_attn_qkv"] = Target("transformer", tuple((f"{b}.attn.to_{q}", h) for q in "qkv"))
        t[f"{x}_attn_proj"] = Target("transformer", ((f"{b}.attn.to_out.0", h),))
        t[f"{x}_mlp_fc1"] = Target("transformer", ((f"{b}.ff.net.0.proj", 4 * h),))
        t[f"{x}_mlp_fc2"] = Target("transformer", ((f"{b}.ff.net.2", h),))
        t[f"{x}_adaLN_modulation_1"] = Target("transformer", ((f"{b}.norm1.linear", (9 if i in attn2 else 6) * h),))
        if i in attn2:
            t[f"{x}_attn2_qkv"] = Target("transformer", tuple((f"{b}.attn2.to_{q}", h) for q in "qkv"))
            t[f"{x}_attn2_proj"] = Target("transformer", ((f"{b}.attn2.to_out.0", h),))
        t[f"{c}_attn_qkv"] = Target("transformer", tuple((f"{b}.attn.add_{q}_proj", h) for q in "qkv"))
        if i == depth - 1:  # context_pre_only: no output projection or MLP; modulation to (shift, scale), swapped
            t[f"{c}_adaLN_modulation_1"] = Target("transformer", ((f"{b}.norm1_context.linear", 2 * ctx),),
                                                  swap_halves=True)
            continue
        t[f"{c}_attn_proj"] = Target("transformer", ((f"{b}.attn.to_add_out", h),))
        t[f"{c}_mlp_fc1"] = Target("transformer", ((f"{b}.ff_context.net.0.proj", 4 * h),))
        t[f"{c}_mlp_fc2"] = Target("transformer", ((f"{b}.ff_context.net.2", h),))
        t[f"{c}_adaLN_modulation_1"] = Target("transformer", ((f"{b}.norm1_context.linear", 6 * h),))
    return t


def targets(pipe: Any, arch: str) -> dict[str, Target]:
    """kohya module name -> Target, for every Linear a kohya LoRA of ``arch`` can wrap in this pipeline."""
    import torch

    cfg = dict(pipe.transformer.config)
    out = _flux_targets(cfg) if arch == "flux" else _sd3_targets(cfg)
    for prefix, comp in _TEXT_ENCODERS[arch].items():  # kohya: prefix + module path with "." -> "_"
        te = getattr(pipe, comp, None)
        if te is None:
            continue
        for path, m in te.named_modules():
            if isinstance(m, torch.nn.Linear):
                name = path if path.startswith("text_model.") else f"text_model.{path}"
                out[f"{prefix}_{name.replace('.', '_')}"] = Target(comp, ((path, m.out_features),))
    return out


def convert(tensors: dict[str, Any], pipe: Any, arch: str) -> Converted:
    """``tensors`` (a kohya file's state dict) as PEFT ``<component>.<module>.lora_A/B.weight`` for ``pipe``."""
    import torch

    table = targets(pipe, arch)
    modules = {comp: dict(getattr(pipe, comp).named_modules())
               for comp in {t.component for t in table.values()} if getattr(pipe, comp, None) is not None}
    out = Converted()
    for key in sorted(k for k in tensors if k.endswith(".lora_down.weight")):
        name = key[: -len(".lora_down.weight")]
        down, up = tensors[key].float(), tensors.get(f"{name}.lora_up.weight")
        target = table.get(name)
        if target is None or up is None:
            out.unmatched.append(name)
            continue
        mods = [modules.get(target.component, {}).get(path) for path, _ in target.parts]
        widths = [w for _, w in target.parts]
        if any(m is None for m in mods):
            out.unmatched.append(name)
            continue
        first: Any = mods[0]
        if (down.ndim != 2 or up.ndim != 2 or down.shape[1] != first.in_features or up.shape[0] != sum(widths)
                or up.shape[1] != down.shape[0]):
            out.wrong_width.append(name)
            continue
        rank = down.shape[0]
        alpha = tensors.get(f"{name}.alpha")
        scale = float(alpha) / rank if alpha is not None else 1.0  # no alpha: kohya's alpha = rank
        up = up.float()
        if target.swap_halves:
            shift, sc = up.chunk(2, dim=0)
            up = torch.cat([sc, shift], dim=0)
        start = 0
        for (path, width) in target.parts:
            stem = f"{target.component}.{path}"
            out.state_dict[f"{stem}.lora_A.weight"] = (down * scale).contiguous()
            out.state_dict[f"{stem}.lora_B.weight"] = up[start:start + width].contiguous()
            start += width
        out.matched.append(name)
    return out
