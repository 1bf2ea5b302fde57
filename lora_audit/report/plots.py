"""The loss overlay: good vs bad runs (or a study's variants) on one step axis, raw and smoothed, as a PNG.

``loss_overlay`` builds the plot as data (``LossPlot``: every line's label, role and points), ``draw`` turns it into
a matplotlib Figure, ``write_png`` saves it. matplotlib is imported only in ``draw`` (the ``plots`` extra), so
``inspect``/``diff``/``audit`` stay light; without it ``write_png`` raises ``PlotUnavailable`` and the report says so
in one line.

Smoothing: an exponential moving average, TensorBoard's (its scalar dashboard's smoothing slider: a debiased EMA,
``last = last * w + (1 - w) * v`` divided by ``1 - w ** n``), with weight ``EMA_WEIGHT``. Not kohya's
``avr_loss`` / ``loss/average``, which is ``train_util.LossRecorder.moving_average``: the mean of the last epoch's
per-step losses, a window as long as an epoch, so it lags by half an epoch and restarts nothing at epoch ends.
"""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from lora_audit.evidence.tensorboard import Curves

EMA_WEIGHT = 0.9
SMOOTHING = f"TensorBoard's debiased exponential moving average, weight {EMA_WEIGHT}"
# per-step loss first: the raw line should be the noisy one; kohya's moving average when that is all there is
PLOT_TAGS = ("loss/current", "loss/average", "avr_loss")
MISSING = "matplotlib is not installed: pip install 'lora-audit[plots]' to draw it"
_COLORS = {"good": ["#1f77b4", "#17becf", "#2ca02c", "#0b3c8c"],
           "bad": ["#d62728", "#ff7f0e", "#e377c2", "#8c1d18"],
           "other": ["#7f7f7f", "#9467bd", "#8c564b", "#bcbd22"],
           "control": ["#000000"],  # a study's control (the good run retrained): black, the variants in colour
           "variant": ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
                       "#bcbd22", "#7f7f7f"]}


class PlotUnavailable(Exception):
    """matplotlib is not installed."""


@dataclass
class Series:
    run: str
    role: str  # good / bad / other (control / variant in a study)
    tag: str
    steps: list[int]
    raw: list[float]
    smoothed: list[float]
    nonfinite_step: int | None = None  # first NaN/inf: drawn as a marker, the line has a gap there

    @property
    def label(self) -> str:
        if self.role in ("other", "variant", self.run):
            return f"{self.run} ({self.tag})"
        return f"{self.run} ({self.role}, {self.tag})"


@dataclass
class LossPlot:
    title: str
    series: list[Series] = field(default_factory=list)
    xlabel: str = "step"
    ylabel: str = "loss"
    yscale: str = "linear"  # log when the runs' losses differ tenfold or more (each stays readable)
    smoothing: str = SMOOTHING

    def lines(self) -> list[dict]:
        """Every line drawn, in order: what a test or a caller checks instead of pixels."""
        out = []
        for s in self.series:
            out.append({"label": f"{s.label} raw", "run": s.run, "role": s.role, "kind": "raw", "points": len(s.raw)})
            out.append({"label": f"{s.label} smoothed", "run": s.run, "role": s.role, "kind": "smoothed",
                        "points": len(s.smoothed)})
        return out


def ema(values: list[float], weight: float = EMA_WEIGHT) -> list[float]:
    """TensorBoard's smoothing: a debiased EMA. A NaN/inf point stays NaN and leaves the average as it was."""
    out, last, n = [], 0.0, 0
    for v in values:
        if not math.isfinite(v):
            out.append(math.nan)
            continue
        n += 1
        last = last * weight + (1 - weight) * v
        out.append(last / (1 - weight ** n))
    return out


def loss_overlay(curves: dict[str, Curves | None], roles: dict[str, str], title: str = "Loss") -> LossPlot | None:
    """One series per run that has a loss curve (``PLOT_TAGS``, per-step loss first); None when none has."""
    plot = LossPlot(title=title)
    for run, c in curves.items():
        if c is None:
            continue
        tag = next((t for t in PLOT_TAGS if t in c.curves and c.curves[t].values), None)
        if tag is None:
            continue
        cv = c.curves[tag]
        bad = next((s for s, v in zip(cv.steps, cv.values) if not math.isfinite(v)), None)
        plot.series.append(Series(run, roles.get(run, "other"), tag, list(cv.steps), list(cv.values),
                                  ema(cv.values), bad))
    if not plot.series:
        return None
    medians = [sorted(f)[len(f) // 2] for s in plot.series if (f := [v for v in s.raw if math.isfinite(v)])]
    if medians and min(medians) > 0 and max(medians) / min(medians) >= 10:
        plot.yscale = "log"
    return plot


def draw(plot: LossPlot):
    """The plot as a matplotlib Figure (no pyplot, no global backend change). Raises PlotUnavailable."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise PlotUnavailable(MISSING) from None
    fig = Figure(figsize=(9, 5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    used = {k: 0 for k in _COLORS}
    for s in plot.series:
        palette = _COLORS.get(s.role, _COLORS["other"])
        color = palette[used.get(s.role, 0) % len(palette)]
        used[s.role if s.role in used else "other"] += 1
        raw = [v if math.isfinite(v) else math.nan for v in s.raw]
        ax.plot(s.steps, raw, color=color, alpha=0.25, linewidth=0.8, label=f"{s.label} raw")
        ax.plot(s.steps, s.smoothed, color=color, linewidth=1.8, label=f"{s.label} smoothed")
        if s.nonfinite_step is not None:
            ax.axvline(s.nonfinite_step, color=color, linestyle=":", linewidth=1)
    ax.set_xlabel(plot.xlabel)
    ax.set_ylabel(plot.ylabel)
    ax.set_yscale(plot.yscale)
    ax.set_title(plot.title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    fig.text(0.01, 0.01, f"thin: raw; thick: {plot.smoothing}; dotted: first NaN/inf", fontsize="x-small")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    return fig


def write_png(plot: LossPlot, path: str | os.PathLike) -> Path:
    """Draw and save ``plot`` as a PNG at ``path``. Raises PlotUnavailable without matplotlib."""
    fig = draw(plot)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path


def _evidence_paths(runs) -> set[Path]:
    out = set()
    for r in runs:
        for e in r.evidence:
            with contextlib.suppress(OSError, RuntimeError):  # a symlink loop: not a file we could overwrite
                out.add(Path(e.path).resolve())
    return out


def audit_loss_plot(a, report: str | os.PathLike) -> Path | None:
    """Write ``<report stem>.loss.png`` next to the audit report (good runs blue, bad runs red) and set
    ``a.loss_plot`` (the link, relative to the report) or ``a.loss_plot_note`` (why there is none). ``a`` is an
    ``audit.Audit``. Returns the PNG's path, or None."""
    from lora_audit.curves import run_curves

    report = Path(report)
    roles = {n: "good" for n in a.good} | {n: "bad" for n in a.bad if n not in a.good}
    curves = {r.name: run_curves(r.path) for r in a.runs if (a.dynamics.get(r.name) or {}).get("curves")}
    plot = loss_overlay(curves, roles, title="Loss: " + ", ".join(curves))
    if plot is None:
        return None
    png = report.with_name(report.stem + ".loss.png")
    if png.resolve() in _evidence_paths(a.runs) or (png.exists() and not png.is_file()):
        a.loss_plot_note = f"not drawn: {png} is evidence of a run or not a file"
        return None
    try:
        write_png(plot, png)
    except PlotUnavailable as e:
        a.loss_plot_note = str(e)
        return None
    a.loss_plot, a.loss_plot_smoothing = png.name, plot.smoothing
    return png


def variant_curves(folder: str | os.PathLike) -> Curves | None:
    """A launched variant's curves: its TensorBoard events (``ablate --log``: logging_dir is the variant's logs/),
    else the printed ``avr_loss`` of its latest attempt log that has one (``logs/attempt-N.log``, launch's)."""
    from lora_audit.curves import run_curves

    return run_curves(folder, latest_attempt_first=True)


def study_loss_plot(study: str | os.PathLike, out: str | os.PathLike, name: str = "loss.png") -> dict | None:
    """``compare --study``: the variants' loss curves on one axis (the control black), written to ``out/name``.
    Returns ``{"png": name, "smoothing": ..., "variants": [...]}``, ``{"note": why not}`` without matplotlib, or
    None when no variant has a loss curve yet."""
    from lora_audit.study_model import load_study

    study = Path(study)
    ids = list(load_study(study).variants)
    if (study / "bisect.json").is_file():  # a bisection's variants are written round by round
        from lora_audit.ablate.study import load

        ids += [t.id for r in load(study).state.rounds for t in r.tests if t.id not in ids]
    curves = {vid: variant_curves(study / vid) for vid in ids if (study / vid).is_dir()}
    roles = {vid: "control" if vid == "control" else "variant" for vid in curves}
    plot = loss_overlay(curves, roles, title=f"Loss of the variants of {study.name}")
    if plot is None:
        return None
    try:
        write_png(plot, Path(out) / name)
    except PlotUnavailable as e:
        return {"note": str(e)}
    return {"png": name, "smoothing": plot.smoothing, "variants": [s.run for s in plot.series]}


def add_study_loss_plot(study: str | os.PathLike, out: str | os.PathLike, data: dict) -> dict | None:
    """``compare --study``: :func:`study_loss_plot` into the comparison folder ``out``, and its ``report.md``
    rewritten to link it (``data``: the comparison.json written there, which stays the comparison)."""
    loss_plot = study_loss_plot(study, out)
    if loss_plot is not None:
        from lora_audit.compare.export import write_report

        write_report({**data, "loss_plot": loss_plot}, Path(out) / "report.md")
    return loss_plot
