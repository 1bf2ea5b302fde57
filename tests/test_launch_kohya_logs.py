"""Failure reasons read from REAL sd-scripts logs (tests/data/kohya_logs/, captured as its README says): the root
cause in kohya's words, never accelerate's CalledProcessError wrapper nor torch's DataLoader-worker wrapper."""

from __future__ import annotations

import json
import math
import shlex
from pathlib import Path

import pytest
from click.testing import CliRunner

from lora_audit.launch import logparse
from lora_audit.launch.__main__ import main

LOGS = Path(__file__).parent / "data" / "kohya_logs"

# log: (exit code of `accelerate launch`, the reason launch/status show)
CASES = {
    "unknown_arg_cli": (1, "unknown argument: --network_dimm 8"),
    "missing_model": (1, "missing file: /work/kohya/model/sd15-random.safetensors (pretrained_model_name_or_path)"),
    "missing_config_file": (1, "missing file: /work/kohya/cases/nope_config.toml"),
    "wide_missing_config_file": (1, "missing file: /work/kohya/cases/nope_config.toml"),
    "missing_dataset_toml": (1, "missing file: /work/kohya/cases/nope.toml"),
    "missing_dataset_dir": (0, "No data found. Please verify arguments (train_data_dir must be the parent of "
                               "folders with images)"),
    "wide_missing_dataset_dir": (0, "No data found. Please verify arguments (train_data_dir must be the parent "
                                    "of folders with images)"),
    "dataset_toml_bad_type": (1, "Invalid user config (MultipleInvalid: expected int for dictionary value @ "
                                 "data['datasets'][0]['batch_size'])"),
    "dataset_toml_missing_subset_dir": (1, "Invalid user config (MultipleInvalid: required key not provided @ "
                                           "data['datasets'][0]['subsets'][0]['image_dir'])"),
    "dataset_toml_syntax": (1, "Error on parsing TOML config file. Please check the format.: "
                               "/work/kohya/cases/ds_not_toml.toml (TomlDecodeError: Key group not on a line by "
                               "itself. (line 1 column 1 char 0))"),
    "module_not_found": (1, "ModuleNotFoundError: No module named 'networks.lora_v2'"),
    "image_too_large": (1, "AssertionError: image too large, but cropping and bucketing are disabled: "
                           "/work/kohya/data/big/10_toy/big1.png"),
    "nan_loss": (0, "NaN/inf loss"),
    # as `lora-audit launch` wrote it (its header, COLUMNS=200) in tests/test_kohya_real.py
    "launch_image_too_large": (1, "AssertionError: image too large, but cropping and bucketing are disabled: "
                                  "/work/kohya/e2e-tmp/test_ablate_launch_inspect_on_0/big/1.png"),
    # the model file memory-mapped under an address-space limit (prlimit --as=7000000000)
    "cpu_oom": (1, "CPU out of memory: Cannot allocate memory (os error 12)"),
    # the same at 11.5 GB: torch's mmap of the model file fails
    "cpu_oom_mmap": (1, "CPU out of memory: unable to mmap 4265096260 bytes from file "
                        "</work/kohya/model/sd15-random.safetensors>: Cannot allocate memory (12)"),
    "ok": (0, None),
}


def read(name: str) -> str:
    return (LOGS / f"{name}.log").read_text(encoding="utf-8")


def test_every_captured_log_has_a_case():
    assert {p.stem for p in LOGS.glob("*.log")} == set(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_reason_is_kohyas_root_cause(name):
    code, reason = CASES[name]
    text = read(name)
    assert logparse.failure(text, code) == reason
    if code:  # what the reason replaces: accelerate's wrapper is in every failed log
        assert "subprocess.CalledProcessError" in text
        assert "CalledProcessError" not in reason and "DataLoader worker" not in reason


def test_a_worker_assert_is_unwrapped():
    text = read("image_too_large")
    assert "AssertionError: Caught AssertionError in DataLoader worker process 0." in text  # torch's wrapper


def test_kohya_records_are_unwrapped():
    # without a terminal rich wraps a record at 80 columns and folds a long path; the message comes back whole
    narrow = [r for r in logparse.kohya_records(read("missing_config_file"))]
    assert [(r.level, r.message, r.source) for r in narrow] == [
        ("INFO", "/work/kohya/cases/nope_config.toml not found.", "train_util.py:4741")]
    ok = {r.message for r in logparse.kohya_records(read("ok"))}
    assert "model saved." in ok and "Loading settings from /work/kohya/base.toml..." in ok
    wide = logparse.kohya_records(read("wide_missing_dataset_dir"))
    assert any(r.level == "ERROR" and r.message.startswith("No data found. Please verify arguments") for r in wide)


def test_noise_is_not_a_reason():
    # bitsandbytes prints "No module named 'kernels'" on every start: a clean run stays clean
    text = read("ok")
    assert "No module named 'kernels'" in text
    assert logparse.failure(text, 0) is None
    assert logparse.failure(text, 1) == "exit code 1"


def test_progress_of_real_runs():
    p = logparse.progress(read("ok"))
    assert (p.step, p.total_steps, p.epoch, p.loss) == (2, 2, "1/1", 1.13)
    nan = logparse.progress(read("nan_loss"))
    assert nan.step == 3 and nan.loss is not None and math.isnan(nan.loss)


def test_cpu_oom_and_signals():
    torch_cpu = ("RuntimeError: [enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate "
                 "memory: you tried to allocate 34359738368 bytes. Error code 12 (Cannot allocate memory)")
    assert logparse.failure(torch_cpu, 1).startswith("CPU out of memory: DefaultCPUAllocator: can't allocate memory")
    assert logparse.failure("steps:   0%|  | 0/2 [00:00<?, ?it/s]\n", -9) == "killed by signal 9 (out of memory?)"
    assert logparse.failure("", 137).startswith("killed (exit code 137")
    bash = "./lora-audit-run.sh: line 9: accelerate: command not found\n"
    assert logparse.failure(bash, 127) == "command not found: accelerate"


@pytest.mark.parametrize("name", ["image_too_large", "missing_dataset_dir", "module_not_found", "ok"])
def test_launch_reports_the_reason_of_a_real_log(tmp_path, name):
    """A runner that replays a real log with its exit code: launch and status show kohya's reason."""
    code, reason = CASES[name]
    study = tmp_path / "s"
    (study / "v").mkdir(parents=True)
    (study / "study.toml").write_text('variants = ["v"]\n')
    write = "mkdir -p output; echo w > output/toy.safetensors\n" if name == "ok" else ""
    (study / "v" / "train.sh").write_text(f"{write}cat {shlex.quote(str(LOGS / (name + '.log')))}\nexit {code}\n")
    r = CliRunner().invoke(main, ["launch", str(study)])
    row = json.loads(CliRunner().invoke(main, ["status", str(study), "--json"]).output)["variants"][0]
    if reason is None:
        assert r.exit_code == 0 and row["state"] == "done" and row["last_loss"] == 1.13
    else:
        assert r.exit_code == 1 and f"failed: v: {reason}" in r.output
        assert (row["state"], row["failure"], row["exit_code"]) == ("failed", reason, code)


def test_what_a_finished_run_survived_is_no_failure():
    # a caught OOM or a traceback printed by a library, then "model saved." and exit 0: done
    text = read("ok") + "\ntorch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB\n"
    assert logparse.failure(text, 0) is None
    assert logparse.failure("Traceback (most recent call last):\nValueError: handled\nall good\n", 0) is None
    assert logparse.failure(text, 1) == "CUDA out of memory"
