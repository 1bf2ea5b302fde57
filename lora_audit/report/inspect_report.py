"""``lora-audit inspect`` from Python: each run's parameters with provenance, its loss curves and what they say,
and (``weights=True``) the weight analysis of its LoRA files; as JSON or as the text the command prints.

    from lora_audit.report.inspect_report import inspect_runs, render_inspections
    print(render_inspections(inspect_runs(["runs/examples/bespoke-punks"])))
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lora_audit.model import Run


@dataclass
class Inspection:
    run: Run
    curves: Any = None  # curves.Curves: TensorBoard events / avr_loss logs of the run's folder, when there are any
    curve_facts: dict[str, Any] | None = None  # what the curves say (NaN step, rising, plateau, lr shape)
    weights: list[dict[str, Any]] | None = None  # per LoRA file, with weights=True
    trajectories: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # per series of epoch files

    def to_json(self) -> dict[str, Any]:
        """What ``inspect --json`` prints for this run."""
        out = self.run.to_json()
        if self.weights is not None:
            out |= {"weights": self.weights, "weights_trajectories": self.trajectories}
        if self.curves is not None:
            out |= {"curves": self.curves.to_json(), "curve_facts": self.curve_facts}
        return out


def inspect_runs(paths: list[str | Path], weights: bool = False, modules: bool = False) -> list[Inspection]:
    """One :class:`Inspection` per run found in ``paths`` (a folder of runs shows each run). ``weights``: also analyse
    each run's LoRA files (numpy, the ml extra); ``modules``: with every module's spectrum (what ``--json`` shows)."""
    from lora_audit.curves import curve_facts, run_curves
    from lora_audit.evidence import load_runs

    out = []
    for r in load_runs([str(p) for p in paths], unique=False):  # the one discovery rule
        item = Inspection(r)
        if weights:
            from lora_audit.weights import analyse_series, lora_series

            reports, item.trajectories = analyse_series(
                lora_series([e.path for e in r.evidence if e.kind == "safetensors"]))
            item.weights = [rep.to_json(modules=modules) for rep in reports.values()]
        item.curves = run_curves(r.path)
        if item.curves is not None:
            p = r.params.get("lr_scheduler")
            item.curve_facts = curve_facts(item.curves, p.value if p is not None else None)
        out.append(item)
    return out


def render_inspections(items: list[Inspection], show_all: bool = False) -> str:
    """The text ``inspect`` prints: each run's parameters (``show_all``: also those at kohya's defaults), then what
    its curves say and its weights."""
    from lora_audit.report.console import render_run
    from lora_audit.report.weights_text import render_curve_facts, render_trajectory, render_weights

    texts = []
    for it in items:
        text = render_run(it.run, show_all)
        if it.curve_facts is not None:
            text += "\n" + render_curve_facts(it.curve_facts)
        if it.weights is not None:
            text += "\n\nweights:\n" + ("\n\n".join([render_weights(w, blocks=False) for w in it.weights]
                                                    + [render_trajectory(stem, rows)
                                                       for stem, rows in it.trajectories.items()])
                                         or "no LoRA file in this run's evidence")
        texts.append(text)
    return "\n\n".join(texts)
