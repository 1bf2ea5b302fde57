"""audit --study finds the study's comparisons wherever `compare --study` wrote them; --compare overrides."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent / "votes"))
# E402 below: these imports need the line above (tests/votes holds comparison_fixture)
from comparison_fixture import make_comparison  # noqa: E402
from conftest import BAD, GOOD, write_run  # noqa: E402

from lora_audit.cli import main  # noqa: E402
from lora_audit.compare.study import record_comparison, study_comparisons  # noqa: E402


def _audit(tmp_path: Path, *args: str) -> dict:
    runs = tmp_path / "runs"
    if not runs.exists():
        write_run(runs, "good", GOOD, "good")
        write_run(runs, "bad", BAD, "bad")
    r = CliRunner().invoke(main, ["audit", str(runs), *args, "--json"])
    assert r.exit_code == 0, r.output
    return json.loads(r.output)


def test_a_comparison_written_outside_the_study_is_found(tmp_path):
    study = tmp_path / "study"
    study.mkdir()
    elsewhere = make_comparison(tmp_path / "reports" / "cmp", models=["base", "far @1"])
    record_comparison(study, elsewhere)  # what compare --study STUDY --out reports/cmp does
    record_comparison(study, elsewhere)  # once only
    assert json.loads((study / "comparisons.json").read_text()) == {"comparisons": [str(elsewhere.resolve())]}
    data = _audit(tmp_path, "--study", str(study))
    assert [Path(c["folder"]).resolve() for c in data["comparisons"]] == [elsewhere.resolve()]


def test_inside_and_outside_comparisons_are_both_linked(tmp_path):
    study = tmp_path / "study"
    inside = make_comparison(study / "compare", models=["base", "in @1"])
    record_comparison(study, inside)  # inside the study: found without a note
    assert not (study / "comparisons.json").exists()
    outside = make_comparison(tmp_path / "out", models=["base", "out @1"])
    record_comparison(study, outside)
    assert [p.resolve() for p in study_comparisons(study)] == [inside.resolve(), outside.resolve()]


def test_compare_overrides_the_study(tmp_path):
    study = tmp_path / "study"
    make_comparison(study / "compare", models=["base", "in @1"])
    chosen = make_comparison(tmp_path / "chosen", models=["base", "chosen @1"])
    data = _audit(tmp_path, "--study", str(study), "--compare", str(chosen))
    assert [Path(c["folder"]).resolve() for c in data["comparisons"]] == [chosen.resolve()]


def test_no_comparison_anywhere_is_one_clear_error(tmp_path):
    study = tmp_path / "study"
    study.mkdir()
    gone = tmp_path / "gone"
    make_comparison(gone)
    record_comparison(study, gone)
    import shutil

    shutil.rmtree(gone)
    write_run(tmp_path / "runs", "good", GOOD, "good")
    write_run(tmp_path / "runs", "bad", BAD, "bad")
    r = CliRunner().invoke(main, ["audit", str(tmp_path / "runs"), "--study", str(study), "--json"])
    assert r.exit_code == 2 and r.output.startswith("error: ") and "recorded but gone" in r.output
    (study / "comparisons.json").write_text("{not json")
    r = CliRunner().invoke(main, ["audit", str(tmp_path / "runs"), "--study", str(study), "--json"])
    assert r.exit_code == 2 and "comparisons.json" in r.output and "Traceback" not in r.output


@pytest.mark.slow
def test_compare_study_out_elsewhere_then_audit_study(tmp_path):
    """The real commands: a builtin study's control trained, `compare --study --out` outside it, `audit --study`."""
    pytest.importorskip("torch")
    pytest.importorskip("diffusers")
    import os
    import subprocess

    sys.path.insert(0, str(Path(__file__).parent / "train"))
    from train_helpers import tiny_model, toy_dataset, write_config

    model, ds = tiny_model("sd15"), toy_dataset().dataset_toml
    good, bad = tmp_path / "runs" / "good", tmp_path / "runs" / "bad"
    write_config(good, model, ds)
    write_config(bad, model, ds)
    (bad / "config.toml").write_text((bad / "config.toml").read_text().replace("network_dim = 4", "network_dim = 8"))
    (good / "run.toml").write_text('verdict = "good"\n')
    (bad / "run.toml").write_text('verdict = "bad"\n')
    study = tmp_path / "study"
    cli = CliRunner()
    r = cli.invoke(main, ["ablate", "--good", str(good), "--bad", str(bad), "--out", str(study), "--backend",
                          "builtin"])
    assert r.exit_code == 0, r.output
    runner = next((study / "control").glob("*.sh"))
    res = subprocess.run(["bash", str(runner)], capture_output=True, text=True, timeout=600,
                         env={**os.environ, "LORA_AUDIT_PYTHON": sys.executable})
    assert res.returncode == 0, res.stdout + res.stderr
    out = tmp_path / "elsewhere" / "cmp"
    r = cli.invoke(main, ["compare", "--study", str(study), "--prompt", "a knight", "--seeds", "1", "--steps", "1",
                          "--size", "64x64", "--quiet", "--out", str(out)])
    assert r.exit_code == 0, r.output
    r = cli.invoke(main, ["audit", str(tmp_path / "runs"), "--study", str(study), "--json"])
    assert r.exit_code == 0, r.output
    assert [Path(c["folder"]).resolve() for c in json.loads(r.output)["comparisons"]] == [out.resolve()]
