"""The shared photon-counting kernel: exact Poisson below the switch-over, a three-moment normal map above.

Goodness of fit is a chi-square test of the drawn counts against the Poisson pmf (scipy.stats), on
both sides of the switch-over; every draw comes from a fixed generator, so the tests are
deterministic.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from c3_core.functional.photon import EXACT_BELOW, FOLD_READ_SIGMA, photon_counts
from c3_core.seeding import generator_from_seed

N_DRAWS = 200_000


def _chi_square_pvalue(counts: np.ndarray, lam: float) -> float:
    """p-value of Pearson's chi-square test of integer ``counts`` against Poisson(``lam``).

    Bins: every count whose expected frequency is at least 5, plus the two tails merged.
    """
    n = counts.size
    k = np.arange(0, int(lam + 12 * math.sqrt(lam) + 20))
    expected = stats.poisson.pmf(k, lam) * n
    keep = np.flatnonzero(expected >= 5)
    lo, hi = int(keep[0]), int(keep[-1])
    inner = np.arange(lo, hi + 1)
    observed = np.bincount(np.clip(counts - lo + 1, 0, hi - lo + 2).astype(np.int64), minlength=hi - lo + 3)
    exp_bins = np.concatenate([[stats.poisson.cdf(lo - 1, lam)], stats.poisson.pmf(inner, lam), [stats.poisson.sf(hi, lam)]]) * n
    use = exp_bins > 0
    return float(stats.chisquare(observed[use], exp_bins[use] * observed[use].sum() / exp_bins[use].sum()).pvalue)


def _draw(lam: float, seed: int, n: int = N_DRAWS, **kwargs: float) -> np.ndarray:
    out = photon_counts(torch.full((n,), lam), generator_from_seed(seed), **kwargs)
    return out.numpy().astype(np.float64)


@pytest.mark.parametrize(
    "lam",
    [EXACT_BELOW - 1.0, EXACT_BELOW - 1e-3, EXACT_BELOW, EXACT_BELOW + 1e-3, EXACT_BELOW + 1.0, 2 * EXACT_BELOW, 137.5],
)
def test_counts_follow_the_poisson_pmf_on_both_sides_of_the_switch_over(lam: float) -> None:
    counts = _draw(lam, seed=int(lam * 1000))
    assert np.array_equal(counts, np.round(counts)) and counts.min() >= 0
    assert _chi_square_pvalue(counts.astype(np.int64), lam) > 1e-3


@pytest.mark.parametrize("lam", [0.5, 5.0, EXACT_BELOW - 0.5, EXACT_BELOW, EXACT_BELOW + 0.5, 100.0, 1000.0, 2.0e4])
def test_mean_and_variance_equal_the_rate(lam: float) -> None:
    counts = _draw(lam, seed=11)
    n = counts.size
    se_mean = math.sqrt(lam / n)
    se_var = lam * math.sqrt(2.0 / n + 1.0 / (lam * n))  # excess kurtosis of Poisson: 1/λ
    assert abs(counts.mean() - lam) < 4 * se_mean
    assert abs(counts.var() - lam) < 4 * se_var


def test_above_the_switch_over_the_skewness_is_poissons_not_a_normals() -> None:
    lam = EXACT_BELOW + 1.0
    counts = _draw(lam, seed=5, n=400_000)
    skew = float(stats.skew(counts))
    assert abs(skew - 1.0 / math.sqrt(lam)) < 4 * math.sqrt(6.0 / counts.size)  # a rounded normal would give ~0


def test_mixed_rates_land_in_their_own_pixels() -> None:
    lam = torch.tensor([3.0, 5000.0]).repeat(50_000).view(100, 1000)  # alternating: exact and normal-mapped pixels
    counts = photon_counts(lam, generator_from_seed(2))
    low, high = counts.view(-1)[0::2], counts.view(-1)[1::2]
    assert counts.shape == lam.shape and counts.dtype == lam.dtype
    assert abs(float(low.mean()) - 3.0) < 0.03 and abs(float(low.var()) - 3.0) < 0.1
    assert abs(float(high.mean()) - 5000.0) < 1.5 and abs(float(high.var()) / 5000.0 - 1.0) < 0.03
    assert _chi_square_pvalue(low.numpy().astype(np.int64), 3.0) > 1e-3


def test_zero_rate_gives_zero_counts_and_only_read_noise() -> None:
    zero = torch.zeros(50_000)
    assert torch.equal(photon_counts(zero, generator_from_seed(0)), zero)
    for sigma in (0.5, 4.0):
        noisy = photon_counts(zero, generator_from_seed(1), read_sigma=sigma).numpy()
        assert stats.kstest(noisy, stats.norm(0.0, sigma).cdf).pvalue > 1e-3


def _poisson_plus_normal_cdf(lam: float, sigma: float) -> callable:
    k = np.arange(0, int(lam + 12 * math.sqrt(lam) + 20))
    pmf = stats.poisson.pmf(k, lam)

    def cdf(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        return (pmf[None, :] * stats.norm.cdf((x[:, None] - k[None, :]) / sigma)).sum(1)

    return cdf


@pytest.mark.parametrize(("lam", "sigma"), [(EXACT_BELOW - 0.5, 3.0), (EXACT_BELOW, 3.0), (EXACT_BELOW, FOLD_READ_SIGMA), (300.0, 4.0)])
def test_folded_read_noise_matches_poisson_plus_gaussian(lam: float, sigma: float) -> None:
    y = _draw(lam, seed=21, n=50_000, read_sigma=sigma)
    assert abs(y.mean() - lam) < 4 * math.sqrt((lam + sigma**2) / y.size)
    assert abs(y.var() / (lam + sigma**2) - 1.0) < 4 * math.sqrt(2.0 / y.size) + 0.002
    assert stats.kstest(y, _poisson_plus_normal_cdf(lam, sigma)).pvalue > 1e-3


def test_small_read_noise_is_a_second_draw_on_integer_counts() -> None:
    lam = EXACT_BELOW + 30.0
    counts = _draw(lam, seed=8, n=100_000)
    y = _draw(lam, seed=8, n=100_000, read_sigma=0.4)  # same counts, then N(0, 0.4²) from one more draw
    assert stats.kstest(y - counts, stats.norm(0.0, 0.4).cdf).pvalue > 1e-3


def test_deterministic_under_a_fixed_generator_and_device_dtype_kept() -> None:
    lam = torch.linspace(0.0, 3000.0, 4096, dtype=torch.float64).view(4, 1, 32, 32)
    a = photon_counts(lam, generator_from_seed(7), read_sigma=2.0)
    b = photon_counts(lam, generator_from_seed(7), read_sigma=2.0)
    c = photon_counts(lam, generator_from_seed(8), read_sigma=2.0)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.dtype == torch.float64 and a.shape == lam.shape
    strided = lam.transpose(-1, -2)  # non-contiguous input: same law, same shape
    assert photon_counts(strided, generator_from_seed(7)).shape == strided.shape


def test_the_exact_path_alone_is_torch_poisson() -> None:
    lam = torch.full((1000,), 500.0)
    out = photon_counts(lam, generator_from_seed(3), exact_below=math.inf)
    g = generator_from_seed(3)
    torch.randn(lam.shape, generator=g)  # the normal draw comes first, then the exact draws
    assert torch.equal(out, torch.poisson(lam, generator=g))


def test_bad_arguments_raise() -> None:
    with pytest.raises(ValueError, match="read_sigma"):
        photon_counts(torch.ones(3), generator_from_seed(0), read_sigma=-1.0)
    with pytest.raises(TypeError, match="floating point"):
        photon_counts(torch.ones(3, dtype=torch.int64), generator_from_seed(0))


def test_out_may_be_the_rates_buffer_itself() -> None:
    lam = torch.cat([torch.full((5000,), 4.0), torch.full((5000,), 900.0)])
    for sigma in (0.0, 0.5, 3.0):
        expected = photon_counts(lam, generator_from_seed(9), read_sigma=sigma)
        buffer = lam.clone()
        assert photon_counts(buffer, generator_from_seed(9), read_sigma=sigma, out=buffer) is buffer
        assert torch.equal(buffer, expected)
    with pytest.raises(ValueError, match="out must be contiguous"):
        photon_counts(lam, generator_from_seed(0), out=torch.empty(3))


def test_per_case_generators_give_each_case_what_it_gets_alone() -> None:
    lam = torch.stack([torch.linspace(0.0, 60.0, 3000), torch.linspace(10.0, 5000.0, 3000), torch.full((3000,), 7.0)]).view(3, 1, 3000)
    for sigma in (0.0, [3.0, 3.0, 3.0], [0.0, 4.0, 0.5], [2.0, 3.0, 1.0]):
        sig = [sigma] * 3 if isinstance(sigma, float) else sigma
        whole = photon_counts(lam, [generator_from_seed(40 + b) for b in range(3)], read_sigma=sigma)
        for b in range(3):
            alone = photon_counts(lam[b], generator_from_seed(40 + b), read_sigma=sig[b])
            torch.testing.assert_close(whole[b], alone, rtol=1e-6, atol=1e-4)
    with pytest.raises(ValueError, match="generators"):
        photon_counts(lam, [generator_from_seed(0)])


def test_the_normal_draw_equals_torch_randn() -> None:
    g1, g2 = generator_from_seed(4), generator_from_seed(4)
    lam = torch.full((2, 777), 1e4)
    z = torch.randn(lam.shape, generator=g2)
    out = photon_counts(lam, g1, exact_below=0.0)
    expected = (lam + (lam - 5 / 36).sqrt() * z + (z * z - 1) / 6).round()
    assert float((out != expected.clamp_min(0)).float().mean()) < 1e-3  # ties at .5 may round apart
