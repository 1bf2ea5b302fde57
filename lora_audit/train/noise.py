"""Noise, timesteps and loss weights with kohya's semantics.

Each function names the kohya function it follows (``library/custom_train_functions.py`` and
``library/train_util.py`` at the pinned sd-scripts commit). Random draws use torch's global generator and Python's
global ``random`` as kohya does (both seeded by ``--seed``), unless a generator / ``random.Random`` is passed.
"""

from __future__ import annotations

import random
from types import SimpleNamespace
from typing import Any

import torch
import torch.nn.functional as F

# train_network.get_noise_scheduler: kohya trains every SD1.x/SDXL model against this DDPM schedule
DDPM_CONFIG = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
               "num_train_timesteps": 1000, "clip_sample": False}


def make_noise_scheduler(zero_terminal_snr: bool = False):
    from diffusers import DDPMScheduler

    sched = DDPMScheduler(**DDPM_CONFIG)
    if zero_terminal_snr:
        fix_noise_scheduler_betas_for_zero_terminal_snr(sched)
    return sched


def all_snr(noise_scheduler) -> torch.Tensor:
    """``prepare_scheduler_for_custom_training``: SNR(t) = (sqrt(ᾱ_t) / sqrt(1 - ᾱ_t))² for every timestep."""
    ac = noise_scheduler.alphas_cumprod
    return (torch.sqrt(ac) / torch.sqrt(1.0 - ac)) ** 2


def fix_noise_scheduler_betas_for_zero_terminal_snr(noise_scheduler) -> None:
    """``fix_noise_scheduler_betas_for_zero_terminal_snr`` (arXiv:2305.08891): rescale so ᾱ_T = 0."""
    alphas_bar_sqrt = (1 - noise_scheduler.betas).cumprod(0).sqrt()
    first, last = alphas_bar_sqrt[0].clone(), alphas_bar_sqrt[-1].clone()
    alphas_bar_sqrt = (alphas_bar_sqrt - last) * first / (first - last)
    alphas_bar = alphas_bar_sqrt**2
    alphas = torch.cat([alphas_bar[0:1], alphas_bar[1:] / alphas_bar[:-1]])
    betas = 1 - alphas
    noise_scheduler.betas = betas
    noise_scheduler.alphas = 1.0 - betas
    noise_scheduler.alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)


def apply_noise_offset(latents: torch.Tensor, noise: torch.Tensor, noise_offset: float | torch.Tensor,
                       adaptive_noise_scale: float | None, generator: torch.Generator | None = None) -> torch.Tensor:
    """``apply_noise_offset``: add one random constant per (sample, channel), of std ``noise_offset``.

    With ``adaptive_noise_scale`` the offset grows with the channel's mean latent magnitude:
    offset = max(0, noise_offset + adaptive_noise_scale · |mean(latent channel)|).
    """
    if noise_offset is None:
        return noise
    if adaptive_noise_scale is not None:
        latent_mean = torch.abs(latents.mean(dim=(2, 3), keepdim=True))
        noise_offset = torch.clamp(noise_offset + adaptive_noise_scale * latent_mean, 0.0, None)
    shift = torch.randn((latents.shape[0], latents.shape[1], 1, 1), generator=generator)
    return noise + noise_offset * shift.to(latents.device)


def pyramid_noise_like(noise: torch.Tensor, iterations: int = 6, discount: float = 0.4,
                       rng: random.Random | Any = random, generator: torch.Generator | None = None) -> torch.Tensor:
    """``pyramid_noise_like`` (multires noise): add ever coarser noise, scaled by discount^i, upsampled bilinearly.

    Level i has size ⌊H / r^i⌋ × ⌊W / r^i⌋ with r drawn uniformly in [2, 4) per level; it stops after the level that
    reaches 1 pixel. The sum is divided by its standard deviation (over the whole batch).
    """
    b, c, h, w = noise.shape
    noise = noise.clone()
    for i in range(iterations):
        r = rng.random() * 2 + 2
        hn, wn = max(1, int(h / (r**i))), max(1, int(w / (r**i)))
        level = torch.randn(b, c, hn, wn, generator=generator).to(noise.device)
        noise += F.interpolate(level, size=(h, w), mode="bilinear", align_corners=False) * discount**i
        if hn == 1 or wn == 1:
            break
    return noise / noise.std()


def sample_timesteps(min_timestep: int, max_timestep: int, batch: int,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """``train_util.get_timesteps``: uniform integers in [min, max), or all equal to max when min ≥ max."""
    if min_timestep < max_timestep:
        return torch.randint(min_timestep, max_timestep, (batch,), generator=generator).long()
    return torch.full((batch,), max_timestep).long()


def noise_and_timesteps(args: SimpleNamespace, noise_scheduler, latents: torch.Tensor
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``train_util.get_noise_noisy_latents_and_timesteps``: (noise, noisy latents, timesteps).

    Random draws in kohya's order: the noise, the offset strength, the offset, the multires levels, the timesteps.
    """
    noise = torch.randn_like(latents)
    if args.noise_offset:
        offset = args.noise_offset
        if args.noise_offset_random_strength:
            offset = torch.rand(1).item() * args.noise_offset
        noise = apply_noise_offset(latents, noise, offset, args.adaptive_noise_scale)
    if args.multires_noise_iterations:
        noise = pyramid_noise_like(noise, args.multires_noise_iterations, args.multires_noise_discount)
    lo = 0 if args.min_timestep is None else args.min_timestep
    hi = noise_scheduler.config.num_train_timesteps if args.max_timestep is None else args.max_timestep
    timesteps = sample_timesteps(lo, hi, latents.shape[0])
    if args.ip_noise_gamma:
        strength = args.ip_noise_gamma
        if args.ip_noise_gamma_random_strength:
            strength = torch.rand(1).item() * args.ip_noise_gamma
        noisy = noise_scheduler.add_noise(latents, noise + strength * torch.randn_like(latents), timesteps)
    else:
        noisy = noise_scheduler.add_noise(latents, noise, timesteps)
    return noise, noisy, timesteps


def apply_snr_weight(loss: torch.Tensor, timesteps: torch.Tensor, snr: torch.Tensor, gamma: float,
                     v_prediction: bool = False) -> torch.Tensor:
    """``apply_snr_weight`` (Min-SNR-γ): weight min(SNR, γ) / SNR per sample (over SNR + 1 for v-prediction)."""
    s = snr[timesteps.cpu()].to(loss.device)
    weight = torch.minimum(s, torch.full_like(s, gamma)) / (s + 1 if v_prediction else s)
    return loss * weight.float()


def apply_debiased_estimation(loss: torch.Tensor, timesteps: torch.Tensor, snr: torch.Tensor,
                              v_prediction: bool = False) -> torch.Tensor:
    """``apply_debiased_estimation``: weight 1/√SNR (SNR capped at 1000)."""
    s = torch.minimum(snr[timesteps.cpu()], torch.full((len(timesteps),), 1000.0)).to(loss.device)
    return loss * (1 / (s + 1) if v_prediction else 1 / torch.sqrt(s))
