"""The study folder: --out checks, hand edits never silently lost, damaged study.toml / bisect.json / baselines
read back as one line, --seconds-per-step checked."""

import json
import os
import tomllib

import pytest
from click.testing import CliRunner
from conftest import BAD, GOOD, write_run

from lora_audit.cli import main


def _one_line_error(r, *words):
    assert r.exit_code == 2, r.output
    lines = [line for line in r.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), r.output
    assert "Traceback" not in r.output
    for w in words:
        assert w in r.output, r.output


@pytest.fixture
def runs(tmp_path):
    return write_run(tmp_path, "good", GOOD, "good"), write_run(tmp_path, "bad", BAD, "bad")


def _ablate(good, bad, out, *extra):
    return CliRunner().invoke(main, ["ablate", "--good", str(good), "--bad", str(bad), "--out", str(out), *extra])


def _snapshot(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# --- --out ---------------------------------------------------------------------------------------------------------
def test_out_must_be_new_empty_or_a_study(runs, tmp_path):
    good, bad = runs
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "cat.jpg").write_bytes(b"\xff\xd8")
    _one_line_error(_ablate(good, bad, foreign), "not a lora-audit study")
    assert sorted(p.name for p in foreign.iterdir()) == ["cat.jpg"]
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    r = _ablate(good, bad, a_file)  # click's own check: a usage error, exit 2
    assert r.exit_code == 2 and "is a file" in r.output and "Traceback" not in r.output
    assert a_file.read_text() == "mine"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _ablate(good, bad, empty).exit_code == 0
    assert (empty / "study.toml").is_file() and (empty / "control" / "lora-audit-run.sh").is_file()
    r = CliRunner().invoke(main, ["bisect", "start", "--good", str(good), "--bad", str(bad), "--out", str(foreign)])
    _one_line_error(r, "not a lora-audit study")


def test_out_inside_evidence_is_refused(runs, tmp_path):
    good, bad = runs
    _one_line_error(_ablate(good, bad, good / "study"), "folder given as evidence")
    assert not (good / "study").exists()
    r = CliRunner().invoke(main, ["ablate", str(tmp_path), "--good", "good", "--bad", "bad", "--out",
                                  str(tmp_path / "studies" / "s1")])
    _one_line_error(r, "folder given as evidence")
    r = CliRunner().invoke(main, ["bisect", "start", "--good", str(good), "--bad", str(bad), "--out",
                                  str(bad / "s")])
    _one_line_error(r, "folder given as evidence")


def test_foreign_non_toml_baseline_in_out_is_one_line(runs, tmp_path):
    good, bad = runs
    out = tmp_path / "s"
    out.mkdir()
    (out / "baseline-good.toml").write_text("this is [not toml\n")
    _one_line_error(_ablate(good, bad, out))
    # inside a study of this tool, a baseline damaged by hand is one line naming it
    assert _ablate(good, bad, tmp_path / "s2").exit_code == 0
    (tmp_path / "s2" / "baseline-good" / "config.toml").write_bytes(b"[[[\xff\xfe not toml")
    _one_line_error(_ablate(good, bad, tmp_path / "s2"), "baseline-good/config.toml")


# --- hand edits ----------------------------------------------------------------------------------------------------
def test_rerun_is_idempotent_and_never_discards_a_hand_edit(runs, tmp_path):
    good, bad = runs
    out = tmp_path / "s"
    assert _ablate(good, bad, out).exit_code == 0
    first = _snapshot(out)
    assert _ablate(good, bad, out).exit_code == 0  # nothing edited: same files
    assert _snapshot(out) == first
    cfg = out / "ofat-network-dim" / "config.toml"
    cfg.write_text(cfg.read_text().replace("network_dim = 64", "network_dim = 48  # my own try"))
    runner = out / "control" / "lora-audit-run.sh"
    runner.write_text(runner.read_text() + "echo mine\n")
    edited = _snapshot(out)
    r = _ablate(good, bad, out)
    _one_line_error(r, "ofat-network-dim/config.toml", "control/lora-audit-run.sh", "--force")
    assert _snapshot(out) == edited  # nothing written
    assert _ablate(good, bad, out, "--force").exit_code == 0
    assert _snapshot(out) == first


def test_hand_edited_study_toml_and_symlinks_are_not_overwritten(runs, tmp_path):
    good, bad = runs
    out = tmp_path / "s"
    assert _ablate(good, bad, out).exit_code == 0
    study = out / "study.toml"
    study.write_text(study.read_text().replace('backend = "kohya"', 'backend = "kohya"  # ours'))
    _one_line_error(_ablate(good, bad, out), "study.toml")
    assert "# ours" in study.read_text()
    assert _ablate(good, bad, out, "--force").exit_code == 0
    # a symlink put where a generated file goes is never written through
    elsewhere = tmp_path / "precious.toml"
    elsewhere.write_text("precious = true\n")
    cfg = out / "control" / "config.toml"
    cfg.unlink()
    cfg.symlink_to(elsewhere)
    _one_line_error(_ablate(good, bad, out), "control/config.toml")
    assert _ablate(good, bad, out, "--force").exit_code == 0
    assert elsewhere.read_text() == "precious = true\n" and not cfg.is_symlink()


def test_another_study_in_out_is_refused(runs, tmp_path):
    good, bad = runs
    other = write_run(tmp_path, "other", GOOD.replace("network_dim = 32", "network_dim = 8"), "bad")
    out = tmp_path / "s"
    assert _ablate(good, bad, out).exit_code == 0
    _one_line_error(_ablate(good, other, out), "another study")


# --- damaged study files -------------------------------------------------------------------------------------------
DAMAGED_JSON = [
    b"", b"{", b"not json", b'{"good": "g"', b"[" * 100_000 + b"]" * 100_000, b'{"good": ' + b"9" * 50_000 + b"}",
    b"\xff\xfe\x00{", b'{"good": 1, "bad": [], "change_sets": "x", "state": null}', b"null", b"[]",
    json.dumps({"good": "g", "bad": "b", "change_sets": [{"id": "a", "changes": []}],
                "state": {"changes": ["a"], "parallel": 2,
                          "rounds": [{"number": 1, "tests": [{"id": "../../etc", "changes": ["a"]}]}]}}).encode(),
    json.dumps({"good": "g", "bad": "b", "change_sets": [{"id": "a", "changes": []}],
                "state": {"changes": ["a", "zz"], "rounds": []}}).encode(),
]


@pytest.fixture(scope="module")
def bisect_study(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bis")
    good, bad = write_run(tmp, "good", GOOD, "good"), write_run(tmp, "bad", BAD, "bad")
    study = tmp / "study"
    r = CliRunner().invoke(main, ["bisect", "start", "--good", str(good), "--bad", str(bad), "--out", str(study)])
    assert r.exit_code == 0, r.output
    return study


@pytest.mark.parametrize("data", DAMAGED_JSON, ids=range(len(DAMAGED_JSON)))
def test_damaged_bisect_json_is_one_line(bisect_study, tmp_path, data):
    study = tmp_path / "study"
    study.mkdir()
    (study / "study.toml").write_bytes((bisect_study / "study.toml").read_bytes())
    (study / "bisect.json").write_bytes(data)
    for cmd in (["bisect", "next"], ["bisect", "log"], ["bisect", "good", "r1-a"]):
        _one_line_error(CliRunner().invoke(main, [*cmd, "--study", str(study)]), "bisect.json")


def test_bisect_json_not_a_file_is_one_line(bisect_study, tmp_path):
    study = tmp_path / "study"
    study.mkdir()
    os.mkfifo(study / "bisect.json")
    _one_line_error(CliRunner().invoke(main, ["bisect", "next", "--study", str(study)]), "FIFO")
    os.unlink(study / "bisect.json")
    (study / "bisect.json").symlink_to("/dev/zero")
    _one_line_error(CliRunner().invoke(main, ["bisect", "next", "--study", str(study)]), "device")


DAMAGED_TOML = [
    b"good = ", b"a = [" * 100_000, b"good = " + b"9" * 50_000, b"\xff\xfegood", b'good = "g"\nruns = 5\n',
    b'good = "g"\nvariants = [1, 2]\n', b'good = "g"\nbackend = "evil"\n', b'good = "g"\nvariants = ["../../x"]\n',
    b'good = ["g"]\n', b"",
]


@pytest.mark.parametrize("data", DAMAGED_TOML, ids=range(len(DAMAGED_TOML)))
def test_damaged_study_toml_is_one_line(bisect_study, tmp_path, data):
    study = tmp_path / "study"
    study.mkdir()
    (study / "bisect.json").write_bytes((bisect_study / "bisect.json").read_bytes())
    (study / "study.toml").write_bytes(data)
    # judging the whole round writes the next one, which reads study.toml
    state = json.loads((bisect_study / "bisect.json").read_text())["state"]
    pending = [t["id"] for t in state["rounds"][-1]["tests"]]
    _one_line_error(CliRunner().invoke(main, ["bisect", "bad", "--study", str(study), *pending]), "study.toml")
    good = write_run(tmp_path, "good", GOOD, "good")
    bad = write_run(tmp_path, "bad", BAD, "bad")
    _one_line_error(_ablate(good, bad, study), "study.toml")


def test_bisect_files_in_a_study(bisect_study):
    meta = tomllib.loads((bisect_study / "study.toml").read_text())
    assert meta["variants"] == ["control"]  # rounds are listed by bisect.json
    state = json.loads((bisect_study / "bisect.json").read_text())["state"]
    for t in state["rounds"][0]["tests"]:
        record = json.loads((bisect_study / t["id"] / "variant.json").read_text())
        assert record["runner"] == "lora-audit-run.sh" and f"{t['id']}/config.toml" in meta["written"]
    r = CliRunner().invoke(main, ["bisect", "start", "--good", "x", "--bad", "y", "--out", str(bisect_study)])
    assert r.exit_code == 2


# --- --seconds-per-step --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["-5", "0", "nan", "inf", "-inf", "1e400"])
def test_seconds_per_step_must_be_positive_and_finite(runs, tmp_path, value):
    good, bad = runs
    r = _ablate(good, bad, tmp_path / "s", "--dry-run", "--seconds-per-step", value)
    _one_line_error(r, "--seconds-per-step")


def test_seconds_per_step_from_a_big_log_reads_its_last_speed(runs, tmp_path):
    """A long kohya log (tqdm redraws with CR) is read from its tail: the last speed printed counts."""
    good, bad = runs
    log = tmp_path / "train.log"
    with log.open("w") as f:
        for _ in range(120_000):  # ~6 MB of early, slow steps
            f.write("steps:  1%|1  | 5/500 [00:10<16:30,  9.99s/it, avr_loss=0.1]\r")
        f.write("steps: 100%|##| 500/500 [10:00<00:00,  1.25it/s, avr_loss=0.09]\n")
    r = _ablate(good, bad, tmp_path / "s", "--dry-run", "--json", "--seconds-per-step", str(log))
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["seconds_per_step"] == pytest.approx(0.8)  # 1 / 1.25 it/s, not the early 9.99


def test_seconds_per_step_log_that_is_a_fifo_is_one_line(runs, tmp_path):
    good, bad = runs
    fifo = tmp_path / "train.log"
    os.mkfifo(fifo)
    r = _ablate(good, bad, tmp_path / "s", "--dry-run", "--seconds-per-step", str(fifo))
    _one_line_error(r, "--seconds-per-step")


def test_damaged_baseline_copy_in_a_bisection_is_one_line(runs, tmp_path):
    good, bad = runs
    study = tmp_path / "bis"
    r = CliRunner().invoke(main, ["bisect", "start", "--good", str(good), "--bad", str(bad), "--out", str(study),
                                  "--json"])
    assert r.exit_code == 0, r.output
    (study / "baseline-good" / "config.toml").write_bytes(b"network_dim = [[[\n")
    pending = [v["id"] for v in json.loads(r.output)["variants"]]
    r = CliRunner().invoke(main, ["bisect", "bad", "--study", str(study), *pending])
    _one_line_error(r, "baseline-good/config.toml")
    # the verdicts were not recorded: the round is still the one to judge, once the baseline is repaired
    assert json.loads((study / "bisect.json").read_text())["state"]["rounds"][-1]["tests"][0]["verdict"] is None


def test_default_out_is_a_plain_folder_name_under_runs(tmp_path, monkeypatch):
    good = write_run(tmp_path, "good", GOOD, "good")
    bad = write_run(tmp_path, "bad \n$(x) ..", BAD, "bad")
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(main, ["ablate", "--good", str(good), "--bad", str(bad), "--dry-run", "--json"])
    assert r.exit_code == 0, r.output
    study = json.loads(r.output)["study"]
    assert study.startswith("runs/") and "/" not in study[5:] and "\n" not in study and ".." not in study[5:7]
