"""launch --executor slurm against a real one-node Slurm (conftest.py starts it): stand-in runners, no ML.

Each runner appends its variant id and ``$SLURM_JOB_ID`` to ``<study>/runs.txt``: the tests count how often each
variant really ran. Waits poll the state; gated runners wait for ``<study>/gate``."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from lora_audit.launch import slurm
from lora_audit.launch.__main__ import main
from lora_audit.launch.state import SLURM_SLOT, StudyState
from lora_audit.launch.variants import study_variants

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("slurm_cluster")]

RECORD = 'echo "$(basename "$PWD") $SLURM_JOB_ID" >> ../runs.txt\n'
OK = RECORD + 'echo "marker $LORA_AUDIT_ATTEMPT"\nmkdir -p output; echo weights > output/last.safetensors\n'
GATED = RECORD + "while [ ! -f ../gate ]; do sleep 0.1; done\nmkdir -p output; echo w > output/last.safetensors\n"
SLEEP = RECORD + "sleep 600\n"
FAIL = RECORD + ("echo \"FileNotFoundError: [Errno 2] No such file or directory: 'dataset.toml'\" >&2\n"
                 "exit 3\n")


def make_study(root: Path, scripts: dict[str, str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "study.toml").write_text("strategy = \"ofat\"\nvariants = [" + ", ".join(f'"{v}"' for v in scripts)
                                     + "]\n")
    for vid, body in scripts.items():
        d = root / vid
        d.mkdir()
        (d / "lora-audit-run.sh").write_text("#!/usr/bin/env bash\nset -u\n" + body)
        (d / "variant.json").write_text(json.dumps({"id": vid, "hash": f"hash-{vid}",
                                                    "runner": "lora-audit-run.sh"}))
    return root


def runs(study: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    path = study / "runs.txt"
    for line in path.read_text().splitlines() if path.exists() else []:
        vid, job = line.rsplit(" ", 1)
        out.setdefault(vid, []).append(job)
    return out


def cli(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


_STARTED: list[subprocess.Popen] = []


@pytest.fixture(autouse=True)
def _no_launcher_left():
    """A launcher a failed test left behind is killed (by its pid), not left polling a cluster that stops."""
    yield
    while _STARTED:
        proc = _STARTED.pop()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def launcher(study: Path, *args: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "lora_audit.launch", "launch", str(study), "--executor", "slurm",
                             *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    _STARTED.append(proc)
    return proc


def wait_for(predicate, what: str, limit: float = 60.0):
    end = time.monotonic() + limit
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def rows(study: Path) -> dict:
    if not (study / "launch.sqlite").exists():
        return {}
    st = StudyState(study, readonly=True)
    if not st.ready:
        st.close()
        return {}
    try:
        return {a.variant: a for a in (st.last(v) for v in {a.variant for a in st.attempts()}) if a}
    finally:
        st.close()


def live_jobs(study: Path) -> dict:
    return {j.id: j for j in (slurm.queue(slurm.study_tag(study)) or {}).values() if j.state in slurm.LIVE_STATES}


def test_all_variants_done_once_and_status_shows_jobs(tmp_path, monkeypatch):
    study = make_study(tmp_path / "s", {"a": OK, "b": OK, "c c": OK})
    monkeypatch.chdir(tmp_path)  # a study named by a relative path
    r = cli("launch", "s", "--executor", "slurm", "--time", "00:05:00", "--cpus-per-job", "1")
    assert r.exit_code == 0, r.output
    assert "summary: 3 done" in r.output
    assert {v: len(j) for v, j in runs(study).items()} == {"a": 1, "b": 1, "c c": 1}
    data = json.loads(cli("status", str(study), "--json").output)
    got = {v["id"]: v for v in data["variants"]}
    for vid in ("a", "b", "c c"):
        assert got[vid]["state"] == "done"
        assert got[vid]["slurm"]["job_id"] == runs(study)[vid][0]  # the job that really ran
        assert got[vid]["slurm"]["state"] == "COMPLETED"
        log = Path(got[vid]["log"])
        assert log == study / vid / "logs" / "attempt-1.log"
        text = log.read_text()
        assert f"job {runs(study)[vid][0]} started" in text and "runner exited with 0" in text
        assert "marker " in text and "marker \n" not in text  # the attempt marker reached the job
    table = cli("status", str(study)).output
    assert "slurm job" in table and "COMPLETED" in table
    # again: nothing is submitted twice
    r = cli("launch", str(study), "--executor", "slurm")
    assert r.exit_code == 0 and "submitted" not in r.output
    assert {v: len(j) for v, j in runs(study).items()} == {"a": 1, "b": 1, "c c": 1}


def test_killed_launcher_relaunch_reattaches_never_submits_twice(tmp_path):
    study = make_study(tmp_path / "s", {f"v{i}": GATED for i in range(3)})
    first = launcher(study, "--time", "00:05:00")
    wait_for(lambda: len([a for a in rows(study).values() if a.job_id]) == 3, "3 submitted jobs", 30)
    wait_for(lambda: len(runs(study)) == 3, "3 jobs running", 30)
    first.send_signal(signal.SIGKILL)
    first.wait()
    ids = {a.variant: a.job_id for a in rows(study).values()}
    assert set(live_jobs(study)) == set(ids.values())  # the jobs live on without their launcher
    assert cli("status", str(study), "--json").exit_code == 0
    status = {v["id"]: v for v in json.loads(cli("status", str(study), "--json").output)["variants"]}
    assert all(status[v]["state"] == "running" and status[v]["slurm"]["state"] == "RUNNING" for v in ids)
    second = launcher(study)
    time.sleep(1.0)
    (study / "gate").write_text("")
    out, _ = second.communicate(timeout=60)
    assert second.returncode == 0, out
    assert "waiting for it" in out and "submitted as" not in out
    assert {v: j for v, j in runs(study).items()} == {v: [ids[v]] for v in ids}  # each ran once, in its job
    assert {v: (a.state, a.attempt) for v, a in rows(study).items()} == {v: ("done", 1) for v in ids}


def test_crash_between_sbatch_and_record_is_found_by_job_name(tmp_path):
    """A launcher died after sbatch returned but before it wrote the job id: the relaunch finds the job by its name
    and waits for it instead of submitting the variant again."""
    study = make_study(tmp_path / "s", {"x": GATED})
    st = StudyState(study)
    a = st.enqueue("x", "hash-x")
    lid = st.register_launcher()
    log = study / "x" / "logs" / "attempt-1.log"
    assert st.claim(a.id, lid, SLURM_SLOT, str(log))
    log.parent.mkdir()
    script = log.with_suffix(".sbatch")
    v = study_variants(study)[0]
    script.write_text(slurm.batch_script(study, v, a))
    r = subprocess.run(slurm.sbatch_command(study, v, a, slurm.SlurmOptions(), script), capture_output=True,
                       text=True, check=True)
    job_id = r.stdout.strip()
    st.db.execute("UPDATE launchers SET pid=999999999 WHERE id=?", (lid,))  # that launcher is gone
    st.close()
    wait_for(lambda: runs(study), "the job to start", 30)
    (study / "gate").write_text("")
    r = cli("launch", str(study), "--executor", "slurm")
    assert r.exit_code == 0, r.output
    assert f"found as Slurm job {job_id}" in r.output and "submitted as" not in r.output
    assert runs(study) == {"x": [job_id]}
    assert rows(study)["x"].state == "done" and rows(study)["x"].job_id == job_id


def test_failure_reasons_exit_code_timeout_and_outside_cancel(tmp_path):
    study = make_study(tmp_path / "s", {"ok": OK, "fail": FAIL, "slow": SLEEP, "victim": SLEEP})
    proc = launcher(study, "--time", "00:00:05")  # Slurm rounds up to a minute
    victim = wait_for(lambda: runs(study).get("victim"), "the victim job to run", 30)[0]
    subprocess.run(["scancel", victim], check=True)
    out, _ = proc.communicate(timeout=150)
    assert proc.returncode == 1, out  # failed variants: exit 1
    got = rows(study)
    assert got["ok"].state == "done"
    assert got["fail"].state == "failed" and got["fail"].exit_code == 3
    assert got["fail"].failure == "Slurm FAILED (exit code 3): missing file: dataset.toml"
    assert got["slow"].state == "failed" and got["slow"].slurm_state == "TIMEOUT"
    assert got["slow"].failure.startswith("Slurm TIMEOUT (time limit ")
    assert got["victim"].state == "cancelled" and "scancel from outside" in got["victim"].failure
    assert "failed: fail: Slurm FAILED (exit code 3): missing file: dataset.toml" in out
    data = {v["id"]: v for v in json.loads(cli("status", str(study), "--json").output)["variants"]}
    assert data["slow"]["slurm"]["state"] == "TIMEOUT" and data["victim"]["slurm"]["state"] == "CANCELLED"


def test_cancel_leaves_nothing_in_squeue(tmp_path):
    study = make_study(tmp_path / "s", {"p": SLEEP, "q": SLEEP})
    proc = launcher(study)
    wait_for(lambda: len(live_jobs(study)) == 2, "2 live jobs", 30)
    r = cli("launch", str(study), "--cancel")
    assert r.exit_code == 0, r.output
    assert not live_jobs(study)
    out, _ = proc.communicate(timeout=60)
    assert "cancel requested" in out
    assert {v: a.state for v, a in rows(study).items()} == {"p": "cancelled", "q": "cancelled"}


def test_sigterm_detaches_then_cancel_without_a_launcher(tmp_path):
    bar = "printf 'steps:  50%%|#  | 2/4 [00:01<00:01,  2.0it/s, avr_loss=0.25]\\n'\n"
    study = make_study(tmp_path / "s", {"p": SLEEP, "q": bar + GATED})
    proc = launcher(study)
    wait_for(lambda: len(runs(study)) == 2, "2 running jobs", 30)
    wait_for(lambda: rows(study)["q"].last_step == 2, "the progress of q", 30)  # read from the job's log
    q = {v["id"]: v for v in json.loads(cli("status", str(study), "--json").output)["variants"]}["q"]
    assert (q["state"], q["last_step"], q["last_loss"]) == ("running", 2, 0.25)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0 and "stopped watching; 2 Slurm job(s) run on" in out, out
    assert len(live_jobs(study)) == 2  # the jobs run on
    r = cli("launch", str(study), "--cancel")
    assert r.exit_code == 0 and "scancelled 2 Slurm job(s)" in r.output, r.output
    assert not live_jobs(study)
    assert {v: a.state for v, a in rows(study).items()} == {"p": "cancelled", "q": "cancelled"}


def test_kohya_environment_reaches_the_job_even_without_exported_env(tmp_path):
    """A runner that trains with kohya gets the checkout and the Python chosen at launch in its job, written into
    the batch script itself (here sbatch is told not to export the launcher's environment)."""
    sd = tmp_path / "sd-scripts"
    sd.mkdir()
    (sd / "train_network.py").write_text("# stand-in\n")
    study = make_study(tmp_path / "s", {"k": RECORD + (
        'test -f "$LORA_AUDIT_SD_SCRIPTS/train_network.py" && echo "sd ok $LORA_AUDIT_KOHYA_PYTHON"\n'
        "mkdir -p output; echo w > output/last.safetensors\n")})
    record = json.loads((study / "k" / "variant.json").read_text())
    (study / "k" / "variant.json").write_text(json.dumps({**record, "script": "train_network.py"}))
    r = cli("launch", str(study), "--executor", "slurm", "--sd-scripts", str(sd), "--python", sys.executable,
            "--sbatch-arg=--export=NONE")
    assert r.exit_code == 0, r.output
    text = (study / "k" / "logs" / "attempt-1.log").read_text()
    assert f"# lora-audit launch: sd-scripts: {sd}" in text  # the header names the checkout
    assert f"sd ok {sys.executable}" in text
    assert runs(study).keys() == {"k"}


def test_max_parallel_caps_live_jobs(tmp_path):
    body = RECORD + 'echo "start $(basename "$PWD")" >> ../order.txt; sleep 1; echo "end" >> ../order.txt\n'
    study = make_study(tmp_path / "s", {"m1": body, "m2": body, "m3": body})
    r = cli("launch", str(study), "--executor", "slurm", "--max-parallel", "1")
    assert r.exit_code == 0, r.output
    lines = (study / "order.txt").read_text().split("\n")
    assert [ln.split()[0] for ln in lines if ln] == ["start", "end"] * 3  # one job at a time


def test_never_submitted_attempt_is_submitted_again_once(tmp_path):
    """A launcher died after claiming a variant but before sbatch: no job of that name exists, so the relaunch
    submits it (as attempt 2), once."""
    study = make_study(tmp_path / "s", {"y": OK})
    st = StudyState(study)
    a = st.enqueue("y", "hash-y")
    lid = st.register_launcher()
    assert st.claim(a.id, lid, SLURM_SLOT, str(study / "y" / "logs" / "attempt-1.log"))
    st.db.execute("UPDATE launchers SET pid=999999999 WHERE id=?", (lid,))
    st.close()
    r = cli("launch", str(study), "--executor", "slurm")
    assert r.exit_code == 0, r.output
    assert "never reached Slurm" in r.output
    assert len(runs(study)["y"]) == 1
    assert (rows(study)["y"].state, rows(study)["y"].attempt) == ("done", 2)


def test_options_sbatch_refuses_stop_the_launch_with_one_line(tmp_path):
    study = make_study(tmp_path / "s", {"a": OK, "b": OK})
    r = cli("launch", str(study), "--executor", "slurm", "--partition", "nosuch")
    assert r.exit_code == 2
    assert r.output.startswith("error: sbatch refused the job of a: ") and "partition" in r.output, r.output
    assert not live_jobs(study) and not runs(study)
    r = cli("launch", str(study), "--executor", "slurm")  # fixed: both submitted, each once
    assert r.exit_code == 0, r.output
    assert {v: len(j) for v, j in runs(study).items()} == {"a": 1, "b": 1}


def test_job_that_ended_unwatched_is_shown_then_recorded_by_relaunch(tmp_path):
    study = make_study(tmp_path / "s", {"u": GATED})
    first = launcher(study)
    wait_for(lambda: runs(study), "the job to run", 30)
    first.send_signal(signal.SIGKILL)
    first.wait()
    (study / "gate").write_text("")
    job = rows(study)["u"].job_id
    wait_for(lambda: (slurm.queue(slurm.study_tag(study)) or {}).get(job, slurm.Job("")).state == "COMPLETED",
             "the job to complete", 30)
    r = cli("status", str(study), "--watch", "--json")  # returns: nothing live is left to follow
    u = json.loads(r.output)["variants"][0]
    assert (u["state"], u["slurm"]["state"]) == ("running", "COMPLETED")
    assert "ended (COMPLETED)" in u["failure"] and "records it" in u["failure"]
    r = cli("launch", str(study), "--executor", "slurm")
    assert r.exit_code == 0 and "submitted as" not in r.output, r.output
    assert rows(study)["u"].state == "done" and runs(study) == {"u": [job]}


def test_relaunch_resubmits_only_the_failed_variant(tmp_path):
    """A relaunch on Slurm submits what failed again (a new attempt, a new job) and leaves done variants alone."""
    flaky = RECORD + ('if [ ! -f ../second ]; then touch ../second; echo "RuntimeError: boom" >&2; exit 3; fi\n'
                      "mkdir -p output; echo w > output/last.safetensors\n")
    study = make_study(tmp_path / "s", {"ok": OK, "flaky": flaky})
    r = cli("launch", str(study), "--executor", "slurm")
    assert r.exit_code == 1, r.output
    assert rows(study)["flaky"].state == "failed" and rows(study)["ok"].state == "done"
    r = cli("launch", str(study), "--executor", "slurm")
    assert r.exit_code == 0, r.output
    got = rows(study)
    assert got["flaky"].state == "done" and got["flaky"].attempt == 2
    ran = runs(study)
    assert len(ran["ok"]) == 1 and len(ran["flaky"]) == 2 and ran["flaky"][0] != ran["flaky"][1]
