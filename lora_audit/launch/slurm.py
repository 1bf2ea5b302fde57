"""``launch --executor slurm``: one Slurm batch job per variant, submitted with ``sbatch``, watched, re-attached.

Why ``sbatch`` itself and not ``submitit``: no extra dependency (``sbatch``/``squeue``/``scontrol``/``scancel``
are on every Slurm login node); full control over the job name and comment, which is what makes a crash between
submitting and recording safe (below); and the job runs the variant's own runner (``lora-audit-run.sh`` or
``train.sh``, a shell script) as it is, while ``submitit`` pickles a Python callable (and we never unpickle).

Durability. An attempt is claimed in ``launch.sqlite`` (slot ``slurm``) before ``sbatch`` runs, and its job id is
written the moment ``sbatch --parsable`` returns. Every job is named ``la-<study>-<variant>-a<attempt>`` (``<study>``
a short hash of the study folder's path) and carries ``--comment`` with the study path; a launcher that died
between ``sbatch`` and the write leaves a running row without a job id: the next launcher looks the name up in
``squeue`` (and ``sacct`` where accounting exists) and records the job it finds instead of submitting it again. Before
any submission the launcher also looks for a live job of the same study and variant, whatever its attempt (a
state file lost while jobs ran), and adopts it. A running Slurm row is never marked interrupted because its
launcher is gone (state.SLURM_SLOT): the job runs on; a relaunch waits for it.

The job's output goes to the variant's ``logs/attempt-N.log`` (``--open-mode=append`` after the header the
launcher writes); the batch script (kept as ``logs/attempt-N.sbatch``) writes a start line with ``$SLURM_JOB_ID``
and an end line with the runner's exit status, so the log alone tells whether a job ran and how it ended when
Slurm has forgotten the job (``MinJobAge``) and keeps no accounting.

This module is the launcher (submitting, watching, re-attaching, recording how jobs ended); the calls to Slurm
and what their answers mean are ``launch.slurm_ctl``, the batch script and sbatch command ``launch.slurm_batch``
(every public name of both is importable from here).
"""

from __future__ import annotations

import os
import re
import shlex
import time
from collections.abc import Callable
from pathlib import Path

from lora_audit.errors import EvidenceError
from lora_audit.launch import executor, logparse
from lora_audit.launch.procs import marker
from lora_audit.launch.slurm_batch import SlurmOptions, batch_script, sbatch_command
from lora_audit.launch.slurm_ctl import (
    CALL_TIMEOUT,
    LIVE_STATES,
    LOST_STATES,
    Job,
    _run,
    _safe,
    accounting,
    available,
    cancel_jobs,
    job_name,
    live_view,
    log_end,
    outcome,
    queue,
    require,
    show,
    study_tag,
)
from lora_audit.launch.state import SLURM_SLOT, Attempt, StudyState, _alive, db_path
from lora_audit.launch.variants import Variant, disk_attempts, find_outputs, link_outputs, set_aside, trained_elsewhere

__all__ = ["CALL_TIMEOUT", "LIVE_STATES", "LOST_STATES", "Job", "SlurmLauncher", "SlurmOptions", "accounting",
           "available", "batch_script", "cancel_jobs", "job_name", "live_view", "log_end", "outcome", "queue",
           "require", "sbatch_command", "show", "study_tag"]


# -- the launcher --------------------------------------------------------------------------------------------------
class SlurmLauncher(executor.Launcher):
    """Submits queued attempts as Slurm jobs (at most ``max_parallel`` live at once), records their ids, waits
    for them and records how they ended; re-attaches to the jobs an earlier launcher submitted."""

    def __init__(self, study: Path, opts: executor.Options, slurm: SlurmOptions,
                 echo: Callable[[str], None] = lambda s: None, max_jobs: int | None = None):
        # absolute paths: the job starts elsewhere, and a relaunch may run from another folder
        super().__init__(Path(study).resolve(), opts, echo)
        self.slurm = slurm
        self.max_jobs = max_jobs
        if max_jobs is not None and max_jobs < 1:
            raise EvidenceError("--max-parallel must be at least 1")
        self.tag = study_tag(self.study)
        self.poll = max(opts.poll, 0.5)
        self._echoed: dict[int, float] = {}  # attempt id -> when its progress was last printed
        self._quiet_queue = False  # squeue did not answer (said once)

    def dry_run(self) -> list[dict]:
        plan = super().dry_run()
        for p in plan:
            if p["action"].startswith("run on"):
                p["action"] = "submit to Slurm"
        return plan

    def commands(self) -> dict[str, str]:
        """The sbatch command each variant would get (for --dry-run)."""
        out = {}
        for v in self.variants:
            a = Attempt(0, v.id, disk_attempts(v.folder) + 1, "queued")
            out[v.id] = shlex.join(sbatch_command(self.study, v, a, self.slurm,
                                                  v.folder / "logs" / f"attempt-{a.attempt}.sbatch"))
        return out

    def run(self) -> dict:
        require("sbatch")
        require("squeue")
        self.resolve_kohya()
        st = StudyState(self.study)
        others = [StudyState(o, readonly=True) for o in self.opts.reuse if db_path(o).exists()]
        missing = [str(o) for o in self.opts.reuse if not db_path(o).exists()]
        if missing:
            raise EvidenceError(f"--reuse: no launch state in {', '.join(missing)}")
        lid = st.register_launcher()
        self._install_signals()
        try:
            for a in st.recover():  # local attempts a dead local launcher left
                self.echo(f"{a.variant}: attempt {a.attempt} was interrupted (launcher gone); it runs again")
            jobs = queue(self.tag)
            if jobs is None:
                raise EvidenceError("--executor slurm: squeue does not answer (is slurmctld up?)")
            self._reattach(st, jobs, first=True)
            # On a cluster a relaunch resubmits what failed as well as what was lost (issue 17): a TIMEOUT,
            # OUT_OF_MEMORY or a node's trouble is usually worth another job, and the user relaunching asks for it.
            # Done variants are never resubmitted (--retry does that); locally, failed ones wait for --retry-failed.
            executor.queue_variants(st, self.variants, self.study, self.opts, self.echo, rerun_failed=True)
            self._watch(st, others, lid)
        finally:
            self._restore_signals()
            st.end_launcher(lid)
        try:
            return executor.summary(st, [v.id for v in self.variants])
        finally:
            for s in (st, *others):
                s.close()

    # -- re-attaching ------------------------------------------------------------------------------------------
    def _reattach(self, st: StudyState, jobs: dict[str, Job], first: bool = False) -> None:
        """Running Slurm rows: say which job each waits for; a row without a job id (its launcher died between
        sbatch and the write) gets the job found by its name, or, when there is none and its launcher is gone,
        is marked interrupted (it never reached Slurm)."""
        launchers = {r["id"]: r for r in st.db.execute("SELECT * FROM launchers")}
        by_name = {j.name: j for j in jobs.values()}
        for a in st.attempts():
            if a.state != "running" or a.slot != SLURM_SLOT:
                continue
            if a.job_id:
                if first:
                    self.echo(f"{a.variant}: attempt {a.attempt} is Slurm job {a.job_id}: waiting for it")
                continue
            name = job_name(self.study, a.variant, a.attempt)
            job = by_name.get(name) or accounting(name=name)
            if job is not None:
                st.update(a.id, job_id=job.id, slurm_state=job.state)
                self.echo(f"{a.variant}: attempt {a.attempt} found as Slurm job {job.id} ({name}): re-attached")
                continue
            lrow = launchers.get(a.launcher)
            if lrow is not None and lrow["ended"] is None and _alive(lrow):
                continue  # its launcher is submitting it right now
            started, _ = log_end(Path(a.log) if a.log else None)
            v = next((v for v in self.variants if v.id == a.variant), None)
            if started and v is not None:  # it ran; Slurm has forgotten it and keeps no accounting: the log says
                self._ended(st, a, v, None)  # how it ended (or that it was lost)
                continue
            st.finish_running(a.id, "interrupted", failure="launcher stopped before sbatch returned; no job named "
                                                             f"{name} in Slurm")
            self.echo(f"{a.variant}: attempt {a.attempt} never reached Slurm (launcher gone); it is submitted again")

    # -- the loop ----------------------------------------------------------------------------------------------
    def _watch(self, st: StudyState, others: list[StudyState], lid: str) -> None:
        by_id = {v.id: v for v in self.variants}
        while True:
            if self.stop_requested.is_set():  # Ctrl-C, SIGTERM, a closed login shell: the jobs run on
                n = self._count_live(st)
                self.echo(f"stopped watching; {n} Slurm job(s) run on: `lora-audit launch {self.study} --executor "
                          f"slurm` re-attaches, `lora-audit launch {self.study} --cancel` stops them")
                return
            if st.heartbeat(lid):  # launch --cancel
                n = cancel_jobs(st, self.study, echo=self.echo)
                self.echo(f"cancel requested: cancelled {n} Slurm job(s)")
                for a in st.queued(list(by_id)):
                    if st.claim(a.id, lid, "", ""):
                        st.finish(a.id, "cancelled", failure="cancelled before it was submitted")
                return
            jobs = queue(self.tag)
            if jobs is None and not self._quiet_queue:
                self._quiet_queue = True
                self.echo("squeue does not answer; still trying (the jobs run on)")
            if jobs is not None:
                self._quiet_queue = False
                self._reattach(st, jobs)
            live = self._check(st, jobs, by_id) if jobs is not None else self._count_live(st)
            waiting = False
            for a in st.queued(list(by_id)):
                v = by_id[a.variant]
                prior = None if self.opts.retry else trained_elsewhere(st, others, v.hash)
                if prior is None and v.hash and st.running_with_hash(v.hash):
                    waiting = True
                    continue
                if prior is None and self.max_jobs is not None and live >= self.max_jobs:
                    waiting = True
                    break
                if prior is not None:
                    if st.claim(a.id, lid, "link", ""):
                        links = link_outputs(st, a, v, *prior)
                        self.echo(f"{v.id}: same config as {prior[1].name}/{prior[0].variant}, trained already; "
                                  f"linked {len(links)} output(s)")
                    continue
                if self._submit(st, lid, a, v, jobs or {}):
                    live += 1
            if not waiting and self._count_live(st) == 0:
                return
            time.sleep(self.poll)

    def _count_live(self, st: StudyState) -> int:
        ids = {v.id for v in self.variants}
        return sum(1 for a in st.attempts() if a.state == "running" and a.slot == SLURM_SLOT and a.variant in ids)

    def _submit(self, st: StudyState, lid: str, a: Attempt, v: Variant, jobs: dict[str, Job]) -> bool:
        # a live job of this study and variant (a state file lost while it ran): adopt it, never submit twice
        prefix = f"{self.tag}-{_safe(v.id)}-a"
        for job in jobs.values():
            if job.name.startswith(prefix) and job.state in LIVE_STATES and job.name[len(prefix):].isdigit():
                log = v.folder / "logs" / f"attempt-{job.name[len(prefix):]}.log"
                if st.claim(a.id, lid, SLURM_SLOT, str(log)):
                    st.update(a.id, job_id=job.id, slurm_state=job.state)
                    self.echo(f"{v.id}: Slurm job {job.id} ({job.name}) is already live: re-attached, not "
                              "submitted again")
                return True
        log = v.folder / "logs" / f"attempt-{a.attempt}.log"
        script = log.with_suffix(".sbatch")
        if not st.claim(a.id, lid, SLURM_SLOT, str(log)):
            return False  # another launcher took it
        try:
            set_aside(v.folder, a.attempt)
            log.parent.mkdir(parents=True, exist_ok=True)
            kenv = self.kohya.for_variant(v) if self.kohya is not None and executor.needs_kohya(v) else None
            extra = {"PYTHONUNBUFFERED": "1", "LORA_AUDIT_ATTEMPT": marker(a)}
            if kenv is not None:
                # kohya logs through rich, which wraps each record to 80 columns without a terminal
                extra.update({"COLUMNS": os.environ.get("COLUMNS", "200"), **kenv.variables()})
            with open(script, "x", encoding="utf-8") as f:
                f.write(batch_script(self.study, v, a, extra))
            header = [f"variant {v.id}, attempt {a.attempt}, Slurm job {job_name(self.study, v.id, a.attempt)}, "
                      f"submitted {time.strftime('%Y-%m-%d %H:%M:%S %z')}"]
            header += kenv.header() if kenv else []
            with open(log, "xb") as f:
                f.write("".join(f"# lora-audit launch: {h}".replace("\n", "\\n").replace("\r", "\\r") + "\n"
                                for h in header).encode("utf-8", "replace"))
        except OSError as e:
            st.finish(a.id, "failed", failure=f"could not write the batch job: {e}")
            return False
        env = {**os.environ, **extra}
        r = _run(sbatch_command(self.study, v, a, self.slurm, script), env=env)
        job_id = r.stdout.strip().split(";")[0] if r.returncode == 0 else ""
        if not job_id.isdigit() and not re.fullmatch(r"\d+_\d+", job_id):
            why = (r.stderr.strip().splitlines() or [f"exit code {r.returncode}"])[-1]
            # the options (a partition, account, time limit...) are wrong for every variant: stop with one line
            # rather than fail them all; the attempt is submitted again by the next launch
            st.finish(a.id, "interrupted", failure=f"sbatch refused the job: {why}")
            raise EvidenceError(f"sbatch refused the job of {v.id}: {why.removeprefix('sbatch: error: ')}")
        st.update(a.id, job_id=job_id, slurm_state="PENDING")  # the moment sbatch returns
        self.echo(f"{v.id}: attempt {a.attempt} submitted as Slurm job {job_id} (log {log.relative_to(self.study)})")
        return True

    def _check(self, st: StudyState, jobs: dict[str, Job], by_id: dict[str, Variant]) -> int:
        """Record the state of each running Slurm attempt; finish those whose job ended. Returns how many are
        still live."""
        live = 0
        for a in st.attempts():
            if a.state != "running" or a.slot != SLURM_SLOT or a.variant not in by_id:
                continue
            if not a.job_id:
                live += 1  # another launcher is submitting it
                continue
            job = jobs.get(a.job_id)
            if job is not None and job.state in LIVE_STATES:
                live += 1
                if job.state != a.slurm_state:
                    st.update(a.id, slurm_state=job.state)
                    if job.state == "RUNNING":
                        self.echo(f"{a.variant}: Slurm job {a.job_id} running on {job.node}")
                if job.state == "RUNNING" and a.log:
                    self._progress_of(st, a)
                continue
            if not self._ended(st, a, by_id[a.variant], job):
                live += 1
        return live

    def _progress_of(self, st: StudyState, a: Attempt) -> None:
        """Step, epoch, loss and ETA from the running job's log (on the shared filesystem), as a local run's."""
        if not a.log:  # the caller checks; an attempt without a log has no progress to read
            return
        p = logparse.progress(logparse.read_tail(Path(a.log)))
        if p.step is None and p.epoch is None:
            return
        if (p.step, p.total_steps, p.epoch, p.eta) != (a.last_step, a.total_steps, a.last_epoch, a.eta):
            st.update(a.id, last_step=p.step, total_steps=p.total_steps, last_epoch=p.epoch, last_loss=p.loss,
                      eta=p.eta)
        now = time.monotonic()
        if p.step != a.last_step and now - self._echoed.get(a.id, 0.0) >= self.opts.progress_every:
            self._echoed[a.id] = now
            self.echo(f"{a.variant}: {executor.format_progress(p.step, p.total_steps, p.epoch, p.loss, p.eta)}")

    def _ended(self, st: StudyState, a: Attempt, v: Variant, job: Job | None) -> bool:
        """Finish an attempt whose job left the queue. False when nothing says how it ended yet."""
        detail = show(a.job_id) if a.job_id else None
        if detail is not None and detail.state in LIVE_STATES:
            return False  # submitted after our look at the queue (another launcher): still live
        detail = detail or accounting(job_id=a.job_id)
        log = Path(a.log) if a.log else v.folder / "logs" / f"attempt-{a.attempt}.log"
        started, runner_rc = log_end(log)
        if detail is None and job is not None:
            detail = job
        if detail is None or not detail.state:
            if runner_rc is None:  # Slurm forgot it and the log has no end: lost (node died, job purged)
                st.finish_running(a.id, "interrupted", slurm_state="UNKNOWN",
                                  failure=f"Slurm job {a.job_id} is gone and its log has no end: lost; "
                                          "launch again to resubmit")
                self.echo(f"{v.id}: Slurm job {a.job_id} lost")
                return True
            detail = Job(a.job_id or "", state="COMPLETED" if runner_rc == 0 else "FAILED", exit_code=runner_rc)
        state_name = detail.state
        rc = runner_rc if runner_rc is not None else detail.exit_code
        text = logparse.read_all(log) if log.is_file() else ""
        p = logparse.progress(text)
        why = logparse.failure(text, rc if rc is not None else (0 if state_name == "COMPLETED" else 1))
        outputs = find_outputs(v.folder)
        if state_name == "COMPLETED" and why is None and not outputs and executor.needs_kohya(v):
            why = "exit code 0, but no LoRA in output/"
        state, failure = outcome(state_name, rc, why, detail.time_limit, a.job_id or "")
        if st.finish_running(a.id, state, exit_code=rc, failure=failure if state != "done" else None,
                             outputs=outputs, slurm_state=state_name, last_step=p.step, total_steps=p.total_steps,
                             last_epoch=p.epoch, last_loss=p.loss, eta=p.eta):
            tail = f": {failure}" if state != "done" else f", {len(outputs)} output(s)"
            self.echo(f"{v.id}: attempt {a.attempt} (Slurm job {a.job_id}) {state}{tail}")
        return True
