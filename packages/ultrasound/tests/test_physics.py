"""Speckle statistics, attenuation/TGC profile, gain."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from c3_core.batch import Batch
from c3_ultrasound.functional import k_distributed_speckle, rayleigh_speckle
from c3_ultrasound.operators import AttenuationParams, AttenuationTGC, Gain, GainParams


def _batch(img: torch.Tensor) -> Batch:
    return Batch(img, tuple(f"e{i}" for i in range(img.shape[0])), "us", "envelope", ((0.5, 0.5),) * img.shape[0])


def test_uncorrelated_speckle_is_rayleigh() -> None:
    a = rayleigh_speckle((400, 400), torch.Generator().manual_seed(0), 0.0, 0.0, torch.device("cpu")).flatten().numpy()
    # unit mean square: Rayleigh scale sqrt(1/2)
    assert stats.kstest(a, stats.rayleigh(scale=np.sqrt(0.5)).cdf).pvalue > 0.01


def test_k_distribution_moments() -> None:
    alpha = 3.0
    a = k_distributed_speckle((600, 600), alpha, torch.Generator().manual_seed(1), 0.0, 0.0, torch.device("cpu")).double()
    i = a**2  # intensity: exponential × gamma -> <I> = 1, <I^2> = 2 (1 + 1/α)
    assert float(i.mean()) == pytest.approx(1.0, rel=0.02)
    assert float((i**2).mean()) == pytest.approx(2 * (1 + 1 / alpha), rel=0.05)


def test_attenuation_tgc_profile_matches_db_formula() -> None:
    img = torch.ones(1, 1, 80, 10)
    p = AttenuationParams(tgc_error_db_per_cm=2.0, frequency_mhz=5.0, attenuation_db_cm_mhz=0.5)
    out = AttenuationTGC().apply(_batch(img), [p]).image[0, 0, :, 0]
    z_cm = (torch.arange(80) + 0.5) * 0.05
    assert torch.allclose(20 * torch.log10(out), 2.0 * z_cm, atol=1e-4)


def test_gain_is_exact() -> None:
    img = torch.rand(2, 1, 8, 8) + 0.1
    out = Gain().apply(_batch(img), [GainParams(6.0), GainParams(-3.0)]).image
    assert torch.allclose(out[0] / img[0], torch.full_like(img[0], 10 ** (6 / 20)))
    assert torch.allclose(out[1] / img[1], torch.full_like(img[1], 10 ** (-3 / 20)))
