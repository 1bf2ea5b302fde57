"""The batch job of ``launch --executor slurm``: the script each variant's job runs (kept as
``logs/attempt-N.sbatch``) and the ``sbatch`` command that submits it, with the user's Slurm options
(``launch.slurm`` re-exports these names)."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path

from lora_audit.launch.slurm_ctl import job_name
from lora_audit.launch.state import Attempt
from lora_audit.launch.variants import Variant


@dataclass
class SlurmOptions:
    partition: str | None = None
    gpus_per_job: int | None = None
    cpus_per_job: int | None = None
    mem: str | None = None
    time: str | None = None
    account: str | None = None
    qos: str | None = None
    sbatch_args: list[str] = field(default_factory=list)


# -- the batch job -------------------------------------------------------------------------------------------------
def batch_script(study: Path, v: Variant, a: Attempt, env: dict[str, str] | None = None) -> str:
    """The job: a start line, the runner in the variant's folder, an end line with its exit status. ``env`` is
    exported in the script itself, so the job has it even where sbatch does not export the submitting shell's
    environment (``SBATCH_EXPORT=NONE``, ``--export=NONE``)."""
    q = shlex.quote
    lines = ["#!/bin/bash",
             f"# lora-audit launch --executor slurm: study {study}, variant {v.id}, attempt {a.attempt}"
             .replace("\n", "\\n").replace("\r", "\\r"),  # a comment stays one line
             *(f"export {k}={q(val)}" for k, val in sorted((env or {}).items())),
             'echo "# lora-audit slurm: job ${SLURM_JOB_ID:-?} started on $(hostname)"'
             ' "at $(date \'+%Y-%m-%d %H:%M:%S %z\')"',
             f"cd {q(str(v.folder))} || exit 1",
             f"bash {q(v.runner)}",
             "rc=$?",
             'echo "# lora-audit slurm: runner exited with $rc"',
             "exit $rc", ""]
    return "\n".join(lines)


def sbatch_command(study: Path, v: Variant, a: Attempt, opts: SlurmOptions, script: Path) -> list[str]:
    cmd = ["sbatch", "--parsable", f"--job-name={job_name(study, v.id, a.attempt)}",
           f"--comment=lora-audit study={Path(study).resolve()} variant={v.id} attempt={a.attempt}".replace(
               "\n", "\\n"),
           f"--chdir={v.folder}", f"--output=logs/attempt-{a.attempt}.log", "--open-mode=append",
           "--nodes=1", "--ntasks=1"]
    if opts.partition:
        cmd.append(f"--partition={opts.partition}")
    if opts.gpus_per_job:
        cmd.append(f"--gpus={opts.gpus_per_job}")
    if opts.cpus_per_job:
        cmd.append(f"--cpus-per-task={opts.cpus_per_job}")
    for flag, value in (("mem", opts.mem), ("time", opts.time), ("account", opts.account), ("qos", opts.qos)):
        if value:
            cmd.append(f"--{flag}={value}")
    cmd += list(opts.sbatch_args)  # last: the user's own arguments win
    cmd.append(str(script))
    return cmd
