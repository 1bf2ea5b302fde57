"""Slurm's side of ``launch --executor slurm``: the calls lora-audit makes to the controller (``squeue``,
``scontrol``, ``sacct``, ``scancel``, each with a timeout), what their answers mean for an attempt (``outcome``), the
job names that tie a job to its study and variant, and the start/end lines the batch script writes in the log.
The launcher that drives them is ``launch.slurm``, which re-exports every public name here."""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lora_audit.errors import EvidenceError
from lora_audit.launch import logparse
from lora_audit.launch.state import SLURM_SLOT, Attempt, StudyState

# states a job leaves only by ending (squeue's %T; man squeue "JOB STATE CODES")
LIVE_STATES = {"PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "SUSPENDED", "REQUEUED", "REQUEUE_HOLD",
               "REQUEUE_FED", "RESIZING", "SIGNALING", "STAGE_OUT", "STOPPED", "RESV_DEL_HOLD", "SPECIAL_EXIT"}
# ended without the variant's own doing: the next launch submits the variant again
LOST_STATES = {"NODE_FAIL", "PREEMPTED", "BOOT_FAIL"}
CALL_TIMEOUT = 60.0  # seconds for one squeue/sbatch/scontrol/sacct/scancel call
_START = "# lora-audit slurm: job "
_END = re.compile(r"^# lora-audit slurm: runner exited with (\d+)\s*$", re.M)

@dataclass
class Job:
    """What Slurm says about one job."""

    id: str
    name: str = ""
    state: str = ""
    reason: str = ""
    exit_code: int | None = None  # the batch script's exit status; 128+N when a signal N ended it
    time_limit: str = ""
    node: str = ""


def require(tool: str = "sbatch") -> str:
    path = shutil.which(tool)
    if path is None:
        raise EvidenceError(f"--executor slurm: {tool} not found on PATH (run on a Slurm login node, or load "
                            "Slurm's module)")
    return path


def available() -> bool:
    return shutil.which("squeue") is not None


def study_tag(study: Path) -> str:
    return "la-" + hashlib.sha1(str(Path(study).resolve()).encode("utf-8", "surrogateescape")).hexdigest()[:10]


def job_name(study: Path, variant: str, attempt: int) -> str:
    return f"{study_tag(study)}-{_safe(variant)}-a{attempt}"


def _safe(text: str) -> str:
    """The variant id as a job-name part: as it is when it is plain, else made plain plus a short hash of it (so
    ``a b`` and ``a_b`` never share a name)."""
    plain = re.sub(r"[^A-Za-z0-9_.+-]", "_", text)[:100]
    if plain == text:
        return plain
    return f"{plain}_{hashlib.sha1(text.encode('utf-8', 'surrogateescape')).hexdigest()[:6]}"


def _run(args: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=CALL_TIMEOUT, env=env,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(args, 124, "", f"{args[0]}: no answer in {CALL_TIMEOUT:.0f} s")
    except OSError as e:
        return subprocess.CompletedProcess(args, 127, "", f"{args[0]}: {e}")


# -- what Slurm knows --------------------------------------------------------------------------------------------
def queue(tag: str | None = None) -> dict[str, Job] | None:
    """This user's jobs Slurm's controller still holds (running, pending, and ended ones until ``MinJobAge``);
    only those of one study when ``tag`` is given. None when squeue does not answer."""
    if not available():
        return None
    r = _run(["squeue", "--me", "--noheader", "--states=all", "--format=%i|%j|%T|%r|%l|%N"])
    if r.returncode != 0:
        return None
    out = {}
    for line in r.stdout.splitlines():
        parts = line.strip().split("|")
        if len(parts) < 6:
            continue
        job = Job(parts[0], parts[1], parts[2].upper(), parts[3], None, parts[4], parts[5])
        if tag is None or job.name.startswith(tag + "-"):
            out[job.id] = job
    return out


def show(job_id: str) -> Job | None:
    """``scontrol show job``: state, reason, exit code of a job the controller still holds."""
    r = _run(["scontrol", "show", "job", "--oneliner", job_id])
    if r.returncode != 0 or "JobState=" not in r.stdout:
        return None
    fields = dict(re.findall(r"(\w+)=(\S*)", r.stdout))
    return Job(job_id, fields.get("JobName", ""), fields.get("JobState", "").upper(), fields.get("Reason", ""),
               _exit(fields.get("ExitCode", "")), fields.get("TimeLimit", ""), fields.get("NodeList", ""))


def accounting(job_id: str | None = None, name: str | None = None) -> Job | None:
    """``sacct`` for a job the controller has forgotten; None without accounting (``accounting_storage/none``)."""
    if shutil.which("sacct") is None:
        return None
    args = ["sacct", "--noheader", "--parsable2", "--allocations", "--format=JobID,JobName,State,ExitCode,Timelimit"]
    args += ["--jobs", job_id] if job_id else ["--name", name or "", "--starttime", "now-30days"]
    r = _run(args)
    if r.returncode != 0:
        return None
    rows = [ln.split("|") for ln in r.stdout.splitlines() if ln.count("|") >= 4]
    if not rows:
        return None
    jid, jname, state, code, limit = rows[-1][:5]
    return Job(jid, jname, state.split()[0].upper() if state else "", "", _exit(code), limit)


def _exit(code: str) -> int | None:
    """``3:0`` (exit status 3) or ``0:15`` (killed by signal 15: 143, as a shell reports it)."""
    m = re.match(r"^(\d+):(\d+)$", code or "")
    if not m:
        return None
    status, sig = int(m.group(1)), int(m.group(2))
    return 128 + sig if sig else status


def log_end(log: Path | None) -> tuple[bool, int | None]:
    """(the job started, the runner's exit status or None) from the lines the batch script writes."""
    if log is None:
        return False, None
    text = logparse.read_tail(log)
    ends = _END.findall(text)
    return (_START in text or bool(ends)), (int(ends[-1]) if ends else None)


def outcome(slurm_state: str, rc: int | None, why: str | None, time_limit: str = "",
            job_id: str = "") -> tuple[str, str | None]:
    """(our state, the failure reason) of a job that ended: Slurm's word (``sacct``'s JOB STATE CODES) and, when the
    log says more than an exit code, kohya's (``why``: logparse.failure over the attempt's log)."""
    generic = why is None or re.fullmatch(r"exit code -?\d+", why) is not None
    if slurm_state == "COMPLETED":
        return ("done", None) if why is None else ("failed", why)
    if slurm_state == "CANCELLED":  # by launch --cancel the row is already cancelled: this one came from outside
        return "cancelled", f"Slurm CANCELLED job {job_id} (scancel from outside lora-audit)"
    if slurm_state in LOST_STATES:
        return "interrupted", f"Slurm {slurm_state} (job {job_id}); launch again to resubmit"
    failure = f"Slurm {slurm_state}"
    if slurm_state == "TIMEOUT" and time_limit:
        failure += f" (time limit {time_limit})"
    elif rc is not None:
        failure += f" (exit code {rc})"
    if why and not generic:
        failure += f": {why}"
    return "failed", failure


def cancel_jobs(st: StudyState, study: Path, echo: Callable[[str], None] = lambda s: None,
                wait: float = 30.0) -> int:
    """``scancel`` every live Slurm job of this study (by the state's job ids and by the study's job-name tag), mark
    their attempts cancelled, and wait until squeue no longer lists them as live. Returns how many were asked."""
    if shutil.which("scancel") is None:
        return 0
    tag = study_tag(study)
    jobs = queue(tag) or {}
    ids = {j.id for j in jobs.values() if j.state in LIVE_STATES}
    rows = [a for a in st.attempts() if a.state == "running" and a.slot == SLURM_SLOT]
    ids |= {a.job_id for a in rows if a.job_id and (a.job_id not in jobs or jobs[a.job_id].state in LIVE_STATES)}
    if ids:
        r = _run(["scancel", *sorted(ids)])
        if r.returncode != 0 and r.stderr.strip():
            echo(f"scancel: {r.stderr.strip().splitlines()[-1]}")
    deadline = time.monotonic() + wait
    while ids and time.monotonic() < deadline:
        now = queue(tag)
        if now is not None and not any(j.state in LIVE_STATES for j in now.values() if j.id in ids):
            break
        time.sleep(0.5)
    for a in rows:
        st.finish_running(a.id, "cancelled", slurm_state="CANCELLED", failure="cancelled (launch --cancel)")
    return len(ids)


def live_view(rows: list[Attempt]) -> dict[str, Job]:
    """Slurm's current word on these attempts' jobs (for status): squeue, then scontrol show job. Read-only."""
    ids = [a.job_id for a in rows if a.job_id]
    if not ids or not available():
        return {}
    r = _run(["squeue", "--noheader", "--states=all", "--format=%i|%j|%T|%r|%l|%N", f"--jobs={','.join(ids)}"])
    out = {}
    for line in (r.stdout.splitlines() if r.returncode == 0 else []):
        parts = line.strip().split("|")
        if len(parts) >= 6:
            out[parts[0]] = Job(parts[0], parts[1], parts[2].upper(), parts[3], None, parts[4], parts[5])
    for jid in ids:
        if jid not in out:
            job = show(jid) or accounting(job_id=jid)
            if job is not None:
                out[jid] = job
    return out
