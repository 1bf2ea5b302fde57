"""compare on a pipeline diffusers has but compare does not drive yet (Lumina, HunyuanImage, ...): one line naming
the family and what is supported, before any weight is loaded."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")
pytest.importorskip("diffusers")

from click.testing import CliRunner  # noqa: E402
from safetensors.numpy import save_file  # noqa: E402

from lora_audit.cli import main  # noqa: E402


@pytest.mark.parametrize("cls, family", [("Lumina2Pipeline", "Lumina"), ("HunyuanImagePipeline", "HunyuanImage"),
                                         ("SomeCustomPipeline", "SomeCustomPipeline")])
def test_unsupported_pipeline_is_one_line_before_loading(tmp_path, monkeypatch, cls, family):
    import numpy as np

    base = tmp_path / "base"
    (base / "transformer").mkdir(parents=True)
    (base / "model_index.json").write_text(json.dumps({"_class_name": cls, "transformer": ["diffusers", "X"]}))
    (base / "transformer" / "config.json").write_text("{}")
    lora = tmp_path / "l.safetensors"
    save_file({"lora_unet_x.lora_down.weight": np.zeros((2, 2), np.float32)}, str(lora))

    import diffusers

    def never(*a, **k):
        raise AssertionError("the pipeline was loaded")

    monkeypatch.setattr(diffusers.DiffusionPipeline, "from_pretrained", never)
    r = CliRunner().invoke(main, ["compare", "--base", str(base), "--lora", str(lora), "--prompt", "x",
                                  "--steps", "1", "--size", "32x32", "--seeds", "1", "--quiet",
                                  "--out", str(tmp_path / "out")])
    assert r.exit_code == 2, (r.output, r.exception)
    line, = r.stderr.strip().splitlines()
    assert line.startswith("error: ") and "Traceback" not in r.output
    assert f"does not support {family}" in line and "SD1.x, SDXL, FLUX.1 and SD3 only" in line
    assert not (tmp_path / "out" / "comparison.json").exists()
