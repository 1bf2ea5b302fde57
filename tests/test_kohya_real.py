"""Real sd-scripts in the loop (gated: ``@pytest.mark.kohya``; DEVELOPERS.md says how to set it up on a CPU machine).

Two runs in the common layout (a ``train.sh`` running ``accelerate launch train_network.py --config_file
config.toml``, the config naming a dataset TOML) -> ``ablate`` -> ``launch`` on the given sd-scripts checkout
and Python -> every variant trained by real kohya -> ``inspect`` reads dim/alpha/lr back from each LoRA; plus a
variant kohya refuses, whose failure reason is kohya's. Needs, besides LORA_AUDIT_SD_SCRIPTS and
LORA_AUDIT_KOHYA_PYTHON, LORA_AUDIT_KOHYA_MODEL: an SD1.5 single-file checkpoint (real size; random weights do)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from lora_audit.cli import main

pytestmark = [pytest.mark.kohya, pytest.mark.slow]

TRAIN_SH = """#!/usr/bin/env bash
# my LoRA
cd "$(dirname "$0")"
accelerate launch --num_cpu_threads_per_process 1 "$SD_SCRIPTS/train_network.py" \\
    --config_file config.toml
"""
CONFIG = """# {name}
pretrained_model_name_or_path = "{model}"
dataset_config = "{dataset}"
output_dir = "out"
output_name = "{name}"
network_module = "networks.lora"
network_dim = {dim}
network_alpha = {alpha}
learning_rate = {lr}
optimizer_type = "AdamW"
max_train_steps = 2
mixed_precision = "no"
save_precision = "float"
tokenizer_cache_dir = "{tok}"
max_data_loader_n_workers = 1
seed = 1
"""
DATASET = """[general]
enable_bucket = false
caption_extension = ".txt"

[[datasets]]
resolution = 64
batch_size = 1

  [[datasets.subsets]]
  image_dir = "{images}"
  num_repeats = 1
"""


def _images(d: Path, size: int) -> Path:
    from PIL import Image

    d.mkdir(parents=True)
    for i in range(2):
        Image.new("RGB", (size, size), (40 * i, 90, 160)).save(d / f"{i}.png")
        (d / f"{i}.txt").write_text("a toy picture")
    return d


@pytest.fixture(scope="module")
def model() -> Path:
    value = os.environ.get("LORA_AUDIT_KOHYA_MODEL")
    if not value or not Path(value).is_file():
        pytest.skip("needs LORA_AUDIT_KOHYA_MODEL: an SD1.5 single-file checkpoint (see DEVELOPERS.md)")
    return Path(value)


def test_ablate_launch_inspect_on_real_kohya(tmp_path, model):
    pytest.importorskip("PIL")
    from lora_audit.train.tokenizer import write_tokenizer

    tok = tmp_path / "tok"
    write_tokenizer(tok / "openai_clip-vit-large-patch14")  # kohya's tokenizer_cache_dir layout (strategy_base)
    images = _images(tmp_path / "img", 64)
    runs = {}
    for name, verdict, dim, alpha, lr in (("good", "good", 4, 4, "1e-4"), ("bad", "bad", 8, 2, "2e-4")):
        d = tmp_path / name
        d.mkdir()
        (d / "dataset.toml").write_text(DATASET.format(images=images))
        (d / "config.toml").write_text(CONFIG.format(name=name, model=model, dataset=d / "dataset.toml", dim=dim,
                                                     alpha=alpha, lr=lr, tok=tok))
        (d / "train.sh").write_text(TRAIN_SH)
        (d / "run.toml").write_text(f'verdict = "{verdict}"\n')
        runs[name] = d
    study = tmp_path / "study"
    r = CliRunner().invoke(main, ["ablate", "--good", str(runs["good"]), "--bad", str(runs["bad"]),
                                  "--out", str(study)])
    assert r.exit_code == 0, r.output
    variants = tomllib.loads((study / "study.toml").read_text())["variants"]
    assert "control" in variants and len(variants) >= 3, variants

    # one variant kohya refuses: its images are larger than the resolution, and bucketing is off
    refused = next(v for v in variants if v != "control")
    big = _images(tmp_path / "big", 96)
    for f in (study / refused).glob("*.toml"):
        text = f.read_text()
        if str(images) in text:
            f.write_text(text.replace(str(images), str(big)))
    assert str(big) in "".join(f.read_text() for f in (study / refused).glob("*.toml")), "no dataset TOML copied"

    started = time.monotonic()
    res = subprocess.run([sys.executable, "-m", "lora_audit.launch", "launch", str(study), "--json"],
                         capture_output=True, text=True, timeout=3600)
    took = time.monotonic() - started
    rows = {row["id"]: row for row in json.loads(res.stdout)["variants"]}
    summary = {v: (row["state"], row["failure"]) for v, row in rows.items()}
    print(f"\nreal kohya: {len(rows)} variants in {took:.0f} s: {summary}")
    assert res.returncode == 1, res.stdout + res.stderr  # the refused one failed
    assert rows[refused]["state"] == "failed"
    assert rows[refused]["failure"].startswith("AssertionError: image too large, but cropping and bucketing are "
                                               f"disabled: {big}/"), rows[refused]
    header = Path(rows[refused]["log"]).read_text().splitlines()[1]
    assert header.startswith(f"# lora-audit launch: sd-scripts: {Path(os.environ['LORA_AUDIT_SD_SCRIPTS']).resolve()}")
    for vid, row in rows.items():
        if vid == refused:
            continue
        assert row["state"] == "done" and row["last_step"] == 2, (vid, row)
        lora = [p for p in row["outputs"] if p.endswith(".safetensors")]
        assert len(lora) == 1, row["outputs"]
        spec = json.loads((study / vid / "variant.json").read_text())
        expect = {"network_dim": 4, "network_alpha": 4, "learning_rate": 1e-4}
        for c in spec["changes"]:
            if c["param"] in expect:
                expect[c["param"]] = c["to"]
        seen = CliRunner().invoke(main, ["inspect", lora[0], "--json"])
        params = json.loads(seen.output)["runs"][0]["params"]
        got = {k: params[k]["value"] for k in expect}
        assert {k: float(v) for k, v in got.items()} == {k: float(v) for k, v in expect.items()}, (vid, got)

    # compare --study: same-seed images of the base and every trained variant; audit --study links the comparison
    pytest.importorskip("diffusers")
    started = time.monotonic()
    cmp = tmp_path / "cmp"
    r = CliRunner().invoke(main, ["compare", "--base", str(model), "--model-config", str(_sd15_configs(tmp_path)),
                                  "--study", str(study), "--prompt", "a toy picture", "--seeds", "1", "--steps", "2",
                                  "--size", "64x64", "--out", str(cmp)])
    assert r.exit_code == 0, r.output
    shown = {m["name"] for c in json.loads((cmp / "comparison.json").read_text())["comparisons"] for m in c["models"]}
    print(f"compare --study: {time.monotonic() - started:.0f} s, models {sorted(shown)}")
    assert shown == {"base"} | {f"{v} @1" for v in rows if v != refused}, shown
    r = CliRunner().invoke(main, ["audit", "--study", str(study), str(runs["good"]), str(runs["bad"]),
                                  "--out", str(tmp_path / "audit.md")])
    assert r.exit_code == 0, r.output
    assert "comparison" in r.output and str(cmp.name) in (tmp_path / "audit.md").read_text()


def _sd15_configs(tmp_path: Path) -> Path:
    """A diffusers folder of SD1.5's configs without weights (what compare --model-config reads for a single file):
    the widths of benchmarks/bench_compare.py --real-size, the models built on the meta device."""
    import torch
    from diffusers import AutoencoderKL, PNDMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTokenizer

    sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
    from bench_compare import _BETAS, _REAL_TEXT, _REAL_UNET, _REAL_VAE

    from lora_audit.train.tokenizer import write_tokenizer

    d = tmp_path / "sd15-configs"
    write_tokenizer(d / "tokenizer")
    tok = CLIPTokenizer.from_pretrained(d / "tokenizer")
    ids = {"bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id, "pad_token_id": tok.pad_token_id}
    CLIPTextConfig(**_REAL_TEXT, **ids, architectures=["CLIPTextModel"]).save_pretrained(d / "text_encoder")
    for cls, kw, sub in ((UNet2DConditionModel, _REAL_UNET, "unet"), (AutoencoderKL, _REAL_VAE, "vae")):
        with torch.device("meta"):
            cls(**kw).save_config(d / sub)
    PNDMScheduler(**_BETAS, skip_prk_steps=True, set_alpha_to_one=False, steps_offset=1).save_config(d / "scheduler")
    (d / "model_index.json").write_text(json.dumps({
        "_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.32.1", "requires_safety_checker": False,
        "feature_extractor": [None, None], "safety_checker": [None, None],
        "scheduler": ["diffusers", "PNDMScheduler"], "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"], "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"]}))
    return d
