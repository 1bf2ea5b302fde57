"""Benchmark: ``lora-audit compare`` against raw diffusers calls and a naive reload-per-model loop, in one run.

N prompts × M LoRAs × S strengths × seeds on a tiny model (64×64), three ways, same prompts, seeds, steps and
batching:

- **tool**: ``run_comparison`` end to end: the base loaded once, every LoRA loaded once as an adapter and switched
  with ``set_adapters``, PNGs with parameters written, metrics computed, grids drawn;
- **raw**: the same pipeline calls with nothing else (base loaded once, adapters loaded once, no files): the limit;
- **naive**: what the seed tools do: for every model (base, each LoRA × strength) ``from_pretrained`` the pipeline
  again, ``load_lora_weights``, generate.

Targets from the issue: tool within 10% of raw, and at least M× faster than naive. On tiny models a pipeline call
is ~20 ms, so per-image file and metric work weighs more than it would on a real model, where a call is seconds.

    python benchmarks/bench_compare.py                     # 2 prompts × 3 LoRAs × 2 strengths × 2 seeds, 4 steps
    python benchmarks/bench_compare.py --loras 5 --steps 20 --size 128
    python benchmarks/bench_compare.py --real-size         # SD1.5's real sizes (random weights), one 4 GB file

``--real-size`` builds the base locally with SD1.5's real architecture and widths (U-Net 320/640/1280/1280,
CLIP-L text encoder, SD VAE; random weights, nothing downloaded; ~1.07 G parameters, a ~4.3 GB fp32 checkpoint) and
M kohya-format rank-8 LoRAs with random weights over all 264 SD1.5 modules (kohya key names and shapes from
``lora_audit.kohya.lora_layout``). By default it loads the base as one original-layout ``.safetensors`` file, as
kohya users do (``--no-single-file`` for the diffusers folder), and runs one round.
"""

from __future__ import annotations

import argparse
import gc
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _make_inputs(tmp: Path, arch: str, m: int) -> tuple[Path, list[Path]]:
    import torch
    from safetensors.torch import load_file, save_file

    sys.path.insert(0, str(ROOT / "tests" / "train"))
    from train_helpers import toy_dataset, write_config

    from lora_audit.train.tiny_model import make_tiny_model

    model = make_tiny_model(tmp / "model", arch, seed=0)  # type: ignore[arg-type]
    cfg = write_config(tmp / "train", model, toy_dataset().dataset_toml)
    subprocess.run([sys.executable, "-m", "lora_audit.train", "--config_file", str(cfg)], check=True,
                   capture_output=True)
    trained = load_file(tmp / "train" / "out" / "toy.safetensors")
    loras = []
    for i in range(m):  # M distinct LoRAs: the trained one with its up weights scaled and jittered
        g = torch.Generator().manual_seed(i)
        sd = {k: v * (5 + 10 * i) + 0.01 * torch.randn(v.shape, generator=g) if k.endswith("lora_up.weight") else v
              for k, v in trained.items()}
        p = tmp / f"lora{i}.safetensors"
        save_file(sd, p, metadata={"ss_base_model_version": "sd_v1" if arch == "sd15" else "sdxl_base_v1-0"})
        loras.append(p)
    return model, loras


# --real-size: the configs of runwayml/stable-diffusion-v1-5 (unet, vae, scheduler) and openai/clip-vit-large-patch14
_REAL_UNET = {
    "sample_size": 64, "in_channels": 4, "out_channels": 4, "layers_per_block": 2,
    "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
    "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
    "block_out_channels": [320, 640, 1280, 1280], "norm_num_groups": 32, "attention_head_dim": 8,
    "cross_attention_dim": 768,
}
_REAL_TEXT = {  # CLIP-L; the vocabulary is CLIP's size, though the local tokenizer uses only its first ids
    "vocab_size": 49408, "hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
    "num_attention_heads": 12, "max_position_embeddings": 77, "hidden_act": "quick_gelu", "projection_dim": 768,
}
_REAL_VAE = {
    "in_channels": 3, "out_channels": 3, "latent_channels": 4, "layers_per_block": 2,
    "down_block_types": ["DownEncoderBlock2D"] * 4, "up_block_types": ["UpDecoderBlock2D"] * 4,
    "block_out_channels": [128, 256, 512, 512], "norm_num_groups": 32, "sample_size": 512,
    "scaling_factor": 0.18215,
}
_BETAS = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "num_train_timesteps": 1000}


def _make_real_inputs(tmp: Path, m: int, rank: int = 8) -> tuple[Path, list[Path]]:
    """An SD1.5-sized pipeline folder (random weights, as lora_audit.train.tiny_model builds its tiny ones) and M
    kohya LoRAs of rank ``rank`` on every module kohya's networks.lora wraps in SD1.5, random weights."""
    import torch
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from safetensors.torch import save_file
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from lora_audit.kohya.lora_layout import modules
    from lora_audit.train.tokenizer import write_tokenizer

    path = tmp / "model"
    path.mkdir(parents=True)
    write_tokenizer(path / "tokenizer")
    tok = CLIPTokenizer.from_pretrained(path / "tokenizer")
    ids = {"bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id, "pad_token_id": tok.pad_token_id}
    torch.manual_seed(1)
    text_encoder = CLIPTextModel(CLIPTextConfig(**_REAL_TEXT, **ids))
    torch.manual_seed(2)
    vae = AutoencoderKL(**_REAL_VAE)
    torch.manual_seed(3)
    unet = UNet2DConditionModel(**_REAL_UNET)
    scheduler = PNDMScheduler(**_BETAS, skip_prk_steps=True, set_alpha_to_one=False, steps_offset=1)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tok, unet=unet, scheduler=scheduler,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(path, safe_serialization=True)
    del pipe, text_encoder, vae, unet
    gc.collect()

    loras = []
    meta = {"ss_base_model_version": "sd_v1", "ss_network_dim": str(rank), "ss_network_alpha": str(rank)}
    for i in range(m):
        g = torch.Generator().manual_seed(100 + i)
        sd = {}
        for mod in modules("sd15"):
            down, up = mod.shapes(rank)  # [r, in] / [out, r], or [r, in, 1, 1] / [out, r, 1, 1] for 1x1 convs
            fan_in = mod.in_features * (mod.kernel * mod.kernel if mod.kernel else 1)
            sd[f"{mod.name}.lora_down.weight"] = (torch.randn(down, generator=g) / fan_in ** 0.5).half()
            sd[f"{mod.name}.lora_up.weight"] = (0.01 * torch.randn(up, generator=g)).half()
            sd[f"{mod.name}.alpha"] = torch.tensor(float(rank)).half()
        p = tmp / f"lora{i}.safetensors"
        save_file(sd, p, metadata=meta)
        loras.append(p)
    return path, loras


def _load(model: Path):
    """The base pipeline: a diffusers folder, or a single-file checkpoint with the folder beside it as its config."""
    import torch
    from diffusers import DiffusionPipeline, StableDiffusionPipeline, StableDiffusionXLPipeline

    if model.is_file():
        config = model.with_suffix("")
        cls = StableDiffusionXLPipeline if "XL" in (config / "model_index.json").read_text() \
            else StableDiffusionPipeline
        return cls.from_single_file(str(model), config=str(config), torch_dtype=torch.float32, local_files_only=True)
    return DiffusionPipeline.from_pretrained(model, torch_dtype=torch.float32)


def _raw(model: Path, loras: list[Path], strengths, prompts, seeds, steps, size, batch) -> int:
    pipe = _load(model)
    pipe.set_progress_bar_config(disable=True)
    for i, p in enumerate(loras):
        pipe.load_lora_weights(str(p), adapter_name=f"l{i}")
    rows = [(None, 0.0)] + [(f"l{i}", s) for i in range(len(loras)) for s in strengths]
    n = 0
    for adapter, s in rows:
        if adapter is None:
            pipe.disable_lora()
        else:
            pipe.enable_lora()
            pipe.set_adapters([adapter], [s])
        n += _generate(pipe, prompts, seeds, steps, size, batch)
    return n


def _generate(pipe, prompts, seeds, steps, size, batch) -> int:
    import torch

    n = 0
    for prompt in prompts:
        for start in range(0, len(seeds), batch):
            chunk = seeds[start:start + batch]
            lat = torch.cat([torch.randn((1, 4, size // 8, size // 8), generator=torch.Generator().manual_seed(sd))
                             for sd in chunk])
            with torch.inference_mode():
                pipe(prompt=[prompt] * len(chunk), num_inference_steps=steps, height=size, width=size, latents=lat,
                     output_type="pil")
            n += len(chunk)
    return n


def _naive(model: Path, loras: list[Path], strengths, prompts, seeds, steps, size, batch) -> tuple[int, float]:
    """Images made, and the seconds of it spent (re)loading the pipeline and LoRA."""
    rows = [(None, 0.0)] + [(p, s) for p in loras for s in strengths]
    n, loading = 0, 0.0
    for path, s in rows:
        t = time.perf_counter()
        pipe = _load(model)
        pipe.set_progress_bar_config(disable=True)
        if path is not None:
            pipe.load_lora_weights(str(path), adapter_name="x")
            pipe.set_adapters(["x"], [s])
        loading += time.perf_counter() - t
        n += _generate(pipe, prompts, seeds, steps, size, batch)
        del pipe  # one pipeline in memory at a time (a real-size one is 4 GB)
        gc.collect()
    return n, loading


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", choices=["sd15", "sdxl"], default="sd15")
    ap.add_argument("--prompts", type=int, default=2)
    ap.add_argument("--loras", type=int, default=3)
    ap.add_argument("--strengths", default="0.5,1")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=None,
                    help="Rounds; the best time of each way is kept (default 3; 1 with --real-size).")
    ap.add_argument("--single-file", action=argparse.BooleanOptionalAction, default=None,
                    help="Base as one original-layout .safetensors checkpoint (what kohya users have): every way "
                         "loads it with from_single_file, and the naive loop does so once per model (default: on "
                         "with --real-size, off otherwise).")
    ap.add_argument("--real-size", action="store_true",
                    help="SD1.5's real architecture and sizes (random weights, built locally) and kohya rank-8 "
                         "LoRAs on all its modules, instead of the tiny model; sd15 only.")
    a = ap.parse_args()
    if a.real_size and a.arch != "sd15":
        ap.error("--real-size builds SD1.5 only")
    if a.repeat is None:
        a.repeat = 1 if a.real_size else 3
    if a.single_file is None:
        a.single_file = a.real_size

    import warnings

    warnings.filterwarnings("ignore")
    from lora_audit.compare.run import run_comparison
    from lora_audit.compare.spec import LoraSpec, Settings
    from lora_audit.train.models import quiet_libraries

    quiet_libraries()
    strengths = tuple(float(s) for s in a.strengths.split(","))
    prompts = [f"pixel art sprite number {i}, punk" for i in range(a.prompts)]
    seeds = list(range(1, a.seeds + 1))
    with tempfile.TemporaryDirectory(prefix="bench-compare-") as d:
        tmp = Path(d)
        t = time.perf_counter()
        model, loras = _make_real_inputs(tmp, a.loras) if a.real_size else _make_inputs(tmp, a.arch, a.loras)
        if a.single_file:
            from lora_audit.train.single_file import to_single_file

            model = to_single_file(model, model.with_suffix(".safetensors"))
            gc.collect()
        if a.real_size:
            size = sum(f.stat().st_size for f in ([model] if model.is_file() else model.rglob("*.safetensors")))
            print(f"real-size SD1.5 base ({'single file' if model.is_file() else 'diffusers folder'}, "
                  f"{size / 1e9:.2f} GB) and {a.loras} kohya LoRAs ({loras[0].stat().st_size / 1e6:.1f} MB each) "
                  f"made in {time.perf_counter() - t:.0f} s", flush=True)
        args = (model, loras, strengths, prompts, seeds, a.steps, a.size, a.batch)
        # warm-up: first-call allocations and lazy imports are in nobody's time (real size: one LoRA, one batch)
        warm = (model, loras[:1], strengths[:1], prompts[:1], seeds[:a.batch], a.steps, a.size, a.batch)
        _raw(*(warm if a.real_size else args))
        gc.collect()
        s = Settings(base=model, prompts=prompts, seeds=seeds, steps=a.steps, cfg=7.0, width=a.size, height=a.size,
                     batch=a.batch, loras=[LoraSpec(p, strengths) for p in loras])
        raw = tool = naive = naive_loading = float("inf")
        for rep in range(a.repeat):  # interleaved, best of each: a busy machine slows whichever runs then
            t = time.perf_counter()
            n_raw = _raw(*args)
            raw = min(raw, time.perf_counter() - t)
            gc.collect()
            t = time.perf_counter()
            cmp = run_comparison(s, tmp / f"out{rep}", model_config=model.with_suffix("") if a.single_file else None)
            tool = min(tool, time.perf_counter() - t)
            n_tool = len(cmp.records)
            gc.collect()
            t = time.perf_counter()
            n_naive, loading = _naive(*args)
            dt = time.perf_counter() - t
            if dt < naive:
                naive, naive_loading = dt, loading
    assert n_raw == n_tool == n_naive
    print(f"{a.arch}, {a.prompts} prompts × {a.loras} LoRAs × {len(strengths)} strengths × {a.seeds} seeds "
          f"(+ base) = {n_tool} images, {a.steps} steps, {a.size}px, batch {a.batch}")
    print(f"{'':8} {'seconds':>8} {'images/s':>9}")
    for name, secs in (("raw", raw), ("tool", tool), ("naive", naive)):
        print(f"{name:8} {secs:8.2f} {n_tool / secs:9.2f}")
    print(f"tool vs raw: {tool / raw - 1:+.1%} time (target ≤ +10%); naive / tool: {naive / tool:.1f}× "
          f"(target ≥ {a.loras}×)")
    rows = 1 + a.loras * len(strengths)
    load, gen = naive_loading / rows, (naive - naive_loading) / rows
    need = rows * (a.loras - 1) / (rows - a.loras) if rows > a.loras else float("inf")
    print(f"naive spent {naive_loading:.2f} s of {naive:.2f} s reloading ({rows} loads of {load:.2f} s; "
          f"{gen:.2f} s generating per model)")
    print(f"with R = {rows} models, naive/tool is at most R(L+G)/(L+RG): ≥ {a.loras}× needs a load L ≥ "
          f"{need:.1f}× the generation G of one model's images; here L/G = {load / gen:.2f}")
    if a.real_size:
        for lo in cmp.loras:
            print(f"{lo.spec.path.name}: {lo.matched} of {lo.modules_in_file} kohya modules matched"
                  f"{'' if lo.matched == lo.modules_in_file else ' — NOT ALL'}")
        moved = [r["distance_to_base"] for r in cmp.records if r.get("lora")]
        if moved:
            print(f"LoRA images vs base, same seed: distance_to_base {min(moved):.4f} .. {max(moved):.4f}")


if __name__ == "__main__":
    main()
