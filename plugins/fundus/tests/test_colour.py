"""Colour domains: sRGB <-> linear light and JPEG's YCbCr."""

from __future__ import annotations

import torch

from c3_fundus.colour import linear_to_srgb, rgb_to_ycbcr, srgb_to_linear, ycbcr_to_rgb


def test_srgb_round_trip_and_reference_values() -> None:
    x = torch.linspace(0, 1, 1001)
    assert torch.allclose(linear_to_srgb(srgb_to_linear(x)), x, atol=1e-6)
    # IEC 61966-2-1: code 0.5 is 21.404 % linear light; the toe is linear below 0.04045
    assert abs(float(srgb_to_linear(torch.tensor(0.5))) - 0.214041) < 1e-5
    assert abs(float(srgb_to_linear(torch.tensor(0.02))) - 0.02 / 12.92) < 1e-9


def test_linear_to_srgb_saturates() -> None:
    assert abs(float(linear_to_srgb(torch.tensor(3.0))) - 1.0) < 1e-6
    assert float(linear_to_srgb(torch.tensor(-1.0))) == 0.0


def test_ycbcr_round_trip_and_grey_axis() -> None:
    rgb = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 255
    assert torch.allclose(ycbcr_to_rgb(rgb_to_ycbcr(rgb)), rgb, atol=1e-3)
    grey = torch.full((1, 3, 2, 2), 100.0)
    ycc = rgb_to_ycbcr(grey)
    assert torch.allclose(ycc[:, 0], torch.full((1, 2, 2), 100.0), atol=1e-3)
    assert torch.allclose(ycc[:, 1:], torch.full((1, 2, 2, 2), 128.0), atol=1e-3)
