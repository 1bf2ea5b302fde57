"""lora-audit bisect start/good/bad/next/log on a real study folder, judged by a simulated oracle."""

import json
import tomllib

from click.testing import CliRunner
from conftest import write_run

from lora_audit.ablate import group_testing as gt
from lora_audit.cli import main

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
    start = cli.invoke(main, ["bisect", "start", "--good", str(good), "--bad", str(bad), "--out", str(study)])
    assert start.exit_code == 0
    r = cli.invoke(main, ["bisect", "good", "--study", str(study), "r9-z"])
    assert r.exit_code == 2 and "unknown test 'r9-z'" in r.output
    r = cli.invoke(main, ["bisect", "next", "--study", str(tmp_path)])
    assert r.exit_code == 2 and "not a bisect study" in r.output
    r = cli.invoke(main, ["bisect", "start", "--good", str(good), "--bad", str(good), "--out", str(tmp_path / "s2")])
    assert r.exit_code == 2 and "nothing to bisect" in r.output


def _start(tmp_path, *extra):
    good = write_run(tmp_path, "good", GOOD, "good")
    bad = write_run(tmp_path, "bad", BAD, "bad")
    study = tmp_path / "study"
    data = _json(CliRunner().invoke(main, ["bisect", "start", "--good", str(good), "--bad", str(bad), "--out",
                                           str(study), "--json", *extra]))
    return study, data


def test_unsure_is_asked_again_with_another_seed_and_the_answer_says_so(tmp_path):
    study, data = _start(tmp_path)
    cli = CliRunner()
    first = data["variants"][0]
    r = cli.invoke(main, ["bisect", "unsure", "--study", str(study), first["id"]])
    assert r.exit_code == 0, r.output
    assert "asked again" in r.output and "another seed" in r.output
    again = _json(cli.invoke(main, ["bisect", "next", "--study", str(study), "--json"]))["variants"][0]
    assert again["changes"] == first["changes"] and again["id"] != first["id"]
    seeds = [tomllib.loads((study / v / "config.toml").read_text()).get("seed") for v in (first["id"], again["id"])]
    assert seeds[1] == (seeds[0] or 0) + 1000, seeds
    # then judge truthfully to the end: the culprit is still found, and the answer names the unsure verdict
    data = _json(cli.invoke(main, ["bisect", "next", "--study", str(study), "--json"]))
    while data["status"] == "running":
        for v in data["variants"]:
            cfg = tomllib.loads((study / v["id"] / "config.toml").read_text())
            data = _json(cli.invoke(main, ["bisect", "bad" if _applied(cfg, "learning_rate") else "good", "--study",
                                           str(study), v["id"], "--json"]))
    assert data["culprits"] == ["learning_rate"]
    assert any(b.startswith("1 verdict(s) unsure") for b in data["basis"])
    assert data["basis"][-1] == "how sure: uncertain"
    log = cli.invoke(main, ["bisect", "log", "--study", str(study)])
    assert log.exit_code == 0 and "# rests on: learning_rate: r" in log.output
    assert f"{first['id']}  unsure" in log.output


def test_replicates_write_control_variants_and_measure_seed_noise(tmp_path):
    study, data = _start(tmp_path, "--replicates", "2")
    assert [c["id"] for c in data["controls"]] == ["ctl-1", "ctl-2"]
    cfgs = [tomllib.loads((study / c / "config.toml").read_text()) for c in ("ctl-1", "ctl-2")]
    assert [c["seed"] for c in cfgs] == [1042, 2042]
    assert cfgs[0]["learning_rate"] == tomllib.loads(GOOD)["learning_rate"]  # the good run, only the seed moved
    cli = CliRunner()
    r = cli.invoke(main, ["bisect", "next", "--study", str(study)])
    assert "control replicates to judge" in r.output and "ctl-1" in r.output
    assert cli.invoke(main, ["bisect", "good", "--study", str(study), "ctl-1"]).exit_code == 0
    r = cli.invoke(main, ["bisect", "bad", "--study", str(study), "ctl-2"])
    assert r.exit_code == 0, r.output
    st = json.loads((study / "bisect.json").read_text())["state"]
    assert [(c["id"], c["verdict"]) for c in st["controls"]] == [("ctl-1", "good"), ("ctl-2", "bad")]
    data = _json(cli.invoke(main, ["bisect", "next", "--study", str(study), "--json"]))
    while data["status"] == "running":
        for v in data["variants"]:
            cfg = tomllib.loads((study / v["id"] / "config.toml").read_text())
            data = _json(cli.invoke(main, ["bisect", "bad" if _applied(cfg, "noise_offset") else "good", "--study",
                                           str(study), v["id"], "--json"]))
    assert data["culprits"] == ["noise_offset"]
    assert any(b.startswith("control replicates: 1 of 2 judged bad") for b in data["basis"]), data["basis"]
    assert data["basis"][-1] == "how sure: uncertain"


def test_old_state_files_go_on_with_the_progressive_search(tmp_path):
    study, data = _start(tmp_path)
    f = study / "bisect.json"
    doc = json.loads(f.read_text())
    for key in ("method", "controls", "basis"):
        doc["state"].pop(key)
    f.write_text(json.dumps(doc))
    data = _json(CliRunner().invoke(main, ["bisect", "next", "--study", str(study), "--json"]))
    assert data["method"] == "progressive" and data["status"] == "running"
