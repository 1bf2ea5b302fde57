"""``lora-audit launch`` and ``lora-audit status``: parse options, call lora_audit.launch, print."""

from __future__ import annotations

import time
from pathlib import Path

import click

from lora_audit.commands.support import echo_json, one_line_errors
from lora_audit.errors import EvidenceError
from lora_audit.launch import executor
from lora_audit.launch.run import cancel_study, dry_run_plan, make_launcher, run_launcher
from lora_audit.launch.status import launch_status, public_status, render_status, still_running


def _split(values: tuple[str, ...]) -> list[str]:
    return [p for v in values for p in v.replace(",", " ").split() if p]


@click.command("status")
@click.argument("study", type=click.Path(exists=True, file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--watch", is_flag=True, help="Redraw every 2 s until no variant is running (Ctrl-C to stop).")
@one_line_errors
def status(study: str, as_json: bool, watch: bool) -> None:
    """The variants of a study and their state; readable while a launch runs."""
    while True:
        data = launch_status(Path(study))
        if as_json:
            echo_json(public_status(data))
        else:
            if watch:
                click.clear()
            click.echo(render_status(data))
        if not watch or not still_running(data):
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
@one_line_errors
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
        _print_cancel(cancel_study(path), as_json)
        return
    opts = executor.Options(gpus=_split((gpus,)) if gpus else None, only=_split(only) or None,
                            reuse=[Path(r) for r in reuse], retry_failed=retry_failed, retry=retry,
                            sd_scripts=sd_scripts, python=python, global_sd_scripts=_global_sd_scripts())
    sopts = None
    if executor_name == "slurm":
        from lora_audit.launch import slurm

        sopts = slurm.SlurmOptions(partition=partition, gpus_per_job=gpus_per_job, cpus_per_job=cpus_per_job,
                                   mem=mem, time=time_limit, account=account, qos=qos,
                                   sbatch_args=list(sbatch_args))
    launcher = make_launcher(path, opts, executor_name, sopts, max_parallel,
                             echo=(lambda s: None) if as_json else click.echo)
    if dry_run:
        _print_dry_run(*dry_run_plan(path, launcher), as_json)
        return
    result, data = run_launcher(path, launcher)
    if as_json:
        echo_json({**result, **public_status(data)})
    else:
        click.echo("")
        click.echo(render_status(data))
        counts = ", ".join(f"{n} {s}" for s, n in sorted(result["counts"].items()))
        click.echo(f"summary: {counts}")
        for vid, why in result["failed"].items():
            click.echo(f"failed: {vid}: {why}")
    if result["failed"]:  # a study with failed variants is not a success: exit 1 (2 is bad input)
        click.get_current_context().exit(1)


def _print_cancel(result: dict, as_json: bool) -> None:
    if as_json:
        echo_json(result)
        return
    click.echo(f"asked {result['launchers']} launcher(s) to stop; cancelled: "
               + (", ".join(result["cancelled"]) or "none")
               + (f"; scancelled {result['slurm_jobs']} Slurm job(s)" if result.get("slurm_jobs") else ""))


def _print_dry_run(plan: dict, header: list[str], as_json: bool) -> None:
    if as_json:
        echo_json(plan)
        return
    for line in header:
        click.echo(line)
    for p in plan["variants"]:
        click.echo(f"{p['id']}: {p['action']} (attempt {p['attempt']})"
                   + (f"\n  {p['sbatch']}" if p.get("sbatch") else ""))


@click.group()
def launch_group() -> None:
    """Run a study's variants and show their state."""


launch_group.add_command(launch)
launch_group.add_command(status)
