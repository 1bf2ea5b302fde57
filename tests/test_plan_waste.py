"""ablate wastes no training: inert changes, duplicate variants, reverse with a run that has no settings, and no
half-written study after an error."""

import json
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from lora_audit.ablate.plan import all_or_nothing, plan
from lora_audit.cli import main
from lora_audit.evidence import load_run

BASE = """\
pretrained_model_name_or_path = "runwayml/stable-diffusion-v1-5"
network_module = "networks.lora"
network_dim = 32
network_alpha = 16
resolution = "512,512"
train_batch_size = 4
max_train_epochs = 10
"""


def run_dir(root: Path, name: str, config: str, verdict: str = "", extra: str = "") -> Path:
    """The common layout: train.sh runs kohya with --config_file config.toml (a whole invocation, so every
    parameter it leaves unset is kohya's default)."""
    d = root / name
    d.mkdir(parents=True)
    (d / "train.sh").write_text("accelerate launch train_network.py --config_file config.toml\n")
    (d / "config.toml").write_text(textwrap.dedent(config) + textwrap.dedent(extra))
    if verdict:
        (d / "run.toml").write_text(f'verdict = "{verdict}"\n')
    return d


def ablate_json(*args: str) -> dict:
    r = CliRunner().invoke(main, ["ablate", *args, "--dry-run", "--json"])
    assert r.exit_code == 0, r.output
    return json.loads(r.output)


@pytest.fixture
def inert_runs(tmp_path):
    # the good run sets bucket_no_upscale but never enables bucketing: kohya forces it off (train_util.BaseDataset)
    good = run_dir(tmp_path, "good", BASE + "bucket_no_upscale = true\n", "good")
    bad = run_dir(tmp_path, "bad", BASE.replace("network_dim = 32", "network_dim = 64"), "bad")
    return good, bad


def test_an_inert_change_gets_no_variant_and_the_plan_says_why(inert_runs):
    good, bad = inert_runs
    data = ablate_json("--good", str(good), "--bad", str(bad))
    ids = [v["id"] for v in data["variants"]]
    assert ids == ["control", "ofat-network-dim"]
    (skip,) = data["skipped"]
    assert skip["id"] == "ofat-bucket-no-upscale" and skip["kind"] == "inert"
    assert "enable_bucket" in skip["reason"] and "--include-inert" in skip["reason"]
    assert skip["changes"] == [{"param": "bucket_no_upscale", "from": True, "to": False, "to_origin": "default"}]
    text = CliRunner().invoke(main, ["ablate", "--good", str(good), "--bad", str(bad), "--dry-run"]).output
    assert "skipped ofat-bucket-no-upscale (bucket_no_upscale true→false): kohya ignores bucket_no_upscale" in text
    assert "2 trainings" in text


def test_include_inert_trains_it(inert_runs):
    good, bad = inert_runs
    data = ablate_json("--good", str(good), "--bad", str(bad), "--include-inert")
    assert "ofat-bucket-no-upscale" in [v["id"] for v in data["variants"]] and data["skipped"] == []


def test_a_change_that_acts_is_not_inert(tmp_path):
    # with bucketing on, bucket_no_upscale acts: it is trained
    good = run_dir(tmp_path, "good", BASE + "enable_bucket = true\nbucket_no_upscale = true\n", "good")
    bad = run_dir(tmp_path, "bad", BASE + "enable_bucket = true\n", "bad")
    data = ablate_json("--good", str(good), "--bad", str(bad))
    assert [v["id"] for v in data["variants"]] == ["control", "ofat-bucket-no-upscale"]


def test_sweep_values_equal_to_the_baseline_or_a_variant_are_trained_once(tmp_path):
    good = run_dir(tmp_path, "good", BASE, "good")
    bad = run_dir(tmp_path, "bad", BASE.replace("network_dim = 32", "network_dim = 64"), "bad")
    data = ablate_json("--good", str(good), "--bad", str(bad), "--sweep", "network_dim=16,32,64")
    assert [v["id"] for v in data["variants"]] == ["control", "ofat-network-dim", "sweep-network-dim-16"]
    skipped = {s["id"]: s for s in data["skipped"]}
    assert skipped["sweep-network-dim-32"]["same_as"] == "control"
    assert skipped["sweep-network-dim-64"]["same_as"] == "ofat-network-dim"
    assert {s["kind"] for s in skipped.values()} == {"duplicate"}
    text = CliRunner().invoke(main, ["ablate", "--good", str(good), "--bad", str(bad), "--dry-run",
                                     "--sweep", "network_dim=16,32,64"]).output
    assert "skipped sweep-network-dim-64 (network_dim 32→64): trains the same parameters as ofat-network-dim" in text
    assert "3 trainings" in text


def test_duplicates_compare_by_kohyas_meaning_not_text(tmp_path):
    # 1e-4 and 0.0001 are one learning rate; a sweep value at kohya's default is the unchanged run
    good = run_dir(tmp_path, "good", BASE + "learning_rate = 1e-4\n", "good")
    bad = run_dir(tmp_path, "bad", BASE + "learning_rate = 2e-4\n", "bad")
    data = ablate_json("--good", str(good), "--bad", str(bad), "--sweep", "learning_rate=0.0001,0.0002,0.0003",
                       "--sweep", "gradient_accumulation_steps=1,2")
    skipped = {s["id"]: s["same_as"] for s in data["skipped"]}
    assert skipped == {"sweep-learning-rate-0-0001": "control", "sweep-learning-rate-0-0002": "ofat-learning-rate",
                       "sweep-gradient-accumulation-steps-1": "control"}


def test_no_control_still_skips_a_sweep_value_equal_to_the_good_run(tmp_path):
    good = run_dir(tmp_path, "good", BASE, "good")
    bad = run_dir(tmp_path, "bad", BASE.replace("network_dim = 32", "network_dim = 64"), "bad")
    data = ablate_json("--good", str(good), "--bad", str(bad), "--no-control", "--sweep", "network_dim=32,8")
    assert [v["id"] for v in data["variants"]] == ["ofat-network-dim", "sweep-network-dim-8"]
    assert data["skipped"][0]["id"] == "sweep-network-dim-32"


def test_reverse_skips_a_bad_run_with_no_explicit_settings(tmp_path):
    good = run_dir(tmp_path, "good", BASE, "good")
    bad = run_dir(tmp_path, "bad", BASE.replace("network_dim = 32", "network_dim = 64").replace(
        "network_alpha = 16", "network_alpha = 8"), "bad")
    sized = tmp_path / "sized"  # only a LoRA's file size is known, as in the bespoke-punks example
    sized.mkdir()
    (sized / "run.toml").write_text('verdict = "bad"\n[[artifacts]]\nname = "x.safetensors"\nsize = "72MB"\n')
    out = tmp_path / "study"
    r = CliRunner().invoke(main, ["ablate", "--good", str(good), "--bad", str(sized), "--bad", str(bad),
                                  "--strategy", "reverse", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "note: sized: skipped by --strategy reverse: it has no explicit training settings" in r.output
    assert (out / "reverse-network-dim-bad").is_dir()
    assert not any(p.name.endswith("-sized") for p in out.iterdir())


def test_reverse_with_only_a_run_without_settings_writes_nothing(tmp_path):
    good = run_dir(tmp_path, "good", BASE, "good")
    sized = tmp_path / "sized"
    sized.mkdir()
    (sized / "run.toml").write_text('verdict = "bad"\n[[artifacts]]\nname = "x.safetensors"\nsize = "72MB"\n')
    out = tmp_path / "study"
    r = CliRunner().invoke(main, ["ablate", "--good", str(good), "--bad", str(sized), "--strategy", "reverse",
                                  "--out", str(out)])
    assert r.exit_code == 2 and r.output.startswith("error: nothing to ablate") and "no explicit" in r.output
    assert not out.exists()


def test_an_error_while_writing_leaves_no_half_written_study(tmp_path, monkeypatch):
    good = run_dir(tmp_path, "good", BASE, "good")
    bad = run_dir(tmp_path, "bad", BASE.replace("network_dim = 32", "network_dim = 64"), "bad")
    import lora_audit.ablate.emit as emit

    real = emit.write_study

    def fails_halfway(p, runs, out, *a, **k):
        Path(out).mkdir(parents=True)
        (Path(out) / "control").mkdir()
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(emit, "write_study", fails_halfway)
    out = tmp_path / "study"
    r = CliRunner().invoke(main, ["ablate", "--good", str(good), "--bad", str(bad), "--out", str(out)])
    assert r.exit_code != 0 and not out.exists()
    monkeypatch.setattr(emit, "write_study", real)
    r = CliRunner().invoke(main, ["ablate", "--good", str(good), "--bad", str(bad), "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert (out / "study.toml").is_file()


def test_all_or_nothing_keeps_a_folder_that_existed(tmp_path):
    keep = tmp_path / "mine"
    keep.mkdir()
    (keep / "notes.txt").write_text("keep me")
    with pytest.raises(RuntimeError), all_or_nothing(keep):
        raise RuntimeError("boom")
    assert (keep / "notes.txt").read_text() == "keep me"
    new = tmp_path / "new"
    with pytest.raises(RuntimeError), all_or_nothing(new):
        new.mkdir()
        (new / "half").write_text("x")
        raise RuntimeError("boom")
    assert not new.exists()


def test_plan_from_python(inert_runs):
    good, bad = (load_run(p) for p in inert_runs)
    p = plan(good, [bad])
    assert [s.id for s in p.skipped] == ["ofat-bucket-no-upscale"]
    assert p.to_json()["skipped"][0]["kind"] == "inert"


def test_bisect_spends_no_round_on_an_inert_change(inert_runs, tmp_path):
    good, bad = inert_runs
    out = tmp_path / "bisect"
    r = CliRunner().invoke(main, ["bisect", "start", "--good", str(good), "--bad", str(bad), "--out", str(out),
                                  "--json"])
    assert r.exit_code == 0, r.output
    state = json.loads((out / "bisect.json").read_text())
    assert [c["id"] for c in state["change_sets"]] == ["network_dim"]
