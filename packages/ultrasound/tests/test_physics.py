"""Speckle statistics (Rayleigh, Rician, K), depth attenuation with TGC, gain: against formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from c3_core.api import Batch, generator_from_seed
from c3_ultrasound.functional.speckle import (
    RAYLEIGH_CONTRAST,
    k_alpha_for_contrast,
    k_contrast,
    k_speckle,
    psf_filter,
    psf_kernel_1d,
    rayleigh_speckle,
    rician_coherent_for_contrast,
    rician_contrast,
)
from c3_ultrasound.intensity_domains import ENVELOPE
from c3_ultrasound.operators.attenuation import AttenuationTGC, AttenuationTGCParams
from c3_ultrasound.operators.gain import Gain, GainParams
from c3_ultrasound.operators.speckle import Speckle, SpeckleParams


def _batch(img: torch.Tensor, spacing: tuple[float, float] = (0.5, 0.5)) -> Batch:
    n = img.shape[0]
    return Batch(img, tuple(f"e{i}" for i in range(n)), "us", ENVELOPE, (spacing,) * n)


def _contrast(a: torch.Tensor) -> float:
    a = a.double().flatten()
    return float(a.std() / a.mean())


def test_uncorrelated_speckle_is_rayleigh_with_unit_mean_square() -> None:
    a = rayleigh_speckle((400, 400), torch.Generator().manual_seed(0)).flatten().double()
    assert float((a**2).mean()) == pytest.approx(1.0, rel=0.01)
    assert stats.kstest(a.numpy(), stats.rayleigh(scale=math.sqrt(0.5)).cdf).pvalue > 0.01
    assert _contrast(a) == pytest.approx(RAYLEIGH_CONTRAST, rel=0.02)


@pytest.mark.parametrize(("h", "w", "sa", "sl"), [(16, 12, 0.8, 1.7), (9, 40, 3.0, 0.0), (5, 5, 9.0, 9.0)])
def test_psf_filter_is_the_circular_convolution(h: int, w: int, sa: float, sl: float) -> None:
    """Against the definition: out[i, j] = sum_a sum_l ka[a] kl[l] x[(i + a - pa) mod H, (j + l - pl) mod W],
    in float64, per field; kernels wider than the image are capped (the (5, 5) case)."""
    x = torch.randn(3, h, w, generator=generator_from_seed(h * w), dtype=torch.float64)
    ka = psf_kernel_1d(sa, torch.float64, x.device, (h - 1) // 2)
    kl = psf_kernel_1d(sl, torch.float64, x.device, (w - 1) // 2)
    pa, pl = ka.numel() // 2, kl.numel() // 2
    want = torch.zeros_like(x)
    for a in range(ka.numel()):
        for b in range(kl.numel()):
            want += ka[a] * kl[b] * torch.roll(x, shifts=(pa - a, pl - b), dims=(1, 2))
    torch.testing.assert_close(psf_filter(x, sa, sl), want, rtol=1e-12, atol=1e-12)


def test_psf_correlation_keeps_the_marginal_law() -> None:
    a = rayleigh_speckle((512, 512), torch.Generator().manual_seed(4), 2.0, 3.0).double()
    assert float((a**2).mean()) == pytest.approx(1.0, rel=0.03)
    assert _contrast(a) == pytest.approx(RAYLEIGH_CONTRAST, rel=0.05)
    # neighbouring pixels are correlated along both axes, more laterally (wider PSF)
    c = a - a.mean()
    axial = float((c[1:] * c[:-1]).mean() / c.var())
    lateral = float((c[:, 1:] * c[:, :-1]).mean() / c.var())
    assert 0.5 < axial < lateral < 1.0


def test_k_distribution_intensity_moments() -> None:
    alpha = 3.0
    a = k_speckle((600, 600), alpha, torch.Generator().manual_seed(1)).double()
    i = a**2  # exponential x gamma: <I> = 1, <I^2> = 2 (1 + 1/alpha)
    assert float(i.mean()) == pytest.approx(1.0, rel=0.02)
    assert float((i**2).mean()) == pytest.approx(2 * (1 + 1 / alpha), rel=0.05)
    assert _contrast(a) == pytest.approx(k_contrast(alpha), rel=0.03)
    with pytest.raises(ValueError, match="multiple of 1/2"):
        k_speckle((8, 8), 0.3, torch.Generator())


def test_contrast_formulas_and_their_inverses() -> None:
    assert rician_contrast(0.0) == pytest.approx(RAYLEIGH_CONTRAST, rel=1e-9)
    assert k_contrast(1e6) == pytest.approx(RAYLEIGH_CONTRAST, rel=1e-3)  # many scatterers: Rayleigh
    for c in (0.1, 0.3, 0.5):
        assert rician_contrast(rician_coherent_for_contrast(c)) == pytest.approx(c, rel=1e-6)
    for c in (0.55, 0.66, 0.8):
        assert k_contrast(k_alpha_for_contrast(c)) == pytest.approx(c, rel=1e-6)
    with pytest.raises(ValueError):
        rician_coherent_for_contrast(0.6)


@pytest.mark.parametrize("target", [0.3, RAYLEIGH_CONTRAST, 0.66])
def test_speckle_operator_realises_its_contrast(target: float) -> None:
    op = Speckle(axial_fwhm_mm=(0.0, 0.0), lateral_fwhm_mm=(0.0, 0.0))
    img = torch.ones(1, 1, 384, 384)
    b = _batch(img)
    out = op(b, generator_from_seed(11), target)
    field = out.image[0, 0]
    assert float((field.double() ** 2).mean()) == pytest.approx(1.0, rel=0.03)  # echo power kept
    assert _contrast(field) == pytest.approx(target, rel=0.06)


def test_speckle_identity_and_bad_options() -> None:
    img = torch.rand(2, 1, 16, 16) + 0.5
    p = SpeckleParams("none", 0.0, 0.0, 0.4, 0.8, 1)
    assert torch.equal(Speckle().apply(_batch(img), [p, p]).image, img)
    with pytest.raises(ValueError, match="axial_fwhm_mm"):
        Speckle(axial_fwhm_mm=(1.0, 0.5))
    with pytest.raises(ValueError, match="distribution"):
        SpeckleParams("gaussian", 0.0, 0.0, 0.4, 0.8, 1)


def test_attenuation_tgc_profile_matches_db_formula() -> None:
    img = torch.ones(1, 1, 80, 10)
    p = AttenuationTGCParams(attenuation_db_cm_mhz=0.5, frequency_mhz=5.0, tgc_slope_error_db_cm=2.0)
    assert p.tgc_slope_db_cm == pytest.approx(2 * 0.5 * 5.0 + 2.0)
    out = AttenuationTGC().apply(_batch(img), [p]).image[0, 0, :, 0].double()
    z_cm = (torch.arange(80, dtype=torch.float64) + 0.5) * 0.05  # 0.5 mm rows
    assert torch.allclose(20 * torch.log10(out), 2.0 * z_cm, atol=1e-4)
    # the lateral axis is untouched
    assert torch.allclose(AttenuationTGC().apply(_batch(img), [p]).image[0, 0].std(1), torch.zeros(80), atol=1e-6)


def test_gain_is_exact_in_db() -> None:
    img = torch.rand(2, 1, 8, 8) + 0.1
    out = Gain().apply(_batch(img), [GainParams(6.0), GainParams(-3.0)]).image
    assert torch.allclose(out[0] / img[0], torch.full_like(img[0], 10 ** (6 / 20)))
    assert torch.allclose(out[1] / img[1], torch.full_like(img[1], 10 ** (-3 / 20)))


def test_gain_severity_is_the_magnitude_in_db() -> None:
    img = torch.ones(64, 1, 4, 4)
    out = Gain()(_batch(img), generator_from_seed(0), 6.0).image[:, 0, 0, 0].double()
    db = 20 * torch.log10(out)
    assert torch.allclose(db.abs(), torch.full_like(db, 6.0), atol=1e-4)
    assert bool((db > 0).any() and (db < 0).any())  # the sign is drawn per case
    assert np.isfinite(db.numpy()).all()


def test_demo_weights_are_the_same_bytes_whatever_the_process_rng() -> None:
    """First-use training starts from a seeded initialisation: a fresh PyTorch process starts from
    a random seed, so an unseeded network would train different weights on every run."""
    import torch

    from c3_ultrasound.models import demo_cnn, train_demo_weights

    states = []
    for seed in (1, 2):
        torch.manual_seed(seed)  # a different process-wide RNG state, and a different random init
        bundle = demo_cnn(weights=None)
        states.append(train_demo_weights(bundle))
    assert states[0].keys() == states[1].keys()
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    assert torch.initial_seed() == 2  # the caller's RNG is left as it was (not reseeded by the training)
