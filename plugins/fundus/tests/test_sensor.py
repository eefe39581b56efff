"""Sensor physics: Poisson shot noise in linear light, read noise, ADC, Bayer mosaic + demosaic."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from c3_core.seeding import generator_from_seed
from c3_fundus.colour import linear_to_srgb
from c3_fundus.functional.sensor import adc, bayer_masks, electrons
from c3_fundus.operators.sensor import Sensor, SensorParams


def _params(full_well: float, bayer: bool = False, seed: int = 1, read: float = 0.0, bits: int = 0) -> SensorParams:
    return SensorParams(full_well, read, 0.0, 0.0, bits, bayer, seed, 7)


def test_shot_noise_variance_proportional_to_linear_signal(make_batch) -> None:  # noqa: ANN001
    levels = torch.tensor([0.05, 0.1, 0.2, 0.4])
    lin = levels.view(4, 1, 1, 1).expand(4, 3, 128, 128).contiguous()
    op = Sensor(read_noise_e=0.0, prnu=0.0, dsnu=0.0, adc_bits=0, bayer=False)
    full_well = 2000.0
    noisy = op._apply_linear(lin, make_batch(linear_to_srgb(lin)), [_params(full_well, seed=100 + i) for i in range(4)])
    var = noisy.var(dim=(1, 2, 3))
    # Poisson: var(electrons) = mean electrons, so in linear units var = x / full_well
    assert torch.allclose(var, levels / full_well, rtol=0.05)
    slope = np.polyfit(levels.numpy(), var.numpy(), 1)
    assert abs(slope[1]) < 2e-6  # through the origin: no signal, no shot noise


def test_electron_counts_follow_poisson_law() -> None:
    x = torch.full((1, 64, 64), 0.25)
    e = electrons(x, torch.tensor(40.0), torch.tensor(0.0), generator_from_seed(3)).flatten().numpy()
    mu = 10.0
    values, counts = np.unique(e.astype(int), return_counts=True)
    expected = stats.poisson.pmf(values, mu) * e.size
    keep = expected > 5
    chi2 = float((((counts - expected) ** 2) / expected)[keep].sum())
    assert stats.chi2.sf(chi2, int(keep.sum()) - 1) > 0.001
    assert abs(e.mean() - mu) < 0.2 and abs(e.var() - mu) < 0.6


def test_read_noise_is_gaussian_in_electrons() -> None:
    x = torch.zeros(1, 64, 64)
    e = electrons(x, torch.tensor(1000.0), torch.tensor(5.0), generator_from_seed(4)).flatten().numpy()
    assert stats.kstest(e, stats.norm(0, 5.0).cdf).pvalue > 0.001


def test_adc_quantises_to_levels() -> None:
    e = torch.linspace(0, 1200, 5000)
    out = adc(e, torch.tensor(1000.0), 8)
    codes = out * 255
    assert torch.allclose(codes, codes.round(), atol=1e-4)
    assert float(out.max()) == 1.0  # clipped at full scale


def test_bayer_masks_and_flat_colour_survives_demosaic(make_batch) -> None:  # noqa: ANN001
    m = bayer_masks((4, 4), torch.device("cpu"))
    assert torch.equal(m.sum(0), torch.ones(4, 4)) and float(m[1].mean()) == 0.5
    lin = torch.tensor([0.3, 0.2, 0.1]).view(1, 3, 1, 1).expand(1, 3, 32, 32).contiguous()
    out = Sensor(read_noise_e=0, prnu=0, dsnu=0, adc_bits=0)._apply_linear(lin, make_batch(linear_to_srgb(lin)), [_params(1e9, bayer=True)])
    assert torch.allclose(out, lin, atol=1e-3)


def test_noise_is_reproducible_from_seed_and_differs_between_seeds(make_batch) -> None:  # noqa: ANN001
    img = linear_to_srgb(torch.full((1, 3, 32, 32), 0.2))
    op = Sensor()
    a = op.apply(make_batch(img), [_params(800, seed=5)]).image
    b = op.apply(make_batch(img), [_params(800, seed=5)]).image
    c = op.apply(make_batch(img), [_params(800, seed=6)]).image
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("kwargs", [{"read_noise_e": -1.0}, {"prnu": -0.1}, {"adc_bits": 20}])
def test_bad_sensor_settings_raise(kwargs: dict) -> None:
    with pytest.raises(ValueError, match="fundus.sensor"):
        Sensor(**kwargs)


def test_batched_raw_exposure_is_shot_noise_and_gives_each_case_its_own_draws() -> None:
    from c3_fundus.functional.sensor import expose_raw

    levels = torch.tensor([0.01, 0.05, 0.2, 0.6])  # 8 .. 480 electrons at full well 800: both sides of the exact switch-over
    raw = levels.view(4, 1, 1, 1).expand(4, 1, 96, 96).contiguous()
    noise = [generator_from_seed(50 + i) for i in range(4)]
    pattern = [generator_from_seed(70 + i) for i in range(4)]
    out = expose_raw(raw, [800.0] * 4, [0.0] * 4, [0.0] * 4, [0.0] * 4, 0, noise, pattern)
    assert torch.allclose(out.mean(dim=(1, 2, 3)), levels, rtol=0.02)
    assert torch.allclose(out.var(dim=(1, 2, 3)), levels / 800.0, rtol=0.06)  # var(e) = mean e, in linear units x / full well
    for i in range(4):
        alone = expose_raw(raw[i : i + 1], [800.0], [0.0], [0.0], [0.0], 0, [generator_from_seed(50 + i)], [generator_from_seed(70 + i)])
        torch.testing.assert_close(out[i : i + 1], alone)
    fixed = expose_raw(raw[2:3], [1e9], [0.0], [0.01], [0.0], 0, [generator_from_seed(1)], [generator_from_seed(2)])
    assert float((fixed / 0.2).std()) == pytest.approx(0.01, rel=0.1)  # PRNU: 1 % gain non-uniformity
