"""launch --executor slurm without a cluster: the missing-sbatch error, the dry-run's sbatch lines, and a
launch.sqlite written before the Slurm columns existed."""

from __future__ import annotations

import json
import shlex
import sqlite3
from pathlib import Path

from click.testing import CliRunner

from lora_audit.launch.__main__ import main
from lora_audit.launch.state import StudyState

OLD_SCHEMA = """
CREATE TABLE attempts (id INTEGER PRIMARY KEY AUTOINCREMENT, variant TEXT NOT NULL, attempt INTEGER NOT NULL,
    state TEXT NOT NULL, hash TEXT, launcher TEXT, pid INTEGER, slot TEXT, queued_at REAL, started REAL, ended REAL,
    exit_code INTEGER, log TEXT, outputs TEXT NOT NULL DEFAULT '[]', last_step INTEGER, total_steps INTEGER,
    last_epoch TEXT, last_loss REAL, eta TEXT, failure TEXT, reused_from TEXT, UNIQUE (variant, attempt));
CREATE TABLE launchers (id TEXT PRIMARY KEY, host TEXT NOT NULL, pid INTEGER NOT NULL, started REAL NOT NULL,
    heartbeat REAL NOT NULL, cancel INTEGER NOT NULL DEFAULT 0, ended REAL);
INSERT INTO attempts (variant, attempt, state, exit_code, outputs) VALUES ('a', 1, 'done', 0, '[]');
"""


def study(root: Path, ids=("a", "b b")) -> Path:
    root.mkdir()
    (root / "study.toml").write_text("variants = [" + ", ".join(json.dumps(i) for i in ids) + "]\n")
    for vid in ids:
        (root / vid).mkdir()
        (root / vid / "train.sh").write_text("echo hi\n")
        (root / vid / "variant.json").write_text(json.dumps({"id": vid, "hash": vid}))
    return root


def test_no_sbatch_on_path_is_one_line(tmp_path, monkeypatch):
    s = study(tmp_path / "s")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    r = CliRunner().invoke(main, ["launch", str(s), "--executor", "slurm"])
    assert r.exit_code == 2
    assert r.output.strip().count("\n") == 0 and "sbatch not found on PATH" in r.output
    assert not (s / "launch.sqlite").exists()


def test_dry_run_prints_quoted_sbatch_lines(tmp_path):
    s = study(tmp_path / "s")
    r = CliRunner().invoke(main, ["launch", str(s), "--executor", "slurm", "--dry-run", "--json", "--partition",
                                  "gpu", "--gpus-per-job", "2", "--mem", "32G", "--time", "04:00:00",
                                  "--sbatch-arg=--constraint=a100"])
    assert r.exit_code == 0, r.output
    plan = {p["id"]: p for p in json.loads(r.output)["variants"]}
    argv = shlex.split(plan["b b"]["sbatch"])
    assert argv[:2] == ["sbatch", "--parsable"]
    for want in ("--partition=gpu", "--gpus=2", "--mem=32G", "--time=04:00:00", "--constraint=a100",
                 f"--chdir={s / 'b b'}", "--output=logs/attempt-1.log"):
        assert want in argv
    assert argv[-1] == str(s / "b b" / "logs" / "attempt-1.sbatch")
    assert not (s / "launch.sqlite").exists()


def test_old_state_file_is_read_and_migrated(tmp_path):
    s = study(tmp_path / "s")
    db = sqlite3.connect(s / "launch.sqlite")
    db.executescript(OLD_SCHEMA)
    db.close()
    r = CliRunner().invoke(main, ["status", str(s), "--json"])  # read-only: the old columns suffice
    assert r.exit_code == 0, r.output
    rows = {v["id"]: v for v in json.loads(r.output)["variants"]}
    assert rows["a"]["state"] == "done" and "slurm" not in rows["a"]
    st = StudyState(s)  # a writer adds the new columns
    assert st.last("a").job_id is None
    cols = {r[1] for r in st.db.execute("PRAGMA table_info(attempts)")}
    st.close()
    assert {"job_id", "slurm_state"} <= cols


def test_slurm_outcomes_carry_slurm_and_kohya_reasons():
    from lora_audit.launch.slurm import outcome

    assert outcome("COMPLETED", 0, None) == ("done", None)
    assert outcome("COMPLETED", 0, "NaN/inf loss") == ("failed", "NaN/inf loss")
    assert outcome("FAILED", 1, "CUDA out of memory") == ("failed", "Slurm FAILED (exit code 1): CUDA out of memory")
    assert outcome("FAILED", 3, "exit code 3") == ("failed", "Slurm FAILED (exit code 3)")
    assert outcome("TIMEOUT", 143, "exit code 143", "04:00:00") == ("failed", "Slurm TIMEOUT (time limit 04:00:00)")
    assert outcome("OUT_OF_MEMORY", 137, None) == ("failed", "Slurm OUT_OF_MEMORY (exit code 137)")
    assert outcome("NODE_FAIL", None, None, job_id="7")[0] == "interrupted"
    assert outcome("PREEMPTED", 143, None, job_id="7") == ("interrupted",
                                                           "Slurm PREEMPTED (job 7); launch again to resubmit")
    assert outcome("CANCELLED", 143, None, job_id="9") == ("cancelled",
                                                           "Slurm CANCELLED job 9 (scancel from outside lora-audit)")


def test_slurm_options_need_the_slurm_executor(tmp_path):
    s = study(tmp_path / "s")
    r = CliRunner().invoke(main, ["launch", str(s), "--partition", "gpu"])
    assert r.exit_code == 2 and r.output.strip() == "error: --partition is for --executor slurm"
    r = CliRunner().invoke(main, ["launch", str(s), "--executor", "slurm", "--gpus", "0,1", "--dry-run"])
    assert r.exit_code == 2 and "--gpus-per-job" in r.output
