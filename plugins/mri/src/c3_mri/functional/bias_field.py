"""Smooth multiplicative receive fields built from separable Legendre polynomials."""

from __future__ import annotations

import torch
from torch import Tensor


def legendre_basis(n: int, order: int, device: torch.device, dtype: torch.dtype = torch.float32) -> Tensor:
    """P_0..P_order on n points of [-1, 1] by Bonnet's recursion -> (order + 1, n)."""
    x = torch.linspace(-1.0, 1.0, n, device=device, dtype=torch.float64)
    polys = [torch.ones_like(x), x]
    for k in range(1, order):
        polys.append(((2 * k + 1) * x * polys[k] - k * polys[k - 1]) / (k + 1))
    return torch.stack(polys[: order + 1]).to(dtype)


def log_bias_field(shape: tuple[int, ...], coefficients: Tensor, order: int) -> Tensor:
    """Σ c_ijk P_i(x) P_j(y) P_k(z) with i + j + k <= order, evaluated separably.

    ``coefficients`` (B, (order+1)^D) indexes the full tensor-product grid (terms above the total
    order must be zero). Evaluated as a chain of per-axis contractions, so the cost is that of a
    few small matrix products, never a loop over full-volume power terms. Returns (B, *shape).
    """
    d = len(shape)
    b = coefficients.shape[0]
    c = coefficients.view(b, *([order + 1] * d))
    out = c
    for n in shape:
        basis = legendre_basis(n, order, coefficients.device, coefficients.dtype)  # (order+1, n)
        # contract the first remaining order axis; the new spatial axis lands last, so after D
        # steps the axes are (B, n_0, ..., n_{D-1}) in order
        out = torch.tensordot(out, basis, dims=([1], [0]))
    return out.reshape(b, *shape)


def total_order_mask(order: int, dims: int) -> Tensor:
    """1 for tensor-product terms with i + j (+ k) <= order (and not the constant term)."""
    grids = torch.meshgrid(*[torch.arange(order + 1)] * dims, indexing="ij")
    total = sum(grids)
    mask = (total <= order) & (total > 0)
    return mask.flatten().float()
