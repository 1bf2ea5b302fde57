"""``lora-audit launch`` and ``lora-audit status``: click commands the CLI registers (``launch``, ``status``)."""

from __future__ import annotations

import functools
import json
import math
import sqlite3
import time
from pathlib import Path

import click

from lora_audit.errors import EvidenceError
from lora_audit.commands.support import one_line_errors
from lora_audit.launch import executor
from lora_audit.launch.state import FOUND_SLOT, SLURM_SLOT, StudyState, _alive, _busy, bad_state, db_path
from lora_audit.launch.variants import disk_attempts, study_variants


def _handles_errors(fn):
    """One line for bad input; an SQLite error from a damaged launch.sqlite is bad input too (what, and how to
    start over), whichever query meets it first."""

    @one_line_errors
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except sqlite3.DatabaseError as e:
            if _busy(e):
                raise EvidenceError(f"launch state busy: {e}", str(db_path(Path(kwargs["study"])))) from None
            raise bad_state(Path(kwargs["study"]), str(e)) from None

    return wrapper


def _split(values: tuple[str, ...]) -> list[str]:
    return [p for v in values for p in v.replace(",", " ").split() if p]


# -- status -------------------------------------------------------------------------------------------------------
def status_data(study: Path) -> dict:
    """The issue's shape: {"study", "variants": [{"id", "state", "attempts", "exit_code", "log", "outputs",
    "last_step", "last_loss", "failure"}]}. Read-only: safe while a launch runs."""
    deadline = time.monotonic() + 10
    while True:
        try:
            return _status_data(Path(study))
        except sqlite3.OperationalError as e:  # a launcher creating the file this very moment
            if not _busy(e):
                raise
            if time.monotonic() > deadline:
                raise EvidenceError(f"cannot read the launch state: {e}", str(db_path(Path(study)))) from None
            time.sleep(0.05)


def _status_data(study: Path) -> dict:
    found = study_variants(study)
    variants = [v.id for v in found]
    rows = []
    if not db_path(study).exists() and not db_path(study).is_symlink():
        lost = [v.id for v in found if disk_attempts(v.folder)]
        if lost:  # it was launched (logs are there), and its state file is gone
            raise EvidenceError(f"launch state missing, but {len(lost)} variant(s) have attempt logs ("
                                f"{', '.join(lost[:3])}{', ...' if len(lost) > 3 else ''}); to start over, launch "
                                "again: attempts are numbered after the logs on disk and variants whose LoRA is on "
                                "disk are recorded as done, not retrained", str(db_path(study)))
        return {"study": str(study), "variants": [_row(v, None, 0, None) for v in variants]}
    st = StudyState(study, readonly=True)
    if not st.ready:
        st.close()
        return {"study": str(study), "variants": [_row(v, None, 0, None) for v in variants]}
    try:
        launchers = {r["id"]: r for r in st.db.execute("SELECT * FROM launchers")}
        known = variants + sorted({a.variant for a in st.attempts()} - set(variants))
        for vid in known:
            attempts = st.attempts(vid)
            last = attempts[-1] if attempts else None
            state = last.state if last else None
            if state == "running" and last.slot != SLURM_SLOT:  # its launcher died; no launch recovered it yet
                lrow = launchers.get(last.launcher)
                if lrow is None or lrow["ended"] is not None or not _alive(lrow):
                    state = "interrupted"
            rows.append(_row(vid, last, len(attempts), state))
        _slurm_rows(rows, [st.last(r["id"]) for r in rows])
    finally:
        st.close()
    return {"study": str(study), "variants": rows}


def _slurm_rows(rows: list[dict], lasts: list) -> None:
    """A variant submitted to Slurm gets ``"slurm": {"job_id", "state", "reason"}``: for a running attempt what
    Slurm says now (squeue, scontrol show job, sacct), else the state last recorded. Local variants get no key."""
    from lora_audit.launch import slurm

    pending = [a for a in lasts if a is not None and a.job_id and a.state == "running"]
    now = slurm.live_view(pending) if pending else {}
    for r, a in zip(rows, lasts):
        if a is None or a.slot != SLURM_SLOT:
            continue
        job = now.get(a.job_id) if a.job_id else None
        r["slurm"] = {"job_id": a.job_id, "state": job.state if job else a.slurm_state,
                      "reason": job.reason if job and job.reason not in ("", "None") else None}
        if a.state == "running" and job is not None and job.state not in slurm.LIVE_STATES:
            # the job ended while no launcher watched it: the next launch records how
            r["_ended"] = True
            r["failure"] = (f"Slurm job {a.job_id} ended ({job.state}); `lora-audit launch STUDY --executor slurm` "
                            "records it")


def _row(vid: str, a, n: int, state: str | None) -> dict:
    loss = a.last_loss if a else None
    return {
        "id": vid,
        "state": state or "pending",
        "attempts": n,
        "exit_code": a.exit_code if a else None,
        "log": a.log if a and a.log else None,
        "outputs": a.outputs if a else [],
        "last_step": a.last_step if a else None,
        "last_loss": loss if loss is None or math.isfinite(loss) else None,  # JSON has no NaN
        "failure": a.failure if a else None,
        # not in the JSON: what the table shows besides
        "_total": a.total_steps if a else None, "_epoch": a.last_epoch if a else None,
        "_eta": a.eta if a else None, "_reused": a.reused_from if a else None,
        "_nan": loss is not None and not math.isfinite(loss),
        "_found": bool(a and a.slot == FOUND_SLOT),
    }


def _public(data: dict) -> dict:
    return {"study": data["study"],
            "variants": [{k: v for k, v in r.items() if not k.startswith("_")} for r in data["variants"]]}


def render_table(data: dict) -> str:
    head = ("variant", "state", "try", "progress", "detail")
    body = []
    jobs = any("slurm" in r for r in data["variants"])  # a Slurm study: a job column (job id and Slurm state)
    for r in data["variants"]:
        prog = executor.format_progress(r["last_step"], r["_total"], r["_epoch"], r["last_loss"],
                                        r["_eta"] if r["state"] == "running" else None)
        if r["_nan"]:
            prog += (", " if prog else "") + "loss nan"
        if r["state"] == "done":
            detail = f"linked from {r['_reused']}" if r["_reused"] else f"{len(r['outputs'])} output(s)"
            detail += " (found on disk)" if r["_found"] else ""
        else:
            detail = r["failure"] or ""
        if r["log"] and r["state"] in ("running", "failed", "interrupted"):
            detail += ("; " if detail else "") + f"log {r['log']}"
        body.append((r["id"], r["state"], str(r["attempts"]), prog, detail))
        if jobs:
            s = r.get("slurm") or {}
            job = f"{s.get('job_id') or '-'} {s.get('state') or ''}".strip()
            job += f" ({s['reason']})" if s.get("reason") and s.get("state") == "PENDING" else ""
            body[-1] = (*body[-1][:3], job, *body[-1][3:])
    if jobs:
        head = ("variant", "state", "try", "slurm job", "progress", "detail")
    cols = len(head) - 1
    widths = [max(len(x[i]) for x in [head, *body]) for i in range(cols)]
    lines = [f"study {data['study']}"]
    for row in [head, *body]:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row[:cols], widths)) + "  " + row[cols])
    return "\n".join(line.rstrip() for line in lines)


@click.command("status")
@click.argument("study", type=click.Path(exists=True, file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--watch", is_flag=True, help="Redraw every 2 s until no variant is running (Ctrl-C to stop).")
@_handles_errors
def status(study: str, as_json: bool, watch: bool) -> None:
    """The variants of a study and their state; readable while a launch runs."""
    while True:
        data = status_data(Path(study))
        if as_json:
            click.echo(json.dumps(_public(data), indent=2))
        else:
            if watch:
                click.clear()
            click.echo(render_table(data))
        if not watch or not any(r["state"] in ("running", "queued") and not r.get("_ended")
                                 for r in data["variants"]):
            return
        try:
            time.sleep(2.0)
        except KeyboardInterrupt:
            return


# -- launch -------------------------------------------------------------------------------------------------------
def _global_sd_scripts() -> str | None:
    """The CLI's global ``--sd-scripts`` when given on the command line (click also fills it from
    $LORA_AUDIT_SD_SCRIPTS, which kohya_env reads itself, after the command line)."""
    root = click.get_current_context().find_root()
    value = (root.obj or {}).get("sd_scripts") if isinstance(root.obj, dict) else None
    source = root.get_parameter_source("sd_scripts")
    return value if value and source == click.core.ParameterSource.COMMANDLINE else None


@click.command("launch")
@click.argument("study", type=click.Path(exists=True, file_okay=False))
@click.option("--gpus", help="GPU ids, one slot each (CUDA_VISIBLE_DEVICES per slot), e.g. 0,1.")
@click.option("--max-parallel", type=int, default=None,
              help="Slots on CPU when no --gpus are given (with --gpus: at most this many of them); default 1. "
                   "With --executor slurm: at most this many jobs queued or running at once (default: no limit).")
@click.option("--only", multiple=True, help="Run only these variants (repeat or comma-separate; re-runs failed).")
@click.option("--reuse", multiple=True, type=click.Path(exists=True, file_okay=False),
              help="Another study whose trained variants of the same config hash are linked, not retrained.")
@click.option("--retry-failed", is_flag=True, help="Run failed variants again (a new attempt).")
@click.option("--retry", is_flag=True,
              help="Train again what is done (also a LoRA found on disk after the state was lost) or failed; "
                   "earlier outputs are set aside, never deleted.")
@click.option("--sd-scripts", "sd_scripts", type=click.Path(file_okay=False),
              help="The sd-scripts checkout to train with (default: the global --sd-scripts, "
                   "$LORA_AUDIT_SD_SCRIPTS, the study's when it has the scripts, the sd-scripts submodule).")
@click.option("--python", "python",
              help="The Python of sd-scripts' environment (default: $LORA_AUDIT_KOHYA_PYTHON, DIR/venv or "
                   "DIR/.venv, else accelerate on PATH).")
@click.option("--cancel", "do_cancel", is_flag=True,
              help="Stop the variants running in this study (cancelled); scancel its Slurm jobs.")
@click.option("--executor", "executor_name", type=click.Choice(["local", "slurm"]), default="local",
              show_default=True, help="local: slots on this machine; slurm: one sbatch job per variant.")
@click.option("--partition", help="Slurm: the partition (sbatch --partition).")
@click.option("--gpus-per-job", type=click.IntRange(min=1), help="Slurm: GPUs per job (sbatch --gpus).")
@click.option("--cpus-per-job", type=click.IntRange(min=1), help="Slurm: CPUs per job (sbatch --cpus-per-task).")
@click.option("--mem", help="Slurm: memory per job, e.g. 32G (sbatch --mem).")
@click.option("--time", "time_limit", help="Slurm: time limit per job, e.g. 04:00:00 (sbatch --time).")
@click.option("--account", help="Slurm: the account to charge (sbatch --account).")
@click.option("--qos", help="Slurm: the quality of service (sbatch --qos).")
@click.option("--sbatch-arg", "sbatch_args", multiple=True,
              help="Slurm: one more sbatch argument, passed as is (repeat), e.g. --sbatch-arg=--constraint=a100.")
@click.option("--dry-run", is_flag=True, help="Say what would run, run nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (the summary, or the dry-run plan).")
@_handles_errors
def launch(study: str, gpus: str | None, max_parallel: int, only: tuple[str, ...], reuse: tuple[str, ...],
           retry_failed: bool, retry: bool, sd_scripts: str | None, python: str | None, do_cancel: bool,
           executor_name: str, partition: str | None, gpus_per_job: int | None, cpus_per_job: int | None,
           mem: str | None, time_limit: str | None, account: str | None, qos: str | None,
           sbatch_args: tuple[str, ...], dry_run: bool, as_json: bool) -> None:
    """Run a study's variants (their runner), one per slot, on your sd-scripts, with durable state; resumes after a
    crash. With --executor slurm: one Slurm job per variant (sbatch); a relaunch re-attaches to its jobs."""
    path = Path(study)
    slurm_only = {"--partition": partition, "--gpus-per-job": gpus_per_job, "--cpus-per-job": cpus_per_job,
                  "--mem": mem, "--time": time_limit, "--account": account, "--qos": qos,
                  "--sbatch-arg": sbatch_args}
    given = [k for k, v in slurm_only.items() if v]
    if executor_name != "slurm" and given:
        raise EvidenceError(f"{given[0]} is for --executor slurm")
    if executor_name == "slurm" and gpus:
        raise EvidenceError("--gpus picks local GPUs; with --executor slurm use --gpus-per-job N")
    if executor_name == "slurm" and not dry_run:
        from lora_audit.launch import slurm

        slurm.require("scancel" if do_cancel else "sbatch")
    if do_cancel:
        result = executor.cancel(path)
        result.update(_cancel_slurm(path))
        if as_json:
            click.echo(json.dumps(result, indent=2))
        else:
            click.echo(f"asked {result['launchers']} launcher(s) to stop; cancelled: "
                       + (", ".join(result["cancelled"]) or "none")
                       + (f"; scancelled {result['slurm_jobs']} Slurm job(s)" if result.get("slurm_jobs") else ""))
        return
    opts = executor.Options(gpus=_split((gpus,)) if gpus else None,
                            max_parallel=max_parallel if max_parallel is not None or executor_name == "slurm" else 1,
                            only=_split(only) or None, reuse=[Path(r) for r in reuse], retry_failed=retry_failed,
                            retry=retry, sd_scripts=sd_scripts, python=python,
                            global_sd_scripts=_global_sd_scripts())
    echo = (lambda s: None) if as_json else click.echo
    if executor_name == "slurm":
        from lora_audit.launch import slurm

        opts.max_parallel = 1  # local slots do not apply; --max-parallel bounds the live jobs
        sopts = slurm.SlurmOptions(partition=partition, gpus_per_job=gpus_per_job, cpus_per_job=cpus_per_job,
                                   mem=mem, time=time_limit, account=account, qos=qos,
                                   sbatch_args=list(sbatch_args))
        launcher = slurm.SlurmLauncher(path, opts, sopts, echo=echo, max_jobs=max_parallel)
    else:
        launcher = executor.Launcher(path, opts, echo=echo)
    if dry_run:
        plan = launcher.dry_run()
        kenv = launcher.resolve_kohya()
        if executor_name == "slurm":
            commands = launcher.commands()
            for p in plan:
                p["sbatch"] = commands.get(p["id"]) if not p["action"].startswith(("skip", "link")) else None
            where: dict = {"executor": "slurm"}
        else:
            where = {"slots": [s.name for s in launcher.slots]}
        if as_json:
            click.echo(json.dumps({"study": str(path), **where,
                                   "sd_scripts": str(kenv.sd_scripts) if kenv else None,
                                   "python": str(kenv.python or kenv.accelerate) if kenv else None,
                                   "variants": plan}, indent=2))
        else:
            for line in kenv.header() if kenv else []:
                click.echo(line)
            for p in plan:
                click.echo(f"{p['id']}: {p['action']} (attempt {p['attempt']})"
                           + (f"\n  {p['sbatch']}" if p.get("sbatch") else ""))
        return
    result = launcher.run()
    if as_json:
        click.echo(json.dumps({**result, **_public(status_data(path))}, indent=2))
    else:
        click.echo("")
        click.echo(render_table(status_data(path)))
        counts = ", ".join(f"{n} {s}" for s, n in sorted(result["counts"].items()))
        click.echo(f"summary: {counts}")
        for vid, why in result["failed"].items():
            click.echo(f"failed: {vid}: {why}")
    if result["failed"]:  # a study with failed variants is not a success: exit 1 (2 is bad input)
        click.get_current_context().exit(1)


def _cancel_slurm(path: Path) -> dict:
    """``scancel`` the study's Slurm jobs (those in its state, and any named after it): {"slurm_jobs": N}."""
    from lora_audit.launch import slurm

    st = StudyState(path)
    try:
        if not st.db.execute("SELECT 1 FROM attempts WHERE slot=? LIMIT 1", (SLURM_SLOT,)).fetchone():
            return {}  # never submitted to Slurm
        if not slurm.available():
            raise EvidenceError("the study has Slurm jobs, but scancel/squeue are not on PATH (run --cancel on "
                                "the cluster's login node)", str(path))
        return {"slurm_jobs": slurm.cancel_jobs(st, path)}
    finally:
        st.close()


@click.group()
def launch_group() -> None:
    """Run a study's variants and show their state."""


launch_group.add_command(launch)
launch_group.add_command(status)
