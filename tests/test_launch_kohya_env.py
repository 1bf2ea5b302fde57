"""launch --sd-scripts/--python (and the environment variables, the global option, DIR/venv, accelerate on PATH):
resolved when launching, checked before the first variant, passed to the runner ablate wrote, recorded in each
attempt's log header. The sd-scripts checkout and its Python are stand-ins here that record what they are given;
tests/test_kohya_real.py runs the real ones."""

from __future__ import annotations

import json
import os
import stat
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import BAD, GOOD, write_run

from lora_audit.cli import main as cli_main
from lora_audit.launch.__main__ import main

# a stand-in for the Python of sd-scripts' environment: answers the import check, and as
# `-m accelerate.commands.launch SCRIPT ARGS` records what it was given and writes a LoRA where kohya would
FAKE_PYTHON = """#!/usr/bin/env bash
if [ "$1" = "-c" ]; then
    [ -n "${FAKE_IMPORT_ERROR:-}" ] && { echo "Traceback (most recent call last):" >&2;
        echo "ModuleNotFoundError: No module named 'torch'" >&2; exit 1; }
    exit 0
fi
printf 'argv:'; printf ' [%s]' "$@"; echo
echo "sd=$LORA_AUDIT_SD_SCRIPTS"
echo "python=${LORA_AUDIT_KOHYA_PYTHON:-none}"
out=output; prev=; for a in "$@"; do [ "$prev" = --output_dir ] && out=$a; prev=$a; done  # kohya: --output_dir
mkdir -p "$out"; echo weights > "$out"/lora.safetensors
"""
# `accelerate` on PATH, the other way the runner starts kohya
FAKE_ACCELERATE = """#!/usr/bin/env bash
printf 'accelerate:'; printf ' [%s]' "$@"; echo
out=output; prev=; for a in "$@"; do [ "$prev" = --output_dir ] && out=$a; prev=$a; done  # kohya: --output_dir
mkdir -p "$out"; echo weights > "$out"/lora.safetensors
"""


def _exe(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def sd_scripts(root: Path) -> Path:
    d = root / "my sd-scripts"
    d.mkdir(parents=True)
    (d / "train_network.py").write_text("# stand-in\n")
    return d


@pytest.fixture
def study(tmp_path):
    good, bad = write_run(tmp_path, "good", GOOD, "good"), write_run(tmp_path, "bad", BAD, "bad")
    out = tmp_path / "study"
    r = CliRunner().invoke(cli_main, ["ablate", "--good", str(good), "--bad", str(bad), "--out", str(out)])
    assert r.exit_code == 0, r.output
    return out


def only_one(study: Path) -> str:
    return tomllib.loads((study / "study.toml").read_text())["variants"][0]


def launch(*args: str, env: dict | None = None, entry=main):
    env = {"LORA_AUDIT_SD_SCRIPTS": None, "LORA_AUDIT_KOHYA_PYTHON": None, **(env or {})}
    return CliRunner().invoke(entry, list(args), env=env)


def log_of(study: Path, vid: str, n: int = 1) -> str:
    return (study / vid / "logs" / f"attempt-{n}.log").read_text()


def test_sd_scripts_and_python_given_at_launch_reach_the_runner(study, tmp_path):
    sd = sd_scripts(tmp_path)
    py = _exe(tmp_path / "env" / "bin" / "python", FAKE_PYTHON)
    vid = only_one(study)
    r = launch("launch", str(study), "--only", vid, "--sd-scripts", str(sd), "--python", str(py))
    assert r.exit_code == 0, r.output
    log = log_of(study, vid)
    # the header: which checkout and which Python, before anything kohya printed
    head = log.splitlines()[:3]
    assert head[0].startswith(f"# lora-audit launch: variant {vid}, attempt 1, slot cpu0")
    assert head[1] == f"# lora-audit launch: sd-scripts: {sd} (--sd-scripts)"
    assert head[2] == f"# lora-audit launch: accelerate: {py} -m accelerate.commands.launch (--python)"
    argv = f"[-m] [accelerate.commands.launch] [{sd}/train_network.py] [--config_file] [{study / vid}/config.toml]"
    assert f"argv: {argv}" in log
    assert f"sd={sd}\npython={py}" in log
    assert json.loads(launch("status", str(study), "--json").output)["variants"][0]["state"] == "done"


def test_environment_variables_and_the_checkouts_venv(study, tmp_path):
    sd = sd_scripts(tmp_path)
    venv_py = _exe(sd / ".venv" / "bin" / "python", FAKE_PYTHON)
    vid = only_one(study)
    r = launch("launch", str(study), "--only", vid, env={"LORA_AUDIT_SD_SCRIPTS": str(sd)})
    assert r.exit_code == 0, r.output
    log = log_of(study, vid)
    assert f"sd-scripts: {sd} ($LORA_AUDIT_SD_SCRIPTS)" in log
    assert f"accelerate: {venv_py} -m accelerate.commands.launch (the checkout's .venv)" in log
    # LORA_AUDIT_KOHYA_PYTHON wins over the venv; --retry trains the done variant again (attempt 2)
    other = _exe(tmp_path / "other" / "python", FAKE_PYTHON)
    r = launch("launch", str(study), "--only", vid, "--retry",
               env={"LORA_AUDIT_SD_SCRIPTS": str(sd), "LORA_AUDIT_KOHYA_PYTHON": str(other)})
    assert r.exit_code == 0, r.output
    assert f"python={other}" in log_of(study, vid, 2)


def test_global_sd_scripts_option_and_accelerate_on_path(study, tmp_path):
    sd = sd_scripts(tmp_path)
    bin_dir = tmp_path / "bin"
    _exe(bin_dir / "accelerate", FAKE_ACCELERATE)
    vid = only_one(study)
    r = launch("--sd-scripts", str(sd), "launch", str(study), "--only", vid, entry=cli_main,
               env={"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"})
    assert r.exit_code == 0, r.output
    log = log_of(study, vid)
    assert f"sd-scripts: {sd} (lora-audit --sd-scripts)" in log
    assert f"accelerate: {bin_dir / 'accelerate'} launch (accelerate on PATH)" in log
    assert f"accelerate: [launch] [{sd}/train_network.py] [--config_file] [{study / vid}/config.toml]" in log


@pytest.mark.parametrize("case", ["no-dir", "no-script", "no-python", "cannot-import", "no-accelerate"])
def test_bad_environment_is_one_line_before_anything_runs(study, tmp_path, case):
    sd = sd_scripts(tmp_path)
    py = _exe(tmp_path / "env" / "bin" / "python", FAKE_PYTHON)
    args, env, words = [], {}, []
    if case == "no-dir":
        args = ["--sd-scripts", str(tmp_path / "nowhere"), "--python", str(py)]
        words = ["nowhere (--sd-scripts) does not exist", "git submodule update --init sd-scripts"]
    elif case == "no-script":
        (sd / "train_network.py").unlink()
        args = ["--sd-scripts", str(sd), "--python", str(py)]
        words = [f"{sd} (--sd-scripts) has no train_network.py"]
    elif case == "no-python":
        args = ["--sd-scripts", str(sd), "--python", str(tmp_path / "env" / "bin" / "python9")]
        words = ["python9 (--python) does not exist"]
    elif case == "cannot-import":
        args = ["--sd-scripts", str(sd), "--python", str(py)]
        env = {"FAKE_IMPORT_ERROR": "1"}
        words = ["cannot `import accelerate, torch`: ModuleNotFoundError: No module named 'torch'",
                 "pip install -r requirements.txt"]
    else:  # no venv, no --python, no accelerate on PATH
        args = ["--sd-scripts", str(sd)]
        env = {"PATH": str(tmp_path / "empty-bin")}
        words = ["no Python for kohya", "--python"]
    for dry in ([], ["--dry-run"]):
        r = launch("launch", str(study), *args, *dry, env=env)
        assert r.exit_code == 2, r.output
        line = r.output.strip()
        assert line.startswith("error: ") and "\n" not in line and "Traceback" not in line
        for w in words:
            assert w in line, (w, line)
    assert not list(study.glob("*/logs"))
    assert not (study / "launch.sqlite").exists()


def test_the_empty_submodule_is_not_a_checkout(study, tmp_path):
    # a study written without --sd-scripts names the repo's submodule; empty, it is no checkout: say how to get one
    r = launch("launch", str(study), env={"PATH": str(tmp_path / "empty-bin")})
    assert r.exit_code == 2
    assert "git submodule update --init sd-scripts" in r.output and "--sd-scripts DIR" in r.output


def test_a_study_of_stand_in_runners_needs_no_kohya(tmp_path):
    # the runner was replaced by the user's own: launch asks nothing of sd-scripts
    study = tmp_path / "s"
    (study / "v").mkdir(parents=True)
    (study / "study.toml").write_text('backend = "kohya"\nvariants = ["v"]\n')
    (study / "v" / "train.sh").write_text("mkdir -p output; echo w > output/lora.safetensors\n")
    r = launch("launch", str(study), env={"PATH": os.environ["PATH"]})
    assert r.exit_code == 0, r.output
    assert "sd-scripts:" not in log_of(study, "v")


def test_kohya_exit_0_without_a_lora_is_a_failure(study, tmp_path):
    # kohya returns with exit code 0 after "No data found" (train_network.py, NetworkTrainer.train)
    sd = sd_scripts(tmp_path)
    real = Path(__file__).parent / "data" / "kohya_logs" / "missing_dataset_dir.log"
    py = _exe(tmp_path / "env" / "bin" / "python", f'#!/usr/bin/env bash\n[ "$1" = "-c" ] && exit 0\ncat "{real}"\n')
    vid = only_one(study)
    r = launch("launch", str(study), "--only", vid, "--sd-scripts", str(sd), "--python", str(py))
    assert r.exit_code == 1, r.output
    assert (f"failed: {vid}: No data found. Please verify arguments (train_data_dir must be the parent of folders "
            "with images)") in r.output


def test_global_option_wins_over_the_environment(study, tmp_path):
    sd, elsewhere = sd_scripts(tmp_path), tmp_path / "elsewhere"
    py = _exe(tmp_path / "env" / "bin" / "python", FAKE_PYTHON)
    vid = only_one(study)
    r = launch("--sd-scripts", str(sd), "launch", str(study), "--only", vid, "--python", str(py), entry=cli_main,
               env={"LORA_AUDIT_SD_SCRIPTS": str(elsewhere)})
    assert r.exit_code == 0, r.output
    assert f"sd={sd}" in log_of(study, vid)
    # from the environment alone, through the main CLI: labelled as the environment's
    r = launch("launch", str(study), "--only", vid, "--python", str(py), "--retry", entry=cli_main,
               env={"LORA_AUDIT_SD_SCRIPTS": str(sd)})
    assert r.exit_code == 0, r.output
    assert f"sd-scripts: {sd} ($LORA_AUDIT_SD_SCRIPTS)" in log_of(study, vid, 2)
