"""lora-audit: audit kohya-ss sd-scripts LoRA training runs.

Library-first: every command is a thin shell over the functions below (``__all__``), and everything the CLI does
can be done from Python. ``import lora_audit`` stays light: each name is imported from its module on first use
(torch and diffusers only by the comparison and training functions, when they run).

    import lora_audit
    good, bad = lora_audit.load_runs(["runs/examples/bespoke-punks/sd15_perfect",
                                      "runs/examples/bespoke-punks/sdxl_current"])
    good.params["network_dim"].value, good.params["network_dim"].origin
    diff = lora_audit.diff_runs([good, bad])
    [f.title for f in lora_audit.find_suspects(good, bad, diff)][:3]

Command → function: ``inspect`` inspect_runs (load_runs: the Run models alone); ``diff`` diff_runs;
``infer-dim`` candidates; ``weights`` analyse_series; ``audit`` audit_runs (``lora_audit.audit.audit`` for Run
objects; render_audit for the Markdown); ``ablate`` pick_runs, plan, write_study; ``bisect``
``lora_audit.ablate.study`` (start, judge, judge_all) with verdicts_from_votes; ``launch`` launch_study,
cancel_study; ``status`` launch_status; ``compare`` comparison_settings, compare_loras (run_comparison
underneath); ``vote --judge`` cast_machine_votes; ``stats`` folder_stats; ``export`` export; ``make-tiny-model``
make_tiny_model; ``make-toy-dataset`` make_toy_dataset; ``train`` ``lora_audit.train.trainer.train``.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from lora_audit.version import __version__ as __version__  # re-exported: lora_audit.__version__

# name -> the module it lives in (imported on first use: module __getattr__, PEP 562)
_API = {
    "load_run": "lora_audit.evidence.run",
    "load_runs": "lora_audit.evidence.run",
    "inspect_runs": "lora_audit.report.inspect_report",
    "diff_runs": "lora_audit.diff",
    "find_suspects": "lora_audit.rules.engine",
    "candidates": "lora_audit.kohya.filesize",
    "analyse_series": "lora_audit.weights",
    "pick_runs": "lora_audit.evidence.pick",
    "audit_runs": "lora_audit.report.audit_report",
    "render_audit": "lora_audit.report.markdown",
    "plan": "lora_audit.ablate.plan",
    "write_study": "lora_audit.ablate.emit",
    "verdicts_from_votes": "lora_audit.votes.verdicts",
    "launch_study": "lora_audit.launch.run",
    "cancel_study": "lora_audit.launch.run",
    "launch_status": "lora_audit.launch.status",
    "comparison_settings": "lora_audit.compare.job",
    "compare_loras": "lora_audit.compare.job",
    "run_comparison": "lora_audit.compare.run",
    "cast_machine_votes": "lora_audit.votes.judge",
    "folder_stats": "lora_audit.votes.stats",
    "export": "lora_audit.votes.export",
    "make_tiny_model": "lora_audit.train.tiny_model",
    "make_toy_dataset": "lora_audit.train.toy_dataset",
}

__all__ = [
    "load_run", "load_runs", "inspect_runs", "diff_runs", "find_suspects", "candidates", "analyse_series",
    "pick_runs", "audit_runs", "render_audit", "plan", "write_study", "verdicts_from_votes", "launch_study",
    "cancel_study", "launch_status", "comparison_settings", "compare_loras", "run_comparison", "cast_machine_votes",
    "folder_stats", "export", "make_tiny_model", "make_toy_dataset",
]

if TYPE_CHECKING:  # what type checkers and editors see; at run time __getattr__ imports on first use
    from lora_audit.ablate.emit import write_study
    from lora_audit.ablate.plan import plan
    from lora_audit.compare.job import compare_loras, comparison_settings
    from lora_audit.compare.run import run_comparison
    from lora_audit.diff import diff_runs
    from lora_audit.evidence.pick import pick_runs
    from lora_audit.evidence.run import load_run, load_runs
    from lora_audit.kohya.filesize import candidates
    from lora_audit.launch.run import cancel_study, launch_study
    from lora_audit.launch.status import launch_status
    from lora_audit.report.audit_report import audit_runs
    from lora_audit.report.inspect_report import inspect_runs
    from lora_audit.report.markdown import render_audit
    from lora_audit.rules.engine import find_suspects
    from lora_audit.train.tiny_model import make_tiny_model
    from lora_audit.train.toy_dataset import make_toy_dataset
    from lora_audit.votes.export import export
    from lora_audit.votes.judge import cast_machine_votes
    from lora_audit.votes.stats import folder_stats
    from lora_audit.votes.verdicts import verdicts_from_votes
    from lora_audit.weights import analyse_series


def __getattr__(name: str) -> Any:
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'lora_audit' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value  # once imported, a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
