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
from test_ablate_security import _bin, _run

from lora_audit.cli import main

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
        lines = [ln for ln in difflib.unified_diff(left, right, lineterm="", n=0)
                 if ln[:1] in "+-" and not ln.startswith(("+++", "---"))]
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
        "-network_dim = 32      # rank", *outputs, "+network_dim = 64      # rank",
        '+output_name = "mine-ofat-network-dim"'])
    # a value the dataset TOML sets is edited there (kohya takes it before the config's), comment kept
    d = _diff_r(base, study / "ofat-train-batch-size")
    assert d["dataset.toml"] == ["-batch_size = 4  # fits my 8 GB", "+batch_size = 2  # fits my 8 GB"]
    assert set(d) == {"only_in_variant", "only_in_baseline", "config.toml", "dataset.toml"}
    assert [ln for ln in d["config.toml"] if "output" not in ln] == []
    # the control: only the per-variant output; no logging_dir was added
    d = _diff_r(base, study / "control")
    assert set(d) == {"only_in_variant", "only_in_baseline", "config.toml"} and len(d["config.toml"]) == 4
    assert not any("logging_dir" in (study / v / "config.toml").read_text() for v in ("control", "ofat-network-dim"))
    # the runner keeps the launcher options the user wrote
    bindir, calls = _bin(tmp_path)
    (argv,) = _run(study / "ofat-network-dim" / "lora-audit-run.sh", bindir, calls)
    assert argv[:4] == ["accelerate", "launch", "--num_cpu_threads_per_process", "1"]
    v = (study / "ofat-network-dim").resolve()
    assert argv[5:] == ["--config_file", f"{v}/config.toml", "--dataset_config", f"{v}/dataset.toml",
                        "--output_dir", f"{v}/output"]
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
    assert [ln for ln in d["config.toml"] if "output" not in ln] == []  # network_dim is the script's, not the config's
    bindir, calls = _bin(tmp_path)
    (argv,) = _run(v / "lora-audit-run.sh", bindir, calls)
    i = argv.index("--config_file")
    # the script's flags, with the variant's value, after --config_file: kohya's command line wins over the config
    assert sorted(argv[i + 4:-2]) == ["--network_dim=64", "--seed=42"]
    assert argv[-2:] == ["--output_dir", str(v.resolve() / "output")]  # absolute: kohya runs in the run's folder
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


# a stand-in accelerate that records its working directory and argv, as kohya would see them
_CWD_ACCELERATE = '#!/bin/bash\n{ pwd; printf "%s\\n" "$@"; } > "$ARGV_DIR/call"\n'


def test_runner_resolves_the_users_relative_paths_from_the_run_folder(tmp_path):
    """image_dir = "img", a model at ../models/, dataset_config named in the config: the runner runs kohya where the
    user ran their script, with the variant's own config/dataset/output by absolute path, so every path resolves
    as in the user's run, although the study is written elsewhere."""
    import subprocess

    models = tmp_path / "runs" / "models"  # beside the run folders: ../models/ from each
    models.mkdir(parents=True)
    (models / "x.safetensors").write_bytes(b"\0" * 16)
    config = CONFIG.replace('"/models/v1-5.safetensors"', '"../models/x.safetensors"').replace(
        'output_dir = "/out"', 'output_dir = "out"\ndataset_config = "dataset.toml"')
    script = SCRIPT.replace("  --config_file {config} \\\n  --dataset_config dataset.toml{extra}",
                            "  --config_file {config}{extra}")
    runs = tmp_path / "runs"
    for name, cfg in (("good", config), ("bad", config.replace("network_dim = 32", "network_dim = 64"))):
        d = _run_folder(runs, name, name, cfg)
        (d / "train.sh").write_text(script.format(config="config.toml", extra=""))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    study = elsewhere / "study"
    r = CliRunner().invoke(main, ["ablate", "--good", str(runs / "good"), "--bad", str(runs / "bad"),
                                  "--out", str(study)])
    assert r.exit_code == 0, r.output
    bindir, calls = tmp_path / "bin", tmp_path / "calls"
    bindir.mkdir()
    calls.mkdir()
    (bindir / "accelerate").write_text(_CWD_ACCELERATE)
    (bindir / "accelerate").chmod(0o755)
    v = study / "ofat-network-dim"
    # launched as `lora-audit launch` does (from the variant folder) and from anywhere else: same result
    for cwd in (v, tmp_path):
        res = subprocess.run(["bash", str(v / "lora-audit-run.sh")], cwd=cwd, capture_output=True, timeout=60,
                             env={"PATH": f"{bindir}:/usr/bin:/bin", "ARGV_DIR": str(calls)})
        assert res.returncode == 0, res.stderr
        where, *argv = (calls / "call").read_text().splitlines()
        assert Path(where) == (runs / "good").resolve()  # where the user ran train.sh
        cfg_path = Path(argv[argv.index("--config_file") + 1])
        ds_path = Path(argv[argv.index("--dataset_config") + 1])
        assert cfg_path == v.resolve() / "config.toml" and ds_path == v.resolve() / "dataset.toml"
        assert argv[argv.index("--output_dir") + 1] == str(v.resolve() / "output")
        assert argv[-2:] == ["--output_dir", str(v.resolve() / "output")]  # last: wins over the config's
        cfg = tomllib.loads(cfg_path.read_text())
        assert cfg["additional_network_arguments"]["network_dim"] == 64
        # every relative path of the user's files resolves (from kohya's cwd) to what the user's run used
        model = Path(where) / cfg["model_arguments"]["pretrained_model_name_or_path"]
        assert model.resolve() == (models / "x.safetensors").resolve()
        image_dir = Path(where) / tomllib.loads(ds_path.read_text())["datasets"][0]["subsets"][0]["image_dir"]
        assert image_dir.resolve() == (runs / "good" / "img").resolve() and image_dir.is_dir()
    record = json.loads((v / "variant.json").read_text())
    assert record["run_dir"] == str((runs / "good").resolve())
    # LORA_AUDIT_RUN_DIR names the run folder on another machine; a missing one is a warning, not a failure
    res = subprocess.run(["bash", str(v / "lora-audit-run.sh")], capture_output=True, timeout=60, text=True,
                         env={"PATH": f"{bindir}:/usr/bin:/bin", "ARGV_DIR": str(calls),
                              "LORA_AUDIT_RUN_DIR": str(tmp_path / "gone")})
    assert res.returncode == 0 and "run folder" in res.stderr and "not found" in res.stderr
    assert (calls / "call").read_text().splitlines()[0] == str(v.resolve())


def test_compare_study_finds_the_base_model_the_script_sets_as_a_flag(tmp_path):
    """The common layout with the model as a flag of train.sh (not in config.toml), relative to the run folder:
    compare --study reads each variant's evidence as a run (config + edited script) and resolves the model where
    the runner runs kohya (the run folder), not in the variant folder."""
    from lora_audit.compare.study import study_inputs

    runs = tmp_path / "runs"
    models = runs / "models"
    models.mkdir(parents=True)
    (models / "base.safetensors").write_bytes(b"\0" * 16)
    config = CONFIG.replace('pretrained_model_name_or_path = "/models/v1-5.safetensors"  # base\n', "")
    extra = " \\\n  --pretrained_model_name_or_path ../models/base.safetensors"
    good = _run_folder(runs, "good", "good", config, script_extra=extra)
    bad = _run_folder(runs, "bad", "bad", config.replace("network_dim = 32", "network_dim = 64"), script_extra=extra)
    study = _ablate(tmp_path, good, bad)
    assert "pretrained_model_name_or_path" not in (study / "control" / "config.toml").read_text()
    for vid in ("control", "ofat-network-dim"):  # trained: kohya wrote <output_name>.safetensors in output/
        name = tomllib.loads((study / vid / "config.toml").read_text())["training_arguments"]["output_name"]
        (study / vid / "output").mkdir()
        (study / vid / "output" / f"{name}.safetensors").write_bytes(b"\0")
    si = study_inputs(study)
    assert si.base.resolve() == (models / "base.safetensors").resolve()
    assert sorted(s.label for s in si.loras) == ["control", "ofat-network-dim"] and si.missing == []
