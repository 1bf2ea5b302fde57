"""kohya FLUX.1 / SD3 LoRA keys to diffusers modules (lora_audit.loaders.dit_lora), checked against diffusers' own
kohya FLUX converter at FLUX.1-dev's real size, and on the tiny SD3 model for the layout rules diffusers has no
converter for (qkv split, the swapped scale/shift of the pre-only context block)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from lora_audit.kohya.lora_layout_dit import FLUX_DEV, flux_modules  # noqa: E402
from lora_audit.loaders.dit_lora import convert  # noqa: E402


def _flux_dev_on_meta():
    from diffusers import FluxTransformer2DModel

    with torch.device("meta"):  # FLUX.1-dev's shapes, no memory
        t = FluxTransformer2DModel(num_layers=FLUX_DEV["depth"], num_single_layers=FLUX_DEV["depth_single_blocks"],
                                   guidance_embeds=True)
    return SimpleNamespace(transformer=t)


def _kohya(modules, rank: int, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for m in modules:
        down, up = m.shapes(rank)
        sd[f"{m.name}.lora_down.weight"] = torch.randn(*down, generator=g) * 0.1
        sd[f"{m.name}.lora_up.weight"] = torch.randn(*up, generator=g) * 0.1
        sd[f"{m.name}.alpha"] = torch.tensor(float(rank) / 2)
    return sd


@pytest.mark.slow
@pytest.mark.parametrize("split_qkv", [False])
def test_flux_dev_conversion_equals_diffusers_own(split_qkv):
    from diffusers.loaders.lora_conversion_utils import _convert_kohya_flux_lora_to_diffusers

    pipe = _flux_dev_on_meta()
    sd = _kohya(flux_modules(split_qkv=split_qkv), rank=1)
    ours = convert(dict(sd), pipe, "flux")
    assert not ours.unmatched and not ours.wrong_width
    assert len(ours.matched) == len(flux_modules(split_qkv=split_qkv)) == 19 * 10 + 38 * 3
    theirs = _convert_kohya_flux_lora_to_diffusers(dict(sd))
    stems = {k[: -len(".lora_A.weight")] for k in theirs if k.endswith(".lora_A.weight")}
    assert stems == {k[: -len(".lora_A.weight")] for k in ours.state_dict if k.endswith(".lora_A.weight")}
    g = torch.Generator().manual_seed(1)
    for stem in stems:  # the same weight delta B @ A on every diffusers module, probed with random inputs
        a, b = ours.state_dict[f"{stem}.lora_A.weight"], ours.state_dict[f"{stem}.lora_B.weight"]
        ta, tb = theirs[f"{stem}.lora_A.weight"], theirs[f"{stem}.lora_B.weight"]
        x = torch.randn(a.shape[1], 2, generator=g)
        assert torch.allclose(b @ (a @ x), tb @ (ta @ x), atol=1e-5), stem


def test_wrong_width_is_reported_not_loaded():
    pipe = _flux_dev_on_meta()
    m = flux_modules()[0]
    sd = {f"{m.name}.lora_down.weight": torch.zeros(4, m.in_features + 1), f"{m.name}.lora_up.weight":
          torch.zeros(m.out_features, 4), "lora_te3_encoder_block_0_layer_0_SelfAttention_q.lora_down.weight":
          torch.zeros(4, 8), "lora_te3_encoder_block_0_layer_0_SelfAttention_q.lora_up.weight": torch.zeros(8, 4)}
    out = convert(sd, pipe, "flux")
    assert out.wrong_width == [m.name] and out.unmatched == ["lora_te3_encoder_block_0_layer_0_SelfAttention_q"]
    assert out.state_dict == {}


@pytest.fixture(scope="module")
def tiny_sd3(tmp_path_factory):
    from diffusers import DiffusionPipeline

    from lora_audit.train.tiny_model import make_tiny_model

    path = make_tiny_model(tmp_path_factory.mktemp("sd3") / "m", "sd3")
    return DiffusionPipeline.from_pretrained(path, local_files_only=True, use_safetensors=True)


def test_sd3_qkv_split_alpha_and_pre_only_swap(tiny_sd3):
    h = 32  # tiny SD3: 2 heads x 16
    down, up = torch.randn(4, h), torch.randn(3 * h, 4)
    pre_down, pre_up = torch.randn(4, h), torch.randn(2 * h, 4)
    sd = {"lora_unet_joint_blocks_0_x_block_attn_qkv.lora_down.weight": down,
          "lora_unet_joint_blocks_0_x_block_attn_qkv.lora_up.weight": up,
          "lora_unet_joint_blocks_0_x_block_attn_qkv.alpha": torch.tensor(1.0),
          # the last block's context block is pre_only: modulation to (shift, scale) in sd-scripts' order
          "lora_unet_joint_blocks_1_context_block_adaLN_modulation_1.lora_down.weight": pre_down,
          "lora_unet_joint_blocks_1_context_block_adaLN_modulation_1.lora_up.weight": pre_up,
          "lora_unet_joint_blocks_1_context_block_mlp_fc1.lora_down.weight": pre_down,  # pre_only has no MLP
          "lora_unet_joint_blocks_1_context_block_mlp_fc1.lora_up.weight": pre_up}
    out = convert(sd, tiny_sd3, "sd3")
    sdict = out.state_dict
    assert out.unmatched == ["lora_unet_joint_blocks_1_context_block_mlp_fc1"]
    for i, q in enumerate("qkv"):  # alpha 1 / rank 4 folded into A; B cut at the parts' widths
        stem = f"transformer.transformer_blocks.0.attn.to_{q}"
        assert torch.allclose(sdict[f"{stem}.lora_B.weight"] @ sdict[f"{stem}.lora_A.weight"],
                              (up @ down)[i * h:(i + 1) * h] / 4)
    stem = "transformer.transformer_blocks.1.norm1_context.linear"
    got = sdict[f"{stem}.lora_B.weight"] @ sdict[f"{stem}.lora_A.weight"]
    assert torch.allclose(got[:h], (pre_up @ pre_down)[h:]) and torch.allclose(got[h:], (pre_up @ pre_down)[:h])
