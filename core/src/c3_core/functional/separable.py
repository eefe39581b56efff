"""Separable linear filters of images as per-case matrices: M_y · x · M_xᵀ.

A filter that reflect-pads an axis, multiplies its DFT by a real, even transfer and crops is a
linear map of that axis; written as an (n × n) matrix, a 2-D image filter whose transfer is a
product of one factor per axis is two small matrix products per image, which on a CPU beats the
padded FFTs for images up to a few hundred pixels (the plugins measure where, per operator).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


def padded_filter_matrices(
    n: int, before: int, after: int, transfer: Callable[[Tensor], Tensor], device: torch.device | str = "cpu"
) -> Tensor:
    """``(B, n, n)`` float64 matrices of the 1-D filter "reflect-pad by (``before``, ``after``), multiply
    the DFT over L = n + before + after by ``transfer``, crop back to n".

    ``transfer(f)`` gets the L // 2 + 1 frequencies ``rfftfreq(L)`` (cycles per pixel, float64) and
    returns the real transfer per case, ``(B, L // 2 + 1)``. Row i of the circular convolution reads
    the kernel (the transfer's inverse DFT) at (i + before − l) mod L from padded sample l; each
    padded sample copies one pixel (reflect: no edge repeat), so its column is added onto that
    pixel's. Pads must be below n (reflect's limit)."""
    length = n + before + after
    f = torch.fft.rfftfreq(length, dtype=torch.float64, device=device)
    kernel = torch.fft.irfft(transfer(f), n=length)  # (B, L)
    i = torch.arange(n, device=device).view(n, 1)
    pos = torch.arange(length, device=device).view(1, length)
    circulant = kernel[:, (i + before - pos) % length]  # (B, n, L)
    source = torch.cat([torch.arange(before, 0, -1), torch.arange(n), torch.arange(n - 2, n - 2 - after, -1)]).to(device)
    folded = torch.zeros((kernel.shape[0], n, n), dtype=torch.float64, device=device)
    return folded.index_add_(2, source, circulant)


def apply_separable(image: Tensor, my: Tensor, mx: Tensor) -> Tensor:
    """``M_y · x · M_xᵀ`` for ``image (B, C, H, W)`` with per-case ``my (B, H, H)``, ``mx (B, W, W)``
    (every channel alike)."""
    return torch.matmul(torch.matmul(my.unsqueeze(1), image), mx.transpose(-1, -2).unsqueeze(1))
