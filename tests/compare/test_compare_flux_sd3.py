"""lora-audit compare on tiny FLUX.1 and SD3 models: kohya-layout LoRAs (lora_flux / lora_sd3 keys) and diffusers
ones are applied, strength 0 and an all-zero LoRA give the base's pixels, a real LoRA moves them; the modules
matched are reported (T5's are not loadable: counted as unmatched); flow-matching settings are recorded."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from click.testing import CliRunner  # noqa: E402
from PIL import Image  # noqa: E402
from tiny_dit_loras import flux_names, sd3_names, write_diffusers_flux, write_kohya  # noqa: E402

from lora_audit.cli import main  # noqa: E402
from lora_audit.train.tiny_model import make_tiny_model  # noqa: E402

FAST = ["--steps", "2", "--size", "32x32", "--seeds", "1", "--prompt", "a knight, pixel art", "--quiet"]


def _pixels(p: Path) -> bytes:
    with Image.open(p) as im:
        return im.convert("RGB").tobytes()


def _compare(*args: str):
    return CliRunner().invoke(main, ["compare", *args])


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("dit")
    return {arch: make_tiny_model(root / arch, arch) for arch in ("flux", "sd3")}


@pytest.fixture(scope="module")
def flux_run(models, tmp_path_factory):
    d = tmp_path_factory.mktemp("flux_loras")
    kohya = write_kohya(d / "kohya.safetensors", flux_names(text_encoder=True, t5=True),
                        metadata={"ss_network_module": "networks.lora_flux"})
    zero = write_kohya(d / "zero.safetensors", flux_names(), zero_up=True)
    peft = write_diffusers_flux(d / "peft.safetensors")
    out = tmp_path_factory.mktemp("flux_out")
    r = _compare("--base", str(models["flux"]), "--lora", f"{kohya}@0,1", "--lora", str(zero), "--lora", str(peft),
                 "--out", str(out), *FAST)  # no --cfg: FLUX.1-dev's own 3.5
    assert r.exit_code == 0, r.output
    return out, r.output


@pytest.mark.slow
def test_flux_kohya_and_diffusers_loras_change_pixels_zero_and_strength_0_do_not(flux_run):
    out, output = flux_run
    base = _pixels(out / "images/p01/base/seed1.png")
    assert _pixels(out / "images/p01/kohya_0/seed1.png") == base  # strength 0
    assert _pixels(out / "images/p01/zero_1/seed1.png") == base  # kohya's zero-initialised up weights
    assert _pixels(out / "images/p01/kohya_1/seed1.png") != base
    assert _pixels(out / "images/p01/peft_1/seed1.png") != base
    # 10 double-block + 3 single-block + 12 CLIP-L modules load; T5's 7 (lora_te3) cannot
    assert "kohya: 25 of 32 modules matched, 7 unmatched" in output
    assert "zero: 13 of 13 modules matched, 0 unmatched" in output
    assert "peft: 14 of 14 modules matched, 0 unmatched" in output


@pytest.mark.slow
def test_flux_settings_are_recorded(flux_run):
    out, _ = flux_run
    data = json.loads((out / "comparison.json").read_text())
    bm = data["metadata"]["base_model"]
    assert bm["arch"] == "flux" and bm["pipeline"] == "FluxPipeline"
    s = bm["sampling"]
    assert s["guidance"].startswith("distilled guidance 3.5") and data["metadata"]["settings"]["cfg"] == 3.5
    assert s["max_sequence_length"] == 64  # the pipeline's 512, capped by the tiny T5 tokenizer's 64
    assert s["scheduler_shift"]["use_dynamic_shifting"] is True and s["scheduler_shift"]["max_shift"] == 1.15
    report = (out / "report.md").read_text()
    assert "Flow matching: distilled guidance 3.5" in report and "max_sequence_length 64" in report
    with Image.open(out / "images/p01/kohya_1/seed1.png") as im:
        params = im.text["parameters"]
    assert "<lora:kohya:1>" in params and "Sampler: FlowMatchEulerDiscreteScheduler" in params
    assert "CFG scale: 3.5" in params


@pytest.mark.slow
def test_sd3_kohya_lora_with_both_clip_encoders(models, tmp_path):
    kohya = write_kohya(tmp_path / "k.safetensors", sd3_names(text_encoder=True))
    zero = write_kohya(tmp_path / "z.safetensors", sd3_names(), zero_up=True)
    out = tmp_path / "out"
    r = _compare("--base", str(models["sd3"]), "--lora", f"{kohya}@0,1", "--lora", str(zero), "--out", str(out),
                 "--json", *FAST)
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    base = _pixels(out / "images/p01/base/seed1.png")
    assert _pixels(out / "images/p01/k_0/seed1.png") == base
    assert _pixels(out / "images/p01/z_1/seed1.png") == base
    assert _pixels(out / "images/p01/k_1/seed1.png") != base
    models_ = {m["model_name"]: m for m in data["statistics"]["models"]}
    assert models_["k @1"]["distance_to_base"]["mean"] > 0 and models_["z @1"]["distance_to_base"]["mean"] == 0
    s = data["metadata"]["base_model"]["sampling"]
    assert s["guidance"] == "classifier-free guidance 7" and s["max_sequence_length"] == 64
    assert s["scheduler_shift"] == {"shift": 3.0, "use_dynamic_shifting": False}
    # every module (2 joint blocks with attn2 and the pre-only context block, CLIP-L and CLIP-G) was matched
    assert not any("did not match" in f for f in data["findings"]), data["findings"]


def test_flux_lora_of_another_size_is_refused_in_one_line(models, tmp_path):
    from dit_loras import kohya_flux

    big = kohya_flux(tmp_path / "flux_dev_r1.safetensors", rank=1, dtype="F16")  # FLUX.1-dev widths
    r = _compare("--base", str(models["flux"]), "--lora", str(big), "--out", str(tmp_path / "o"), *FAST)
    assert r.exit_code == 2
    line = r.output.strip()
    assert "\n" not in line and "does not fit this flux model" in line and "another size" in line


@pytest.mark.parametrize("args, message", [
    (["--scheduler", "euler"], "flow-matching scheduler"),
    (["--size", "40x40"], "multiples of 16"),
    (["--negative", "blurry"], "without a negative prompt"),
])
def test_flux_refuses_sd_only_settings(models, tmp_path, args, message):
    r = _compare("--base", str(models["flux"]), "--out", str(tmp_path / "o"), *FAST, *args)
    assert r.exit_code == 2 and message in r.output and len(r.output.strip().splitlines()) == 1


@pytest.mark.slow
def test_flux_schnell_ignores_cfg_and_says_so(tmp_path):
    model = make_tiny_model(tmp_path / "schnell", "flux-schnell")
    imgs = []
    for cfg in ("1", "6"):
        out = tmp_path / f"o{cfg}"
        r = _compare("--base", str(model), "--cfg", cfg, "--out", str(out), *FAST)
        assert r.exit_code == 0, r.output
        imgs.append(_pixels(out / "images/p01/base/seed1.png"))
    assert imgs[0] == imgs[1]
    s = json.loads((out / "comparison.json").read_text())["metadata"]["base_model"]["sampling"]
    assert s["guidance"].startswith("none: no guidance embedding") and s["scheduler_shift"]["shift"] == 1.0


def test_kohya_lora_with_no_module_of_the_model_is_refused(models, tmp_path):
    t5_only = write_kohya(tmp_path / "t5.safetensors", [n for n in flux_names(t5=True) if n[0].startswith("lora_te3")])
    r = _compare("--base", str(models["flux"]), "--lora", str(t5_only), "--out", str(tmp_path / "o"), *FAST)
    assert r.exit_code == 2 and "none of its 7 modules is one of the model's" in r.output


def test_single_file_flux_checkpoint_is_refused_in_one_line(tmp_path):
    from dit_loras import write_lora

    ckpt = write_lora(tmp_path / "flux1-dev.safetensors", {"double_blocks.0.img_attn.qkv.weight": ("BF16", [9, 3]),
                                                            "single_blocks.0.linear1.weight": ("BF16", [4, 3])})
    r = _compare("--base", str(ckpt), "--out", str(tmp_path / "o"), *FAST)
    assert r.exit_code == 2 and "single-file FLUX.1 checkpoint is not supported yet" in r.output
