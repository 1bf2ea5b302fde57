"""LoRA files of kohya's DiT networks and of the trainers people mix in, read from their headers.

Fixtures (tests/dit_loras.py) have the real key names and FLUX.1-dev / SD3.5 widths; their data is a sparse hole.
"""

import json

import pytest
from click.testing import CliRunner
from dit_loras import comfy_flux, diffusers_flux_modules, diffusers_sd3, kohya_flux, kohya_sd3, onetrainer_flux, peft

from lora_audit.cli import main
from lora_audit.evidence.safetensors_header import parse_safetensors
from lora_audit.kohya.lora_layout_dit import flux_modules, sd3_modules


def _inspect(path):
    out = CliRunner().invoke(main, ["inspect", "--json", str(path)])
    assert out.exit_code == 0, out.output
    run = json.loads(out.output)["runs"][0]
    return {k: p["value"] for k, p in run["params"].items()}, run


def test_flux_layout_has_kohyas_module_names_and_flux_dev_widths():
    mods = {m.name: m for m in flux_modules()}
    assert len(mods) == 19 * 10 + 38 * 3  # "create LoRA for FLUX all blocks: 304 modules"
    qkv = mods["lora_unet_double_blocks_0_img_attn_qkv"]
    assert (qkv.in_features, qkv.out_features) == (3072, 9216)
    assert (mods["lora_unet_double_blocks_18_txt_mlp_0"].out_features) == 12288
    assert (mods["lora_unet_single_blocks_37_linear1"].out_features) == 3 * 3072 + 12288
    assert (mods["lora_unet_single_blocks_0_linear2"].in_features) == 3072 + 12288
    assert len(flux_modules(train_blocks="single")) == 38 * 3
    t5 = [m for m in flux_modules(text_encoders="clip+t5") if m.name.startswith("lora_te3_")]
    assert len(t5) == 24 * 7 and any(m.name == "lora_te3_encoder_block_0_layer_1_DenseReluDense_wi_0" for m in t5)
    # split_qkv: kohya merges the split LoRAs back into 3x / 4x the rank on saving
    split = {m.name: m for m in flux_modules(split_qkv=True)}
    assert split["lora_unet_double_blocks_0_img_attn_qkv"].shapes(16)[0] == [48, 3072]
    assert split["lora_unet_single_blocks_0_linear1"].shapes(16)[0] == [64, 3072]


def test_sd35_large_layout():
    mods = {m.name: m for m in sd3_modules("sd3.5-large")}
    assert mods["lora_unet_joint_blocks_0_x_block_attn_qkv"].in_features == 2432  # 64 x depth 38
    last = "lora_unet_joint_blocks_37_context_block"
    assert f"{last}_attn_qkv" in mods and f"{last}_attn_proj" not in mods and f"{last}_mlp_fc1" not in mods
    assert mods[f"{last}_adaLN_modulation_1"].out_features == 2 * 2432  # pre_only: 2 modulations
    medium = {m.name for m in sd3_modules("sd3.5-medium")}
    assert "lora_unet_joint_blocks_12_x_block_attn2_qkv" in medium and \
        "lora_unet_joint_blocks_13_x_block_attn2_qkv" not in medium


def test_kohya_flux_lora(tmp_path):
    f = kohya_flux(tmp_path / "flux.safetensors", rank=16, alpha=8.0, dtype="BF16",
                   metadata={"ss_network_module": "networks.lora_flux", "ss_base_model_version": "flux1"})
    p, run = _inspect(f)
    assert p["base_architecture"] == "flux" and p["lora_format"] == "kohya"
    assert p["network_dim"] == 16 and p["network_alpha"] == 8.0 and p["save_precision"] == "bf16"
    assert p["network_module"] == "networks.lora_flux" and p["network_train_unet_only"] is True
    assert not [w for w in run["warnings"] if "not ones kohya" in w["message"] or "says" in w["message"]]


def test_kohya_flux_split_qkv_with_clip_reports_the_real_rank(tmp_path):
    ev = parse_safetensors(kohya_flux(tmp_path / "s.safetensors", rank=16, split_qkv=True, text_encoders="clip"))
    values = {s.name: s.value for s in ev.settings}
    assert values["network_dim"] == 16  # not 48/64: the merged qkv/linear1 modules are recognised
    assert ev.facts["layout"] == {"split_qkv": True}
    assert ev.facts["modules"] == {"unet": 304, "te1": 72} and values["text_encoder_included"] is True


def test_kohya_flux_train_blocks_single(tmp_path):
    ev = parse_safetensors(kohya_flux(tmp_path / "s.safetensors", train_blocks="single"))
    assert ev.facts["arch"] == "flux" and ev.facts["layout"] == {"train_blocks": "single"}


def test_ai_toolkit_diffusers_flux_lora_has_no_alpha(tmp_path):
    meta = {"software": json.dumps({"name": "ai-toolkit", "repo": "https://github.com/ostris/ai-toolkit"})}
    f = peft(tmp_path / "ai.safetensors", diffusers_flux_modules(), "transformer.", rank=32, metadata=meta)
    p, run = _inspect(f)
    assert p["base_architecture"] == "flux" and p["lora_format"] == "diffusers/peft"
    assert p["network_dim"] == 32 and p["network_alpha"] == 32.0
    assert "no alpha: scale 1" in run["params"]["network_alpha"]["note"]
    assert "ai-toolkit" in run["params"]["lora_format"]["note"]
    assert p.get("network_module") is None  # not a kohya network


def test_onetrainer_flux_lora(tmp_path):
    p, _ = _inspect(onetrainer_flux(tmp_path / "ot.safetensors", rank=8, alpha=1.0, dtype="F16"))
    assert (p["base_architecture"], p["lora_format"], p["network_dim"], p["network_alpha"], p["save_precision"]) == \
        ("flux", "OneTrainer", 8, 1.0, "fp16")


def test_comfyui_converted_kohya_flux_lora(tmp_path):
    p, _ = _inspect(comfy_flux(tmp_path / "c.safetensors", rank=32, alpha=16.0))
    assert (p["base_architecture"], p["lora_format"], p["network_dim"], p["network_alpha"]) == \
        ("flux", "ComfyUI/BFL", 32, 16.0)


def test_kohya_sd35_large_lora_with_text_encoders(tmp_path):
    ev = parse_safetensors(kohya_sd3(tmp_path / "sd3.safetensors", text_encoders="clip"))
    values = {s.name: s.value for s in ev.settings}
    assert ev.facts["arch"] == "sd3" and ev.facts["arch_variant"] == "sd3.5-large"
    assert values["network_module"] == "networks.lora_sd3"
    assert ev.facts["modules"] == {"unet": 377, "te1": 72, "te2": 192}


def test_diffusers_sd3_lora_told_from_flux_by_width(tmp_path):
    ev = parse_safetensors(diffusers_sd3(tmp_path / "d.safetensors"))
    assert ev.facts["arch"] == "sd3" and ev.facts["lora_format"] == "diffusers/peft"


def test_metadata_that_disagrees_with_the_keys_is_warned(tmp_path):
    f = kohya_flux(tmp_path / "f.safetensors", train_blocks="single",
                   metadata={"ss_base_model_version": "sdxl_base_v1-0"})
    ev = parse_safetensors(f)
    assert any("says SDXL but the tensors say FLUX.1" in w.message for w in ev.warnings)


@pytest.mark.parametrize("arch", ["flux", "sd3"])
def test_infer_dim_finds_the_real_layout_first(tmp_path, arch):
    if arch == "flux":
        f = kohya_flux(tmp_path / "f.safetensors", rank=16, dtype="BF16")
    else:
        f = kohya_sd3(tmp_path / "f.safetensors", rank=16, dtype="F16", text_encoders="clip")
    size = f.stat().st_size
    out = CliRunner().invoke(main, ["infer-dim", str(size), "--arch", arch, "--json"])
    assert out.exit_code == 0, out.output
    cands = json.loads(out.output)["candidates"]
    best = cands[0]
    assert best["arch"] == arch and best["network_dim"] == 16 and best["save_precision"] in ("fp16", "bf16")
    assert best["layout"] == ("DiT only" if arch == "flux" else "sd3.5-large, + CLIP")
    text = CliRunner().invoke(main, ["infer-dim", f"{size / 1e6:.0f}MB", "--arch", arch])
    assert text.exit_code == 0 and "layout (DiT)" in text.output and "16" in text.output


def test_flux_lora_metadata_gives_the_flow_matching_settings(tmp_path):
    md = {"ss_network_module": "networks.lora_flux", "ss_base_model_version": "flux1", "ss_model_type": "flux",
          "ss_apply_t5_attn_mask": "True", "ss_weighting_scheme": "none", "ss_guidance_scale": "1.0",
          "ss_timestep_sampling": "shift", "ss_sigmoid_scale": "1.0", "ss_model_prediction_type": "raw",
          "ss_discrete_flow_shift": "3.1582", "modelspec.architecture": "flux-1-dev/lora"}
    p, run = _inspect(kohya_flux(tmp_path / "f.safetensors", train_blocks="single", metadata=md))
    assert (p["timestep_sampling"], p["discrete_flow_shift"], p["guidance_scale"], p["apply_t5_attn_mask"]) == \
        ("shift", 3.1582, 1.0, True)
    assert run["params"]["timestep_sampling"]["origin"] == "explicit"
    assert p["base_architecture"] == "flux" and not run["conflicts"]


@pytest.mark.parametrize("arch,module", [("lumina", "networks.lora_lumina"),
                                         ("hunyuan_image", "networks.lora_hunyuan_image")])
def test_lumina_and_hunyuan_image_loras(tmp_path, arch, module):
    from dit_loras import kohya, write_lora

    from lora_audit.kohya.lora_layout_dit import hunyuan_image_modules, lumina_modules

    mods = lumina_modules(text_encoders="clip") if arch == "lumina" else hunyuan_image_modules()
    tensors, alphas = kohya(mods, 16, "BF16", 16.0)
    f = write_lora(tmp_path / "l.safetensors", tensors, None, alphas)
    p, run = _inspect(f)
    assert (p["base_architecture"], p["network_module"], p["network_dim"]) == (arch, module, 16)
    assert not run["warnings"]
    out = CliRunner().invoke(main, ["infer-dim", str(f.stat().st_size), "--arch", arch, "--json"])
    best = json.loads(out.output)["candidates"][0]
    assert (best["arch"], best["network_dim"], best["text_encoder"]) == (arch, 16, arch == "lumina")


def test_xlabs_flux_lora(tmp_path):
    from dit_loras import write_lora

    tensors = {}
    for b in range(19):
        for lora, out in (("qkv_lora1", 9216), ("qkv_lora2", 9216), ("proj_lora1", 3072), ("proj_lora2", 3072)):
            tensors[f"double_blocks.{b}.processor.{lora}.down.weight"] = ("BF16", [16, 3072])
            tensors[f"double_blocks.{b}.processor.{lora}.up.weight"] = ("BF16", [out, 16])
    p, run = _inspect(write_lora(tmp_path / "x.safetensors", tensors))
    assert (p["base_architecture"], p["lora_format"], p["network_dim"]) == ("flux", "XLabs", 16)
    assert "no alpha: scale 1" in run["params"]["network_alpha"]["note"]


def test_anima_lora_is_told_by_its_block_names(tmp_path):
    # lora_anima wraps Block's self_attn/cross_attn q/k/v/output_proj and mlp layer1/layer2 (anima_models.Block)
    from dit_loras import write_lora

    tensors = {}
    for b in range(2):
        for layer in ("self_attn_q_proj", "cross_attn_k_proj", "mlp_layer1"):
            tensors[f"lora_unet_blocks_{b}_{layer}.lora_down.weight"] = ("BF16", [8, 2048])
            tensors[f"lora_unet_blocks_{b}_{layer}.lora_up.weight"] = ("BF16", [2048, 8])
    p, _ = _inspect(write_lora(tmp_path / "a.safetensors", tensors))
    assert (p["base_architecture"], p["network_module"], p["network_dim"]) == ("anima", "networks.lora_anima", 8)



def test_anima_file_size(tmp_path):
    from dit_loras import kohya, write_lora

    from lora_audit.kohya.lora_layout_dit import anima_modules

    tensors, alphas = kohya(anima_modules(), 32, "BF16", 16.0)
    f = write_lora(tmp_path / "a.safetensors", tensors, None, alphas)
    assert _inspect(f)[0]["base_architecture"] == "anima"
    out = CliRunner().invoke(main, ["infer-dim", str(f.stat().st_size), "--arch", "anima", "--json"])
    best = json.loads(out.output)["candidates"][0]
    assert (best["arch"], best["network_dim"]) == ("anima", 32)
