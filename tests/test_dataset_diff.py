"""A dataset TOML or a config file at another path is not a change; their contents are compared. Where files go is
never an effective change. A real dataset difference is one change set, applied with the bad run's dataset TOML."""

import json
import textwrap
from pathlib import Path

from click.testing import CliRunner

from lora_audit.cli import main
from lora_audit.diff import diff_runs
from lora_audit.evidence import load_run

CONFIG = """\
pretrained_model_name_or_path = "runwayml/stable-diffusion-v1-5"
dataset_config = "{name}-dataset.toml"
output_dir = "/out/{name}"
output_name = "lora_{name}"
logging_dir = "/logs/{name}"
network_module = "networks.lora"
network_dim = 32
network_alpha = 16
learning_rate = 1e-4
max_train_epochs = 10
"""

DATASET = """\
[general]
caption_extension = ".txt"
shuffle_caption = true

[[datasets]]
resolution = 512
batch_size = 4

  [[datasets.subsets]]
  image_dir = "{images}"
  num_repeats = 10
"""


def layout(root: Path, name: str, verdict: str, dataset: str = DATASET, images: int = 3,
           config_extra: str = "") -> Path:
    """train.sh → <name>-config.toml → <name>-dataset.toml → img/10_x (the layout people use)."""
    d = root / name
    img = d / "img" / "10_x"
    img.mkdir(parents=True)
    for i in range(images):
        (img / f"{i}.png").write_bytes(b"P" * (10 + i))
        (img / f"{i}.txt").write_text(f"caption {i}\n")
    (d / "train.sh").write_text(f"accelerate launch train_network.py --config_file {name}-config.toml\n")
    (d / f"{name}-config.toml").write_text(CONFIG.format(name=name) + config_extra)
    (d / f"{name}-dataset.toml").write_text(textwrap.dedent(dataset).format(images=img))
    (d / "run.toml").write_text(f'verdict = "{verdict}"\n')
    return d


def _changes(good: Path, bad: Path) -> dict:
    d = diff_runs([load_run(good), load_run(bad)])
    return {c.param: c for c in d.changes}, {c.param for c in d.effective_changes()}


def test_copies_at_other_paths_are_no_change(tmp_path):
    good = layout(tmp_path, "good", "good")
    bad = layout(tmp_path, "bad", "bad", config_extra='sample_prompts = "/x/prompts.txt"\n')
    changes, effective = _changes(good, bad)
    assert effective == set()
    for name in ("dataset_config", "config_file", "image_dir", "output_dir", "output_name", "logging_dir",
                 "sample_prompts"):
        assert changes[name].nominal and changes[name].kind == "same", name
    assert "same contents" in changes["dataset_config"].words
    assert "the same files" in changes["image_dir"].words
    assert "where files go" in changes["output_dir"].words
    r = CliRunner().invoke(main, ["ablate", "--good", str(good), "--bad", str(bad), "--dry-run"])
    assert r.exit_code == 2 and "nothing to ablate" in r.output
    r = CliRunner().invoke(main, ["audit", str(good), str(bad), "--json"])
    assert r.exit_code == 0, r.output
    pair = json.loads(r.output)["pairs"][0]
    assert not [c for c in pair["diff"]["changes"] if c["kind"] != "same" and not c["nominal"]]


def test_a_dataset_that_differs_is_one_change_set_applied_with_the_bad_runs_dataset_toml(tmp_path):
    good = layout(tmp_path, "good", "good")
    bad = layout(tmp_path, "bad", "bad", DATASET.replace("resolution = 512", "resolution = 768")
                 .replace("num_repeats = 10", "num_repeats = 5"), images=4)
    changes, effective = _changes(good, bad)
    words = changes["dataset_config"].words
    assert changes["dataset_config"].kind == "changed" and words.startswith("contents differ: ")
    assert "dataset 1: resolution 512→768" in words and "num_repeats 10→5" in words
    assert "image files: 6→8 files; added 3.png, 3.txt" in words
    assert "dataset_config" in effective and "config_file" not in effective and "output_dir" not in effective
    out = tmp_path / "study"
    r = CliRunner().invoke(main, ["ablate", "--good", str(good), "--bad", str(bad), "--out", str(out), "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert [v["id"] for v in data["variants"]] == ["control", "ofat-dataset"]  # no separate ofat-resolution
    (cs,) = data["change_sets"]
    assert cs["id"] == "dataset" and set(cs["params"]) == {"dataset_config", "resolution", "image_dir", "num_repeats"}
    assert "bad's dataset TOML" in cs["atomic_reason"]
    ds_change = cs["changes"][0]
    assert ds_change["to"] == str((bad / "bad-dataset.toml").resolve())
    # the variant trains on the bad run's dataset TOML; the config is the control's but for its output name
    assert (out / "ofat-dataset" / "dataset.toml").read_text() == (bad / "bad-dataset.toml").read_text()
    control = (out / "control" / "config.toml").read_text().splitlines()
    variant = (out / "ofat-dataset" / "config.toml").read_text().splitlines()
    assert [(a, b) for a, b in zip(control, variant) if a != b and "output_name" not in a] == []


def test_same_toml_but_other_images_is_a_change(tmp_path):
    good = layout(tmp_path, "good", "good")
    bad = layout(tmp_path, "bad", "bad")
    (bad / "img" / "10_x" / "1.txt").write_text("a different caption\n")
    changes, effective = _changes(good, bad)
    assert "dataset_config" in effective
    assert "image files: 6→6 files; changed 1.txt" in changes["dataset_config"].words


def test_unreadable_image_folders_compare_by_path(tmp_path):
    same = DATASET.replace("{images}", "/nowhere/img/10_x")
    good = layout(tmp_path, "good", "good", same)
    bad = layout(tmp_path, "bad", "bad", same)
    _, effective = _changes(good, bad)
    assert effective == set()  # the same folder named in both: the same data
    other = layout(tmp_path, "other", "bad", DATASET.replace("{images}", "/elsewhere/img/10_x"))
    changes, effective = _changes(good, other)
    assert "dataset_config" in effective and "not readable here" in changes["dataset_config"].words


def test_diff_cli_shows_path_only_changes_as_nominal(tmp_path):
    good = layout(tmp_path, "good", "good")
    bad = layout(tmp_path, "bad", "bad")
    r = CliRunner().invoke(main, ["diff", str(good), str(bad)])
    assert r.exit_code == 0, r.output
    assert "same contents (only the path differs) [nominal]" in r.output
    assert "which file holds the settings, not what is trained [nominal]" in r.output
