"""kohya_ss GUI JSON configs: the arguments the GUI's train_model would pass to kohya, with their lines."""

import json
from pathlib import Path

import pytest

from lora_audit.errors import EvidenceError
from lora_audit.evidence.gui_json import is_gui_json, parse_gui_json
from lora_audit.kohya.gui_keys import gui_keys
from lora_audit.model import Evidence

PRESETS = Path(__file__).parent / "data" / "gui"


def settings(ev: Evidence) -> dict:
    return {s.name: s for s in ev.settings}


def values(ev: Evidence) -> dict:
    return {s.name: s.value for s in ev.settings}


def line_of(path: Path, key: str) -> int:
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip().startswith(f'"{key}"'):
            return i
    raise AssertionError(key)


def gui(tmp_path: Path, name: str = "config.json", **keys) -> Path:
    """A GUI JSON as the GUI writes it (indent 2, one key a line), with the keys given."""
    p = tmp_path / name
    p.write_text(json.dumps(keys, indent=2))
    return p


def warnings(ev: Evidence) -> str:
    return "\n".join(f"{w.source}: {w.message}" for w in ev.warnings)


# -- real presets -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(p.name for p in PRESETS.glob("*.json")))
def test_real_presets_are_gui_json_with_only_known_keys(name):
    path = PRESETS / name
    assert is_gui_json(json.loads(path.read_text()))
    ev = parse_gui_json(path)
    assert ev.kind == "gui_json"
    assert "unknown key" not in warnings(ev)
    assert not ev.complete  # presets carry no model or data paths: not a whole training invocation
    for s in ev.settings:
        assert s.source.startswith(str(path) + ":")


def test_sdxl_standard_preset():
    path = PRESETS / "sdxl-lora-dadaptadam.json"
    ev = parse_gui_json(path)
    v, s = values(ev), settings(ev)
    assert ev.script == "sdxl_train_network.py"
    assert v["resolution"] == "1024,1024"
    assert s["resolution"].source == f"{path}:{line_of(path, 'max_resolution')}"
    assert v["optimizer_type"] == "DAdaptAdam"
    assert v["optimizer_args"] == ["decouple=True", "weight_decay=0.1", "betas=0.9,0.91"]
    assert v["network_module"] == "networks.lora"
    assert "network_args" not in v  # Standard with no block weights or dropouts
    assert v["network_dim"] == 64 and v["network_alpha"] == 64.0
    assert v["seed"] == 1337 and v["max_token_length"] == 225  # strings in the file, numbers in the GUI
    assert v["text_encoder_lr"] == [1.0, 1.0]  # the GUI writes one per text encoder
    assert v["no_half_vae"] is True and "cache_text_encoder_outputs" not in v
    assert v["xformers"] is True  # a bool in GUIs before v22: "xformers"
    assert v["noise_offset"] == 0.0357
    # additional_parameters are command-line flags after --config_file
    assert v["network_train_unet_only"] is True
    assert s["network_train_unet_only"].source == f"{path}:{line_of(path, 'additional_parameters')}"
    # dropped by the GUI: kohya's defaults, not settings
    for name in ("min_timestep", "caption_dropout_rate", "v2", "scale_weight_norms", "vae_batch_size"):
        assert name not in v
    assert "min_timestep" in ev.facts["kohya_defaults"]


def test_sdxl_preset_warmup_percent_and_epoch():
    path = PRESETS / "sdxl-lora-dadaptadam.json"
    ev = parse_gui_json(path)
    s = settings(ev)
    # lr_warmup 5 (%), saved by a GUI before v25 (no lr_warmup_steps key), steps counted from the image folders
    w = s["lr_warmup_steps"]
    assert w.value == 0.05 and w.origin == "inferred"
    assert "5%" in w.note and w.source == f"{path}:{line_of(path, 'lr_warmup')}"
    assert ev.facts["gui"]["lr_warmup_percent"] == 5
    e = s["max_train_epochs"]
    assert e.value == 25 and e.origin == "inferred" and "max_train_steps" in e.note


def test_sdxl_lokr_preset():
    path = PRESETS / "sdxl-lokr.json"
    ev = parse_gui_json(path)
    v, s = values(ev), settings(ev)
    assert v["network_module"] == "lycoris.kohya"
    args = v["network_args"]
    for a in ("algo=lokr", "conv_dim=64", "conv_alpha=64", "factor=-1", "use_cp=True", "rank_dropout=0.1",
              "module_dropout=0.1", "preset=full"):
        assert a in args
    assert "LyCORIS_preset" in s["network_args"].note  # not in the file: the GUI's default "full"
    # noise_offset_type Multires: the multires values are passed, noise_offset is not
    assert v["multires_noise_iterations"] == 8 and v["multires_noise_discount"] == 0.2
    assert "noise_offset" not in v
    assert "noise_offset = 0.0357 is not passed" in warnings(ev)


def test_sd15_loha_preset():
    ev = parse_gui_json(PRESETS / "sd15-loha.json")
    v = values(ev)
    assert ev.script == "train_network.py"
    assert v["network_module"] == "lycoris.kohya"
    assert {"algo=loha", "conv_dim=8", "conv_alpha=4"} <= set(v["network_args"])
    assert v["resolution"] == "512,512"
    assert v["gradient_accumulation_steps"] == 4
    assert v["caption_extension"] == ".none-use-foldername"
    assert v["multires_noise_iterations"] == 8
    assert "lr_warmup_steps" not in v  # lr_warmup 0


def test_sd15_preset_with_numbers_as_strings():
    ev = parse_gui_json(PRESETS / "sd15-lora-edg.json")
    v = values(ev)
    assert v["learning_rate"] == pytest.approx(1e-4)
    assert v["text_encoder_lr"] == [pytest.approx(5e-5)] * 2
    assert v["unet_lr"] == pytest.approx(1e-4)
    assert v["noise_offset"] == 0.05  # no noise_offset_type in the file: the GUI's default Original
    assert v["resolution"] == "512,650"
    assert v["clip_skip"] == 2
    assert v["max_data_loader_n_workers"] == 1
    assert v["mem_eff_attn"] is True
    assert "keep_tokens" not in v  # "0"


# -- hand-written GUI JSON --------------------------------------------------------------------------------------

BASE = dict(LoRA_type="Standard", pretrained_model_name_or_path="/models/sd15.safetensors", train_data_dir="/img",
            output_dir="/out", output_name="run", network_dim=8, network_alpha=4, learning_rate=1e-4,
            text_encoder_lr=5e-5, unet_lr=1e-4, epoch=10, max_resolution="512,512", optimizer="AdamW8bit",
            train_batch_size=2, lr_warmup=0, lr_warmup_steps=0, sdxl=False)


def test_sdxl_flag_picks_the_script(tmp_path):
    assert parse_gui_json(gui(tmp_path, **BASE)).script == "train_network.py"
    ev = parse_gui_json(gui(tmp_path, **{**BASE, "sdxl": True, "sdxl_no_half_vae": True}))
    assert ev.script == "sdxl_train_network.py"
    assert values(ev)["no_half_vae"] is True
    # sdxl_no_half_vae only counts with SDXL
    ev = parse_gui_json(gui(tmp_path, **{**BASE, "sdxl_no_half_vae": True}))
    assert "no_half_vae" not in values(ev)


def test_training_config_is_complete(tmp_path):
    ev = parse_gui_json(gui(tmp_path, **BASE))
    assert ev.complete
    v = values(ev)
    assert v["pretrained_model_name_or_path"] == "/models/sd15.safetensors"
    assert v["optimizer_type"] == "AdamW8bit" and v["train_batch_size"] == 2
    preset = {k: x for k, x in BASE.items() if k not in ("pretrained_model_name_or_path", "train_data_dir")}
    assert not parse_gui_json(gui(tmp_path, **preset)).complete


def test_lr_warmup_percent_is_a_ratio_in_current_gui(tmp_path):
    path = gui(tmp_path, **{**BASE, "lr_warmup": 10})
    w = settings(parse_gui_json(path))["lr_warmup_steps"]
    assert w.value == 0.1 and w.origin == "explicit"  # kohya multiplies a float by the total steps
    assert w.source == f"{path}:{line_of(path, 'lr_warmup')}"


def test_lr_warmup_steps_beats_the_percent(tmp_path):
    path = gui(tmp_path, **{**BASE, "lr_warmup": 10, "lr_warmup_steps": 150})
    ev = parse_gui_json(path)
    assert values(ev)["lr_warmup_steps"] == 150
    assert "GUI uses lr_warmup_steps" in warnings(ev)


def test_lr_warmup_with_dataset_config_and_max_train_steps(tmp_path):
    ev = parse_gui_json(gui(tmp_path, **{**BASE, "lr_warmup": 10, "max_train_steps": 1234,
                                         "dataset_config": "/nowhere/dataset.toml"}))
    assert values(ev)["lr_warmup_steps"] == 123  # round(10% x 1234)
    assert values(ev)["max_train_steps"] == 1234


def test_lr_warmup_in_files_of_older_guis(tmp_path):
    old = {k: x for k, x in BASE.items() if k != "lr_warmup_steps"}
    w = settings(parse_gui_json(gui(tmp_path, **{**old, "lr_warmup": 10, "max_train_steps": 2000})))["lr_warmup_steps"]
    assert (w.value, w.origin) == (200, "inferred")
    w = settings(parse_gui_json(gui(tmp_path, **{**old, "lr_warmup": 10})))["lr_warmup_steps"]
    assert (w.value, w.origin) == (0.1, "inferred") and "image folders" in w.note
    ev = parse_gui_json(gui(tmp_path, **{**old, "lr_warmup": 10, "dataset_config": "/x/ds.toml"}))
    assert values(ev)["lr_warmup_steps"] == 0
    assert "lost" in warnings(ev)


def test_epoch_with_a_dataset_config_leaves_kohya_at_1600_steps(tmp_path):
    ev = parse_gui_json(gui(tmp_path, **{**BASE, "dataset_config": "/x/ds.toml"}))
    assert "max_train_epochs" not in values(ev) and "max_train_steps" not in values(ev)
    assert "1600 steps" in warnings(ev)


def test_max_train_epochs_field_is_passed_as_it_is(tmp_path):
    s = settings(parse_gui_json(gui(tmp_path, **{**BASE, "max_train_epochs": 7})))["max_train_epochs"]
    assert (s.value, s.origin) == (7, "explicit")


@pytest.mark.parametrize("lora_type, module, expected, absent", [
    ("Standard", "networks.lora", None, None),
    ("Kohya LoCon", "networks.lora", ["conv_dim=4", "conv_alpha=2"], None),
    ("LyCORIS/LoHa", "lycoris.kohya", ["preset=full", "conv_dim=4", "conv_alpha=2", "algo=loha"], None),
    ("LoCon", "lycoris.kohya", ["algo=locon"], None),  # the GUI renames it LyCORIS/LoCon when it opens the file
    ("LyCORIS/LoKr", "lycoris.kohya", ["algo=lokr", "factor=8"], None),
    ("LyCORIS/DyLoRA", "lycoris.kohya", ["algo=dylora", "block_size=4"], None),
    ("Kohya DyLoRA", "networks.dylora", ["conv_dim=4", "conv_alpha=2", "unit=4"], None),
    ("Kohya LoKr", "networks.lokr", ["conv_dim=4", "conv_alpha=2", "factor=8"], None),
    ("Kohya LoHa", "networks.loha", ["conv_dim=4", "conv_alpha=2"], "factor=8"),
    ("LoRA-FA", "networks.lora_fa", None, None),
])
def test_lora_type_gives_network_module_and_args(tmp_path, lora_type, module, expected, absent):
    path = gui(tmp_path, **{**BASE, "LoRA_type": lora_type, "conv_dim": 4, "conv_alpha": 2, "factor": 8,
                            "unit": 4})
    ev = parse_gui_json(path)
    s = settings(ev)
    assert s["network_module"].value == module
    assert s["network_module"].source == f"{path}:{line_of(path, 'LoRA_type')}"
    if expected is None:
        assert "network_args" not in s
    else:
        assert set(expected) <= set(s["network_args"].value)
    if absent:
        assert absent not in s["network_args"].value


def test_every_lora_type_of_the_table_has_a_module(tmp_path):
    for lora_type in gui_keys().lora_types:
        spec = gui_keys().network(lora_type, {})
        assert spec is not None and spec.module


def test_block_weights_and_loraplus_in_network_args(tmp_path):
    v = values(parse_gui_json(gui(tmp_path, **{**BASE, "down_lr_weight": "1,1,1,1,1,1,1,1,1,1,1,1",
                                               "rank_dropout": 0.1, "module_dropout": 0, "loraplus_lr_ratio": 16})))
    assert v["network_args"] == ["down_lr_weight=1,1,1,1,1,1,1,1,1,1,1,1", "rank_dropout=0.1",
                                 "loraplus_lr_ratio=16"]


def test_empty_strings_and_zeros_are_unset(tmp_path):
    path = gui(tmp_path, **{**BASE, "seed": "", "max_train_epochs": "", "training_comment": "", "vae": "",
                            "min_snr_gamma": 0, "keep_tokens": "0", "shuffle_caption": False, "optimizer_args": ""})
    ev = parse_gui_json(path)
    v = values(ev)
    for name in ("seed", "training_comment", "vae", "min_snr_gamma", "keep_tokens", "shuffle_caption",
                 "optimizer_args"):
        assert name not in v
    assert ev.facts["kohya_defaults"]["seed"] == f"{path}:{line_of(path, 'seed')}"


def test_a_zero_the_gui_drops_is_lost(tmp_path):
    ev = parse_gui_json(gui(tmp_path, **{**BASE, "max_grad_norm": 0}))
    assert "max_grad_norm" not in values(ev)
    assert "kohya uses its default max_grad_norm = 1.0" in warnings(ev)


def test_learning_rates_pick_the_trained_parts(tmp_path):
    v = values(parse_gui_json(gui(tmp_path, **{**BASE, "text_encoder_lr": 0})))
    assert v["network_train_unet_only"] is True and "text_encoder_lr" not in v
    v = values(parse_gui_json(gui(tmp_path, **{**BASE, "unet_lr": 0})))
    assert v["network_train_text_encoder_only"] is True and "unet_lr" not in v
    v = values(parse_gui_json(gui(tmp_path, **BASE)))
    assert v["text_encoder_lr"] == [5e-5, 5e-5] and v["unet_lr"] == 1e-4
    assert "network_train_unet_only" not in v and "network_train_text_encoder_only" not in v


def test_cross_attention_dropdown(tmp_path):
    assert values(parse_gui_json(gui(tmp_path, **{**BASE, "xformers": "sdpa"})))["sdpa"] is True
    v = values(parse_gui_json(gui(tmp_path, **{**BASE, "xformers": "none"})))
    assert "sdpa" not in v and "xformers" not in v


def test_additional_parameters_beat_the_gui_fields(tmp_path):
    path = gui(tmp_path, **{**BASE, "additional_parameters": '--network_dim 16 --max_grad_norm=0.5 --netwrk_alpha 4'})
    ev = parse_gui_json(path)
    s = settings(ev)
    assert s["network_dim"].value == 16 and "command line wins" in s["network_dim"].note
    assert s["max_grad_norm"].value == 0.5
    assert "--netwrk_alpha" in warnings(ev) and "network_alpha" in warnings(ev)
    assert ev.facts["unknown_flags"][0]["source"] == f"{path}:{line_of(path, 'additional_parameters')}"


def test_stop_text_encoder_training_is_ignored_by_the_gui(tmp_path):
    ev = parse_gui_json(gui(tmp_path, **{**BASE, "stop_text_encoder_training": 20}))
    assert "stop_text_encoder_training" not in values(ev)
    assert "does not pass it" in warnings(ev)


def test_gui_only_and_accelerate_keys(tmp_path):
    ev = parse_gui_json(gui(tmp_path, **{**BASE, "model_list": "custom", "save_as_bool": False, "LyCORIS_preset":
                                         "full", "num_processes": 2, "mixed_precision": "bf16",
                                         "num_cpu_threads_per_process": 2}))
    v = values(ev)
    assert not {"model_list", "save_as_bool", "LyCORIS_preset", "num_processes"} & v.keys()
    assert ev.facts["accelerate"]["num_processes"] == 2
    assert v["mixed_precision"] == "bf16"  # both accelerate's and kohya's
    assert not ev.warnings


def test_unknown_key_warns_with_the_nearest_known_key(tmp_path):
    path = gui(tmp_path, **{**BASE, "netwrok_dim": 16})
    ev = parse_gui_json(path)
    w = [x for x in ev.warnings if "netwrok_dim" in x.message]
    assert w and "did you mean network_dim?" in w[0].message
    assert w[0].source == f"{path}:{line_of(path, 'netwrok_dim')}"
    assert ev.facts["ignored_keys"][0]["nearest"] == "network_dim"
    assert values(ev)["network_dim"] == 8


def test_invalid_json_names_the_line(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text('{\n  "LoRA_type": "Standard",\n  "network_dim": 8\n  "network_alpha": 4\n}\n')
    with pytest.raises(EvidenceError) as e:
        parse_gui_json(p)
    assert e.value.line == 4 and e.value.path == str(p)
    assert str(e.value).startswith(f"{p}:4: invalid JSON")


def test_json_that_is_not_an_object_is_an_error(tmp_path):
    p = tmp_path / "list.json"
    p.write_text("[1, 2]")
    with pytest.raises(EvidenceError, match="not an object"):
        parse_gui_json(p)


def test_repeated_key_warns_and_the_later_value_wins(tmp_path):
    p = tmp_path / "dup.json"
    p.write_text('{\n  "LoRA_type": "Standard",\n  "network_dim": 8,\n  "network_dim": 32\n}\n')
    ev = parse_gui_json(p)
    assert settings(ev)["network_dim"].value == 32
    assert settings(ev)["network_dim"].source == f"{p}:4"
    assert "set twice" in warnings(ev)


def test_key_lines_ignore_nested_objects(tmp_path):
    p = tmp_path / "nested.json"
    p.write_text('{"LoRA_type": "Standard", "x": {"network_dim": 1},\n "network_dim": 8}')
    ev = parse_gui_json(p)
    assert settings(ev)["network_dim"].source == f"{p}:2"


def test_dataset_config_is_followed_and_comes_first(tmp_path):
    (tmp_path / "ds.toml").write_text('[general]\nshuffle_caption = true\n\n[[datasets]]\nresolution = 768\n'
                                      'batch_size = 3\n\n  [[datasets.subsets]]\n  image_dir = "img"\n'
                                      '  num_repeats = 5\n')
    ev = parse_gui_json(gui(tmp_path, **{**BASE, "dataset_config": "D:/kohya/ds.toml", "max_train_steps": 500}))
    s = settings(ev)
    assert s["train_batch_size"].value == 3 and "dataset config" in s["train_batch_size"].note
    assert s["resolution"].value == 768
    assert s["shuffle_caption"].source == f"{tmp_path / 'ds.toml'}:2"
    assert str(tmp_path / "ds.toml") in ev.includes
    assert ev.complete


def test_missing_dataset_config_makes_the_evidence_incomplete(tmp_path):
    ev = parse_gui_json(gui(tmp_path, **{**BASE, "dataset_config": "/elsewhere/ds.toml"}))
    assert not ev.complete
    assert "not found" in warnings(ev)


def test_is_gui_json_tells_gui_configs_from_other_json():
    assert is_gui_json({"LoRA_type": "Standard"})
    assert is_gui_json({"epoch": 1, "max_resolution": "512,512", "optimizer": "AdamW"})
    assert not is_gui_json({"pretrained_model_name_or_path": "x", "learning_rate": 1e-4})
    assert not is_gui_json({"ss_network_dim": "32", "ss_network_alpha": "16"})
    assert not is_gui_json({})


def test_the_table_knows_every_key_of_the_real_presets():
    known = gui_keys().known
    for p in PRESETS.glob("*.json"):
        assert set(json.loads(p.read_text())) <= known


def test_a_kohya_argument_is_not_a_gui_field(tmp_path):
    ev = parse_gui_json(gui(tmp_path, **{**BASE, "network_args": "conv_dim=4"}))
    assert "network_args" not in values(ev)
    assert "not a GUI field" in warnings(ev) and "additional_parameters" in warnings(ev)


def test_keys_of_older_guis(tmp_path):
    old = {k: x for k, x in BASE.items() if k != "optimizer"}
    path = gui(tmp_path, **{**old, "use_8bit_adam": True, "lora_network_weights": "/loras/start.safetensors",
                            "lr_scheduler_num_cycles": "", "LoRA_type": "LoCon"})
    ev = parse_gui_json(path)
    s = settings(ev)
    assert s["optimizer_type"].value == "AdamW8bit"
    assert s["optimizer_type"].source == f"{path}:{line_of(path, 'use_8bit_adam')}"
    assert s["network_weights"].value == "/loras/start.safetensors"
    assert s["network_weights"].source == f"{path}:{line_of(path, 'lora_network_weights')}"
    assert (s["lr_scheduler_num_cycles"].value, s["lr_scheduler_num_cycles"].origin) == (10, "inferred")
    assert ev.facts["gui"]["LoRA_type"] == "LyCORIS/LoCon"
    assert "unknown key" not in warnings(ev)


def test_parse_file_reads_gui_json_and_skips_other_json(tmp_path):
    from lora_audit.evidence import parse_file

    (evidence,) = parse_file(PRESETS / "sdxl-lokr.json")
    assert evidence.kind == "gui_json" and evidence.script == "sdxl_train_network.py"
    other = tmp_path / "other.json"
    other.write_text('{"ss_network_dim": "32"}')
    assert parse_file(other) == []


# -- what the GUI drops, its own files, kohya's old spellings (issue 13) --------------------------------------------

def _inspect(path):
    from click.testing import CliRunner

    from lora_audit.cli import main

    r = CliRunner().invoke(main, ["inspect", str(path), "--json"])
    assert r.exit_code == 0, r.output
    (run,) = json.loads(r.output)["runs"]
    return run


def test_values_the_gui_drops_are_kohyas_defaults_even_in_a_preset(tmp_path):
    # a preset (no model path: not a whole invocation) still says what the GUI passes and what it leaves out
    preset = {k: v for k, v in BASE.items() if k != "pretrained_model_name_or_path"}
    p = gui(tmp_path, **{**preset, "noise_offset": 0, "shuffle_caption": False, "caption_extension": "",
                         "lr_scheduler_power": ""})
    params = _inspect(p)["params"]
    for name, default in (("noise_offset", None), ("shuffle_caption", False), ("caption_extension", ".caption")):
        assert params[name]["origin"] == "default", name
        assert params[name]["value"] == default
        assert params[name]["source"] == f"{p}:{line_of(p, name)}"
        assert '"", false or 0' in params[name]["note"]
    # "" is read by the GUI as its fallback 1.0 (update_my_data): kohya's default, not the user's setting
    power = params["lr_scheduler_power"]
    assert power["origin"] == "default" and power["value"] == 1.0 and "fallback" in power["note"]
    assert params["network_dim"]["origin"] == "explicit"


def test_the_gui_applications_own_settings_file_is_skipped(tmp_path):
    d = tmp_path / "run"
    d.mkdir()
    (d / "config.toml").write_text('[model]\nmodels_dir = "./models"\noutput_name = "x"\n\n'
                                   '[folders]\noutput_dir = "./outputs"\n\n[wd14_caption]\nthreshold = 0.35\n')
    (d / "train.toml").write_text('pretrained_model_name_or_path = "m.safetensors"\ntrain_data_dir = "img"\n'
                                  "network_dim = 4\n")
    run = _inspect(d)
    assert [e["path"] for e in run["evidence"]] == [str(d / "train.toml")]
    assert any("kohya_ss GUI's own settings file" in w["message"] for w in run["warnings"])
    assert run["params"]["output_name"]["origin"] != "explicit"


def test_the_guis_per_training_files_next_to_the_outputs(tmp_path):
    out = tmp_path / "punks" / "model"
    out.mkdir(parents=True)
    # kohya_gui/lora_gui.py train_model: config_lora-%Y%m%d-%H%M%S.toml (what kohya read) and the form's JSON
    (out / "config_lora-20240301-101500.toml").write_text(
        'pretrained_model_name_or_path = "/m/sd15.safetensors"\ntrain_data_dir = "/img"\nnetwork_dim = 16\n'
        'epoch = 10\nmax_train_steps = 1500\nnetwork_module = "networks.lora"\n')
    (out / "config_lora-20240228-090000.toml").write_text(
        'pretrained_model_name_or_path = "/m/sd15.safetensors"\ntrain_data_dir = "/img"\nnetwork_dim = 128\n')
    (out / "punks_20240301-101500.json").write_text(json.dumps(
        {**BASE, "network_dim": 16, "output_name": "punks", "output_dir": str(out)}, indent=2))
    run = _inspect(tmp_path / "punks")
    assert run["params"]["network_dim"]["value"] == 16  # the latest training, not the older 128
    assert not any(c["param"] == "network_dim" for c in run["conflicts"])
    msgs = "\n".join(w["message"] for w in run["warnings"])
    assert "older kohya_ss GUI config" in msgs and "config_lora-20240228-090000.toml" in msgs
    assert "epoch is a kohya_ss GUI field, not a kohya argument" in msgs
    assert "did you mean" not in msgs.split("epoch is a kohya_ss GUI field")[1].split("\n")[0]


def test_kohyas_old_spelling_caption_extention(tmp_path):
    d = tmp_path / "r"
    d.mkdir()
    (d / "train.sh").write_text("accelerate launch train_network.py --pretrained_model_name_or_path m "
                                "--train_data_dir img --caption_extension .caption --caption_extention .txt\n")
    run = _inspect(d)
    ext = run["params"]["caption_extension"]
    # train_util.prepare_dataset_args: args.caption_extension = args.caption_extention
    assert ext["value"] == ".txt" and ext["origin"] == "explicit" and "caption_extention" in ext["note"]
    assert "caption_extention" not in run["params"]
