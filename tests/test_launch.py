"""lora-audit launch / status: stand-in train.sh scripts for the failure cases, a killed launcher, two launchers,
cancel, reuse; and (slow, with torch) a real study trained by the builtin trainer.

No assertion depends on wall-clock timing: stand-in scripts wait for a gate file, and tests poll the state."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from lora_audit.launch import logparse
from lora_audit.launch.__main__ import main
from lora_audit.launch.state import StudyState, pid_alive
from lora_audit.launch.status import status_data

KEYS = {"id", "state", "attempts", "exit_code", "log", "outputs", "last_step", "last_loss", "failure"}

OK = """mkdir -p output
for i in 1 2 3; do printf '\\rsteps:  %d%%|##  | %d/3 [00:01<00:02,  2.0it/s, avr_loss=0.5%d]' $((i*33)) $i $i; done
echo; echo "epoch 1/1"; echo weights > output/lora.safetensors
"""
# waits for <study>/gate, leaving a partial output behind first; prints its attempt marker
GATED = """mkdir -p output; echo partial > output/partial-$$.safetensors
echo "attempt $LORA_AUDIT_ATTEMPT pid $$"
while [ ! -f ../gate ]; do sleep 0.05; done
echo weights > output/lora.safetensors
"""
HANG = "echo 'steps:   0%|  | 0/100 [00:00<?, ?it/s]'\nwhile true; do sleep 0.05; done\n"
FAILURES = {
    "exit1": ("echo something went wrong; exit 1\n", "exit code 1"),
    "oom": ("echo 'torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 MiB' >&2; exit 1\n",
            "CUDA out of memory"),
    "nan": ("printf 'steps:  50%%|#  | 5/10 [00:05<00:05,  1.0it/s, avr_loss=nan]\\n'; exit 0\n", "NaN/inf loss"),
    "badarg": ("echo 'train_network.py: error: unrecognized arguments: --network_dimm 8' >&2; exit 2\n",
               "unknown argument: --network_dimm 8"),
    "nofile": ("echo \"FileNotFoundError: [Errno 2] No such file or directory: 'dataset.toml'\" >&2; exit 1\n",
               "missing file: dataset.toml"),
}


def make_study(root: Path, scripts: dict[str, str], hashes: dict[str, str] | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "study.toml").write_text("strategy = \"ofat\"\nvariants = [" + ", ".join(f'"{v}"' for v in scripts)
                                     + "]\n")
    for vid, body in scripts.items():
        d = root / vid
        d.mkdir()
        (d / "train.sh").write_text("#!/usr/bin/env bash\nset -u\n" + body)
        (d / "variant.json").write_text(json.dumps({"id": vid, "hash": (hashes or {}).get(vid, f"hash-{vid}")}))
    return root


def cli(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def launcher_process(study: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "lora_audit.launch", "launch", str(study), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_for(predicate, what: str, limit: float = 60.0):
    end = time.monotonic() + limit
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def states(study: Path) -> dict[str, str]:
    return {r["id"]: r["state"] for r in status_data(study)["variants"]}


# -- log parsing --------------------------------------------------------------------------------------------------
def test_progress_from_kohya_and_builtin_bars():
    kohya = ("\nepoch 2/10\n\rsteps:  12%|█▏        | 12/100 [00:30<03:40,  2.50s/it, avr_loss=0.0923]"
             "\rsteps:  13%|█▎        | 13/100 [00:32<03:37,  2.50s/it, avr_loss=0.0911]")
    p = logparse.progress(kohya)
    assert (p.step, p.total_steps, p.epoch, p.loss, p.eta) == (13, 100, "2/10", 0.0911, "03:37")
    builtin = "epoch 1/2\rsteps:  50%|█████     | 2/4 [00:01<00:01,  1.9it/s, avr_loss=0.142, epoch=1/2]\n"
    p = logparse.progress(builtin)
    assert (p.step, p.total_steps, p.epoch, p.loss) == (2, 4, "1/2", 0.142)
    # the validation bar is not the training bar
    assert logparse.progress("validation steps:  50%|# | 1/2 [00:01<00:01, val_loss=3.0]").step is None


@pytest.mark.parametrize("name", sorted(FAILURES))
def test_failure_reasons(name):
    script, reason = FAILURES[name]
    text = subprocess.run(["bash", "-c", script], capture_output=True, text=True)
    assert logparse.failure(text.stdout + text.stderr, text.returncode) == reason


def test_failure_reason_falls_back_to_the_exception_line():
    log = "Traceback (most recent call last):\n  File x\nRuntimeError: mat1 and mat2 shapes cannot be multiplied\n"
    assert logparse.failure(log, 1) == "RuntimeError: mat1 and mat2 shapes cannot be multiplied"
    assert logparse.failure("all good\n", 0) is None


# -- a study of stand-ins -----------------------------------------------------------------------------------------
def test_launch_runs_every_variant_and_reports_why_they_failed(tmp_path):
    study = make_study(tmp_path / "s", {"good": OK, **{k: v[0] for k, v in FAILURES.items()}})
    r = cli("launch", str(study), "--max-parallel", "3")
    assert r.exit_code == 1, r.output  # failed variants: exit 1
    assert "summary: 5 failed, 1 done" in r.output or "summary: 1 done, 5 failed" in r.output
    data = json.loads(cli("status", str(study), "--json").output)
    assert data["study"] == str(study)
    rows = {row["id"]: row for row in data["variants"]}
    assert all(set(row) == KEYS for row in rows.values())
    good = rows["good"]
    assert good["state"] == "done" and good["exit_code"] == 0 and good["attempts"] == 1
    assert good["outputs"] == [str(study / "good" / "output" / "lora.safetensors")]
    assert (good["last_step"], good["last_loss"], good["failure"]) == (3, 0.53, None)
    assert good["log"] == str(study / "good" / "logs" / "attempt-1.log")
    for name, (_, reason) in FAILURES.items():
        assert rows[name]["state"] == "failed" and rows[name]["failure"] == reason, rows[name]
        assert Path(rows[name]["log"]).is_file()
    table = cli("status", str(study)).output
    assert "CUDA out of memory" in table and "good" in table
    # a second launch runs nothing: done stays done, failed stays failed (until --retry-failed / --only)
    again = json.loads(cli("launch", str(study), "--json").output)
    assert {v["id"]: v["attempts"] for v in again["variants"]} == {k: 1 for k in rows}
    cli("launch", str(study), "--only", "oom")
    assert json.loads(cli("status", str(study), "--json").output)["variants"][2]["attempts"] == 2
    assert (study / "oom" / "logs" / "attempt-1.log").is_file() and (study / "oom" / "logs" / "attempt-2.log").is_file()


def test_dry_run_writes_nothing_and_only_selects(tmp_path):
    study = make_study(tmp_path / "s", {"a": OK, "b": OK, "c": OK})
    r = cli("launch", str(study), "--dry-run", "--json", "--max-parallel", "2", "--only", "a,c")
    plan = json.loads(r.output)
    assert [v["id"] for v in plan["variants"]] == ["a", "c"]
    assert [v["action"] for v in plan["variants"]] == ["run on cpu0", "run on cpu1"]
    assert not (study / "launch.sqlite").exists() and not (study / "a" / "logs").exists()
    r = cli("launch", str(study), "--only", "a", "--json")
    assert r.exit_code == 0
    assert states(study) == {"a": "done", "b": "pending", "c": "pending"}
    bad = CliRunner().invoke(main, ["launch", str(study), "--only", "zz"])
    assert bad.exit_code == 2 and "error: no such variant: zz" in bad.output


def test_gpu_slots_set_cuda_visible_devices(tmp_path):
    script = "echo \"gpu=$CUDA_VISIBLE_DEVICES\"\n"
    study = make_study(tmp_path / "s", {"a": script, "b": script, "c": script})
    assert cli("launch", str(study), "--gpus", "0,1").exit_code == 0
    logs = [(study / v / "logs" / "attempt-1.log").read_text().splitlines() for v in "abc"]
    assert {log[-1] for log in logs} == {"gpu=0", "gpu=1"}
    for log in logs:  # the header says which slot, before anything the runner printed
        slot = log[-1].replace("gpu", "CUDA_VISIBLE_DEVICES")
        assert log[0].startswith("# lora-audit launch: variant ") and f"({slot})" in log[0]


# -- crash safety -------------------------------------------------------------------------------------------------
def test_sigkilled_launcher_then_relaunch_runs_each_variant_to_done_once(tmp_path):
    study = make_study(tmp_path / "s", {"quick": OK, "slow1": GATED, "slow2": GATED})
    proc = launcher_process(study, "--max-parallel", "3")
    wait_for(lambda: states(study) == {"quick": "done", "slow1": "running", "slow2": "running"}
             and all("attempt" in (study / v / "logs" / "attempt-1.log").read_text() for v in ("slow1", "slow2"))
             and all(StudyState(study).last(v).pid for v in ("slow1", "slow2")), "two running variants")
    st = StudyState(study)
    first_pids = [a.pid for a in st.attempts() if a.state == "running"]
    assert len(first_pids) == 2
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert states(study)["slow1"] == "interrupted"  # status sees the launcher is gone
    wait_for(lambda: not any(pid_alive(p) for p in first_pids), "the orphaned train.sh to die with its launcher")
    (study / "gate").write_text("open")
    r = cli("launch", str(study), "--max-parallel", "3", "--json")
    assert r.exit_code == 0, r.output
    rows = {row["id"]: row for row in json.loads(r.output)["variants"]}
    assert {k: (v["state"], v["attempts"]) for k, v in rows.items()} == {
        "quick": ("done", 1), "slow1": ("done", 2), "slow2": ("done", 2)}
    attempts = st.attempts()
    for vid in rows:  # done exactly once; the interrupted attempt is kept as such
        assert [a.state for a in attempts if a.variant == vid].count("done") == 1
    for vid in ("slow1", "slow2"):
        logs = sorted(p.name for p in (study / vid / "logs").iterdir())
        assert logs == ["attempt-1.log", "attempt-2.log"]
        assert f"attempt {vid}#1" in (study / vid / "logs" / "attempt-1.log").read_text()
        assert f"attempt {vid}#2" in (study / vid / "logs" / "attempt-2.log").read_text()
        kept = list((study / vid / "output.before-attempt-2").glob("partial-*.safetensors"))
        assert len(kept) == 1  # the first attempt's output was set aside, not overwritten
    assert not (study / "quick" / "logs" / "attempt-2.log").exists()


def test_relaunch_stops_what_a_dead_launcher_left_running(tmp_path):
    # the background subshell is not train.sh itself (which dies with its launcher): like accelerate's workers
    body = """( echo $BASHPID > ../child-$LORA_AUDIT_ATTEMPT; while [ ! -f ../gate ]; do sleep 0.05; done ) &
wait
"""
    study = make_study(tmp_path / "s", {"v": body})
    first = launcher_process(study)
    child_file = study / "child-v#1"
    child = wait_for(lambda: child_file.is_file() and child_file.read_text().strip(), "the worker to start")
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert pid_alive(int(child))  # orphaned, still holding its slot's GPU
    second = launcher_process(study)
    wait_for(lambda: not pid_alive(int(child)), "the relaunch to stop the orphan")
    wait_for(lambda: (study / "child-v#2").is_file(), "the second attempt")
    (study / "gate").write_text("open")
    out, _ = second.communicate(timeout=60)
    assert second.returncode == 0, out
    assert "leftover process" in out
    assert [a.state for a in StudyState(study).attempts("v")] == ["interrupted", "done"]


def test_two_launchers_never_run_a_variant_twice(tmp_path):
    body = 'echo "$LORA_AUDIT_ATTEMPT" >> ../ran.txt\nwhile [ ! -f ../gate ]; do sleep 0.05; done\n'
    study = make_study(tmp_path / "s", {f"v{i}": body for i in range(6)})
    a = launcher_process(study, "--max-parallel", "2")
    b = launcher_process(study, "--max-parallel", "2")
    try:
        wait_for(lambda: list(states(study).values()).count("running") == 4, "both launchers running two each")
    except AssertionError as err:
        (study / "gate").write_text("open")
        outs = [proc.communicate(timeout=60)[0] for proc in (a, b)]
        raise AssertionError(f"{states(study)}\n{outs[0]}\n{outs[1]}") from err
    (study / "gate").write_text("open")
    for p in (a, b):
        out, _ = p.communicate(timeout=120)
        assert p.returncode == 0, out
    ran = (study / "ran.txt").read_text().split()
    assert sorted(ran) == sorted(f"v{i}#1" for i in range(6))  # each once, first attempt
    assert set(states(study).values()) == {"done"}


def test_state_claim_is_exclusive(tmp_path):
    study = make_study(tmp_path / "s", {"a": OK})
    one, two = StudyState(study), StudyState(study)
    q = one.enqueue("a", "h")
    assert q is not None and two.enqueue("a", "h") is None  # one live attempt per variant
    l1, l2 = one.register_launcher(), two.register_launcher()
    assert one.claim(q.id, l1, "cpu0", "x.log") and not two.claim(q.id, l2, "cpu0", "y.log")


# -- cancel and reuse ---------------------------------------------------------------------------------------------
def test_cancel_stops_running_variants(tmp_path):
    study = make_study(tmp_path / "s", {"hang": HANG, "later": OK})
    proc = launcher_process(study, "--max-parallel", "1")
    pid = wait_for(lambda: states(study)["hang"] == "running" and StudyState(study).last("hang").pid,
                   "the hanging variant to run")
    r = cli("launch", str(study), "--cancel", "--json")
    assert json.loads(r.output) == {"launchers": 1, "cancelled": ["hang", "later"]}
    proc.communicate(timeout=60)
    rows = {row["id"]: row for row in status_data(study)["variants"]}
    assert rows["hang"]["state"] == "cancelled" and rows["later"]["state"] == "cancelled"
    assert not pid_alive(pid)
    # cancelled is not done: the next launch runs them
    assert cli("launch", str(study), "--only", "later").exit_code == 0
    assert states(study)["later"] == "done"


def test_same_config_hash_is_linked_not_retrained(tmp_path):
    # "twin" would fail if it ran: it has the config of "first", so it is linked instead
    study = make_study(tmp_path / "s", {"first": OK, "twin": "exit 1\n"}, {"first": "H", "twin": "H"})
    assert cli("launch", str(study), "--max-parallel", "2").exit_code == 0
    rows = {row["id"]: row for row in status_data(study)["variants"]}
    assert rows["twin"]["state"] == "done"
    link = Path(rows["twin"]["outputs"][0])
    assert link.is_symlink() and link.resolve() == (study / "first" / "output" / "lora.safetensors").resolve()
    assert not (study / "twin" / "logs").exists()
    other = make_study(tmp_path / "other", {"again": "exit 1\n"}, {"again": "H"})
    assert cli("launch", str(other), "--reuse", str(study)).exit_code == 0
    assert status_data(other)["variants"][0]["state"] == "done"
    assert Path(status_data(other)["variants"][0]["outputs"][0]).read_text() == "weights\n"


def test_not_a_study_is_one_line_error(tmp_path):
    r = CliRunner().invoke(main, ["status", str(tmp_path)])
    assert r.exit_code == 2 and r.output.startswith("error: ") and "no study.toml" in r.output


# -- a real study, builtin trainer --------------------------------------------------------------------------------
@pytest.mark.slow
def test_real_study_with_the_builtin_trainer(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("diffusers")
    sys.path.insert(0, str(Path(__file__).parent / "train"))
    from train_helpers import tiny_model, toy_dataset, write_config

    from lora_audit.cli import main as cli_main

    model, ds = tiny_model("sd15"), toy_dataset().dataset_toml
    good, bad = tmp_path / "good", tmp_path / "bad"
    write_config(good, model, ds)
    write_config(bad, model, ds)
    (bad / "config.toml").write_text((bad / "config.toml").read_text().replace("network_dim = 4", "network_dim = 8"))
    (good / "run.toml").write_text('verdict = "good"\n')
    (bad / "run.toml").write_text('verdict = "bad"\n')
    study = tmp_path / "study"
    r = CliRunner().invoke(cli_main, ["ablate", "--good", str(good), "--bad", str(bad), "--out", str(study),
                                      "--backend", "builtin"])
    assert r.exit_code == 0, r.output
    env = {**os.environ, "LORA_AUDIT_PYTHON": sys.executable}
    res = subprocess.run([sys.executable, "-m", "lora_audit.launch", "launch", str(study), "--max-parallel", "2",
                          "--json"], capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    rows = json.loads(res.stdout)["variants"]
    assert rows and all(r["state"] == "done" for r in rows), rows
    for row in rows:
        assert row["outputs"] and all(Path(p).is_file() for p in row["outputs"])
        assert row["last_step"] == 2 and row["last_loss"] is not None


# -- bisect rounds ------------------------------------------------------------------------------------------------
def test_launch_runs_the_next_bisect_round_once_judged(tmp_path):
    sys.path.insert(0, str(Path(__file__).parent))
    from conftest import write_run
    from test_bisect_cli import BAD, GOOD

    from lora_audit.cli import main as cli_main

    good, bad = write_run(tmp_path, "good", GOOD, "good"), write_run(tmp_path, "bad", BAD, "bad")
    study = tmp_path / "study"
    runner = CliRunner()
    data = json.loads(runner.invoke(cli_main, ["bisect", "start", "--good", str(good), "--bad", str(bad),
                                               "--out", str(study), "--json"]).output)

    def stand_ins():  # the generated runner would call accelerate; the stand-in only writes a LoRA
        for d in study.iterdir():
            if (d / "lora-audit-run.sh").is_file():
                (d / "lora-audit-run.sh").write_text("#!/usr/bin/env bash\n" + OK)

    stand_ins()
    round1 = [v["id"] for v in data["variants"]]
    assert cli("launch", str(study), "--max-parallel", "2").exit_code == 0
    assert all(states(study)[v] == "done" for v in round1)
    for v in round1:
        data = json.loads(runner.invoke(cli_main, ["bisect", "bad", "--study", str(study), v, "--json"]).output)
    assert data["status"] == "running"
    round2 = [v["id"] for v in data["variants"]]
    assert round2 and not set(round2) & set(round1)
    stand_ins()
    plan = json.loads(cli("launch", str(study), "--dry-run", "--json").output)["variants"]
    assert {p["id"] for p in plan if p["action"].startswith("run")} == set(round2)
    assert cli("launch", str(study)).exit_code == 0
    assert all(states(study)[v] == "done" for v in round2)


def test_sigterm_to_the_launcher_cancels_cleanly(tmp_path):
    study = make_study(tmp_path / "s", {"hang": HANG})
    proc = launcher_process(study)
    wait_for(lambda: states(study)["hang"] == "running" and StudyState(study).last("hang").pid, "the variant")
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert "cancel requested: stopping 1 running variant(s)" in out
    assert states(study) == {"hang": "cancelled"}
    watch = cli("status", str(study), "--watch")  # nothing running: one table, then it returns
    assert watch.exit_code == 0 and "cancelled" in watch.output
