"""Run a study's variants (``lora-audit launch``) from Python: on local slots or as Slurm jobs, a dry run, a cancel.

    from lora_audit.launch.run import launch_study
    result = launch_study("runs/my-study", max_parallel=2)   # {"counts": ..., "failed": ..., "variants": [...]}
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from lora_audit.errors import EvidenceError
from lora_audit.launch import executor
from lora_audit.launch.state import StudyState
from lora_audit.launch.status import LaunchStatus, launch_status, public_status, state_errors

Echo = Callable[[str], None]


@state_errors
def make_launcher(study: Path | str, opts: executor.Options | None = None, executor_name: str = "local",
                  slurm_options=None, max_parallel: int | None = None,
                  echo: Echo = lambda s: None) -> executor.Launcher:
    """The launcher of ``study``: local slots (``opts.gpus``, else ``max_parallel`` CPU slots, default 1), or with
    ``executor_name="slurm"`` one sbatch job per variant, at most ``max_parallel`` live at once (default: no
    limit)."""
    opts = opts or executor.Options()
    path = Path(study)
    if executor_name == "slurm":
        from lora_audit.launch import slurm

        opts.max_parallel = 1  # local slots do not apply; max_parallel bounds the live jobs
        return slurm.SlurmLauncher(path, opts, slurm_options or slurm.SlurmOptions(), echo=echo,
                                   max_jobs=max_parallel)
    if executor_name != "local":
        raise EvidenceError(f"unknown executor {executor_name!r} (local or slurm)")
    if max_parallel is not None:
        opts.max_parallel = max_parallel
    return executor.Launcher(path, opts, echo=echo)


@state_errors
def dry_run_plan(study: Path | str, launcher: executor.Launcher) -> tuple[dict, list[str]]:
    """What a launch would do, run nothing: ``({"study", "slots"|"executor", "sd_scripts", "python", "variants"},
    the kohya environment's header lines)``."""
    plan = launcher.dry_run()
    kenv = launcher.resolve_kohya()
    if hasattr(launcher, "commands"):  # Slurm: the sbatch command of each variant that would be submitted
        commands = launcher.commands()
        for p in plan:
            p["sbatch"] = commands.get(p["id"]) if not p["action"].startswith(("skip", "link")) else None
        where: dict = {"executor": "slurm"}
    else:
        where = {"slots": [s.name for s in launcher.slots]}
    data = {"study": str(Path(study)), **where, "sd_scripts": str(kenv.sd_scripts) if kenv else None,
            "python": str(kenv.python or kenv.accelerate) if kenv else None, "variants": plan}
    return data, (kenv.header() if kenv else [])


@state_errors
def run_launcher(study: Path | str, launcher: executor.Launcher) -> tuple[dict, LaunchStatus]:
    """Run ``launcher`` to the end: (its summary ``{"counts", "failed", ...}``, the study's status after)."""
    result = launcher.run()
    return result, launch_status(Path(study))


def launch_study(study: Path | str, opts: executor.Options | None = None, executor_name: str = "local",
                 slurm_options=None, max_parallel: int | None = None, echo: Echo = lambda s: None) -> dict:
    """Run ``study``'s variants (their runner), one per slot, with durable state; resumes after a crash. Returns
    what ``lora-audit launch --json`` prints: the summary and every variant's state."""
    result, data = run_launcher(study, make_launcher(study, opts, executor_name, slurm_options, max_parallel, echo))
    return {**result, **public_status(data)}


@state_errors
def cancel_study(study: Path | str) -> dict:
    """Stop the variants running in ``study`` (cancelled) and ``scancel`` its Slurm jobs:
    ``{"launchers", "cancelled"[, "slurm_jobs"]}``."""
    path = Path(study)
    result = executor.cancel(path)
    result.update(_cancel_slurm(path))
    return result


def _cancel_slurm(path: Path) -> dict:
    """``scancel`` the study's Slurm jobs (those in its state, and any named after it): {"slurm_jobs": N}."""
    from lora_audit.launch import slurm

    st = StudyState(path)
    try:
        if not st.has_slurm_attempts():
            return {}  # never submitted to Slurm
        if not slurm.available():
            raise EvidenceError("the study has Slurm jobs, but scancel/squeue are not on PATH (run --cancel on "
                                "the cluster's login node)", str(path))
        return {"slurm_jobs": slurm.cancel_jobs(st, path)}
    finally:
        st.close()
