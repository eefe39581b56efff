"""Optics: PSFs conserve light, defocus lowers sharpness, glare conserves the mean, flare stays in the FOV."""

from __future__ import annotations

import math

import pytest
import torch

from c3_fundus.colour import srgb_to_linear
from c3_fundus.functional import optics as optics_kernels
from c3_fundus.functional.optics import (
    disc_kernel,
    gaussian_blur,
    gaussian_blur_fft,
    gaussian_blur_matrices,
    line_kernel,
    optical_psf,
    veiling_glare,
)
from c3_fundus.operators.optics import Optics, OpticsParams


def _p(**kw: float) -> OpticsParams:
    base = dict(defocus_um=0.0, motion_um=0.0, motion_angle_deg=0.0, haze_fraction=0.0, haze_sigma_mm=0.5,
                glare_fraction=0.0, flare_amplitude=0.0, flare_angle_deg=0.0, flare_width_frac=0.05)
    base.update(kw)
    return OpticsParams(**base)


def test_psfs_are_normalised_and_have_the_right_size() -> None:
    d = disc_kernel(3.0, 4)
    assert abs(float(d.sum()) - 1.0) < 1e-6
    area = 1.0 / float(d.max())  # interior pixels weigh 1 / area
    assert abs(area - math.pi * 9) / (math.pi * 9) < 0.02  # disc area π r²
    line = line_kernel(6.0, 0.0, 4)
    assert abs(float(line.sum()) - 1.0) < 1e-6 and float(line[:4].sum() + line[5:].sum()) < 1e-9  # horizontal
    assert abs(float(optical_psf(2.0, 3.0, 30.0, 5).sum()) - 1.0) < 1e-5
    tiny = disc_kernel(0.1, 2)  # smaller than the supersampling grid: a point, never NaN
    assert float(tiny[2, 2]) == 1.0 and float(tiny.sum()) == 1.0


def test_defocus_preserves_mean_light_and_lowers_sharpness(retina, make_batch) -> None:  # noqa: ANN001
    batch = make_batch(retina, spacing=0.05)
    lin = srgb_to_linear(retina)
    out = Optics()._apply_linear(lin, batch, [_p(defocus_um=150.0)])  # 3 px radius
    assert torch.allclose(out.mean(), lin.mean(), rtol=3e-3)

    def grad(x: torch.Tensor) -> torch.Tensor:
        return (x[..., 1:, :] - x[..., :-1, :]).abs().mean()

    assert grad(out) < 0.8 * grad(lin)


def test_distances_on_the_retina_scale_with_spacing(retina, make_batch) -> None:  # noqa: ANN001
    lin = srgb_to_linear(retina)
    a = Optics()._apply_linear(lin, make_batch(retina, spacing=0.05), [_p(defocus_um=100.0)])  # 2 px
    b = Optics()._apply_linear(lin, make_batch(retina, spacing=0.10), [_p(defocus_um=200.0)])  # 2 px
    assert torch.allclose(a, b, atol=1e-6)


def test_glare_conserves_mean_and_lowers_contrast() -> None:
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    y = veiling_glare(x, torch.tensor([0.0, 0.5]))
    assert torch.allclose(y.mean(dim=(2, 3)), x.mean(dim=(2, 3)), atol=1e-6)
    assert torch.allclose(y[0], x[0]) and torch.allclose(y[1].std(dim=(1, 2)), 0.5 * x[1].std(dim=(1, 2)), rtol=1e-4)


def test_haze_blur_conserves_light_of_a_flat_image() -> None:
    x = torch.full((1, 3, 40, 40), 0.3)
    assert torch.allclose(gaussian_blur_fft(x, torch.tensor([5.0])), x, atol=1e-5)
    assert torch.allclose(gaussian_blur_matrices(x, torch.tensor([5.0])), x, atol=1e-5)


@pytest.mark.parametrize("shape", [(128, 128), (64, 96), (37, 20), (5, 7), (2, 3)])
def test_matrix_haze_blur_is_the_fft_blur(shape: tuple[int, int]) -> None:
    """The same linear map as v1's padded FFTs (mirror padding, periodic kernel), per-sample σ."""
    x = torch.rand(5, 3, *shape, generator=torch.Generator().manual_seed(1))
    sigma = torch.tensor([0.3, 1.0, 3.0, 8.0, 25.0])
    torch.testing.assert_close(gaussian_blur_matrices(x, sigma), gaussian_blur_fft(x, sigma), rtol=0, atol=3e-6)


def test_matrix_haze_blur_spreads_an_impulse_by_sigma() -> None:
    """Far from the edges the blur of a point is a Gaussian: unit mass, variance σ² per axis."""
    x = torch.zeros(2, 1, 161, 161, dtype=torch.float64)
    x[:, :, 80, 80] = 1.0
    sigma = torch.tensor([2.0, 6.0])
    y = gaussian_blur_matrices(x, sigma)
    coords = torch.arange(161, dtype=torch.float64) - 80
    assert torch.allclose(y.sum(dim=(2, 3)), torch.ones(2, 1, dtype=torch.float64), atol=1e-9)
    var_y = (y[:, 0].sum(2) * coords**2).sum(1)
    var_x = (y[:, 0].sum(1) * coords**2).sum(1)
    torch.testing.assert_close(var_y, sigma.double() ** 2, rtol=1e-6, atol=0)
    torch.testing.assert_close(var_x, sigma.double() ** 2, rtol=1e-6, atol=0)


def test_haze_blur_takes_the_ffts_above_the_matrix_size(monkeypatch: pytest.MonkeyPatch) -> None:
    x = torch.rand(2, 3, 24, 24, generator=torch.Generator().manual_seed(2))
    sigma = torch.tensor([2.0, 4.0])
    assert torch.equal(gaussian_blur(x, sigma), gaussian_blur_matrices(x, sigma))
    monkeypatch.setattr(optics_kernels, "MATRIX_BLUR_MAX_PX", 16)
    assert torch.equal(gaussian_blur(x, sigma), gaussian_blur_fft(x, sigma))


def test_rim_flare_adds_light_only_inside_the_fov(make_batch) -> None:  # noqa: ANN001
    n = 64
    yy, xx = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    fov = ((((yy - 31.5) ** 2 + (xx - 31.5) ** 2) <= 28**2).float())[None, None]
    img = (0.4 * fov).expand(1, 3, n, n).contiguous()
    batch = make_batch(img, extras={"fov": fov})
    out = Optics()._apply_linear(srgb_to_linear(img), batch, [_p(flare_amplitude=0.3, flare_angle_deg=0.0)])
    added = out - srgb_to_linear(img)
    assert float(added[:, :, fov[0, 0] < 0.5].abs().max()) == 0.0
    assert float(added[0, 0, 32, 58]) > float(added[0, 0, 32, 5]) + 1e-3  # the crescent is on the right (0°)


def test_components_option() -> None:
    op = Optics(components=["haze"])
    p = op.sample_params(__import__("c3_core.batch", fromlist=["CaseInfo"]).CaseInfo("e", "fundus", "srgb", (8, 8), (0.1, 0.1), 3),
                         torch.Generator().manual_seed(0), 1.0)
    assert p.haze_fraction > 0 and p.defocus_um == p.motion_um == p.glare_fraction == p.flare_amplitude == 0.0
    with pytest.raises(ValueError, match="fundus.optics: components"):
        Optics(components=["sparkle"])
