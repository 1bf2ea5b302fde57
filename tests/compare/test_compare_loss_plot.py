"""compare --study: the report shows the variants' loss curves on one step axis (loss.png next to report.md)."""

from __future__ import annotations

import json
import shutil
import struct

import pytest

pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("matplotlib")

from click.testing import CliRunner  # noqa: E402
from test_compare import FAST, _train  # noqa: E402
from test_loss_curves import COSINE, FALLING, kohya_events  # noqa: E402
from train_helpers import tiny_model  # noqa: E402

from lora_audit.commands.compare import compare  # noqa: E402


@pytest.mark.slow
def test_study_report_links_the_loss_overlay(tmp_path):
    lora = _train(tmp_path / "train", "sd15")
    study = tmp_path / "study"
    study.mkdir()
    (study / "study.toml").write_text('good = "a"\nbad = "b"\nvariants = ["control", "v1"]\n')
    for vid, losses in (("control", FALLING), ("v1", [2 * v for v in FALLING[:30]] + [float("inf")] * 30)):
        (study / vid / "output").mkdir(parents=True)
        shutil.copy(lora, study / vid / "output" / f"toy-{vid}.safetensors")
        (study / vid / "config.toml").write_text(f'pretrained_model_name_or_path = "{tiny_model("sd15")}"\n'
                                                 f'output_dir = "output"\noutput_name = "toy-{vid}"\n')
        kohya_events(study / vid, losses, COSINE)
    r = CliRunner().invoke(compare, ["--study", str(study), "--prompt", "a knight", *FAST])
    assert r.exit_code == 0, r.output
    out = study / "compare"
    assert f"loss plot: {out / 'loss.png'}" in r.output
    png = (out / "loss.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", png[16:24]) == (900, 500)
    md = (out / "report.md").read_text()
    assert "## Loss" in md and "![loss of every variant on one step axis](loss.png)" in md
    assert "(control, v1): the control in black" in md
    assert "loss_plot" not in json.loads((out / "comparison.json").read_text())
