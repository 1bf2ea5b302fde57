"""Run a study's variants in slots: one ``train.sh`` per slot (a GPU, or a CPU slot), state kept in SQLite.

Each attempt writes ``<variant>/logs/attempt-N.log`` (opened with ``x``: never overwritten). Before an attempt
that is not the first, what an earlier attempt left in ``<variant>/output`` is moved to
``output.before-attempt-N``, so no output of an earlier attempt is lost either. A ``train.sh`` runs in its own
process group (so a cancel reaches ``accelerate``'s workers too) and, on Linux, dies with its launcher
(``PR_SET_PDEATHSIG``); what a dead launcher left running anyway is found by its ``LORA_AUDIT_ATTEMPT``
environment marker and killed before its variant is re-run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from lora_audit.errors import EvidenceError
from lora_audit.launch import kohya_env, logparse
from lora_audit.launch.procs import die_with_parent, kill_orphans, marker, signal_group
from lora_audit.launch.state import Attempt, StudyState, db_path
from lora_audit.launch.variants import (
    Variant,
    complete_outputs,
    disk_attempts,
    final_output,
    find_outputs,
    link_outputs,
    select,
    set_aside,
    study_variants,
    trained_elsewhere,
)
from lora_audit.study_model import load_study


@dataclass
class Slot:
    name: str
    gpu: str | None = None  # CUDA_VISIBLE_DEVICES for this slot; None: left as it is (CPU slots)


@dataclass
class Options:
    gpus: list[str] | None = None
    max_parallel: int = 1
    only: list[str] | None = None
    reuse: list[Path] = field(default_factory=list)
    retry_failed: bool = False
    retry: bool = False  # train again what is done (recorded, or its LoRA found on disk) or failed
    sd_scripts: str | None = None  # launch --sd-scripts
    python: str | None = None  # launch --python
    global_sd_scripts: str | None = None  # the CLI's global --sd-scripts
    check_python: bool = True  # run `PY -c "import accelerate, torch"` before the first variant
    poll: float = 0.2  # seconds between looks at the children and the state
    grace: float = 10.0  # seconds between SIGINT and SIGKILL when cancelling
    progress_every: float = 10.0  # seconds between progress lines per variant


@dataclass
class _Job:
    attempt: Attempt
    variant: Variant
    slot: Slot
    proc: subprocess.Popen
    logfile: BinaryIO
    log: Path
    cancelled: bool = False
    last_echo: float = 0.0
    last_step: int | None = None


def slots(opts: Options) -> list[Slot]:
    if opts.max_parallel < 1:
        raise EvidenceError("--max-parallel must be at least 1")
    if opts.gpus:
        out = [Slot(f"gpu{g}", g) for g in opts.gpus]
        return out[: opts.max_parallel] if opts.max_parallel > 1 else out
    return [Slot(f"cpu{i}") for i in range(opts.max_parallel)]


def _start(a: Attempt, v: Variant, slot: Slot, log: Path, kenv: kohya_env.KohyaEnv | None = None) -> _Job:
    # x: an attempt's log is never overwritten. Not a with-block: the file stays open as the child's stdout until
    # _reap closes it; closed here when the child cannot be started.
    logfile = open(log, "xb")  # noqa: SIM115
    try:
        proc = _spawn(a, v, slot, kenv, logfile)
    except BaseException:
        logfile.close()
        raise
    return _Job(a, v, slot, proc, logfile, log)


def _spawn(a: Attempt, v: Variant, slot: Slot, kenv: kohya_env.KohyaEnv | None, logfile: BinaryIO) -> subprocess.Popen:
    """Write the log's header lines and start the variant's runner with its output into ``logfile``."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "LORA_AUDIT_ATTEMPT": marker(a)}
    if slot.gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = slot.gpu
    header = [f"variant {v.id}, attempt {a.attempt}, slot {slot.name}"
              + (f" (CUDA_VISIBLE_DEVICES={slot.gpu})" if slot.gpu is not None else "")
              + f", started {time.strftime('%Y-%m-%d %H:%M:%S %z')}"]
    if kenv is not None:
        kenv = kenv.for_variant(v)  # a variant that pins an sd-scripts commit runs from its worktree
        env.update(kenv.variables())
        # kohya logs through rich, which wraps each record to 80 columns without a terminal; wider keeps a record
        # on one line in the log (logparse reads both)
        env.setdefault("COLUMNS", "200")
        header += kenv.header()
    # one line each, whatever a path holds: a newline in a folder name must not start a line of its own
    logfile.write("".join(f"# lora-audit launch: {h}".replace("\n", "\\n").replace("\r", "\\r") + "\n"
                          for h in header).encode("utf-8", "replace"))
    logfile.flush()
    return subprocess.Popen(["bash", v.runner], cwd=v.folder, stdout=logfile, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, env=env, start_new_session=True, preexec_fn=die_with_parent)


# -- the launcher -------------------------------------------------------------------------------------------------
class Launcher:
    """One ``lora-audit launch``: claims queued attempts, runs them in slots, records how they ended."""

    def __init__(self, study: Path, opts: Options, echo: Callable[[str], None] = lambda s: None):
        self.study = Path(study)
        self.opts = opts
        self.echo = echo
        self.variants = select(study_variants(self.study), opts.only)
        self.slots = slots(opts)
        self.stop_requested = threading.Event()
        self.kohya: kohya_env.KohyaEnv | None = None

    def resolve_kohya(self) -> kohya_env.KohyaEnv | None:
        """The sd-scripts checkout and Python, checked, when a variant's runner trains with kohya; else None."""
        need = [v for v in self.variants if needs_kohya(v)]
        if not need:
            return None
        env = kohya_env.resolve(sorted({v.script for v in need if v.script}), self.opts.sd_scripts,
                                self.opts.python, load_study(self.study).sd_scripts, self.opts.global_sd_scripts)
        if self.opts.check_python:
            kohya_env.check(env)
        kohya_env.pin(env, need, self.study)
        self.kohya = env
        return env

    def dry_run(self) -> list[dict]:
        """What ``launch`` would do, without writing anything."""
        st = StudyState(self.study, readonly=True) if db_path(self.study).exists() else None
        st = st if st is not None and st.ready else None
        others = [StudyState(r, readonly=True) for r in self.opts.reuse if db_path(r).exists()]
        others = [o for o in others if o.ready]
        plan, n = [], 0
        for v in self.variants:
            last = st.last(v.id) if st else None
            prior = None if self.opts.retry else trained_elsewhere(st, others, v.hash) if st else (
                trained_elsewhere(others[0], others[1:], v.hash) if others else None)
            found = complete_outputs(v.folder) if last is None and not self.opts.retry else None
            if found:
                action = (f"skip: LoRA on disk ({_rel(final_output(v.folder), self.study)}), not in the launch "
                          "state: recorded as done (--retry trains it again)")
            elif last and last.state == "done" and not self.opts.retry:
                action = "skip: done"
            elif last and last.state == "running":
                action = "skip: running (another launcher; re-run if that one is gone)"
            elif last and last.state == "failed" and not (self.opts.retry_failed or self.opts.retry
                                                          or self.opts.only):
                action = "skip: failed (use --retry-failed or --only)"
            elif prior:
                action = f"link: same config as {prior[1].name}/{prior[0].variant}"
            else:
                action = f"run on {self.slots[n % len(self.slots)].name}"
                n += 1
            n_attempt = max(last.attempt if last else 0, disk_attempts(v.folder)) + (
                0 if action.startswith("skip") else 1)
            plan.append({"id": v.id, "action": action, "attempt": n_attempt})
        for s in [st, *others]:
            if s is not None:
                s.close()
        return plan

    def run(self) -> dict:
        self.resolve_kohya()  # before the first variant starts: one clear error, not N failed variants
        path = db_path(self.study)
        if not path.exists() and not path.is_symlink() and any(disk_attempts(v.folder) for v in self.variants):
            self.echo(f"{path.name} is missing but attempt logs are on disk: starting over from the files there "
                      "(attempts numbered after the logs; a variant whose LoRA is there is not retrained)")
        st = StudyState(self.study)
        others = [StudyState(o, readonly=True) for o in self.opts.reuse if db_path(o).exists()]
        missing = [str(o) for o in self.opts.reuse if not db_path(o).exists()]
        if missing:
            raise EvidenceError(f"--reuse: no launch state in {', '.join(missing)}")
        lid = st.register_launcher()
        self._install_signals()
        try:
            for a in st.recover():
                n = kill_orphans(a)
                self.echo(f"{a.variant}: attempt {a.attempt} was interrupted (launcher gone)"
                          + (f"; stopped {n} leftover process(es)" if n else "") + "; it runs again")
            queue_variants(st, self.variants, self.study, self.opts, self.echo,
                           rerun_failed=self.opts.retry_failed or self.opts.retry or bool(self.opts.only))
            self._loop(st, others, lid)
        finally:
            self._restore_signals()
            st.end_launcher(lid)
        try:
            return summary(st, [v.id for v in self.variants])
        finally:  # no connection left open: the state file stays movable and checkpointed
            for s in (st, *others):
                s.close()

    def _install_signals(self) -> None:
        """Ctrl-C / SIGTERM ask the launcher to stop (it cancels its children cleanly); the caller's handlers are
        saved and put back by :meth:`_restore_signals` (launch called from Python keeps its Ctrl-C). Python only
        lets the main thread set handlers: elsewhere nothing is installed."""
        main = threading.current_thread() is threading.main_thread()
        self._saved_signals = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM) if main}
        for sig in self._saved_signals:
            signal.signal(sig, lambda *_: self.stop_requested.set())

    def _restore_signals(self) -> None:
        for sig, handler in getattr(self, "_saved_signals", {}).items():
            # None: the handler was not set from Python; SIG_DFL is the closest we can put back
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        self._saved_signals = {}

    def _loop(self, st: StudyState, others: list[StudyState], lid: str) -> None:
        jobs: dict[int, _Job] = {}
        try:
            self._schedule(st, others, lid, jobs)
        except BaseException:
            # the launcher itself failed: leave nothing running behind it; the rows say interrupted, and the next
            # launch re-runs them
            for job in jobs.values():
                if job.proc.poll() is None:
                    signal_group(job.proc, signal.SIGKILL)
                    job.proc.wait()
                st.finish(job.attempt.id, "interrupted", exit_code=job.proc.returncode,
                          failure="launcher stopped (error) while it ran")
            raise

    def _schedule(self, st: StudyState, others: list[StudyState], lid: str, jobs: dict[int, _Job]) -> None:
        by_id = {v.id: v for v in self.variants}
        free = list(self.slots)
        last_progress = 0.0
        while True:
            cancel = st.heartbeat(lid) or self.stop_requested.is_set()
            if cancel:
                if jobs:
                    self.echo(f"cancel requested: stopping {len(jobs)} running variant(s)")
                self._cancel(st, lid, jobs, by_id)
                jobs.clear()
                return
            for aid, job in list(jobs.items()):
                if job.proc.poll() is not None:
                    self._reap(st, job)
                    free.append(job.slot)
                    del jobs[aid]
            if time.monotonic() - last_progress > 1.0:
                last_progress = time.monotonic()
                for job in jobs.values():
                    self._progress(st, job)
            waiting = False
            for a in st.queued(list(by_id)):
                v = by_id[a.variant]
                # --retry asks for training: an earlier attempt of the same config is not a substitute
                prior = None if self.opts.retry else trained_elsewhere(st, others, v.hash)
                if prior is None and v.hash and st.running_with_hash(v.hash):
                    waiting = True  # the same config is training now: link it when it is done
                    continue
                if not free and prior is None:
                    waiting = True
                    break
                log = v.folder / "logs" / f"attempt-{a.attempt}.log"
                if not st.claim(a.id, lid, "link" if prior else free[0].name, str(log) if not prior else ""):
                    continue  # another launcher took it
                if prior is not None:
                    links = link_outputs(st, a, v, *prior)
                    self.echo(f"{v.id}: same config as {prior[1].name}/{prior[0].variant}, trained already; "
                              f"linked {len(links)} output(s)")
                    continue
                slot = free.pop(0)
                try:  # a file where logs/ or output/ should be, a full disk: this variant fails, the rest run
                    set_aside(v.folder, a.attempt)
                    log.parent.mkdir(parents=True, exist_ok=True)
                    job = _start(a, v, slot, log, self.kohya if needs_kohya(v) else None)
                except OSError as e:
                    st.finish(a.id, "failed", failure=f"could not start {v.runner}: {e}")
                    free.append(slot)
                    continue
                st.update(a.id, pid=job.proc.pid)
                jobs[a.id] = job
                self.echo(f"{v.id}: attempt {a.attempt} started on {slot.name} (log {log.relative_to(self.study)})")
            if not jobs and not waiting:
                return
            time.sleep(self.opts.poll)

    def _progress(self, st: StudyState, job: _Job) -> None:
        p = logparse.progress(logparse.read_tail(job.log))
        if p.step is None and p.epoch is None:
            return
        st.update(job.attempt.id, last_step=p.step, total_steps=p.total_steps, last_epoch=p.epoch,
                  last_loss=p.loss, eta=p.eta)
        now = time.monotonic()
        if p.step != job.last_step and now - job.last_echo >= self.opts.progress_every:
            job.last_echo, job.last_step = now, p.step
            self.echo(f"{job.variant.id}: {format_progress(p.step, p.total_steps, p.epoch, p.loss, p.eta)}")

    def _reap(self, st: StudyState, job: _Job) -> None:
        rc = job.proc.wait()
        job.logfile.close()
        text = logparse.read_all(job.log)
        p = logparse.progress(text)
        why = logparse.failure(text, rc)
        outputs = find_outputs(job.variant.folder)
        if rc == 0 and why is None and not outputs and needs_kohya(job.variant):
            # kohya returns with exit code 0 after some errors; a run that saved nothing did not train
            why = "exit code 0, but no LoRA in output/"
        if job.cancelled:
            state, why = "cancelled", "cancelled"
        else:
            state = "done" if rc == 0 and why is None else "failed"
        st.finish(job.attempt.id, state, exit_code=rc, failure=why if state != "done" else None, outputs=outputs,
                  last_step=p.step, total_steps=p.total_steps, last_epoch=p.epoch, last_loss=p.loss, eta=p.eta)
        tail = f": {why}" if state != "done" else f", {len(outputs)} output(s)"
        self.echo(f"{job.variant.id}: attempt {job.attempt.attempt} {state} (exit {rc}){tail}")

    def _cancel(self, st: StudyState, lid: str, jobs: dict[int, _Job], by_id: dict[str, Variant]) -> None:
        """SIGINT to every running group (the trainers stop and say where), SIGKILL after the grace period."""
        for job in jobs.values():
            job.cancelled = True
            signal_group(job.proc, signal.SIGINT)
        deadline = time.monotonic() + self.opts.grace
        while any(j.proc.poll() is None for j in jobs.values()) and time.monotonic() < deadline:
            st.heartbeat(lid)
            time.sleep(self.opts.poll)
        for job in jobs.values():
            if job.proc.poll() is None:
                signal_group(job.proc, signal.SIGKILL)
        for job in jobs.values():
            self._reap(st, job)
        for a in st.queued(list(by_id)):
            if st.claim(a.id, lid, "", ""):
                st.finish(a.id, "cancelled", failure="cancelled before it started")


def cancel(study: Path, wait: float = 60.0, poll: float = 0.2) -> dict:
    """Ask the running launchers of ``study`` to stop; wait until their variants are no longer running."""
    st = StudyState(study)
    started = time.time()
    asked = st.request_cancel()
    deadline = time.monotonic() + wait
    while asked and time.monotonic() < deadline:
        if not set(asked) & set(st.live_launchers()):  # each has stopped its variants and ended
            break
        time.sleep(poll)
    st.recover()
    cancelled = sorted({a.variant for a in st.attempts() if a.state == "cancelled" and (a.ended or 0) >= started})
    return {"launchers": len(asked), "cancelled": cancelled}


def summary(st: StudyState, ids: list[str]) -> dict:
    counts: dict[str, int] = {}
    failed = {}
    for vid in ids:
        a = st.last(vid)
        state = a.state if a else "pending"
        counts[state] = counts.get(state, 0) + 1
        if a and a.state == "failed":
            failed[vid] = a.failure
    return {"study": str(st.study), "counts": counts, "failed": failed}


def format_progress(step, total, epoch, loss, eta) -> str:
    parts = []
    if step is not None:
        parts.append(f"step {step}/{total}" if total else f"step {step}")
    if epoch:
        parts.append(f"epoch {epoch}")
    if loss is not None:
        parts.append(f"loss {loss:.4g}")
    if eta:
        parts.append(f"ETA {eta}")
    return ", ".join(parts)


def queue_variants(st: StudyState, variants: list[Variant], study: Path, opts: Options,
                   echo: Callable[[str], None], rerun_failed: bool) -> None:
    """Queue an attempt for every variant that needs one (both executors). A variant the state does not know but
    whose finished LoRA is on disk (the state was lost after it trained) is recorded as done, not trained again,
    unless ``--retry``; attempts are numbered after the logs already on disk."""
    for v in variants:
        after = disk_attempts(v.folder)
        if not opts.retry and st.last(v.id) is None:
            found = complete_outputs(v.folder)
            if found:
                logs = v.folder / "logs" / f"attempt-{after}.log"
                if st.record_found(v.id, v.hash, after, str(logs) if logs.is_file() else None, found):
                    echo(f"{v.id}: its LoRA is on disk ({_rel(final_output(v.folder), study)}) but not in the launch "
                         "state: recorded as done, not retrained (--retry trains it again)")
                continue
        st.enqueue(v.id, v.hash, rerun_failed=rerun_failed, after=after, rerun_done=opts.retry)


def _rel(path: Path, study: Path) -> str:
    try:
        return str(path.relative_to(study))
    except ValueError:
        return str(path)


def needs_kohya(v: Variant) -> bool:
    """Does this variant's runner train with sd-scripts? The runner ``ablate`` writes for the kohya backend reads
    ``$LORA_AUDIT_SD_SCRIPTS``; a runner the user replaced with their own (or the builtin trainer's) needs no
    checkout from us."""
    try:
        with open(v.folder / v.runner, "rb") as f:
            return b"LORA_AUDIT_SD_SCRIPTS" in f.read(1 << 20)
    except OSError:
        return False
