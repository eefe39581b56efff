"""Field-of-view geometry: magnification (crop), decentration and a new circular aperture."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F

from c3_fundus.functional.srgb import linear_to_srgb_fast, records_grad, srgb_to_linear_fast


def zoom_grid(shape: tuple[int, int], zoom: Tensor, shift: Tensor) -> Tensor:
    """A sampling grid (B, H, W, 2) that magnifies by ``zoom (B,)`` about the centre moved by ``shift``.

    ``shift (B, 2)`` (row, col) is where the new image centre lies in the old image, as a
    fraction of (H, W). Output pixel p samples the old image at c + (p − c) / zoom + shift.
    """
    h, w = shape
    b = zoom.shape[0]
    theta = torch.zeros(b, 2, 3, device=zoom.device, dtype=torch.float32)
    theta[:, 0, 0] = 1.0 / zoom
    theta[:, 1, 1] = 1.0 / zoom
    theta[:, 0, 2] = 2.0 * shift[:, 1]
    theta[:, 1, 2] = 2.0 * shift[:, 0]
    return F.affine_grid(theta, [b, 1, h, w], align_corners=False)


def resample(x: Tensor, grid: Tensor) -> Tensor:
    """Bilinear resampling of (B, C, H, W) at ``grid``; outside the old image is 0 (no light)."""
    return F.grid_sample(x, grid.to(x.dtype), mode="bilinear", padding_mode="zeros", align_corners=False)


DARK_TRANSMISSION = 2.0**-24  # aperture transmission below which no light is kept (float32 resolution of 1)


def aperture_in_srgb_(srgb: Tensor, aperture: Tensor) -> Tensor:
    """sRGB(aperture · linear(srgb)), in place on ``srgb (B, C, H, W)`` (contiguous); ``aperture (B, 1, H, W)`` in [0, 1].

    The aperture cuts light in linear light. Where it is exactly 1 the light, and so the sRGB
    value, is unchanged (kept as is, not sent through a round trip that only adds float rounding);
    where it is below ``DARK_TRANSMISSION`` (2^-24, under float32 resolution of full transmission;
    the far tail of a sigmoid edge) no light passes (0: the encoded value it would give is below
    8e-7). Only the pixels of its soft edge are linearised, scaled and re-encoded, gathered (the
    round trip of :mod:`c3_fundus.functional.srgb`).
    Values are clipped to [0, 1] as the sRGB conversions clip them. When autograd records
    ``srgb``, the whole round trip runs out of place instead.
    """
    if records_grad(srgb):
        return linear_to_srgb_fast(srgb_to_linear_fast(srgb) * aperture)
    b, c, h, w = srgb.shape
    srgb.clamp_(0.0, 1.0)
    edge = ((aperture >= DARK_TRANSMISSION) & (aperture < 1.0)).view(-1).nonzero().squeeze(1)  # (B, 1, H, W) pixel index
    hw = h * w
    flat = ((edge // hw * (c * hw) + edge % hw).unsqueeze(0) + (torch.arange(c, device=srgb.device) * hw).unsqueeze(1)).view(-1)
    values = srgb.view(-1).index_select(0, flat).view(c, -1)
    values = linear_to_srgb_fast(srgb_to_linear_fast(values).mul_(aperture.reshape(-1).index_select(0, edge).to(srgb.dtype)))
    srgb.mul_((aperture >= 1.0).to(srgb.dtype))
    srgb.view(-1).index_copy_(0, flat, values.view(-1))
    return srgb
