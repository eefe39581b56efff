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


def _direct_psf_blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """Reference: the sampled, normalised Gaussian cut at ±⌈5σ⌉, by direct 2-D convolution in float64
    on the image reflect-padded by the radius (two passes of a separable conv2d)."""
    radius = math.ceil(5.0 * sigma)
    m = torch.arange(-radius, radius + 1, dtype=torch.float64)
    taps = torch.exp(-0.5 * (m / sigma) ** 2)
    taps = taps / taps.sum()
    x = torch.nn.functional.pad(image.double(), (radius, radius, radius, radius), mode="reflect")
    x = torch.nn.functional.conv2d(x, taps.view(1, 1, -1, 1))
    return torch.nn.functional.conv2d(x, taps.view(1, 1, 1, -1))


@pytest.fixture(params=["matrices", "fft"])
def blur_path(request, monkeypatch):  # noqa: ANN001, ANN201
    """Both ways sampled_gaussian_blur_batched computes: folded matrices (small images), padded FFTs."""
    import c3_cxr.functional.filters as filters

    matrices = request.param == "matrices"
    monkeypatch.setattr(filters, "MATRIX_BLUR_MAX_PX", 10**6 if matrices else 0)
    monkeypatch.setattr(filters, "MATRIX_BLUR_WIDE_MAX_PX", 10**6 if matrices else 0)
    return request.param


def test_sampled_gaussian_blur_is_the_direct_convolution_with_its_psf_per_case(blur_path: str) -> None:
    from c3_cxr.functional.filters import sampled_gaussian_blur_batched

    g = torch.Generator().manual_seed(3)
    image = torch.rand(3, 1, 70, 90, generator=g) * 3
    sigma = torch.tensor([0.4, 1.2, 4.3])  # narrow (where an MTF cut at Nyquist rings) to wide
    out = sampled_gaussian_blur_batched(image, sigma)
    for i, s in enumerate(sigma.tolist()):
        ref = _direct_psf_blur(image[i : i + 1], s).float()
        assert (out[i : i + 1] - ref).abs().max() <= 2e-6, s
        alone = sampled_gaussian_blur_batched(image[i : i + 1], sigma[i : i + 1])  # smaller padding, same result
        assert (alone - out[i : i + 1]).abs().max() <= 2e-6, s
    assert torch.equal(sampled_gaussian_blur_batched(image, torch.zeros(3)), image)  # σ = 0: identity


def test_sampled_gaussian_blur_agrees_with_the_gaussian_mtf_where_both_are_compact(blur_path: str) -> None:
    from c3_cxr.functional.filters import sampled_gaussian_blur_batched

    g = torch.Generator().manual_seed(4)
    image = torch.rand(2, 1, 128, 128, generator=g)
    sigma = torch.tensor([2.0, 4.0])  # aliasing of the sampled PSF's spectrum < 1e-8 here
    assert (sampled_gaussian_blur_batched(image, sigma) - gaussian_blur_batched(image, sigma)).abs().max() <= 2e-5


def test_a_psf_wider_than_the_image_wraps_over_its_mirror_extension(blur_path: str) -> None:
    from c3_cxr.functional.filters import sampled_gaussian_blur_batched

    g = torch.Generator().manual_seed(5)
    image = torch.rand(1, 1, 12, 9, generator=g)
    out = sampled_gaussian_blur_batched(image, torch.tensor([4.0]))  # radius 20 px > the image
    # reference: the endlessly mirrored image (period 2n − 2 per axis), directly convolved
    reps = torch.cat([image, image.flip(-2)[..., 1:-1, :]], dim=-2).repeat(1, 1, 5, 1)
    reps = torch.cat([reps, reps.flip(-1)[..., 1:-1]], dim=-1).repeat(1, 1, 1, 7)
    radius = 20
    m = torch.arange(-radius, radius + 1, dtype=torch.float64)
    taps = torch.exp(-0.5 * (m / 4.0) ** 2)
    taps = taps / taps.sum()
    y0, x0 = 2 * 22, 3 * 16  # a period start far enough from the tiled block's edges
    block = reps.double()[..., y0 - radius : y0 + 12 + radius, x0 - radius : x0 + 9 + radius]
    ref = torch.nn.functional.conv2d(torch.nn.functional.conv2d(block, taps.view(1, 1, -1, 1)), taps.view(1, 1, 1, -1))
    assert (out - ref.float()).abs().max() <= 2e-6
    assert torch.allclose(out.mean(), image.mean(), atol=0.05)


def test_pixel_pitch_change_of_a_mixed_batch_is_each_case_alone() -> None:
    from c3_cxr.functional.filters import change_pixel_pitch

    g = torch.Generator().manual_seed(6)
    image = torch.rand(5, 1, 48, 56, generator=g)
    ratio = torch.tensor([1.25, 2.0, 1.25, 1.5, 2.0])  # cases sharing a ratio run as one group
    out = change_pixel_pitch(image, ratio)
    for i in range(5):  # the aperture FFT of a batch may round differently from one case's: 1e-6
        assert (out[i : i + 1] - change_pixel_pitch(image[i : i + 1], ratio[i : i + 1])).abs().max() <= 1e-6, i
    with torch.enable_grad():  # the autograd path (no out= writes) gives the same bytes
        tracked = change_pixel_pitch(image.clone().requires_grad_(True), ratio)
    assert torch.equal(tracked.detach(), out)


def test_the_blur_keeps_gradients_to_sigma_and_image_on_both_paths(blur_path: str) -> None:
    from c3_cxr.functional.filters import sampled_gaussian_blur_batched

    image = torch.rand(2, 1, 20, 24, generator=torch.Generator().manual_seed(6), dtype=torch.float64, requires_grad=True)
    sigma = torch.tensor([0.83, 2.47], dtype=torch.float64, requires_grad=True)  # 5σ off an integer: the cut is fixed
    assert torch.autograd.gradcheck(lambda x, s: sampled_gaussian_blur_batched(x, s), (image, sigma))


def test_a_batch_split_between_the_two_ways_gives_each_case_its_own_blur() -> None:
    from c3_cxr.functional.filters import _blurs_by_matrices, sampled_gaussian_blur_batched

    image = torch.rand(3, 1, 160, 150, generator=torch.Generator().manual_seed(7))
    sigma = torch.tensor([1.3, 9.0, 0.0])  # radius 7 px: FFTs; 45 px (over a fifth of 160): matrices; identity
    assert _blurs_by_matrices(torch.ceil(5 * sigma), 160).tolist() == [False, True, False]
    out = sampled_gaussian_blur_batched(image, sigma)
    for i, s in enumerate(sigma.tolist()):
        alone = sampled_gaussian_blur_batched(image[i : i + 1], sigma[i : i + 1])
        assert (out[i : i + 1] - alone).abs().max() <= 2e-6, s
        if s > 0:
            assert (out[i : i + 1] - _direct_psf_blur(image[i : i + 1], s).float()).abs().max() <= 2e-6, s
    assert torch.equal(out[2], image[2])


@pytest.mark.parametrize("shape", [(64, 64), (128, 128), (48, 56), (17, 9), (3, 5)])
def test_pixel_pitch_matrices_are_the_filter_and_gathers_of_version_2(shape: tuple[int, int], monkeypatch: pytest.MonkeyPatch) -> None:
    """v3 folds v2's aperture FFT filter and its four gathers + lerps into one matrix per axis: the
    same linear map (float rounding apart), ratio 1 still exactly the identity."""
    from c3_cxr.functional import filters

    g = torch.Generator().manual_seed(8)
    image = torch.rand(6, 1, *shape, generator=g)
    ratio = torch.tensor([1.0, 1.25, 1.5, 2.0, 1.7345, 1.25])
    out = filters.change_pixel_pitch(image, ratio)
    assert torch.equal(out[0], image[0])
    monkeypatch.setattr(filters, "PITCH_MATRIX_MAX_PX", 0)  # version 2's way for every size
    reference = filters.change_pixel_pitch(image, ratio)
    assert (out - reference).abs().max() <= 5e-6


def test_pixel_pitch_matrices_keep_gradients_to_the_image() -> None:
    from c3_cxr.functional.filters import change_pixel_pitch

    image = torch.rand(2, 1, 12, 10, generator=torch.Generator().manual_seed(9), dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: change_pixel_pitch(x, torch.tensor([1.5, 2.0], dtype=torch.float64)), (image,))


def test_pixel_pitch_takes_the_gathers_above_the_matrix_size(monkeypatch: pytest.MonkeyPatch) -> None:
    from c3_cxr.functional import filters

    image = torch.rand(2, 1, 24, 24, generator=torch.Generator().manual_seed(10))
    ratio = torch.tensor([1.5, 2.0])
    by_matrices = filters.change_pixel_pitch(image, ratio)
    monkeypatch.setattr(filters, "PITCH_MATRIX_MAX_PX", 16)
    by_gathers = filters.change_pixel_pitch(image, ratio)
    assert not torch.equal(by_matrices, by_gathers) and (by_matrices - by_gathers).abs().max() <= 5e-6


def test_a_square_image_blurred_by_matrices_keeps_gradients_to_sigma() -> None:
    """A square image uses one set of matrices for both axes: σ's gradient sums both uses."""
    from c3_cxr.functional.filters import _blur_by_matrices

    image = torch.rand(2, 1, 12, 12, generator=torch.Generator().manual_seed(11), dtype=torch.float64, requires_grad=True)
    sigma = torch.tensor([0.83, 1.47], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(_blur_by_matrices, (image, sigma))
