"""lora-audit bisect start/good/bad/next/log on a real study folder, judged by a simulated oracle."""

import json
import tomllib

from click.testing import CliRunner

from lora_audit.ablate import group_testing as gt
from lora_audit.cli import main

from conftest import write_run

GOOD = """\
pretrained_model_name_or_path = "m"
train_data_dir = "img"
network_dim = 32
network_alpha = 16
resolution = "512,512"
train_batch_size = 4
learning_rate = 1e-4
noise_offset = 0.1
max_token_length = 225
seed = 42
"""
BAD = """\
pretrained_model_name_or_path = "m"
train_data_dir = "img"
network_dim = 64
network_alpha = 8
resolution = "768,768"
train_batch_size = 2
learning_rate = 3e-4
noise_offset = 0.05
seed = 43
"""


def _json(r):
    assert r.exit_code == 0, r.output
    return json.loads(r.output)


def _applied(cfg: dict, param: str) -> bool:
    """Does this variant's config carry the bad run's setting of ``param`` (its value, or its absence)?"""
    bad = tomllib.loads(BAD)
    return cfg.get(param) == bad[param] if param in bad else param not in cfg


def _run_bisect(tmp_path, culprits):
    good = write_run(tmp_path, "good", GOOD, "good")
    bad = write_run(tmp_path, "bad", BAD, "bad")
    study = tmp_path / "study"
    cli = CliRunner()
    data = _json(cli.invoke(main, ["bisect", "start", "--good", str(good), "--bad", str(bad), "--out", str(study),
                                   "--json"]))
    trained = 0
    while data["status"] == "running":
        for v in data["variants"]:
            cfg = tomllib.loads((study / v["id"] / "config.toml").read_text())
            assert (study / v["id"] / "lora-audit-run.sh").exists()
            # the oracle judges the variant by what its config really says
            bad_now = any(_applied(cfg, p) for p in culprits)
            trained += 1
            data = _json(cli.invoke(main, ["bisect", "bad" if bad_now else "good", "--study", str(study), v["id"],
                                           "--json"]))
    return data, trained, study


def test_single_culprit_is_found_within_log2_plus_2(tmp_path):
    data, trained, study = _run_bisect(tmp_path, ["learning_rate"])
    assert data["status"] == "found" and data["culprits"] == ["learning_rate"]
    k = len(json.loads((study / "bisect.json").read_text())["state"]["changes"])
    assert trained <= gt.bound(k, 1) + gt.slack(k, 1)
    log = CliRunner().invoke(main, ["bisect", "log", "--study", str(study)])
    assert log.exit_code == 0 and "r1-a" in log.output


def test_removed_parameter_as_culprit(tmp_path):
    data, _, _ = _run_bisect(tmp_path, ["max_token_length"])
    assert data["culprits"] == ["max_token_length"]


def test_bad_verdicts_are_one_line_errors(tmp_path):
    good = write_run(tmp_path, "good", GOOD, "good")
    bad = write_run(tmp_path, "bad", BAD, "bad")
    study = tmp_path / "study"
    cli = CliRunner()
    assert cli.invoke(main, ["bisect", "start", "--good", str(good), "--bad", str(bad), "--out", str(study)]).exit_code == 0
    r = cli.invoke(main, ["bisect", "good", "--study", str(study), "r9-z"])
    assert r.exit_code == 2 and "unknown test 'r9-z'" in r.output
    r = cli.invoke(main, ["bisect", "next", "--study", str(tmp_path)])
    assert r.exit_code == 2 and "not a bisect study" in r.output
    r = cli.invoke(main, ["bisect", "start", "--good", str(good), "--bad", str(good), "--out", str(tmp_path / "s2")])
    assert r.exit_code == 2 and "nothing to bisect" in r.output
