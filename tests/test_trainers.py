"""Every sd-scripts trainer is a first-class run: FLUX.1 and SD3 commands, GUI presets, full fine-tunes, and
audits across architectures."""

import json
import os
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from lora_audit.cli import main
from lora_audit.evidence.run import load_run
from lora_audit.kohya import gen_catalog
from lora_audit.kohya.catalog import catalog

SD_SCRIPTS = Path(os.environ.get("LORA_AUDIT_SD_SCRIPTS", "/work/sd-scripts-src"))

FLUX = """accelerate launch --mixed_precision bf16 --num_cpu_threads_per_process 1 {script} \\
  --pretrained_model_name_or_path flux1-dev.safetensors --clip_l clip_l.safetensors --t5xxl t5xxl_fp16.safetensors \\
  --ae ae.safetensors --cache_latents_to_disk --save_model_as safetensors --sdpa --persistent_data_loader_workers \\
  --max_data_loader_n_workers 2 --seed 42 --gradient_checkpointing --mixed_precision bf16 --save_precision bf16 \\
  --network_module networks.lora_flux --network_dim 4 --network_train_unet_only \\
  --optimizer_type adamw8bit --learning_rate 1e-4 \\
  --cache_text_encoder_outputs --cache_text_encoder_outputs_to_disk --fp8_base \\
  --highvram --max_train_epochs 4 --save_every_n_epochs 1 --dataset_config dataset.toml \\
  --output_dir out --output_name flux-lora \\
  --timestep_sampling {sampling} --discrete_flow_shift {shift} --model_prediction_type raw --guidance_scale 1.0 {extra}
"""
SDXL = """accelerate launch sdxl_train_network.py --pretrained_model_name_or_path sd_xl_base_1.0.safetensors \\
  --dataset_config dataset.toml --output_dir out --output_name style --save_precision fp16 --mixed_precision bf16 \\
  --network_module networks.lora --network_dim 32 --network_alpha 16 --learning_rate 1e-4 \\
  --optimizer_type adamw8bit --max_train_epochs 10 --cache_latents --gradient_checkpointing --seed 42
"""
DATASET = """[general]
caption_extension = '.txt'

[[datasets]]
resolution = 1024
batch_size = 2

  [[datasets.subsets]]
  image_dir = 'img'
  num_repeats = 1
"""


def _run(tmp_path, name, script_text, verdict=None):
    d = tmp_path / name
    d.mkdir()
    (d / "train.sh").write_text(script_text)
    (d / "dataset.toml").write_text(DATASET)
    if verdict:
        (d / "run.toml").write_text(f'verdict = "{verdict}"\n')
    return d


def _flux(tmp_path, name="flux", script="flux_train_network.py", sampling="shift", shift="3.1582", extra="",
          verdict=None):
    return _run(tmp_path, name, FLUX.format(script=script, sampling=sampling, shift=shift, extra=extra), verdict)


def _inspect(path):
    out = CliRunner().invoke(main, ["inspect", "--json", "--all", str(path)])
    assert out.exit_code == 0, out.output
    return json.loads(out.output)["runs"][0]


def _audit(*runs, tmp_path):
    out = CliRunner().invoke(main, ["audit", "--json", *map(str, runs)])
    assert out.exit_code == 0, out.output
    return json.loads(out.output)["pairs"][0]["findings"]


def test_a_flux_command_is_flux_with_no_flag_warnings(tmp_path):
    run = _inspect(_flux(tmp_path))
    p = run["params"]
    assert p["base_architecture"]["value"] == "flux" and "flux_train_network.py" in p["base_architecture"]["note"]
    assert p["training_script"]["value"] == "flux_train_network.py"
    assert p["timestep_sampling"]["value"] == "shift" and p["timestep_sampling"]["origin"] == "explicit"
    assert p["discrete_flow_shift"]["value"] == 3.1582 and p["ae"]["value"] == "ae.safetensors"
    # FLUX's own defaults, not train_network.py's: sigmoid_scale 1.0, weighting_scheme uniform
    assert p["sigmoid_scale"]["value"] == 1.0 and p["sigmoid_scale"]["origin"] == "default"
    assert "flux_train_network.py" in p["sigmoid_scale"]["note"]
    assert run["warnings"] == [], run["warnings"]


def test_flags_of_another_script_are_named(tmp_path):
    d = _flux(tmp_path, script="train_network.py")
    run = _inspect(d)
    messages = [w["message"] for w in run["warnings"]]
    assert any(m.startswith("--ae is a flux_train_network.py argument") and "train_network.py would refuse it" in m
               for m in messages)
    assert not any("did you mean --vae" in m or "unknown flag" in m for m in messages)
    # the script says SD1.x, the network module says FLUX.1: both are kept, as a conflict
    conflict = next(c for c in run["conflicts"] if c["param"] == "base_architecture")
    assert {v["value"] for v in conflict["values"]} == {"sd15", "flux"}
    findings = _audit(_run(tmp_path, "good", SDXL, "good"), d, tmp_path=tmp_path)
    foreign = [f for f in findings if f["id"] == "foreign-flag"]
    assert foreign and foreign[0]["level"] == "primary" and "--" in foreign[0]["title"]


def test_full_fine_tunes_have_their_own_arguments(tmp_path):
    script = ("accelerate launch sdxl_train.py --pretrained_model_name_or_path sd_xl_base_1.0.safetensors "
              "--dataset_config dataset.toml --learning_rate 1e-5 --learning_rate_te1 5e-6 --learning_rate_te2 0 "
              "--train_text_encoder --output_dir out\n")
    run = _inspect(_run(tmp_path, "ft", script))
    assert run["params"]["learning_rate_te1"]["value"] == 5e-6 and run["params"]["base_architecture"]["value"] == "sdxl"
    assert run["warnings"] == []
    lora = _inspect(_run(tmp_path, "lora", script.replace("sdxl_train.py", "sdxl_train_network.py")))
    assert any("--learning_rate_te1 is a sdxl_train.py argument" in w["message"] for w in lora["warnings"])


def test_an_sd3_command(tmp_path):
    script = ("accelerate launch sd3_train_network.py --pretrained_model_name_or_path sd3.5_large.safetensors "
              "--clip_l clip_l.safetensors --clip_g clip_g.safetensors --t5xxl t5xxl_fp16.safetensors "
              "--dataset_config dataset.toml --network_module networks.lora_sd3 --network_dim 16 "
              "--weighting_scheme logit_normal --logit_mean 0.0 --logit_std 1.0 --blocks_to_swap 10 "
              "--output_dir out\n")
    run = _inspect(_run(tmp_path, "sd3", script))
    assert run["params"]["base_architecture"]["value"] == "sd3" and run["warnings"] == []
    assert run["params"]["weighting_scheme"]["value"] == "logit_normal"


def test_architecture_from_the_network_module_or_the_lora_metadata(tmp_path):
    cfg = tmp_path / "config.toml"
    cfg.write_text('network_module = "networks.lora_flux"\nnetwork_dim = 16\n')
    assert load_run(cfg).params["base_architecture"].value == "flux"
    from dit_loras import kohya_flux

    f = kohya_flux(tmp_path / "l.safetensors", train_blocks="single",
                   metadata={"modelspec.architecture": "flux-1-dev/lora"})
    run = load_run(f)
    assert run.params["base_architecture"].value == "flux" and not run.conflicts


def test_model_name_is_a_hint_when_nothing_else_says(tmp_path):
    cfg = tmp_path / "config.toml"
    cfg.write_text('pretrained_model_name_or_path = "/models/animagine-xl-3.1.safetensors"\nnetwork_dim = 16\n')
    assert load_run(cfg).params["base_architecture"].value == "sdxl"  # not Anima: a whole word only


def test_sdxl_to_flux_is_one_architecture_change(tmp_path):
    good = _run(tmp_path, "sdxl", SDXL, "good")
    bad = _flux(tmp_path, verdict="bad")
    findings = _audit(good, bad, tmp_path=tmp_path)
    arch = next(f for f in findings if f["id"] == "architecture-switched")
    assert arch["level"] == "primary" and "sdxl → flux" in arch["title"]
    assert {"ae", "t5xxl", "timestep_sampling", "discrete_flow_shift", "network_module"} <= set(arch["params"])
    ids = {f["id"] for f in findings}
    assert not ids & {"change:ae", "change:t5xxl", "timestep-sampling-changed", "model-prediction-changed"}
    diff = CliRunner().invoke(main, ["diff", str(good), str(bad)])
    ae_line = next(line for line in diff.output.splitlines() if line.startswith("ae "))
    assert "unknown" not in ae_line  # an argument SDXL's script does not have is unset there, not unknown
    from lora_audit.ablate.plan import change_sets

    sets, _ = change_sets(load_run(good), load_run(bad))
    arch_set = next(s for s in sets if s.id == "architecture")
    assert {"training_script", "base_architecture", "pretrained_model_name_or_path"} <= set(arch_set.params)


@pytest.mark.parametrize("sampling,level", [("sigmoid", "unlikely"), ("shift", "primary")])
def test_discrete_flow_shift_acts_only_with_shift_sampling(tmp_path, sampling, level):
    good = _flux(tmp_path, "good", sampling=sampling, shift="3.0", verdict="good")
    bad = _flux(tmp_path, "bad", sampling=sampling, shift="1.0", verdict="bad")
    finding = next(f for f in _audit(good, bad, tmp_path=tmp_path) if "discrete_flow_shift" in f["params"])
    assert finding["level"] == level


def test_memory_settings_are_ranked_as_memory(tmp_path):
    good = _flux(tmp_path, "good", verdict="good")
    bad = _flux(tmp_path, "bad", extra="--blocks_to_swap 18 --cpu_offload_checkpointing", verdict="bad")
    findings = [f for f in _audit(good, bad, tmp_path=tmp_path) if f["kind"] == "change"]
    assert findings and all(f["level"] == "unlikely" for f in findings)
    assert any(f["id"] == "memory-only" for f in findings)


def test_a_kohya_ss_flux_preset_is_flux(tmp_path):
    # the keys of kohya_ss presets/lora/"flux1D - adamw8bit fp8.json" (values of our own)
    preset = {
        "LoRA_type": "Flux1", "flux1_checkbox": True, "sdxl": False, "sd3_checkbox": False,
        "pretrained_model_name_or_path": "/models/flux1-dev.safetensors", "ae": "/models/ae.sft",
        "clip_l": "/models/clip_l.safetensors", "t5xxl": "/models/t5xxl_fp16.safetensors",
        "network_dim": 16, "network_alpha": 16, "learning_rate": 0.0003, "optimizer": "AdamW8bit",
        "timestep_sampling": "sigmoid", "discrete_flow_shift": 3, "model_prediction_type": "raw",
        "guidance_scale": 1, "apply_t5_attn_mask": True, "t5xxl_max_token_length": 512, "train_data_dir": "/data",
        "max_resolution": "1024,1024", "train_batch_size": 1, "epoch": 10, "save_precision": "bf16",
        "mixed_precision": "bf16", "fp8_base": True, "blocks_to_swap": 0, "weighting_scheme": "logit_normal",
    }
    f = tmp_path / "flux1D.json"
    f.write_text(json.dumps(preset, indent=2))
    run = _inspect(f)
    p = run["params"]
    assert p["training_script"]["value"] == "flux_train_network.py" and p["base_architecture"]["value"] == "flux"
    assert p["network_module"]["value"] == "networks.lora_flux"
    assert p["timestep_sampling"]["value"] == "sigmoid" and p["timestep_sampling"]["origin"] == "explicit"
    assert p["guidance_scale"]["value"] == 1 and p["t5xxl_max_token_length"]["value"] == 512
    # weighting_scheme is passed only with sd3_checkbox (kohya_gui/lora_gui.py train_model)
    assert p["weighting_scheme"]["origin"] == "default"


@pytest.mark.skipif(not (SD_SCRIPTS / "flux_train_network.py").exists(), reason="no sd-scripts checkout")
def test_committed_catalog_is_what_the_generator_makes_without_torch(tmp_path):
    out = tmp_path / "catalog.json"
    gen_catalog.main([str(SD_SCRIPTS), "--out", str(out), "--commit", catalog().sd_scripts_commit])
    data = json.loads(out.read_text())
    committed = json.loads((Path(gen_catalog.__file__).parent / "data" / "catalog.json").read_text())
    assert data["arguments"] == committed["arguments"] and data["scripts"] == committed["scripts"]
    # the generator parses with ast; it never imports sd-scripts (so no torch is needed)
    assert not any(m.startswith(("library.", "networks.")) for m in sys.modules)


def test_the_embedded_trainer_refuses_a_flag_of_another_script(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "config.toml").write_text('pretrained_model_name_or_path = "nomodel"\nnetwork_dim = 4\n')
    out = CliRunner().invoke(main, ["train", "--config_file", "config.toml", "--ae", "ae.safetensors"])
    assert out.exit_code == 2 and "--ae is a flux_train_network.py argument" in out.output
    assert "Traceback" not in out.output


def test_a_lumina_gui_config_passes_the_lumina_fields(tmp_path):
    cfg = {"LoRA_type": "Lumina", "lumina_checkbox": True, "pretrained_model_name_or_path": "/m/lumina_2.safetensors",
           "lumina_ae": "/m/ae.safetensors", "lumina_gemma2": "/m/gemma2.safetensors",
           "lumina_timestep_sampling": "nextdit_shift", "lumina_discrete_flow_shift": 6.0, "network_dim": 16,
           "train_data_dir": "/d", "discrete_flow_shift": 3.0, "timestep_sampling": "sigmoid"}
    f = tmp_path / "lumina.json"
    f.write_text(json.dumps(cfg, indent=1))
    p = _inspect(f)["params"]
    assert (p["base_architecture"]["value"], p["network_module"]["value"]) == ("lumina", "networks.lora_lumina")
    # the lumina_* fields, not the FLUX ones (those are passed only with flux1_checkbox)
    assert (p["timestep_sampling"]["value"], p["discrete_flow_shift"]["value"]) == ("nextdit_shift", 6.0)
    assert p["ae"]["value"] == "/m/ae.safetensors" and p["gemma2"]["origin"] == "explicit"


def test_a_config_key_of_another_script_is_ignored_and_said(tmp_path):
    d = tmp_path / "bad"
    d.mkdir()
    (d / "config.toml").write_text('pretrained_model_name_or_path = "m.safetensors"\ntrain_data_dir = "d"\n'
                                   't5xxl = "t5.safetensors"\nnetwork_dim = 8\n')
    (d / "train.sh").write_text("accelerate launch train_network.py --config_file config.toml\n")
    (d / "run.toml").write_text('verdict = "bad"\n')
    run = _inspect(d)
    assert "t5xxl" not in run["params"]  # train_network.py never reads it
    assert any("--t5xxl is a flux_train_network.py argument" in w["message"] and "ignores it silently" in w["message"]
               for w in run["warnings"])
    findings = _audit(_run(tmp_path, "good", SDXL, "good"), d, tmp_path=tmp_path)
    key = next(f for f in findings if f["id"] == "foreign-key")
    assert key["level"] == "primary" and "t5xxl" in key["title"] and "train_network.py" in key["title"]
