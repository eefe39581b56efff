"""Radiographic physics: Poisson statistics, dose scaling, geometry, scatter, tone."""

from __future__ import annotations

import math

import pytest
import torch

from c3_core.batch import Batch
from c3_cxr.domains import from_counts, to_counts
from c3_cxr.operators.beam_hardening import BeamHardening, BeamHardeningParams
from c3_cxr.operators.dose import Dose, DoseParams
from c3_cxr.operators.geometry import Geometry, GeometryParams
from c3_cxr.operators.scatter import Scatter, ScatterParams
from c3_cxr.operators.tone import Tone, ToneParams


def _batch(mu: torch.Tensor, mask: torch.Tensor | None = None) -> Batch:
    b = mu.shape[0]
    return Batch(mu, tuple(f"e{i}" for i in range(b)), "cxr", "log_attenuation", ((1.0, 1.0),) * b, mask=mask)


def test_count_domain_variance_equals_mean() -> None:
    mu = torch.full((1, 1, 256, 256), 1.5)
    p = DoseParams(dose_fraction=0.5, i0_reference=2000.0, electronic_sigma=0.0, seed=7)
    out = Dose().apply(_batch(mu), [p]).image
    counts = to_counts(out, 1000.0)
    expected = 1000.0 * torch.exp(torch.tensor(-1.5))
    assert float(counts.mean()) == pytest.approx(float(expected), rel=0.01)
    assert float(counts.var()) == pytest.approx(float(expected), rel=0.05)


def test_halving_dose_doubles_relative_noise_variance() -> None:
    mu = torch.full((2, 1, 256, 256), 2.0)
    params = [DoseParams(1.0, 4000.0, 0.0, 1), DoseParams(0.5, 4000.0, 0.0, 2)]
    out = Dose().apply(_batch(mu), params).image
    var_full, var_half = (float(out[i].var()) for i in range(2))
    # var(mu') ~ 1 / counts for Poisson: halving the dose doubles it
    assert var_half / var_full == pytest.approx(2.0, rel=0.08)


def test_zero_counts_give_finite_values() -> None:
    mu = torch.full((1, 1, 32, 32), 30.0)  # opaque: essentially no photons
    out = Dose().apply(_batch(mu), [DoseParams(0.05, 20000.0, 3.0, 0)]).image  # params direct: below the admissible severity range
    assert torch.isfinite(out).all()
    assert torch.isfinite(from_counts(torch.zeros(3), 100.0)).all()


def test_geometry_moves_mask_with_image() -> None:
    mu = torch.zeros(1, 1, 64, 64)
    mu[..., 20:30, 30:44] = 2.0
    mask = (mu > 0).float()
    p = GeometryParams(angle_deg=4.0, shift_x=0.1, shift_y=-0.05, magnification=1.05)
    out = Geometry().apply(_batch(mu, mask), [p])
    moved_img = out.image > 1.0
    moved_mask = out.mask > 0.5
    inter = (moved_img & moved_mask).sum().item()
    union = (moved_img | moved_mask).sum().item()
    assert inter / union > 0.85
    assert not torch.equal(out.mask, mask)
    # translation by +0.1 half-width moves content right by ~3.2 px
    cx = lambda m: (m.float() * torch.arange(64.0)).sum() / m.float().sum()  # noqa: E731
    assert float(cx(moved_mask[0, 0]) - cx(mask[0, 0] > 0.5)) == pytest.approx(3.2, abs=1.0)


def test_scatter_lowers_contrast_and_attenuation() -> None:
    mu = torch.full((1, 1, 64, 64), 1.0)
    mu[..., 20:44, 20:44] = 3.0
    out = Scatter().apply(_batch(mu), [ScatterParams(0.5, 20.0)]).image
    assert float(out.max() - out.min()) < float(mu.max() - mu.min())
    assert bool((out <= mu + 1e-6).all())  # added photons can only lower the line integral
    assert float(out.max()) > 1.5  # no floor clips the dense region (versions <= 2 capped it at ln 2)


@pytest.mark.parametrize("grad", [False, True])
def test_scatter_matches_its_closed_forms_over_the_whole_attenuation_range(grad: bool) -> None:
    # SPR 0 adds nothing: every line integral of the demo window [0, 4] and beyond comes back
    mu = torch.linspace(0.0, 6.0, 64 * 64).view(1, 1, 64, 64).requires_grad_(grad)
    out = Scatter().apply(_batch(mu), [ScatterParams(0.0, 30.0)]).image
    torch.testing.assert_close(out, mu.detach(), rtol=0, atol=1e-5)
    # a uniform object: blur(P) = P, so S = SPR · P and μ' = μ − ln(1 + SPR) exactly
    flat = torch.full((2, 1, 48, 48), 3.0).requires_grad_(grad)
    out = Scatter().apply(_batch(flat), [ScatterParams(0.5, 25.0), ScatterParams(0.8, 40.0)]).image
    expect = torch.tensor([3.0 - math.log(1.5), 3.0 - math.log(1.8)]).view(2, 1, 1, 1).expand_as(out)
    torch.testing.assert_close(out, expect, rtol=0, atol=1e-5)


def test_tone_and_beam_hardening_are_monotone() -> None:
    mu = torch.linspace(0, 4, 200).view(1, 1, 1, 200)
    for op, p in ((Tone(), ToneParams(1.3, 0.9)), (BeamHardening(), BeamHardeningParams(0.06))):
        out = op.apply(_batch(mu), [p]).image.flatten()
        assert bool((out[1:] >= out[:-1]).all()), op.id


def test_resolution_identity_mean_and_nyquist() -> None:
    from c3_cxr.operators.resolution import Resolution, ResolutionParams

    g = torch.Generator().manual_seed(0)
    mu = 1.0 + torch.rand(1, 1, 64, 64, generator=g)
    checker = 1.0 + 0.5 * ((torch.arange(64).view(-1, 1) + torch.arange(64).view(1, -1)) % 2).float().view(1, 1, 64, 64)
    batch = _batch(torch.cat([mu, mu, checker, torch.full_like(mu, 2.0)]))
    out = Resolution().apply(batch, [ResolutionParams(r) for r in (1.0, 2.0, 2.0, 1.7)]).image
    torch.testing.assert_close(out[0], mu[0], rtol=0, atol=1e-4)  # native pitch: unchanged
    # a 2× pitch averages pairs of pixels: the finest detail (the Nyquist checkerboard) is gone
    assert float(out[2].std()) < 0.02 * float(checker.std())
    assert float(out[1].diff(dim=-1).pow(2).mean()) < 0.5 * float(mu.diff(dim=-1).pow(2).mean())
    torch.testing.assert_close(out[3], torch.full_like(mu[0], 2.0), rtol=0, atol=1e-4)  # flat field stays flat
    assert float(out[1].mean()) == pytest.approx(float(mu.mean()), abs=0.01)  # line integrals kept on average


def test_sharpness_signs_and_mask_untouched() -> None:
    from c3_cxr.operators.sharpness import Sharpness, SharpnessParams

    g = torch.Generator().manual_seed(1)
    mu = (1.0 + torch.rand(1, 1, 48, 48, generator=g)).repeat(3, 1, 1, 1)
    mask = torch.zeros(3, 1, 48, 48)
    batch = _batch(mu, mask)
    out = Sharpness().apply(batch, [SharpnessParams(c, 2.0) for c in (0.0, -1.0, 1.0)])
    assert out.mask is batch.mask
    hf = [float(x.diff(dim=-1).pow(2).mean()) for x in out.image]
    assert torch.equal(out.image[0], mu[0]) and hf[1] < hf[0] < hf[2]
    assert float(out.image[1].mean()) == pytest.approx(float(mu.mean()), rel=1e-3)  # blur keeps the mean


@pytest.mark.parametrize("counts", [19.5, 20.5])
def test_dose_counts_follow_the_poisson_pmf_either_side_of_the_exact_switch_over(counts: float) -> None:
    import numpy as np
    from scipy import stats

    i0 = 1000.0
    mu = torch.full((1, 1, 256, 256), float(np.log(i0 / counts)))
    out = Dose().apply(_batch(mu), [DoseParams(1.0, i0, 0.0, 11)]).image
    n = torch.round(to_counts(out, i0)).flatten().numpy().astype(np.int64)  # the detected photons (0 read back as 0.5 -> 0)
    k = np.arange(6, 38)
    observed = np.array([(n < 6).sum()] + [(n == v).sum() for v in k] + [(n > 37).sum()])
    pmf = np.concatenate([[stats.poisson.cdf(5, counts)], stats.poisson.pmf(k, counts), [stats.poisson.sf(37, counts)]])
    assert stats.chisquare(observed, pmf * n.size).pvalue > 1e-3
    assert abs(n.mean() - counts) < 4 * np.sqrt(counts / n.size) and abs(n.var() / counts - 1) < 0.03
