"""A value kohya derived or shortened when it wrote the LoRA's metadata agrees with the argument it came from."""

from types import SimpleNamespace as S

from lora_audit.kohya.recorded import agrees, recorded_agrees


def test_derived_metadata_agrees_with_an_unset_argument():
    assert agrees("max_train_epochs", "v.safetensors:ss_num_epochs", 1, None, unset=True)
    assert not agrees("max_train_epochs", "v.safetensors:ss_num_epochs", 1, 10)  # a real disagreement


def test_recorded_steps_agree_when_epochs_override_them():
    lora, cfg = S(source="v.safetensors:ss_max_train_steps", value=300), S(source="config.toml:3", value=1600)
    assert recorded_agrees("max_train_steps", cfg, lora, epochs_set=True)
    assert not recorded_agrees("max_train_steps", cfg, lora, epochs_set=False)


def test_a_local_model_path_is_recorded_by_its_name():
    lora = S(source="v.safetensors:ss_sd_model_name", value="model.safetensors")
    assert recorded_agrees("pretrained_model_name_or_path", S(source="c.toml:1", value="/m/model.safetensors"), lora)
    assert recorded_agrees("pretrained_model_name_or_path", S(source="c.toml:1", value="C:\\m\\model.safetensors"),
                           lora)
    assert not recorded_agrees("pretrained_model_name_or_path", S(source="c.toml:1", value="/m/other.safetensors"),
                               lora)
    hub = S(source="v.safetensors:ss_sd_model_name", value="runwayml/stable-diffusion-v1-5")
    assert not recorded_agrees("pretrained_model_name_or_path", S(source="c.toml:1", value="x/stable-diffusion-v1-5"),
                               hub)


def test_a_relative_and_an_absolute_path_naming_one_place_agree(tmp_path):
    cfg = S(source=f"{tmp_path}/v/config.toml:3", value="output")
    assert recorded_agrees("output_dir", cfg, S(source=f"{tmp_path}/v/train.sh:15", value=f"{tmp_path}/v/output"))
    assert not recorded_agrees("output_dir", cfg, S(source="train.sh:15", value=f"{tmp_path}/elsewhere"))
    assert not recorded_agrees("network_module", S(source=f"{tmp_path}/c.toml:1", value="lora"),
                               S(source="x:1", value=f"{tmp_path}/lora"))


def test_a_study_variant_folder_inspects_without_conflicts(tmp_path):
    import json
    from pathlib import Path

    from click.testing import CliRunner

    from lora_audit.cli import main

    example = Path(__file__).resolve().parent.parent / "runs" / "examples" / "bespoke-punks"
    out = tmp_path / "study"
    r = CliRunner().invoke(main, ["ablate", str(example), "--good", "SD15_PERFECT", "--bad", "SDXL_Current",
                                  "--out", str(out)])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["inspect", "--json", str(out / "ofat-network-dim")])
    assert r.exit_code == 0, r.output
    (run,) = json.loads(r.output)["runs"]
    assert run["conflicts"] == [] and run["params"]["network_dim"]["value"] == 128
