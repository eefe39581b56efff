"""Reference checks of the fast kernels (issue 18): each against the plain formula it replaces."""

from __future__ import annotations

import math

import pytest
import torch

from c3_core.batch import Batch
from c3_cxr.functional.filters import _gaussian_mtf, _padded_spectrum_filter, gaussian_blur_batched
from c3_cxr.operators.beam_hardening import BeamHardening, BeamHardeningParams
from c3_cxr.operators.tone import FLOOR, MU_SCALE, Tone, ToneParams


def _batch(mu: torch.Tensor) -> Batch:
    b = mu.shape[0]
    return Batch(mu, tuple(f"e{i}" for i in range(b)), "cxr", "log_attenuation", ((1.0, 1.0),) * b)


def test_wide_gaussian_blur_on_its_band_equals_the_full_spectrum_product() -> None:
    g = torch.Generator().manual_seed(0)
    image = torch.rand(2, 1, 96, 80, generator=g)
    sigma = torch.tensor([9.0, 14.0])  # compact (>= 1.5 px) and wide: the MTF is 0 beyond a small band
    out = gaussian_blur_batched(image, sigma)
    pad = min(80 // 2, math.ceil(6.0 * 14.0) + 2)  # as gaussian_blur_batched pads
    s = sigma.view(-1, 1, 1, 1)
    full = _padded_spectrum_filter(image, _gaussian_mtf(-2 * math.pi**2 * s**2), pad, fast=True)  # no band
    def exp_mtf(fy: torch.Tensor, fx: torch.Tensor) -> torch.Tensor:  # the plain MTF, subnormal values and all
        return torch.exp(-2 * math.pi**2 * s**2 * (fy**2 + fx**2))

    plain = _padded_spectrum_filter(image, exp_mtf, pad, fast=True)
    assert (out - full).abs().max() <= 1e-7
    assert (out - plain).abs().max() <= 1e-7  # the MTF's subnormal values never reach a float32 result
    # the blur keeps the mean and smooths
    assert torch.allclose(out.mean(dim=(2, 3)), image.mean(dim=(2, 3)), atol=2e-2)
    assert float(out.std()) < float(image.std())


def test_tone_is_its_power_law() -> None:
    mu = torch.cat([torch.zeros(1), torch.logspace(-30, math.log10(6.0), 299)]).view(1, 1, 1, 300).repeat(2, 1, 1, 1)
    params = [ToneParams(1.32, 0.9), ToneParams(0.76, 1.1)]
    out = Tone().apply(_batch(mu), params).image.double()
    for i, p in enumerate(params):
        x = mu[i].double().clamp_min(MU_SCALE * FLOOR)
        expected = p.gain * MU_SCALE * (x / MU_SCALE) ** p.gamma
        # float32 exp of γ ln μ + k: relative error about ulp(|γ ln μ + k|), 8e-6 near mu = 1e-21
        assert torch.allclose(out[i], expected, rtol=2e-5, atol=0.0), i
        usual = mu[i] >= 1e-3
        assert torch.allclose(out[i][usual], expected[usual], rtol=4e-6, atol=0.0), i
        assert bool((out[i].flatten()[1:] >= out[i].flatten()[:-1]).all())  # monotone
    assert float(out[:, ..., 0].max()) < 3e-21  # mu = 0 stays (almost) 0
    alone = Tone().apply(_batch(mu), [params[0], params[0]]).image  # one map for the batch: the scalar path
    assert torch.equal(alone[0], out[0].float())  # a case's bytes do not depend on the other cases' maps
    assert not bool(((out > 0) & (out < torch.finfo(torch.float32).tiny)).any())  # no subnormal values


@pytest.mark.parametrize("top", [4.0, 30.0])  # line integrals; and past mu_max = 1 / (2 beta)
def test_beam_hardening_is_its_polynomial_for_one_and_for_mixed_betas(top: float) -> None:
    mu = torch.linspace(-0.5, top, 400).view(1, 1, 1, 400).repeat(2, 1, 1, 1)
    same = {}
    for betas in ((0.03, 0.03), (0.03, 0.01)):
        params = [BeamHardeningParams(b) for b in betas]
        out = BeamHardening().apply(_batch(mu), params).image.double()
        for i, beta in enumerate(betas):
            m = mu[i].double().clamp_min(0)
            expected = m - beta * m.clamp_max(1.0 / (2.0 * beta)) ** 2
            assert torch.allclose(out[i], expected, rtol=1e-6, atol=1e-6), (betas, i)
            assert bool((out[i].flatten()[1:] >= out[i].flatten()[:-1]).all())  # monotone
        same[betas] = out[0]
    assert torch.equal(same[(0.03, 0.03)], same[(0.03, 0.01)])  # a case's bytes do not depend on the others' beta
    zero = BeamHardening().apply(_batch(mu), [BeamHardeningParams(0.0)] * 2).image
    assert torch.equal(zero, mu.clamp_min(0))  # beta = 0: the identity on mu >= 0
