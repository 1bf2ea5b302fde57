"""launch / status with a launch.sqlite that is damaged, foreign or gone: one line and how to start over; a
relaunch after the state was deleted numbers attempts after the logs on disk and does not retrain a variant whose
LoRA is on disk (unless --retry)."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from lora_audit.cli import main as cli_main
from lora_audit.launch.__main__ import main

# writes kohya's final file name for output_name = "lora" (config.toml below), and counts its runs
TRAIN = """echo "ran $LORA_AUDIT_ATTEMPT" >> ../runs.txt
mkdir -p output
printf '\\rsteps: 100%%|##| 2/2 [00:01<00:00,  2.0it/s, avr_loss=0.25]\\n'
echo weights > output/lora.safetensors
"""
FAIL = 'echo "ran $LORA_AUDIT_ATTEMPT" >> ../runs.txt\necho "ValueError: no images" >&2; exit 1\n'
# an epoch save only (kohya's EPOCH_FILE_NAME), then killed: not a finished LoRA
PARTIAL = 'echo "ran $LORA_AUDIT_ATTEMPT" >> ../runs.txt\nmkdir -p output\necho w > output/lora-000001.safetensors\n'


def make_study(root: Path, scripts: dict[str, str]) -> Path:
    root.mkdir(parents=True)
    (root / "study.toml").write_text('strategy = "ofat"\nvariants = [' + ", ".join(f'"{v}"' for v in scripts) + "]\n")
    for vid, body in scripts.items():
        d = root / vid
        d.mkdir()
        (d / "train.sh").write_text("#!/usr/bin/env bash\nset -u\n" + body)
        (d / "variant.json").write_text(json.dumps({"id": vid, "hash": f"hash-{vid}"}))
        (d / "config.toml").write_text('[save]\noutput_dir = "output"\noutput_name = "lora"\n')
    return root


def run(*args: str):
    return CliRunner().invoke(main, list(args))


def runs(study: Path) -> list[str]:
    f = study / "runs.txt"
    return f.read_text().split("\n")[:-1] if f.is_file() else []


def drop_state(study: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        p = study / f"launch.sqlite{suffix}"
        if p.exists():
            p.unlink()


def launched(tmp_path: Path) -> Path:
    study = make_study(tmp_path / "s", {"a": TRAIN, "b": TRAIN})
    assert run("launch", str(study)).exit_code == 0
    return study


def assert_one_line(r, *words: str) -> None:
    assert r.exit_code == 2, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.output
    assert "Traceback" not in r.output
    for w in ("launch.sqlite", "to start over", "mv ", *words):
        assert w in lines[0], (w, lines[0])


# -- damaged, foreign, not a file ---------------------------------------------------------------------------------
def _truncate_to(study: Path, size: int) -> None:
    db = study / "launch.sqlite"
    with sqlite3.connect(db) as c:  # everything in the main file, no WAL left beside it
        c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        c.execute("PRAGMA journal_mode=DELETE")
    c.close()
    drop = [p for p in (study / "launch.sqlite-wal", study / "launch.sqlite-shm") if p.exists()]
    for p in drop:
        p.unlink()
    data = db.read_bytes()
    assert len(data) > size
    db.write_bytes(data[:size])


@pytest.mark.parametrize("size", [50, 1000, 4096])
def test_truncated_state_is_one_line_for_status_and_launch(tmp_path, size):
    study = launched(tmp_path)
    _truncate_to(study, size)
    for cmd in ("status", "launch"):
        assert_one_line(run(cmd, str(study)), "truncated")
    assert runs(study) == ["ran a#1", "ran b#1"]  # nothing ran again


def test_random_bytes_state(tmp_path):
    study = make_study(tmp_path / "s", {"a": TRAIN})
    (study / "launch.sqlite").write_bytes(os.urandom(8192))
    for cmd in ("status", "launch"):
        assert_one_line(run(cmd, str(study)), "not an SQLite file")
    # the SQLite magic followed by garbage: SQLite itself refuses it, still one line
    (study / "launch.sqlite").write_bytes(b"SQLite format 3\x00" + os.urandom(8192 - 16))
    for cmd in ("status", "launch", "--json"):
        args = [cmd, str(study)] if cmd != "--json" else ["status", str(study), "--json"]
        assert_one_line(run(*args))
    assert runs(study) == [] and not (study / "a" / "logs").exists()


def test_valid_sqlite_with_another_schema(tmp_path):
    study = make_study(tmp_path / "s", {"a": TRAIN})
    with sqlite3.connect(study / "launch.sqlite") as c:
        c.execute("CREATE TABLE photos (id INTEGER, path TEXT)")
    c.close()
    for cmd in ("status", "launch"):
        assert_one_line(run(cmd, str(study)), "not a lora-audit launch state", "photos")
    (study / "launch.sqlite").unlink()
    with sqlite3.connect(study / "launch.sqlite") as c:  # our table's name, not our columns
        c.execute("CREATE TABLE attempts (id INTEGER, variant TEXT)")
    c.close()
    for cmd in ("status", "launch"):
        assert_one_line(run(cmd, str(study)), "table attempts lacks", "state")
    assert runs(study) == []


def test_directory_in_place_of_the_state(tmp_path):
    study = make_study(tmp_path / "s", {"a": TRAIN})
    (study / "launch.sqlite").mkdir()
    for cmd in ("status", "launch"):
        assert_one_line(run(cmd, str(study)), "a directory")
    assert_one_line(run("launch", str(study), "--dry-run"), "a directory")
    # through the main CLI as well
    r = CliRunner().invoke(cli_main, ["status", str(study)])
    assert_one_line(r, "a directory")


def test_reuse_of_a_damaged_study_names_that_study(tmp_path):
    study = make_study(tmp_path / "s", {"a": TRAIN})
    other = make_study(tmp_path / "o", {"x": TRAIN})
    (other / "launch.sqlite").write_bytes(b"garbage" * 100)
    r = run("launch", str(study), "--reuse", str(other))
    assert_one_line(r, str(other / "launch.sqlite"))


# -- the state deleted ----------------------------------------------------------------------------------------------
def test_relaunch_after_state_deleted_numbers_after_the_logs_and_keeps_finished_loras(tmp_path):
    study = make_study(tmp_path / "s", {"done": TRAIN, "failed": FAIL, "partial": PARTIAL, "todo": TRAIN})
    r = run("launch", str(study), "--only", "done,failed,partial")
    assert r.exit_code == 1, r.output  # "failed" failed
    assert sorted(runs(study)) == ["ran done#1", "ran failed#1", "ran partial#1"]
    drop_state(study)

    r = run("status", str(study))  # it was launched: status says the state is gone, and what launch will do
    assert r.exit_code == 2 and r.output.startswith("error: ") and len(r.output.strip().splitlines()) == 1
    assert "launch state missing" in r.output and "3 variant(s) have attempt logs" in r.output

    plan = {p["id"]: p for p in json.loads(run("launch", str(study), "--dry-run", "--json").output)["variants"]}
    assert plan["done"]["action"].startswith("skip: LoRA on disk (done/output/lora.safetensors)")
    assert [plan[v]["action"] for v in ("failed", "partial", "todo")] == ["run on cpu0"] * 3
    assert [plan[v]["attempt"] for v in ("failed", "partial", "todo")] == [2, 2, 1]

    r = run("launch", str(study))
    assert r.exit_code == 1, r.output  # "failed" fails again: exit 1, but no Errno 17
    assert "File exists" not in r.output
    assert "launch.sqlite is missing but attempt logs are on disk: starting over" in r.output.splitlines()[0]
    assert "done: its LoRA is on disk (done/output/lora.safetensors) but not in the launch state" in r.output
    assert sorted(runs(study)) == ["ran done#1", "ran failed#1", "ran failed#2", "ran partial#1", "ran partial#2",
                                   "ran todo#1"]  # "done" did not train again
    rows = {row["id"]: row for row in json.loads(run("status", str(study), "--json").output)["variants"]}
    assert rows["done"]["state"] == "done"
    assert rows["done"]["outputs"] == [str(study / "done" / "output" / "lora.safetensors")]
    assert rows["done"]["log"] == str(study / "done" / "logs" / "attempt-1.log")
    assert (rows["failed"]["state"], rows["failed"]["failure"]) == ("failed", "ValueError: no images")
    assert rows["failed"]["log"] == str(study / "failed" / "logs" / "attempt-2.log")
    assert rows["partial"]["state"] == "done" and rows["todo"]["state"] == "done"
    # the first attempt's log and the epoch save it left are kept
    assert (study / "failed" / "logs" / "attempt-1.log").read_text().count("ran") == 0
    assert (study / "partial" / "output.before-attempt-2" / "lora-000001.safetensors").is_file()
    assert "found on disk" in run("status", str(study)).output


def test_retry_trains_a_found_lora_again_and_keeps_the_old_one(tmp_path):
    study = make_study(tmp_path / "s", {"a": TRAIN})
    assert run("launch", str(study)).exit_code == 0
    drop_state(study)
    r = run("launch", str(study), "--retry")
    assert r.exit_code == 0, r.output
    assert runs(study) == ["ran a#1", "ran a#2"]
    assert (study / "a" / "output.before-attempt-2" / "lora.safetensors").is_file()
    assert (study / "a" / "logs" / "attempt-2.log").is_file()
    # --retry with the state there: a done variant trains again too (attempt 3), a plain launch does not
    assert run("launch", str(study)).exit_code == 0 and len(runs(study)) == 2
    assert run("launch", str(study), "--retry").exit_code == 0
    assert runs(study)[-1] == "ran a#3"


def test_state_deleted_twice_keeps_counting(tmp_path):
    study = make_study(tmp_path / "s", {"f": FAIL})
    for n in (1, 2, 3):
        r = run("launch", str(study))
        assert r.exit_code == 1 and "File exists" not in r.output, r.output
        assert runs(study)[-1] == f"ran f#{n}"
        drop_state(study)
    assert sorted(p.name for p in (study / "f" / "logs").iterdir()) == [f"attempt-{n}.log" for n in (1, 2, 3)]


def test_never_launched_study_has_no_state_and_status_is_fine(tmp_path):
    study = make_study(tmp_path / "s", {"a": TRAIN})
    r = run("status", str(study), "--json")
    assert r.exit_code == 0 and json.loads(r.output)["variants"][0]["state"] == "pending"
    assert not (study / "launch.sqlite").exists()


def test_rows_edited_by_hand_read_as_unknown_not_a_crash(tmp_path):
    study = launched(tmp_path)
    with sqlite3.connect(study / "launch.sqlite") as c:
        c.execute("UPDATE attempts SET outputs='{\"not\": \"a list\"}', last_loss='x', exit_code='y' WHERE variant='a'")
        c.execute("UPDATE attempts SET outputs='not json' WHERE variant='b'")
        c.execute("INSERT INTO launchers (id, host, pid, started, heartbeat) VALUES ('x', 'h', 'pid', 0, 'beat')")
    c.close()
    r = run("status", str(study), "--json")
    assert r.exit_code == 0, r.output
    rows = {row["id"]: row for row in json.loads(r.output)["variants"]}
    assert rows["a"]["outputs"] == [] and rows["a"]["last_loss"] is None and rows["a"]["exit_code"] is None
    assert rows["b"]["outputs"] == [] and rows["b"]["state"] == "done"
    assert run("launch", str(study)).exit_code == 0 and runs(study) == ["ran a#1", "ran b#1"]


def test_non_regular_files_in_place_of_the_state(tmp_path):
    study = make_study(tmp_path / "s", {"a": TRAIN})
    db = study / "launch.sqlite"
    db.symlink_to("/dev/zero")
    assert_one_line(run("status", str(study)), "not a regular file")
    db.unlink()
    os.mkfifo(db)  # never opened: a FIFO would block the reader
    assert_one_line(run("launch", str(study)), "not a regular file")
    db.unlink()
    db.symlink_to(db.name)  # a loop
    assert_one_line(run("status", str(study)), "symbolic links")
    assert runs(study) == []


def test_a_file_in_place_of_logs_fails_that_variant_only(tmp_path):
    study = make_study(tmp_path / "s", {"a": TRAIN, "b": TRAIN})
    (study / "a" / "logs").write_text("not a folder")
    r = run("launch", str(study))
    assert r.exit_code == 1 and "Traceback" not in r.output
    rows = {row["id"]: row for row in json.loads(run("status", str(study), "--json").output)["variants"]}
    assert rows["a"]["state"] == "failed" and rows["a"]["failure"].startswith("could not start train.sh: ")
    assert rows["b"]["state"] == "done"


# -- fuzz: a mutated launch.sqlite is read, or refused in one line ---------------------------------------------------
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as hs  # noqa: E402

_VALID: dict[str, bytes] = {}


def _valid_state(tmp_path_factory) -> bytes:
    if "db" not in _VALID:
        study = make_study(tmp_path_factory.mktemp("valid") / "s", {"a": TRAIN, "f": FAIL})
        run("launch", str(study))
        with sqlite3.connect(study / "launch.sqlite") as c:
            c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            c.execute("PRAGMA journal_mode=DELETE")
        c.close()
        _VALID["db"] = (study / "launch.sqlite").read_bytes()
    return _VALID["db"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=hs.integers(min_value=0, max_value=1 << 16),
       flips=hs.lists(hs.tuples(hs.integers(min_value=0, max_value=1 << 16), hs.integers(0, 255)), max_size=8))
def test_fuzz_mutated_state(tmp_path_factory, cut, flips):
    data = bytearray(_valid_state(tmp_path_factory))
    for at, value in flips:
        data[at % len(data)] = value
    data = data[: cut % (len(data) + 1)] if cut % 3 == 0 else data
    study = make_study(tmp_path_factory.mktemp("fuzz") / "s", {"a": TRAIN, "f": FAIL})
    (study / "launch.sqlite").write_bytes(bytes(data))
    for args in (["status", str(study)], ["status", str(study), "--json"], ["launch", str(study), "--dry-run"]):
        r = run(*args)
        assert r.exit_code in (0, 2), (args, r.output, r.exception)
        assert "Traceback" not in r.output and (r.exception is None or isinstance(r.exception, SystemExit))
        if r.exit_code == 2:
            assert len(r.output.strip().splitlines()) == 1 and r.output.startswith("error: "), r.output
