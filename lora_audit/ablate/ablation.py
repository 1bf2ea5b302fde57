"""``lora-audit ablate`` from Python: plan the variants of a good run against bad ones and write the study folder.

    from lora_audit.ablate.ablation import ablate
    plan, folder = ablate(good, [bad], "ofat", out="runs/my-study")
"""

from __future__ import annotations

from pathlib import Path

from lora_audit.ablate import emit
from lora_audit.ablate.plan import AblationPlan, plan
from lora_audit.ablate.waste import all_or_nothing
from lora_audit.model import Run


def default_study_folder(good: Run, bads: list[Run]) -> Path:
    """``runs/<good>-vs-<bad>...``: named from the runs, each name made a plain file name (no "/", "..", control
    characters)."""
    return Path("runs") / (emit._safe(f"{good.name}-vs-{'-'.join(r.name for r in bads)}").lstrip(".")[:200] or "study")


def ablate(good: Run, bads: list[Run], strategy: str = "ofat", sweeps: list[str] | tuple[str, ...] = (), *,
           control: bool = True, seconds_per_step: float | None = None, include_inert: bool = False,
           out: Path | str | None = None, backend: str = "kohya", sd_scripts: str = "sd-scripts",
           inputs: list[str | Path] | tuple = (), force: bool = False, log: bool = False,
           write: bool = True) -> tuple[AblationPlan, Path]:
    """:func:`lora_audit.ablate.plan.plan` the minimal-change variants, then (unless ``write=False``, a dry run)
    :func:`lora_audit.ablate.emit.write_study` them into ``out`` (default :func:`default_study_folder`); an error
    leaves no half-written new study behind. Returns (the plan, the study folder)."""
    p = plan(good, bads, strategy, list(sweeps), control=control, seconds_per_step=seconds_per_step,
             include_inert=include_inert)
    folder = Path(out) if out else default_study_folder(good, bads)
    if write:
        with all_or_nothing(folder):
            emit.write_study(p, {r.name: r for r in [good, *bads]}, folder, backend, sd_scripts, inputs=list(inputs),
                        force=force, log=log)
    return p, folder
