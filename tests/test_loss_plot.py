"""The loss overlay plot of audit reports: checked by content (lines, labels, axes) and by being a real PNG, never
by pixels."""

from __future__ import annotations

import builtins
import math
import struct

import pytest
from click.testing import CliRunner
from test_loss_curves import COSINE, FALLING, _verdict, kohya_events, run_folder

from lora_audit.cli import main
from lora_audit.curves import run_curves
from lora_audit.report.plots import SMOOTHING, draw, ema, loss_overlay, write_png


def _png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_ema_is_tensorboards_debiased_average():
    assert ema([2.0, 2.0, 2.0]) == pytest.approx([2.0, 2.0, 2.0])  # debiased: no ramp from 0
    out = ema([1.0, float("nan"), 3.0], weight=0.5)
    assert out[0] == pytest.approx(1.0) and math.isnan(out[1])
    assert out[2] == pytest.approx((0.5 * 0.5 * 1 + 0.5 * 3) / (1 - 0.25))  # the NaN left the average alone


def test_overlay_of_good_and_bad(tmp_path):
    good, bad = run_folder(tmp_path, "good"), run_folder(tmp_path, "bad")
    kohya_events(good, FALLING, COSINE)
    kohya_events(bad, FALLING[:30] + [float("nan")] * 30, COSINE)
    plot = loss_overlay({"good": run_curves(good), "bad": run_curves(bad), "none": None},
                        {"good": "good", "bad": "bad"})
    assert [(s.run, s.role, s.tag) for s in plot.series] == [("good", "good", "loss/current"),
                                                             ("bad", "bad", "loss/current")]
    assert plot.series[1].nonfinite_step == 31 and plot.yscale == "linear"
    assert [(ln["run"], ln["kind"], ln["points"]) for ln in plot.lines()] == [
        ("good", "raw", 60), ("good", "smoothed", 60), ("bad", "raw", 60), ("bad", "smoothed", 60)]
    pytest.importorskip("matplotlib")
    fig = draw(plot)
    ax = fig.axes[0]
    assert ax.get_xlabel() == "step" and ax.get_ylabel() == "loss"
    labels = [ln.get_label() for ln in ax.get_lines() if not ln.get_label().startswith("_")]
    assert labels == [ln["label"] for ln in plot.lines()]
    assert labels[0] == "good (loss/current) raw"  # the run is called what its role is: said once
    assert loss_overlay({"run2": run_curves(bad)}, {"run2": "bad"}).series[0].label == "run2 (bad, loss/current)"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == labels
    png = write_png(plot, tmp_path / "sub" / "loss.png")
    w, h = _png_size(png)
    assert (w, h) == (900, 500) and png.stat().st_size > 10_000


def test_tenfold_loss_scale_uses_a_log_axis(tmp_path):
    a, b = run_folder(tmp_path, "a"), run_folder(tmp_path, "b")
    kohya_events(a, FALLING, COSINE)
    kohya_events(b, [20 * v for v in FALLING], COSINE)
    assert loss_overlay({"a": run_curves(a), "b": run_curves(b)}, {}).yscale == "log"


def _pair(tmp_path):
    good, bad = run_folder(tmp_path, "good"), run_folder(tmp_path, "bad", scheduler="constant")
    _verdict(good, "good")
    _verdict(bad, "bad")
    kohya_events(good, FALLING, COSINE)
    kohya_events(bad, [3 * v for v in FALLING], COSINE)
    return good, bad


def test_audit_report_links_the_plot(tmp_path):
    pytest.importorskip("matplotlib")
    good, bad = _pair(tmp_path)
    out = tmp_path / "reports" / "audit.md"
    r = CliRunner().invoke(main, ["audit", str(good), str(bad), "--out", str(out)])
    assert r.exit_code == 0, r.output
    md = out.read_text()
    png = out.parent / "audit.loss.png"
    assert "![Loss of every run on one step axis" in md and "](<audit.loss.png>)" in md  # relative to the report
    assert SMOOTHING in md
    assert _png_size(png) == (900, 500)
    assert "loss plot: " in r.output


def test_audit_without_matplotlib_says_so_in_one_line(tmp_path, monkeypatch):
    good, bad = _pair(tmp_path)
    real = builtins.__import__

    def no_mpl(name, *a, **k):
        if name.startswith("matplotlib"):
            raise ImportError(name)
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_mpl)
    out = tmp_path / "audit.md"
    r = CliRunner().invoke(main, ["audit", str(good), str(bad), "--out", str(out)])
    assert r.exit_code == 0, r.output
    md = out.read_text()
    note = [ln for ln in md.splitlines() if ln.startswith("Loss plot:")]
    assert note == ["Loss plot: matplotlib is not installed: pip install 'lora-audit[plots]' to draw it."]
    assert not (tmp_path / "audit.loss.png").exists()


def test_audit_without_curves_draws_nothing(tmp_path):
    good, bad = run_folder(tmp_path, "good"), run_folder(tmp_path, "bad", scheduler="constant")
    _verdict(good, "good")
    _verdict(bad, "bad")
    out = tmp_path / "audit.md"
    assert CliRunner().invoke(main, ["audit", str(good), str(bad), "--out", str(out)]).exit_code == 0
    assert "Loss plot" not in out.read_text() and not (tmp_path / "audit.loss.png").exists()


def _bar_log(losses: list[float]) -> str:
    n = len(losses)
    return "".join(f"steps: {100 * i // n:3d}%|##########| {i}/{n} [00:01<00:03,  1.10s/it, avr_loss={v:.4f}]\r"
                   for i, v in enumerate(losses, start=1)) + "\n"


def test_study_overlay_of_the_variants(tmp_path):
    from conftest import BAD, GOOD, write_run

    from lora_audit.report.plots import study_loss_plot

    good, bad = write_run(tmp_path, "good", GOOD, "good"), write_run(tmp_path, "bad", BAD, "bad")
    study = tmp_path / "study"
    r = CliRunner().invoke(main, ["ablate", "--good", str(good), "--bad", str(bad), "--out", str(study)])
    assert r.exit_code == 0, r.output
    import tomllib

    ids = tomllib.loads((study / "study.toml").read_text())["variants"]
    assert "control" in ids and len(ids) >= 3
    out = tmp_path / "compare"
    assert study_loss_plot(study, out) is None  # nothing launched yet: no plot, no file
    # control: a TensorBoard event file (ablate --log); one variant: two attempts' console logs (the later counts)
    kohya_events(study / "control", FALLING, COSINE)
    (study / ids[1] / "logs").mkdir(parents=True)
    (study / ids[1] / "logs" / "attempt-1.log").write_text(_bar_log([9.0] * 5))
    (study / ids[1] / "logs" / "attempt-2.log").write_text(_bar_log([0.3 - 0.002 * i for i in range(50)]))
    got = study_loss_plot(study, out)
    if got is not None and "note" in got:
        pytest.skip(got["note"])
    assert got["png"] == "loss.png" and got["variants"] == ["control", ids[1]] and got["smoothing"] == SMOOTHING
    assert _png_size(out / "loss.png") == (900, 500)
    plot = loss_overlay({"control": run_curves(study / "control")}, {"control": "control"})
    assert plot.series[0].label == "control (loss/current)"
