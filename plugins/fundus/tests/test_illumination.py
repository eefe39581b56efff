"""Illumination geometry: vignetting follows the cos⁴ law; the light-source bump keeps mean log-gain."""

from __future__ import annotations

import numpy as np
import torch

from c3_fundus.colour import linear_to_srgb, srgb_to_linear
from c3_fundus.operators.illumination import Illumination, IlluminationParams, Vignetting, VignettingParams


def test_vignetting_radial_profile_matches_cos4_formula(make_batch) -> None:  # noqa: ANN001
    n = 101
    flat = linear_to_srgb(torch.full((1, 3, n, n), 0.5))
    fov = torch.zeros(1, 1, n, n)
    yy, xx = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    fov[0, 0] = (((yy - 50) ** 2 + (xx - 50) ** 2) <= 45**2).float()
    radius = float(np.sqrt(fov.sum() / np.pi))  # the operator measures R from the FOV area
    p = VignettingParams(edge_falloff=0.4, centre_row=0.5, centre_col=0.5)
    out = srgb_to_linear(Vignetting().apply(make_batch(flat, extras={"fov": fov}), [p]).image)[0, 1]
    f = radius / np.tan(np.arccos((1 - 0.4) ** 0.25))
    r = np.arange(0, 50)
    expected = 0.5 * np.cos(np.arctan(r / f)) ** 4  # I(r) = I0 cos⁴(atan(r / f))
    assert np.allclose(out[50, 50 + r].numpy(), expected, atol=2e-3)
    # at the FOV radius the loss is the requested edge fall-off
    assert abs(0.5 * np.cos(np.arctan(radius / f)) ** 4 - 0.5 * 0.6) < 1e-9


def test_vignetting_identity_at_zero(make_batch) -> None:  # noqa: ANN001
    img = linear_to_srgb(torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1)))
    out = Vignetting().apply(make_batch(img), [VignettingParams(0.0, 0.5, 0.5)])
    assert torch.allclose(out.image, img, atol=1e-5)


def test_illumination_mean_log_gain_is_zero_and_sign_sets_halo_or_hole(make_batch) -> None:  # noqa: ANN001
    flat = linear_to_srgb(torch.full((2, 3, 64, 64), 0.2))
    halo = IlluminationParams(stops=1.0, centre_row=0.4, centre_col=0.6, width_frac=0.25, ring_frac=0.0)
    hole = IlluminationParams(stops=-1.0, centre_row=0.4, centre_col=0.6, width_frac=0.25, ring_frac=0.0)
    out = srgb_to_linear(Illumination().apply(make_batch(flat), [halo, hole]).image)
    log_gain = torch.log2(out / 0.2)
    assert torch.allclose(log_gain.mean(dim=(1, 2, 3)), torch.zeros(2), atol=1e-4)
    peak = (int(0.4 * 63), int(0.6 * 63))
    assert out[0, 1, peak[0], peak[1]] > 0.2 * 1.5 and out[1, 1, peak[0], peak[1]] < 0.2 / 1.5


def test_ring_halo_peaks_on_its_radius(make_batch) -> None:  # noqa: ANN001
    flat = linear_to_srgb(torch.full((1, 3, 101, 101), 0.2))
    ring = IlluminationParams(stops=1.0, centre_row=0.5, centre_col=0.5, width_frac=0.04, ring_frac=0.3)
    g = srgb_to_linear(Illumination().apply(make_batch(flat), [ring]).image)[0, 1, 50, 50:]
    assert abs(int(torch.argmax(g)) - 30) <= 1
