"""Benchmark: one epoch of the builtin trainer on the toy dataset and a tiny model, against the 60 s budget.

Also times 64×64 generation with the tiny pipelines (the model's claim: well under a second per image).

The training config is the example study's good run (runs/examples/bespoke-punks/sd15_perfect: dim 32, alpha 16,
batch 4, AdamW8bit, cosine_with_restarts, Min-SNR 5, noise offset + multires noise + adaptive noise scale,
shuffle_caption with keep_tokens 2, max_token_length 225, cache_latents, ...) with its model and data swapped for a
tiny model and the toy dataset (8 sprites × 10 repeats = 20 steps of batch 4), as ``lora-audit ablate --backend
builtin`` writes it. Times are wall-clock for the whole command (model loading included), measured in one run.

    python benchmarks/bench_train.py                      # sd15 and sdxl at 64 (the toy resolution) and 256
    python benchmarks/bench_train.py --resolution 512 --arch sd15

On the 2-core CPU of the development machine: about 5 s per epoch at 64 and 128, 18 s at 256, and 150 s at 512
(7.5 s per step: self-attention over 64×64 latents dominates, since SD1.x's layout has attention at full latent
resolution); 64×64 generation about 0.5 s at 20 steps, 1.1 s at diffusers' default 50.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

BUDGET_S = 60.0

EXAMPLE_FLAGS = [
    "--output_name", "bench", "--save_model_as", "safetensors", "--network_module", "networks.lora",
    "--network_dim", "32", "--network_alpha", "16", "--train_batch_size", "4", "--gradient_accumulation_steps", "1",
    "--learning_rate", "0.0001", "--unet_lr", "0.0001", "--text_encoder_lr", "0.00005", "--optimizer_type",
    "AdamW8bit", "--lr_scheduler", "cosine_with_restarts", "--lr_scheduler_num_cycles", "3", "--min_snr_gamma", "5",
    "--mixed_precision", "fp16", "--save_precision", "fp16", "--gradient_checkpointing", "--cache_latents",
    "--cache_latents_to_disk", "--xformers", "--noise_offset", "0.1", "--multires_noise_iterations", "6",
    "--multires_noise_discount", "0.3", "--adaptive_noise_scale", "0.00357", "--caption_extension", ".txt",
    "--shuffle_caption", "--keep_tokens", "2", "--max_token_length", "225", "--bucket_reso_steps", "64",
    "--bucket_no_upscale", "--max_data_loader_n_workers", "1", "--max_train_epochs", "1", "--save_every_n_epochs",
    "1", "--seed", "42",
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", nargs="+", default=["sd15", "sdxl"], choices=["sd15", "sdxl"])
    ap.add_argument("--resolution", nargs="+", type=int, default=[64, 256])
    ns = ap.parse_args()

    from lora_audit.train.tiny_model import make_tiny_model
    from lora_audit.train.toy_dataset import make_toy_dataset
    from lora_audit.train.trainer import train

    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        root = Path(tmp)
        data = make_toy_dataset(root / "toy")
        rows, gen = [], []
        for arch in ns.arch:
            model = make_tiny_model(root / f"model-{arch}", arch)  # type: ignore[arg-type]
            for reso in ns.resolution:
                out = root / f"out-{arch}-{reso}"
                argv = ["--pretrained_model_name_or_path", str(model), "--train_data_dir", str(data.train_data_dir),
                        "--output_dir", str(out), "--resolution", f"{reso},{reso}", *EXAMPLE_FLAGS]
                start = time.perf_counter()
                result = train(argv, root, echo=lambda s: None, progress=False)
                seconds = time.perf_counter() - start
                rows.append((arch, reso, result.steps, seconds, seconds / max(result.steps, 1), seconds / BUDGET_S))
            gen.append((arch, *_generation_seconds(model)))
    print("builtin trainer, 1 epoch of the toy dataset (8 images x 10 repeats, batch 4), example-study config")
    print(f"{'arch':6} {'reso':>5} {'steps':>6} {'seconds':>8} {'s/step':>7} {'of 60 s budget':>15}")
    for arch, reso, steps, seconds, per_step, ratio in rows:
        print(f"{arch:6} {reso:>5} {steps:>6} {seconds:>8.1f} {per_step:>7.2f} {ratio:>14.0%}")
    print("\ntiny pipeline, one 64x64 image (classifier-free guidance), seconds")
    print(f"{'arch':6} {'20 steps':>9} {'50 steps':>9}")
    for arch, s20, s50 in gen:
        print(f"{arch:6} {s20:>9.2f} {s50:>9.2f}")


def _generation_seconds(model: Path) -> tuple[float, float]:
    import torch
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(model, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    out = []
    for steps in (1, 20, 50):  # the 1-step call warms up
        start = time.perf_counter()
        pipe("pixel art, 24x24, punk", height=64, width=64, num_inference_steps=steps,
             generator=torch.Generator().manual_seed(0))
        out.append(time.perf_counter() - start)
    return out[1], out[2]


if __name__ == "__main__":
    main()
