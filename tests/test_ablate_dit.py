"""ablate across architectures with the DiT trainers (FLUX.1, SD3): the architecture change set carries every
argument one run's training script has and the other's lacks (--ae, --clip_l, --t5xxl, --timestep_sampling,
--guidance_scale... going to flux_train_network.py), so every variant's config keys and flags are ones its own
training script's parser accepts (checked against the catalog generated from sd-scripts' parsers)."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_ablate_security import _bin, _run

from lora_audit.cli import main
from lora_audit.kohya.catalog import catalog

SDXL = """\
accelerate launch --num_cpu_threads_per_process 2 sdxl_train_network.py \\
  --pretrained_model_name_or_path sd_xl_base_1.0.safetensors \\
  --train_data_dir img \\
  --network_module networks.lora \\
  --network_dim 16 \\
  --network_alpha 8 \\
  --resolution 1024,1024 \\
  --learning_rate 1e-4 \\
  --max_train_epochs 10 \\
  --mixed_precision bf16 \\
  --no_half_vae \\
  --output_dir out --output_name mine
"""

SD15 = """\
accelerate launch train_network.py \\
  --pretrained_model_name_or_path v1-5-pruned.safetensors \\
  --train_data_dir img \\
  --network_module networks.lora \\
  --network_dim 16 \\
  --network_alpha 8 \\
  --resolution 512,512 \\
  --learning_rate 1e-4 \\
  --max_train_epochs 10 \\
  --mixed_precision bf16 \\
  --clip_skip 2 \\
  --output_dir out --output_name mine
"""

FLUX = """\
accelerate launch --num_cpu_threads_per_process 2 flux_train_network.py \\
  --pretrained_model_name_or_path flux1-dev.safetensors \\
  --ae ae.safetensors \\
  --clip_l clip_l.safetensors \\
  --t5xxl t5xxl_fp16.safetensors \\
  --train_data_dir img \\
  --network_module networks.lora_flux \\
  --network_dim 16 \\
  --network_alpha 8 \\
  --resolution 1024,1024 \\
  --learning_rate 1e-4 \\
  --max_train_epochs 10 \\
  --mixed_precision bf16 \\
  --timestep_sampling shift \\
  --discrete_flow_shift 3.1582 \\
  --model_prediction_type raw \\
  --guidance_scale 1.0 \\
  --apply_t5_attn_mask \\
  --fp8_base \\
  --output_dir out --output_name mine
"""

SD3 = """\
accelerate launch sd3_train_network.py \\
  --pretrained_model_name_or_path sd3.5_large.safetensors \\
  --clip_l clip_l.safetensors \\
  --clip_g clip_g.safetensors \\
  --t5xxl t5xxl_fp16.safetensors \\
  --train_data_dir img \\
  --network_module networks.lora_sd3 \\
  --network_dim 16 \\
  --network_alpha 8 \\
  --resolution 1024,1024 \\
  --learning_rate 1e-4 \\
  --max_train_epochs 10 \\
  --mixed_precision bf16 \\
  --weighting_scheme logit_normal \\
  --training_shift 3.0 \\
  --output_dir out --output_name mine
"""

FLUX_ONLY = {"ae", "clip_l", "t5xxl", "timestep_sampling", "discrete_flow_shift", "model_prediction_type",
             "guidance_scale", "apply_t5_attn_mask"}


def _run_folder(root: Path, name: str, script: str, verdict: str) -> Path:
    d = root / name
    (d / "img").mkdir(parents=True)
    (d / "train.sh").write_text(script)
    (d / "run.toml").write_text(f'verdict = "{verdict}"\n')
    return d


def _ablate(tmp_path: Path, good: str, bad: str, *extra: str) -> Path:
    g = _run_folder(tmp_path, "good", good, "good")
    b = _run_folder(tmp_path, "bad", bad, "bad")
    out = tmp_path / "study"
    r = CliRunner().invoke(main, ["ablate", "--good", str(g), "--bad", str(b), "--out", str(out), *extra])
    assert r.exit_code == 0, r.output
    return out


def _flags(argv: list[str], script: str) -> list[str]:
    """The kohya flags of a recorded command line: the words after the training script that start with --."""
    i = next(i for i, w in enumerate(argv) if w.endswith("/" + script) or w == script)
    return [w[2:].split("=", 1)[0] for w in argv[i + 1:] if w.startswith("--")]


def _check_every_variant(study: Path, tmp_path: Path) -> dict[str, dict]:
    """Every variant's config keys, runner flags and edited script flags are accepted by the variant's script."""
    cat = catalog()
    bindir, calls = _bin(tmp_path)
    seen = {}
    for record_file in sorted(study.glob("*/variant.json")):
        record = json.loads(record_file.read_text())
        folder, script = record_file.parent, record["script"]
        cfg = tomllib.loads((folder / "config.toml").read_text())
        flat = {k: v for k, v in cfg.items() if not isinstance(v, dict)}
        for t in (v for v in cfg.values() if isinstance(v, dict)):
            flat.update(t)
        refused = [k for k in flat if not cat.accepts(script, k)]
        assert refused == [], (record["id"], script, [cat.foreign(k, script) for k in refused])
        (argv,) = _run(folder / record["runner"], bindir, calls)
        assert any(w.endswith("/" + script) for w in argv), argv
        refused = [f for f in _flags(argv, script) if not cat.accepts(script, f)]
        assert refused == [], (record["id"], "runner", refused)
        if record["edited_script"]:
            (argv,) = _run(folder / record["edited_script"], bindir, calls)
            assert script in argv, (record["id"], argv)  # the user's script names the variant's trainer
            refused = [f for f in _flags(argv, script) if not cat.accepts(script, f)]
            assert refused == [], (record["id"], "edited script", refused)
        seen[record["id"]] = {"script": script, "config": flat, "record": record}
    return seen


def test_sdxl_to_flux_is_one_architecture_change_with_every_flux_argument(tmp_path):
    study = _ablate(tmp_path, SDXL, FLUX)
    seen = _check_every_variant(study, tmp_path)
    # the FLUX-only arguments and FLUX's network module travel with the script; nothing FLUX-only is left alone
    arch = seen["ofat-architecture"]
    # the rest (fp8_base, no_half_vae) are arguments both scripts have, so they are ablated one at a time
    assert set(seen) == {"control", "ofat-architecture", "ofat-fp8-base", "ofat-no-half-vae"}, sorted(seen)
    assert arch["script"] == "flux_train_network.py"
    params = {c["param"] for c in arch["record"]["changes"]}
    assert FLUX_ONLY | {"training_script", "pretrained_model_name_or_path", "network_module"} <= params
    cfg = arch["config"]
    assert cfg["ae"] == "ae.safetensors" and cfg["t5xxl"] == "t5xxl_fp16.safetensors"
    assert cfg["timestep_sampling"] == "shift" and cfg["discrete_flow_shift"] == 3.1582
    assert cfg["network_module"] == "networks.lora_flux" and cfg["apply_t5_attn_mask"] is True
    assert seen["control"]["script"] == "sdxl_train_network.py"
    assert not FLUX_ONLY & set(seen["control"]["config"])
    # the user's script copy now runs flux_train_network.py, its launcher options kept
    text = (study / "ofat-architecture" / "train.sh").read_text()
    assert "--num_cpu_threads_per_process 2 flux_train_network.py" in text and "sdxl_train_network" not in text


def test_flux_baseline_reverse_drops_the_flux_arguments_with_the_script(tmp_path):
    """Reverse: the bad FLUX run with the good SDXL run's architecture: FLUX-only keys go (sdxl_train_network.py
    would refuse --ae, --t5xxl...)."""
    study = _ablate(tmp_path, SDXL, FLUX, "--strategy", "reverse")
    seen = _check_every_variant(study, tmp_path)
    arch = [v for v in seen.values() if "training_script" in {c["param"] for c in v["record"]["changes"]}]
    assert len(arch) == 1 and arch[0]["script"] == "sdxl_train_network.py"
    assert not FLUX_ONLY & set(arch[0]["config"]) and arch[0]["config"]["network_module"] == "networks.lora"
    others = [v for k, v in seen.items() if v is not arch[0] and k != "control"]  # control: the good SDXL run
    assert others and all(v["script"] == "flux_train_network.py" for v in others)
    assert seen["control"]["script"] == "sdxl_train_network.py"


@pytest.mark.parametrize("good, bad, script, only", [
    (SD15, FLUX, "flux_train_network.py", FLUX_ONLY),
    (SD15, SD3, "sd3_train_network.py", {"clip_l", "clip_g", "t5xxl", "weighting_scheme", "training_shift"}),
    (SDXL, SD3, "sd3_train_network.py", {"clip_l", "clip_g", "t5xxl", "weighting_scheme", "training_shift"}),
], ids=["sd15-flux", "sd15-sd3", "sdxl-sd3"])
def test_unet_to_dit_variants_are_accepted_by_their_script(tmp_path, good, bad, script, only):
    study = _ablate(tmp_path, good, bad)
    seen = _check_every_variant(study, tmp_path)
    arch = seen["ofat-architecture"]
    assert arch["script"] == script
    assert only <= {c["param"] for c in arch["record"]["changes"]}
    assert only <= set(arch["config"])
    assert all(v["script"] != script for k, v in seen.items() if k != "ofat-architecture")


SDXL_CONFIG = """\
pretrained_model_name_or_path = "sd_xl_base_1.0.safetensors"
train_data_dir = "img"
network_module = "networks.lora"
network_dim = 16
resolution = "1024,1024"
learning_rate = 1e-4
output_dir = "out"
output_name = "x"
"""

FLUX_CONFIG = """\
pretrained_model_name_or_path = "flux1-dev.safetensors"
ae = "ae.safetensors"
clip_l = "clip_l.safetensors"
t5xxl = "t5xxl_fp16.safetensors"
train_data_dir = "img"
network_module = "networks.lora_flux"  # FLUX
network_dim = 16
resolution = "1024,1024"
learning_rate = 1e-4
timestep_sampling = "shift"
discrete_flow_shift = 3.1582
guidance_scale = 1.0
output_dir = "out"
output_name = "x"
"""


def _config_run(root: Path, name: str, text: str, verdict: str) -> Path:
    d = root / name
    (d / "img").mkdir(parents=True)
    (d / "config.toml").write_text(text)
    (d / "run.toml").write_text(f'verdict = "{verdict}"\n')
    return d


def test_config_runs_name_no_script_the_architecture_picks_it(tmp_path):
    """Config TOMLs name no training script: each run's is its architecture's (SDXL: sdxl_train_network.py), and the
    FLUX arguments, unknown in the SDXL config only because its script has no such argument, go with the
    architecture instead of being left out as unknown."""
    good = _config_run(tmp_path, "good", SDXL_CONFIG, "good")
    bad = _config_run(tmp_path, "bad", FLUX_CONFIG, "bad")
    out = tmp_path / "study"
    r = CliRunner().invoke(main, ["ablate", "--good", str(good), "--bad", str(bad), "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "unknown in" not in r.output
    seen = _check_every_variant(out, tmp_path)
    assert {k: v["script"] for k, v in seen.items()} == {"control": "sdxl_train_network.py",
                                                         "ofat-architecture": "flux_train_network.py"}
    cfg = seen["ofat-architecture"]["config"]
    assert {"ae", "clip_l", "t5xxl", "timestep_sampling", "discrete_flow_shift", "guidance_scale"} <= set(cfg)
    # reverse: the FLUX config goes back to SDXL without its FLUX-only keys
    out2 = tmp_path / "study2"
    r = CliRunner().invoke(main, ["ablate", "--good", str(good), "--bad", str(bad), "--out", str(out2),
                                  "--strategy", "reverse"])
    assert r.exit_code == 0, r.output
    seen = _check_every_variant(out2, tmp_path)
    assert seen["reverse-architecture"]["script"] == "sdxl_train_network.py"
    assert not {"ae", "clip_l", "t5xxl", "timestep_sampling"} & set(seen["reverse-architecture"]["config"])


def test_a_script_run_against_a_config_run_gets_the_other_architectures_script(tmp_path):
    good = _run_folder(tmp_path, "good", SDXL, "good")
    bad = _config_run(tmp_path, "bad", FLUX_CONFIG, "bad")
    out = tmp_path / "study"
    r = CliRunner().invoke(main, ["ablate", "--good", str(good), "--bad", str(bad), "--out", str(out)])
    assert r.exit_code == 0, r.output
    seen = _check_every_variant(out, tmp_path)
    assert seen["ofat-architecture"]["script"] == "flux_train_network.py"
    text = (out / "ofat-architecture" / "train.sh").read_text()
    assert "flux_train_network.py" in text and "sdxl_train_network.py" not in text
