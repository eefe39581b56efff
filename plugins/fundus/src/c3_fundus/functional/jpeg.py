"""Baseline JPEG (ITU-T T.81) compression and decompression in torch, batched.

sRGB in [0, 1] -> 8-bit code values -> JFIF YCbCr -> optional 4:2:0 chroma subsampling (2×2
mean) -> level shift -> 8×8 DCT-II per block -> divide by the quality-scaled quantisation table
(Annex K tables, IJG scaling) -> round -> dequantise -> inverse DCT -> chroma upsampling
(triangular "fancy" filter, as libjpeg) -> RGB -> round and clip to 8 bits -> [0, 1].

Rounding uses a straight-through estimator, so gradients flow as if rounding were the identity
("differentiable-ish"). Entropy coding is lossless and is not modelled.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.nn import functional as F

from c3_fundus.colour import _RGB_TO_YCBCR, _YCBCR_TO_RGB

LUMINANCE_TABLE = (
    (16, 11, 10, 16, 24, 40, 51, 61),
    (12, 12, 14, 19, 26, 58, 60, 55),
    (14, 13, 16, 24, 40, 57, 69, 56),
    (14, 17, 22, 29, 51, 87, 80, 62),
    (18, 22, 37, 56, 68, 109, 103, 77),
    (24, 35, 55, 64, 81, 104, 113, 92),
    (49, 64, 78, 87, 103, 121, 120, 101),
    (72, 92, 95, 98, 112, 100, 103, 99),
)
CHROMINANCE_TABLE = (
    (17, 18, 24, 47, 99, 99, 99, 99),
    (18, 21, 26, 66, 99, 99, 99, 99),
    (24, 26, 56, 99, 99, 99, 99, 99),
    (47, 66, 99, 99, 99, 99, 99, 99),
    (99, 99, 99, 99, 99, 99, 99, 99),
    (99, 99, 99, 99, 99, 99, 99, 99),
    (99, 99, 99, 99, 99, 99, 99, 99),
    (99, 99, 99, 99, 99, 99, 99, 99),
)


def ste_round(x: Tensor) -> Tensor:
    """Round to nearest in the forward pass, identity gradient in the backward pass.

    Without a graph to record (no grad mode, or ``x`` needs none) this is ``torch.round``: the
    same values, as ``x + (round(x) − x)`` is exact in floating point (Sterbenz).
    """
    if not (torch.is_grad_enabled() and x.requires_grad):
        return torch.round(x)
    return x + (torch.round(x) - x).detach()


def quantisation_tables(quality: Tensor) -> Tensor:
    """IJG quality scaling of the Annex K tables: (B,) quality 1..100 -> (B, 2, 8, 8) (luma, chroma).

    scale = 5000 / q for q < 50, else 200 − 2q; entry = floor((base · scale + 50) / 100) in [1, 255].
    """
    q = quality.double().clamp(1, 100)
    scale = torch.where(q < 50, torch.floor(5000.0 / q), 200.0 - 2.0 * torch.floor(q)).view(-1, 1, 1, 1)
    base = torch.tensor([LUMINANCE_TABLE, CHROMINANCE_TABLE], dtype=torch.float64, device=quality.device)
    return torch.floor((base.unsqueeze(0) * scale + 50.0) / 100.0).clamp(1.0, 255.0)


def dct_matrix(n: int = 8, dtype: torch.dtype = torch.float32, device: torch.device | None = None) -> Tensor:
    """The orthonormal DCT-II matrix D (n, n): coefficients = D · block · Dᵀ."""
    k = torch.arange(n, dtype=torch.float64).view(n, 1)
    i = torch.arange(n, dtype=torch.float64).view(1, n)
    d = torch.cos(math.pi * (2 * i + 1) * k / (2 * n)) * math.sqrt(2.0 / n)
    d[0] /= math.sqrt(2.0)
    return d.to(dtype=dtype, device=device)


def _block_transform(plane: Tensor, left: Tensor, right: Tensor) -> Tensor:
    """``left · block · right`` for every 8×8 block of (B, C, H, W), H and W multiples of 8.

    Works on views, no block permutation: ``left`` mixes the 8 rows of each block row
    (B, C, H/8, 8, W) and ``right`` the 8 columns of each block (…, W/8, 8).
    """
    b, c, h, w = plane.shape
    rows = torch.matmul(left, plane.reshape(b, c, h // 8, 8, w))
    return torch.matmul(rows.view(b, c, h // 8, 8, w // 8, 8), right).view(b, c, h, w)


def quantise_plane(plane: Tensor, table: Tensor) -> Tensor:
    """DCT-quantise-dequantise-IDCT a level-shifted plane (B, C, H, W), H and W multiples of 8.

    ``table`` is (B, 8, 8); returns the reconstructed plane (same shape).
    """
    b, c, h, w = plane.shape
    d = dct_matrix(8, plane.dtype, plane.device)
    coeff = _block_transform(plane, d, d.T).view(b, c, h // 8, 8, w // 8, 8)  # [.., u, .., v]
    q = table.to(plane).view(-1, 1, 1, 8, 1, 8)
    rec = (ste_round(coeff / q) * q).view(b, c, h, w)
    return _block_transform(rec, d.T, d)


def _mix_channels(matrix: tuple[tuple[float, ...], ...], x: Tensor, offset: tuple[float, float, float]) -> Tensor:
    """``matrix · pixel + offset`` for every pixel of (B, 3, H, W): one matmul over the flattened
    planes (the colour transforms of :mod:`c3_fundus.colour`, several times faster than einsum here)."""
    m = torch.tensor(matrix, dtype=x.dtype, device=x.device)
    out = torch.matmul(m, x.flatten(2)).view_as(x)
    return out.add_(torch.tensor(offset, dtype=x.dtype, device=x.device).view(1, 3, 1, 1))


def jpeg_round_trip(srgb: Tensor, quality: Tensor, chroma_subsampling: bool = True) -> Tensor:
    """Compress and decompress sRGB images (B, 3, H, W) in [0, 1] at ``quality (B,)`` (1..100)."""
    b, _, h, w = srgb.shape
    mcu = 16 if chroma_subsampling else 8
    ph, pw = (-h) % mcu, (-w) % mcu
    x = ste_round(srgb.clamp(0, 1) * 255.0)
    x = F.pad(x, (0, pw, 0, ph), mode="replicate") if (ph or pw) else x
    ycc = _mix_channels(_RGB_TO_YCBCR, x, (-128.0, 0.0, 0.0))  # JFIF YCbCr, level-shifted by 128
    tables = quantisation_tables(quality)
    y = quantise_plane(ycc[:, :1], tables[:, 0])
    chroma = ycc[:, 1:]
    if chroma_subsampling:
        chroma = F.avg_pool2d(chroma, 2)
        chroma = quantise_plane(chroma, tables[:, 1])
        chroma = F.interpolate(chroma, scale_factor=2, mode="bilinear", align_corners=False)
    else:
        chroma = quantise_plane(chroma, tables[:, 1])
    rgb = _mix_channels(_YCBCR_TO_RGB, torch.cat([y, chroma], dim=1), (128.0, 128.0, 128.0))  # undo the shift
    rgb = ste_round(rgb).clamp(0.0, 255.0) / 255.0
    return rgb[..., :h, :w]
