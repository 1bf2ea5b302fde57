"""The noise options change the noise as kohya's custom_train_functions do: small cases computed by hand."""

import math
import random
from types import SimpleNamespace

import pytest

torch = pytest.importorskip("torch")

from lora_audit.train import noise as N  # noqa: E402


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


class FixedRandom:
    """random.Random stand-in: random() always returns ``value`` (so kohya's pyramid ratio r = 2 + 2·value)."""

    def __init__(self, value):
        self.value = value

    def random(self):
        return self.value


def test_noise_offset_adds_one_constant_per_sample_and_channel():
    latents = torch.randn(2, 4, 3, 3)
    out = N.apply_noise_offset(latents, torch.zeros(2, 4, 3, 3), 0.1, None, generator=gen(1))
    shift = torch.randn(2, 4, 1, 1, generator=gen(1))
    assert torch.allclose(out, (0.1 * shift).expand(2, 4, 3, 3))


def test_adaptive_noise_scale_grows_the_offset_with_the_channel_mean_magnitude():
    latents = torch.stack([torch.full((2, 2), 2.0), torch.full((2, 2), -4.0)]).unsqueeze(0)  # channel means 2, -4
    out = N.apply_noise_offset(latents, torch.zeros(1, 2, 2, 2), 0.1, 0.01, generator=gen(2))
    shift = torch.randn(1, 2, 1, 1, generator=gen(2))
    # offset = 0.1 + 0.01 · |mean|: 0.12 for channel 0, 0.14 for channel 1
    assert torch.allclose(out[0, 0], torch.full((2, 2), 0.12 * shift[0, 0, 0, 0].item()))
    assert torch.allclose(out[0, 1], torch.full((2, 2), 0.14 * shift[0, 1, 0, 0].item()))
    # a negative adaptive scale can only bring the offset down to 0, never below
    noise = torch.randn(1, 2, 2, 2)
    assert torch.equal(N.apply_noise_offset(latents, noise, 0.1, -1.0, generator=gen(2)), noise)


def test_no_noise_offset_leaves_the_noise_alone():
    noise = torch.randn(1, 4, 2, 2)
    assert N.apply_noise_offset(noise, noise, None, 0.5) is noise


def test_multires_noise_adds_discounted_coarser_levels_and_normalises():
    noise = torch.randn(1, 1, 2, 2, generator=gen(0))
    out = N.pyramid_noise_like(noise, iterations=6, discount=0.3, rng=FixedRandom(0.0), generator=gen(5))
    # r = 2: level 0 is 2×2 at weight 1, level 1 is 1×1 at weight 0.3 (upsampled to a constant), then it stops
    g = gen(5)
    level0 = torch.randn(1, 1, 2, 2, generator=g)
    level1 = torch.randn(1, 1, 1, 1, generator=g)
    expected = noise + level0 + 0.3 * level1.expand(1, 1, 2, 2)
    assert torch.allclose(out, expected / expected.std())
    assert out.std().item() == pytest.approx(1.0)


def test_multires_level_sizes_follow_the_random_ratio():
    noise = torch.zeros(1, 1, 16, 16)
    # r = 3 (random() = 0.5): levels 16, 5, 1 → three draws, then the 1×1 level stops the loop
    three = N.pyramid_noise_like(noise, 3, 0.5, FixedRandom(0.5), gen(9))
    many = N.pyramid_noise_like(noise, 10, 0.5, FixedRandom(0.5), gen(9))
    assert torch.allclose(three, many)
    two = N.pyramid_noise_like(noise, 2, 0.5, FixedRandom(0.5), gen(9))
    assert not torch.allclose(two, three)


def test_snr_of_kohyas_ddpm_schedule_and_min_snr_weights():
    sched = N.make_noise_scheduler()
    snr = N.all_snr(sched)
    ac0 = 1 - 0.00085  # scaled_linear: β_0 = 0.00085
    assert snr[0].item() == pytest.approx(ac0 / (1 - ac0), rel=1e-4)  # float32 schedule
    assert snr[999].item() < snr[500].item() < snr[0].item()
    fake = torch.tensor([0.5, 5.0, 50.0])
    weights = N.apply_snr_weight(torch.ones(3), torch.tensor([0, 1, 2]), fake, gamma=5)
    assert weights.tolist() == pytest.approx([1.0, 1.0, 0.1])  # min(SNR, γ) / SNR
    deb = N.apply_debiased_estimation(torch.ones(3), torch.tensor([0, 1, 2]), torch.tensor([4.0, 100.0, 4e6]))
    assert deb.tolist() == pytest.approx([0.5, 0.1, 1 / math.sqrt(1000)])


def test_zero_terminal_snr_rescales_the_schedule_to_end_at_zero():
    sched = N.make_noise_scheduler(zero_terminal_snr=True)
    plain = N.make_noise_scheduler()
    assert sched.alphas_cumprod[-1].item() == pytest.approx(0.0, abs=1e-12)
    assert sched.alphas_cumprod[0].item() == pytest.approx(plain.alphas_cumprod[0].item(), rel=1e-6)


def test_timesteps_range_and_fixed_timestep():
    t = N.sample_timesteps(0, 1000, 500, gen(0))
    assert t.min() >= 0 and t.max() < 1000 and t.dtype == torch.long
    assert N.sample_timesteps(300, 300, 3).tolist() == [300, 300, 300]


def args(**kw):
    base = dict(noise_offset=None, noise_offset_random_strength=False, adaptive_noise_scale=None,
                multires_noise_iterations=None, multires_noise_discount=0.3, min_timestep=None, max_timestep=None,
                ip_noise_gamma=None, ip_noise_gamma_random_strength=False)
    return SimpleNamespace(**{**base, **kw})


def test_noisy_latents_are_the_ddpm_forward_process_with_the_options_applied():
    sched = N.make_noise_scheduler()
    latents = torch.randn(2, 4, 4, 4, generator=gen(3))
    torch.manual_seed(11)
    noise, noisy, t = N.noise_and_timesteps(args(min_timestep=100, max_timestep=100), sched, latents)
    ac = sched.alphas_cumprod[100]
    assert t.tolist() == [100, 100]
    assert torch.allclose(noisy, ac.sqrt() * latents + (1 - ac).sqrt() * noise, atol=1e-6)
    torch.manual_seed(11)
    plain = torch.randn_like(latents)
    assert torch.equal(noise, plain)  # no option: plain Gaussian noise, first draw of the step
    torch.manual_seed(11)
    random.seed(0)
    noise2, _, _ = N.noise_and_timesteps(args(noise_offset=0.1, multires_noise_iterations=6), sched, latents)
    assert not torch.allclose(noise2, plain) and noise2.std().item() == pytest.approx(1.0)
