"""make-tiny-model --arch flux / flux-schnell / sd3: diffusers folders with safetensors only and local CLIP and T5
tokenizers, loaded offline by FluxPipeline / StableDiffusion3Pipeline and sampled; the builtin trainer refuses them in
one line."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from click.testing import CliRunner  # noqa: E402

from lora_audit.cli import main  # noqa: E402
from lora_audit.loaders.pipelines import detect_arch  # noqa: E402


def _make(tmp_path, arch: str, name: str = "m", seed: int = 0):
    r = CliRunner().invoke(main, ["make-tiny-model", str(tmp_path / name), "--arch", arch, "--seed", str(seed),
                                  "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["arch"] == arch
    return tmp_path / name


@pytest.mark.slow
@pytest.mark.parametrize("arch, cls, t5_sub", [("flux", "FluxPipeline", "tokenizer_2"),
                                               ("sd3", "StableDiffusion3Pipeline", "tokenizer_3")])
def test_tiny_dit_folder_loads_offline_and_generates(tmp_path, arch, cls, t5_sub):
    from diffusers import DiffusionPipeline
    from transformers import T5TokenizerFast

    path = _make(tmp_path, arch)
    files = [p for p in path.rglob("*") if p.is_file()]
    assert not [p for p in files if p.suffix in (".bin", ".pt", ".ckpt", ".pth")]
    weights = sorted(p.parent.name for p in files if p.suffix == ".safetensors")
    assert weights == sorted(["transformer", "vae", "text_encoder", "text_encoder_2"]
                             + (["text_encoder_3"] if arch == "sd3" else []))
    assert sum(p.stat().st_size for p in files) < 5 * 2**20
    assert detect_arch(path) == arch
    tok = T5TokenizerFast.from_pretrained(path / t5_sub, local_files_only=True)
    ids = tok("a knight, pixel art").input_ids
    assert ids[-1] == tok.eos_token_id == 1 and tok.unk_token_id not in ids  # T5's </s>; every word tokenized
    pipe = DiffusionPipeline.from_pretrained(path, local_files_only=True, use_safetensors=True)
    assert type(pipe).__name__ == cls
    assert pipe.vae.config.latent_channels == 16
    pipe.set_progress_bar_config(disable=True)
    image = pipe("a knight, pixel art", num_inference_steps=2, height=32, width=32, max_sequence_length=32,
                 generator=torch.Generator().manual_seed(0)).images[0]
    assert image.size == (32, 32)


def test_flux_dev_and_schnell_differ_as_the_real_ones(tmp_path):
    dev, schnell = _make(tmp_path, "flux", "dev"), _make(tmp_path, "flux-schnell", "schnell")
    cfg = {p.name: json.loads((p / "transformer" / "config.json").read_text()) for p in (dev, schnell)}
    assert cfg["dev"]["guidance_embeds"] is True and cfg["schnell"]["guidance_embeds"] is False
    assert cfg["dev"]["in_channels"] == 64  # 16 latent channels packed 2x2
    sched = {p.name: json.loads((p / "scheduler" / "scheduler_config.json").read_text()) for p in (dev, schnell)}
    assert sched["dev"]["use_dynamic_shifting"] is True and sched["schnell"]["use_dynamic_shifting"] is False
    assert detect_arch(schnell) == "flux"


def test_same_seed_same_bytes(tmp_path):
    a, b, c = _make(tmp_path, "sd3", "a", 1), _make(tmp_path, "sd3", "b", 1), _make(tmp_path, "sd3", "c", 2)
    weights = "transformer/diffusion_pytorch_model.safetensors"
    assert (a / weights).read_bytes() == (b / weights).read_bytes() != (c / weights).read_bytes()


def test_builtin_trainer_and_single_file_refuse_dit_models_in_one_line(tmp_path):
    model = _make(tmp_path, "flux")
    r = CliRunner().invoke(main, ["train", "--pretrained_model_name_or_path", str(model), "--output_dir",
                                  str(tmp_path / "out"), "--train_data_dir", str(tmp_path)])
    assert r.exit_code == 2, r.output
    assert "SD1.x and SDXL LoRAs only; this is a flux model" in r.output and len(r.output.strip().splitlines()) == 1
    r = CliRunner().invoke(main, ["make-tiny-model", str(tmp_path / "sd3"), "--arch", "sd3", "--single-file",
                                  str(tmp_path / "sd3.safetensors")])
    assert r.exit_code == 2 and "SD1.x and SDXL models only, not sd3" in r.output
