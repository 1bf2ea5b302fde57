"""--config_file and --dataset_config TOML with kohya's precedence."""


import pytest
import toml

from lora_audit.errors import EvidenceError
from lora_audit.evidence.config_toml import parse_config_toml
from lora_audit.evidence.dataset_toml import parse_dataset_toml
from lora_audit.evidence.invocation import parse_argv


def _settings(ev):
    return {s.name: s for s in ev.settings}


def test_sectioned_config_is_flattened_with_lines(tmp_path):
    p = tmp_path / "cfg.toml"
    p.write_text('[model]\npretrained_model_name_or_path = "m"\n\n[network]\nnetwork_dim = 32\nnetwork_alpha = 16.0\n'
                 '[data]\ntrain_data_dir = "img"\n')
    ev = parse_config_toml(p)
    s = _settings(ev)
    assert s["network_dim"].value == 32 and s["network_dim"].source.endswith("cfg.toml:5")
    assert s["network_alpha"].value == 16.0
    assert ev.complete is True  # names the model and the data


def test_typo_and_wrong_type_are_flagged(tmp_path):
    p = tmp_path / "cfg.toml"
    p.write_text('network_dims = 64\nlearning_rate = "1e-4"\n')
    ev = parse_config_toml(p)
    assert "network_dims" not in _settings(ev)
    assert ev.facts["ignored_keys"][0]["nearest"] == "network_dim"
    assert any("did you mean network_dim" in w.message and w.source.endswith(":1") for w in ev.warnings)
    lr = _settings(ev)["learning_rate"]
    assert lr.value == "1e-4"  # kohya does not convert config values: nor do we
    assert ev.facts["mistyped"][0]["name"] == "learning_rate"


def test_invalid_toml_names_file_and_line(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text("network_dim = 32\nnetwork_alpha = = 1\n")
    with pytest.raises(EvidenceError) as e:
        parse_config_toml(p)
    assert e.value.line == 2 and "bad.toml" in str(e.value)


def test_command_line_beats_config_file(tmp_path):
    (tmp_path / "cfg.toml").write_text("network_dim = 64\nnetwork_alpha = 32\nshuffle_caption = true\n")
    ev = parse_argv(["--config_file", "cfg", "--network_dim", "16"], base_dir=tmp_path)  # .toml appended like kohya
    s = _settings(ev)
    assert s["network_dim"].value == 16 and "command line wins" in s["network_dim"].note
    assert s["network_alpha"].value == 32 and s["network_alpha"].source.endswith("cfg.toml:2")
    assert s["shuffle_caption"].value is True


def test_missing_config_file_makes_run_incomplete(tmp_path):
    ev = parse_argv(["--config_file", "nope.toml"], base_dir=tmp_path)
    assert ev.complete is False and any("not found" in w.message for w in ev.warnings)


DATASET = """
[general]
shuffle_caption = true
caption_extension = ".txt"
keep_tokens = 2

[[datasets]]
resolution = 1024
batch_size = 2

  [[datasets.subsets]]
  image_dir = "img/a"
  num_repeats = 10

  [[datasets.subsets]]
  image_dir = "img/b"
  num_repeats = 2
  keep_tokens = 1
"""


def test_dataset_config_overrides_command_line(tmp_path):
    (tmp_path / "ds.toml").write_text(DATASET)
    ev = parse_argv(["--dataset_config", "ds.toml", "--resolution", "512,512", "--train_batch_size", "4"],
                    base_dir=tmp_path)
    s = _settings(ev)
    assert s["resolution"].value == 1024 and s["resolution"].source.endswith("ds.toml:8")
    assert s["train_batch_size"].value == 2  # batch_size in the dataset wins over --train_batch_size
    assert any("overrides" in w.message for w in ev.warnings)
    assert s["shuffle_caption"].value is True
    assert s["num_repeats"].value == [10, 2] and "per subset" in s["num_repeats"].note
    assert s["keep_tokens"].value == [2, 1]


def test_dataset_falls_back_to_command_line_then_default(tmp_path):
    (tmp_path / "ds.toml").write_text('[[datasets]]\n[[datasets.subsets]]\nimage_dir = "x"\n')
    cfg = parse_dataset_toml(tmp_path / "ds.toml")
    resolved = cfg.resolve({"shuffle_caption": True, "caption_extension": None})
    sub = resolved[0].subsets[0]
    assert sub.params["shuffle_caption"] is True and sub.sources["shuffle_caption"] == "argparse"
    assert sub.params["caption_extension"] == ".caption"  # kohya's DreamBooth default
    assert resolved[0].params["batch_size"] == 1


def test_dataset_unknown_key_and_bad_type_warn(tmp_path):
    (tmp_path / "ds.toml").write_text('[general]\nshufle_caption = true\n[[datasets]]\nbatch_size = "2"\n'
                                      '[[datasets.subsets]]\nimage_dir = "x"\n')
    cfg = parse_dataset_toml(tmp_path / "ds.toml")
    msgs = [w.message for w in cfg.warnings]
    assert any("shufle_caption" in m and "shuffle_caption" in m for m in msgs)
    assert any("batch_size should be int" in m for m in msgs)


def test_generated_style_toml_is_readable_by_kohyas_toml_package(tmp_path):
    # kohya reads configs with the `toml` package: our reading must agree with it on the same file
    p = tmp_path / "cfg.toml"
    p.write_text('[a]\nnetwork_dim = 8\noptimizer_args = ["weight_decay=0.01", "betas=0.9,0.99"]\n')
    flat = {k: v for sec in toml.load(p).values() for k, v in sec.items()}
    s = _settings(parse_config_toml(p))
    assert {k: s[k].value for k in flat} == flat


def test_choice_outside_kohyas_is_flagged(tmp_path):
    p = tmp_path / "cfg.toml"
    p.write_text('mixed_precision = "BF16"\n')
    ev = parse_config_toml(p)
    assert ev.facts["mistyped"] and "not one of kohya's choices" in ev.warnings[0].message


def test_a_key_in_two_sections_takes_the_later_value_and_line(tmp_path):
    # train_util.read_config_from_file flattens the sections in file order: the later assignment wins
    p = tmp_path / "cfg.toml"
    p.write_text('network_dim = 8\n\n[network]\nnetwork_dim = 16\n\n'
                 '[override]\nnetwork_dim = 32\nlearning_rate = 1e-4\n')
    ev = parse_config_toml(p)
    dims = [s for s in ev.settings if s.name == "network_dim"]
    assert [(s.value, s.source) for s in dims] == [(32, f"{p}:7")]
    assert any("set twice; kohya keeps the later value" in w.message for w in ev.warnings)


def test_the_later_value_is_the_runs_value_on_the_command_line(tmp_path):
    from click.testing import CliRunner

    from lora_audit.cli import main

    d = tmp_path / "run"
    d.mkdir()
    (d / "config.toml").write_text('[a]\nnetwork_dim = 16\n[b]\nnetwork_dim = 64\n')
    res = CliRunner().invoke(main, ["inspect", "--json", str(d)])
    assert res.exit_code == 0, res.output
    import json

    (run,) = json.loads(res.output)["runs"]
    assert run["params"]["network_dim"]["value"] == 64
    assert run["params"]["network_dim"]["source"].endswith("config.toml:4")
    assert not [c for c in run["conflicts"] if c["param"] == "network_dim"]  # one file, one value: no conflict
