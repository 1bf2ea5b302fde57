"""Variants are the user's own files edited at the lines the values came from: the common kohya layout (a train.sh
running ``accelerate launch --num_cpu_threads_per_process 1 train_network.py --config_file config.toml
--dataset_config dataset.toml``), compared file by file with the study's untouched baseline copy, as ``diff -r``
would; the runner keeps the user's launcher options and the script's own flags."""

import difflib
import filecmp
import json
import shlex
import tomllib
from pathlib import Path

from click.testing import CliRunner

from lora_audit.cli import main

from test_ablate_security import _bin, _run

SCRIPT = """\
#!/usr/bin/env bash
# my LoRA, trained the way the README of my GUI told me
cd "$(dirname "$0")"
accelerate launch --num_cpu_threads_per_process 1 train_network.py \\
  --config_file {config} \\
  --dataset_config dataset.toml{extra}
"""

CONFIG = """\
# my SD1.5 config
[model_arguments]
pretrained_model_name_or_path = "/models/v1-5.safetensors"  # base

[additional_network_arguments]
network_module = "networks.lora"
network_dim = 32      # rank
network_alpha = 16

[optimizer_arguments]
learning_rate = 1e-4  # tried 2e-4 once
optimizer_type = "AdamW8bit"

[training_arguments]
output_dir = "/out"
output_name = "mine"
max_train_epochs = 10
mixed_precision = "fp16"
save_model_as = "safetensors"
"""

DATASET = """\
[general]
enable_bucket = true
shuffle_caption = true
caption_extension = ".txt"

[[datasets]]
resolution = 512
batch_size = 4  # fits my 8 GB

  [[datasets.subsets]]
  image_dir = "img"
  num_repeats = 10
"""


def _run_folder(root: Path, name: str, verdict: str, config=CONFIG, dataset=DATASET, script_extra="",
                config_name="config.toml") -> Path:
    d = root / name
    (d / "img").mkdir(parents=True)
    (d / "train.sh").write_text(SCRIPT.format(config=shlex.quote(config_name), extra=script_extra))
    (d / config_name).write_text(config)
    (d / "dataset.toml").write_text(dataset)
    (d / "run.toml").write_text(f'verdict = "{verdict}"\n')
    return d


def _diff_r(a: Path, b: Path) -> dict:
    """What ``diff -r a b`` reports: {file: [changed lines]} for files in both, and the files only in b."""
    cmp = filecmp.dircmp(a, b)
    out = {"only_in_variant": sorted(cmp.right_only), "only_in_baseline": sorted(cmp.left_only)}
    for name in cmp.common_files:
        left, right = (a / name).read_text().splitlines(), (b / name).read_text().splitlines()
        lines = [l for l in difflib.unified_diff(left, right, lineterm="", n=0)
                 if l[:1] in "+-" and not l.startswith(("+++", "---"))]
        if lines:
            out[name] = lines
    return out


def _ablate(tmp_path, good, bad, *extra):
    out = tmp_path / "study"
    r = CliRunner().invoke(main, ["ablate", "--good", str(good), "--bad", str(bad), "--out", str(out), *extra])
    assert r.exit_code == 0, r.output
    return out


def test_common_layout_variants_are_the_users_files_edited_at_their_lines(tmp_path):
    good = _run_folder(tmp_path, "good", "good")
    bad = _run_folder(tmp_path, "bad", "bad", CONFIG.replace("network_dim = 32      # rank", "network_dim = 64"),
                      DATASET.replace("batch_size = 4  # fits my 8 GB", "batch_size = 2"))
    study = _ablate(tmp_path, good, bad)
    base = study / "baseline-good"
    # the baseline copy is the user's files as they are
    for name in ("train.sh", "config.toml", "dataset.toml"):
        assert (base / name).read_text() == (good / name).read_text()
    outputs = ['-output_dir = "/out"', '-output_name = "mine"', '+output_dir = "output"']
    d = _diff_r(base, study / "ofat-network-dim")
    assert d.pop("only_in_variant") == ["lora-audit-run.sh", "variant.json"] and d.pop("only_in_baseline") == []
    assert list(d) == ["config.toml"] and sorted(d["config.toml"]) == sorted([
        "-network_dim = 32      # rank", *outputs, "+network_dim = 64      # rank", '+output_name = "mine-ofat-network-dim"'])
    # a value the dataset TOML sets is edited there (kohya takes it before the config's), comment kept
    d = _diff_r(base, study / "ofat-train-batch-size")
    assert d["dataset.toml"] == ["-batch_size = 4  # fits my 8 GB", "+batch_size = 2  # fits my 8 GB"]
    assert set(d) == {"only_in_variant", "only_in_baseline", "config.toml", "dataset.toml"}
    assert [l for l in d["config.toml"] if "output" not in l] == []
    # the control: only the per-variant output; no logging_dir was added
    d = _diff_r(base, study / "control")
    assert set(d) == {"only_in_variant", "only_in_baseline", "config.toml"} and len(d["config.toml"]) == 4
    assert not any("logging_dir" in (study / v / "config.toml").read_text() for v in ("control", "ofat-network-dim"))
    # the runner keeps the launcher options the user wrote
    bindir, calls = _bin(tmp_path)
    (argv,) = _run(study / "ofat-network-dim" / "lora-audit-run.sh", bindir, calls)
    assert argv[:4] == ["accelerate", "launch", "--num_cpu_threads_per_process", "1"]
    assert argv[5:] == ["--config_file", "config.toml", "--dataset_config", "dataset.toml"]
    # the user's own train.sh, as it is, runs this variant too (its relative paths name the copies)
    (argv,) = _run(study / "ofat-network-dim" / "train.sh", bindir, calls)
    assert argv[1:] == ["launch", "--num_cpu_threads_per_process", "1", "train_network.py", "--config_file",
                        "config.toml", "--dataset_config", "dataset.toml"]
    cfg = tomllib.loads((study / "ofat-network-dim" / "config.toml").read_text())
    assert cfg["additional_network_arguments"]["network_dim"] == 64


def test_script_flags_stay_flags_and_a_foreign_config_name_is_pointed_at_the_copy(tmp_path):
    extra = " \\\n  --network_dim=32 \\\n  --seed 42"
    config = CONFIG.replace("network_dim = 32      # rank\n", "")
    good = _run_folder(tmp_path, "good", "good", config, script_extra=extra, config_name="my lora.toml")
    bad = _run_folder(tmp_path, "bad", "bad", config.replace("learning_rate = 1e-4", "learning_rate = 3e-4"),
                      script_extra=extra.replace("32", "64"), config_name="my lora.toml")
    study = _ablate(tmp_path, good, bad)
    base = study / "baseline-good"
    d = _diff_r(base, study / "ofat-network-dim")
    v = study / "ofat-network-dim"
    assert sorted(d["train.sh"]) == sorted(["-  --config_file 'my lora.toml' \\", "-  --network_dim=32 \\",
                                            f"+  --config_file={v.resolve() / 'config.toml'} \\",
                                            "+  --network_dim=64 \\"])
    assert [l for l in d["config.toml"] if "output" not in l] == []  # network_dim is the script's, not the config's
    bindir, calls = _bin(tmp_path)
    (argv,) = _run(v / "lora-audit-run.sh", bindir, calls)
    i = argv.index("--config_file")
    # the script's flags, with the variant's value, after --config_file: kohya's command line wins over the config
    assert sorted(argv[i + 4:]) == ["--network_dim=64", "--seed=42"]
    (argv,) = _run(study / "ofat-learning-rate" / "lora-audit-run.sh", bindir, calls)
    assert "--network_dim=32" in argv
    assert tomllib.loads((study / "ofat-learning-rate" / "config.toml").read_text())[
        "optimizer_arguments"]["learning_rate"] == 3e-4


def test_logging_dir_only_when_the_run_had_one_or_log_is_asked(tmp_path):
    config = CONFIG.replace('output_name = "mine"', 'output_name = "mine"\nlogging_dir = "/logs"  # tensorboard')
    good = _run_folder(tmp_path, "good", "good", config)
    bad = _run_folder(tmp_path, "bad", "bad", config.replace("network_dim = 32", "network_dim = 8"))
    study = _ablate(tmp_path, good, bad)
    d = _diff_r(study / "baseline-good", study / "control")
    assert '-logging_dir = "/logs"  # tensorboard' in d["config.toml"]
    assert '+logging_dir = "logs"  # tensorboard' in d["config.toml"]
    record = json.loads((study / "control" / "variant.json").read_text())
    assert not any(c["param"] == "logging_dir" for c in record["changes"])  # the run had one: per-variant path
