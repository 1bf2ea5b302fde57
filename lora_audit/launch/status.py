"""The state of a study's variants (``lora-audit status``), and its table. Read-only: safe while a launch runs."""

from __future__ import annotations

import functools
import math
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, Field, ValidationError

from lora_audit.errors import EvidenceError
from lora_audit.launch import executor
from lora_audit.launch.state import FOUND_SLOT, SLURM_SLOT, StudyState, _busy, bad_state, db_path
from lora_audit.launch.variants import disk_attempts, study_variants

F = TypeVar("F", bound=Callable[..., Any])


def state_errors(fn: F) -> F:
    """An SQLite error from a damaged ``launch.sqlite`` is bad input (what, and how to start over), whichever query
    meets it first: raised as :class:`EvidenceError`. ``fn`` takes the study folder first (or as ``study=``)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        study = Path(kwargs["study"] if "study" in kwargs else args[0])
        try:
            return fn(*args, **kwargs)
        except sqlite3.DatabaseError as e:
            if _busy(e):
                raise EvidenceError(f"launch state busy: {e}", str(db_path(study))) from None
            raise bad_state(study, str(e)) from None
        except ValidationError as e:  # a value of the wrong type in a hand-edited state file
            err = e.errors()[0]
            raise bad_state(study, f"{'.'.join(str(x) for x in err['loc'])}: {err['msg']}") from None
        except UnicodeDecodeError as e:  # SQLite's message about a damaged file, quoting bytes that are not UTF-8
            raise bad_state(study, e.object.decode("utf-8", "replace") if isinstance(e.object, bytes)
                            else str(e)) from None

    return wrapper  # type: ignore[return-value]


class SlurmJob(BaseModel):
    """A variant's Slurm job: what Slurm says now for a running attempt (squeue, scontrol, sacct), else the state
    last recorded."""

    job_id: str | None = None
    state: str | None = None
    reason: str | None = None


class VariantStatus(BaseModel):
    """One variant's last attempt as ``status --json`` prints it; the excluded fields are what the table shows
    besides."""

    id: str
    state: str = "pending"  # pending | queued | running | done | failed | cancelled | interrupted
    attempts: int = 0
    exit_code: int | None = None
    log: str | None = None
    outputs: list[str] = Field(default_factory=list)
    last_step: int | None = None
    last_loss: float | None = None  # None for NaN/inf too (JSON has no NaN; loss_nan says so)
    failure: str | None = None
    slurm: SlurmJob | None = None  # only for a variant submitted to Slurm (absent from the JSON otherwise)
    total_steps: int | None = Field(default=None, exclude=True)
    epoch: str | None = Field(default=None, exclude=True)  # "3/10"
    eta: str | None = Field(default=None, exclude=True)  # "01:20"
    reused_from: str | None = Field(default=None, exclude=True)
    loss_nan: bool = Field(default=False, exclude=True)
    found_on_disk: bool = Field(default=False, exclude=True)
    job_ended: bool = Field(default=False, exclude=True)  # a Slurm job that ended while no launcher watched it


class LaunchStatus(BaseModel):
    """The state of a study's variants (``lora-audit status``)."""

    study: str
    variants: list[VariantStatus] = Field(default_factory=list)

    def to_data(self) -> dict[str, Any]:
        """What ``status --json`` prints (``slurm`` only for Slurm variants)."""
        return self.model_dump(mode="json", exclude_unset=True)


@state_errors
def launch_status(study: Path | str) -> LaunchStatus:
    """Every variant of ``study`` (study.toml's and the current bisect round's, and any other the launch state
    knows) with its last attempt. Read-only: safe while a launch runs."""
    deadline = time.monotonic() + 10
    while True:
        try:
            return _launch_status(Path(study))
        except sqlite3.OperationalError as e:  # a launcher creating the file this very moment
            if not _busy(e):
                raise
            if time.monotonic() > deadline:
                raise EvidenceError(f"cannot read the launch state: {e}", str(db_path(Path(study)))) from None
            time.sleep(0.05)


def status_data(study: Path | str) -> dict[str, Any]:
    """:func:`launch_status` as JSON data: {"study", "variants": [{"id", "state", "attempts", "exit_code", "log",
    "outputs", "last_step", "last_loss", "failure"(, "slurm")}]}."""
    return launch_status(study).to_data()


def _launch_status(study: Path) -> LaunchStatus:
    found = study_variants(study)
    variants = [v.id for v in found]
    if not db_path(study).exists() and not db_path(study).is_symlink():
        lost = [v.id for v in found if disk_attempts(v.folder)]
        if lost:  # it was launched (logs are there), and its state file is gone
            raise EvidenceError(f"launch state missing, but {len(lost)} variant(s) have attempt logs ("
                                f"{', '.join(lost[:3])}{', ...' if len(lost) > 3 else ''}); to start over, launch "
                                "again: attempts are numbered after the logs on disk and variants whose LoRA is on "
                                "disk are recorded as done, not retrained", str(db_path(study)))
        return LaunchStatus(study=str(study), variants=[_row(v, None, 0, None) for v in variants])
    st = StudyState(study, readonly=True)
    if not st.ready:
        st.close()
        return LaunchStatus(study=str(study), variants=[_row(v, None, 0, None) for v in variants])
    rows = []
    try:
        known = variants + sorted({a.variant for a in st.attempts()} - set(variants))
        for vid in known:
            attempts = st.attempts(vid)
            last = attempts[-1] if attempts else None
            state = last.state if last else None
            # its launcher died; no launch recovered it yet
            if last is not None and state == "running" and last.slot != SLURM_SLOT and st.launcher_gone(last.launcher):
                state = "interrupted"
            rows.append(_row(vid, last, len(attempts), state))
        _slurm_rows(rows, [st.last(r.id) for r in rows])
    finally:
        st.close()
    return LaunchStatus(study=str(study), variants=rows)


def _slurm_rows(rows: list[VariantStatus], lasts: list) -> None:
    """A variant submitted to Slurm gets ``slurm`` (job id, state, reason): for a running attempt what Slurm says
    now (squeue, scontrol show job, sacct), else the state last recorded. Local variants get none."""
    from lora_audit.launch import slurm

    pending = [a for a in lasts if a is not None and a.job_id and a.state == "running"]
    now = slurm.live_view(pending) if pending else {}
    for r, a in zip(rows, lasts):
        if a is None or a.slot != SLURM_SLOT:
            continue
        job = now.get(a.job_id) if a.job_id else None
        r.slurm = SlurmJob(job_id=a.job_id, state=job.state if job else a.slurm_state,
                           reason=job.reason if job and job.reason not in ("", "None") else None)
        if a.state == "running" and job is not None and job.state not in slurm.LIVE_STATES:
            # the job ended while no launcher watched it: the next launch records how
            r.job_ended = True
            r.failure = (f"Slurm job {a.job_id} ended ({job.state}); `lora-audit launch STUDY --executor slurm` "
                         "records it")


def _row(vid: str, a, n: int, state: str | None) -> VariantStatus:
    loss = a.last_loss if a else None
    return VariantStatus(
        id=vid, state=state or "pending", attempts=n, exit_code=a.exit_code if a else None,
        log=a.log if a and a.log else None, outputs=a.outputs if a else [],
        last_step=a.last_step if a else None,
        last_loss=loss if loss is None or math.isfinite(loss) else None,  # JSON has no NaN
        failure=a.failure if a else None,
        total_steps=a.total_steps if a else None, epoch=a.last_epoch if a else None, eta=a.eta if a else None,
        reused_from=a.reused_from if a else None, loss_nan=loss is not None and not math.isfinite(loss),
        found_on_disk=bool(a and a.slot == FOUND_SLOT))


def public_status(data: LaunchStatus) -> dict[str, Any]:
    """``status --json``'s object (:meth:`LaunchStatus.to_data`)."""
    return data.to_data()


def still_running(data: LaunchStatus) -> bool:
    """Is a variant queued or running (a Slurm job that ended unwatched is not)?"""
    return any(r.state in ("running", "queued") and not r.job_ended for r in data.variants)


def render_status(data: LaunchStatus) -> str:
    """The table ``lora-audit status`` prints."""
    head: tuple[str, ...] = ("variant", "state", "try", "progress", "detail")
    body: list[tuple[str, ...]] = []
    jobs = any(r.slurm is not None for r in data.variants)  # a Slurm study: a job column (job id and Slurm state)
    for r in data.variants:
        prog = executor.format_progress(r.last_step, r.total_steps, r.epoch, r.last_loss,
                                        r.eta if r.state == "running" else None)
        if r.loss_nan:
            prog += (", " if prog else "") + "loss nan"
        if r.state == "done":
            detail = f"linked from {r.reused_from}" if r.reused_from else f"{len(r.outputs)} output(s)"
            detail += " (found on disk)" if r.found_on_disk else ""
        else:
            detail = r.failure or ""
        if r.log and r.state in ("running", "failed", "interrupted"):
            detail += ("; " if detail else "") + f"log {r.log}"
        body.append((r.id, r.state, str(r.attempts), prog, detail))
        if jobs:
            s = r.slurm or SlurmJob()
            job = f"{s.job_id or '-'} {s.state or ''}".strip()
            job += f" ({s.reason})" if s.reason and s.state == "PENDING" else ""
            body[-1] = (*body[-1][:3], job, *body[-1][3:])
    if jobs:
        head = ("variant", "state", "try", "slurm job", "progress", "detail")
    cols = len(head) - 1
    widths = [max(len(x[i]) for x in [head, *body]) for i in range(cols)]
    lines = [f"study {data.study}"]
    for row in [head, *body]:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row[:cols], widths)) + "  " + row[cols])
    return "\n".join(line.rstrip() for line in lines)
