"""The kohya LoRA layout and the file-size model: exact against files written by safetensors, ambiguous by design."""

from __future__ import annotations

import os

import pytest
from loras import kohya_metadata, minimal_metadata, write_lora

from lora_audit.kohya.filesize import Candidate, candidates, expected_size, settings_from_size, size_windows
from lora_audit.kohya.lora_layout import modules


def _by_name(arch, **kw):
    return {m.name: m for m in modules(arch, **kw)}


# --- layout -------------------------------------------------------------------------------------------------------

def test_module_counts_match_what_kohya_logs():
    # "create LoRA for Text Encoder: 72 modules." / "create LoRA for U-Net: 192 modules." (SD1.5);
    # SDXL: 264 text encoder modules (72 + 192) and 722 U-Net modules.
    sd15 = modules("sd15")
    assert len([m for m in sd15 if m.part == "te"]) == 72
    assert len([m for m in sd15 if m.part == "unet"]) == 192
    sdxl = modules("sdxl")
    assert len([m for m in sdxl if m.part in ("te1", "te2")]) == 264
    assert len([m for m in sdxl if m.part == "unet"]) == 722
    assert len([m for m in modules("sd2") if m.part == "te"]) == 23 * 6  # OpenCLIP-H without its last layer


def test_sd15_names_and_widths():
    m = _by_name("sd15")
    assert (m["lora_unet_down_blocks_0_attentions_0_proj_in"].in_features, m[
        "lora_unet_down_blocks_0_attentions_0_proj_in"].kernel) == (320, 1)
    k = m["lora_unet_up_blocks_3_attentions_2_transformer_blocks_0_attn2_to_k"]
    assert (k.in_features, k.out_features) == (768, 320)
    ff = m["lora_unet_mid_block_attentions_0_transformer_blocks_0_ff_net_0_proj"]
    assert (ff.in_features, ff.out_features) == (1280, 10240)
    fc = m["lora_te_text_model_encoder_layers_11_mlp_fc2"]
    assert (fc.in_features, fc.out_features) == (3072, 768)
    assert m["lora_te_text_model_encoder_layers_0_self_attn_q_proj"].shapes(4) == ([4, 768], [768, 4])


def test_sdxl_uses_sgm_names_and_two_text_encoders():
    m = _by_name("sdxl")
    k = m["lora_unet_input_blocks_4_1_transformer_blocks_1_attn2_to_k"]
    assert (k.in_features, k.out_features) == (2048, 640)
    assert "lora_unet_middle_block_1_transformer_blocks_9_ff_net_2" in m
    assert "lora_unet_output_blocks_2_1_transformer_blocks_9_attn1_to_out_0" in m
    assert not any("input_blocks_1_" in n for n in m)  # level 0 has no attention in SDXL
    assert m["lora_te2_text_model_encoder_layers_31_mlp_fc1"].out_features == 5120
    assert m["lora_te1_text_model_encoder_layers_11_self_attn_out_proj"].in_features == 768


def test_conv_dim_adds_resnet_and_sampler_convs():
    plain, conv = _by_name("sd15"), _by_name("sd15", conv=True)
    added = {n: m for n, m in conv.items() if n not in plain}
    assert len([m for m in added.values() if m.is_conv3x3]) == 50
    ds = added["lora_unet_down_blocks_0_downsamplers_0_conv"]
    assert (ds.kernel, ds.shapes(2)) == (3, ([2, 320, 3, 3], [320, 2, 1, 1]))
    # with conv_dim, kohya also wraps the ResnetBlock2D's Linear and 1x1 shortcut (at network_dim)
    assert added["lora_unet_up_blocks_0_resnets_0_time_emb_proj"].kernel == 0
    assert added["lora_unet_up_blocks_0_resnets_0_conv_shortcut"].in_features == 2560
    sdxl = _by_name("sdxl", conv=True)
    assert sdxl["lora_unet_input_blocks_3_0_op"].kernel == 3
    assert sdxl["lora_unet_output_blocks_5_2_conv"].in_features == 640
    assert sdxl["lora_unet_output_blocks_0_0_skip_connection"].in_features == 2560


# --- the size model against the real writer ------------------------------------------------------------------------

@pytest.mark.parametrize("arch,dim,prec,te,conv", [
    ("sd15", 4, "fp16", True, None),
    ("sd15", 4, "float", False, 2),
    ("sd2", 2, "bf16", True, None),
    ("sdxl", 1, "fp16", True, None),
])
def test_expected_size_is_exact(tmp_path, arch, dim, prec, te, conv):
    path = write_lora(tmp_path / "x.safetensors", arch, dim, prec, text_encoder=te, conv_dim=conv)
    assert os.path.getsize(path) == expected_size(arch, dim, prec, te, conv, metadata=False)


def test_expected_size_with_known_metadata_is_exact(tmp_path):
    for md in (kohya_metadata("sd15", 4, 2), minimal_metadata("sd15", 4, 2)):
        path = write_lora(tmp_path / "x.safetensors", "sd15", 4, "fp16", metadata=md)
        assert os.path.getsize(path) == expected_size("sd15", 4, "fp16", True, None, metadata=md)


def test_typical_metadata_is_an_estimate_on_top():
    assert expected_size("sd15", 32, "fp16") > expected_size("sd15", 32, "fp16", metadata=False)


# --- sizes as written by people ----------------------------------------------------------------------------------

def test_size_readings():
    labels = {w[0]: w[1:] for w in size_windows("72MB")}
    assert labels["72 MiB"][0] == 72 * 2**20 and labels["72 MB"][0] == 72_000_000
    low, high = labels["72 MiB"][1:]
    assert low == 71 * 2**20 and high == int(72.5 * 2**20)  # rounded to nearest, or up (ls -h)
    assert [w[0] for w in size_windows("36 MiB")] == ["36 MiB"]
    assert size_windows("75,497,472")[0][1] == 75_497_472
    assert size_windows(75_497_472)[0][1] == 75_497_472
    assert {w[0] for w in size_windows("1.7G")} == {"1.7 GiB", "1.7 GB"}
    with pytest.raises(ValueError, match="cannot read a file size"):
        size_windows("big")
    with pytest.raises(ValueError):
        candidates("72MB", "sd99")


# --- inference ---------------------------------------------------------------------------------------------------

def _fits(cands):
    return {(c.arch, c.network_dim, c.save_precision, c.text_encoder, c.conv_dim) for c in cands}


@pytest.mark.parametrize("size", ["72MB", "72 MiB", 75_497_472, "75497472"])
def test_72mb_sd15_is_dim64_fp16_or_dim32_fp32(size):
    cands = candidates(size, "sd15")
    fits = _fits(cands)
    assert ("sd15", 64, "fp16", True, None) in fits
    assert ("sd15", 32, "float", True, None) in fits
    assert ("sd15", 64, "bf16", True, None) in fits  # same bytes as fp16
    assert (cands[0].network_dim, cands[0].save_precision) == (64, "fp16")


def test_36mb_sd15_is_dim32_fp16():
    c = candidates("36MB", "sd15")[0]
    assert (c.network_dim, c.save_precision, c.text_encoder, c.conv_dim) == (32, "fp16", True, None)


def test_17gb_sdxl_is_dim128_fp32():
    cands = candidates("1.7GB", "sdxl")
    assert ("sdxl", 128, "float", True, None) in _fits(cands)
    assert (cands[0].network_dim, cands[0].save_precision) == (128, "float")
    # without --arch every architecture is tried; SDXL's 128 @ fp32 is still the best fit
    assert (candidates("1.7GB")[0].arch, candidates("1.7GB")[0].network_dim) == ("sdxl", 128)


def test_candidates_are_ranked_and_json_shaped():
    cands = candidates("72MB")
    assert cands and all(isinstance(c, Candidate) for c in cands)
    assert set(cands[0].model_dump()) == {"arch", "network_dim", "save_precision", "text_encoder", "conv_dim",
                                          "expected_bytes", "delta_bytes", "variant", "layout", "network_args"}
    deltas = [abs(c.delta_bytes) for c in cands]
    assert deltas[0] <= min(deltas) + 64 * 1024
    c = cands[0]
    assert c.expected_bytes == expected_size(c.arch, c.network_dim, c.save_precision, c.text_encoder, c.conv_dim)


def test_a_size_nothing_fits():
    assert candidates("3 KB") == []
    assert settings_from_size("3 KB", "sd15", "run.toml:artifacts.x") == []


def test_settings_from_size_says_it_cannot_tell():
    settings = {s.name: s for s in settings_from_size("72MB", "sd15", "run.toml:artifacts.a.safetensors")}
    dim = settings["network_dim"]
    assert (dim.value, dim.origin, dim.source) == (64, "inferred", "run.toml:artifacts.a.safetensors")
    assert [a.value for a in dim.alternatives] == [32]
    assert "dim 64 @ fp16/bf16 or dim 32 @ float" in dim.note and "cannot tell them apart" in dim.note
    prec = settings["save_precision"]
    assert prec.value == "fp16" and {a.value for a in prec.alternatives} == {"bf16", "float"}
    # every fit keeps the text encoder: that one is stated without alternatives
    assert settings["text_encoder_included"].value is True and not settings["text_encoder_included"].alternatives
    assert settings["network_train_unet_only"].value is False


def test_settings_from_size_sdxl():
    settings = {s.name: s for s in settings_from_size("1.7GB", "sdxl", "run.toml:artifacts.b")}
    assert settings["network_dim"].value == 128
    assert settings["save_precision"].value == "float"
    assert 256 in [a.value for a in settings["network_dim"].alternatives]
