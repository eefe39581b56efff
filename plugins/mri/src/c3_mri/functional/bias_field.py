"""Smooth multiplicative fields from separable Legendre polynomials (B1 receive, B0 maps).

Fields are defined on *physical* coordinates: along each axis u = (x − centre) / R with x in mm
and a reference radius R (default 100 mm, about half a head), so the same coefficients give the
same field per millimetre whatever the field of view or spacing. The field
``Σ c_ijk P_i(u) P_j(v) P_k(w)`` is evaluated separably as a chain of per-axis contractions with
the 1-D Legendre bases — never as a loop over full-volume power terms.
"""

from __future__ import annotations

import torch
from torch import Tensor

REFERENCE_RADIUS_MM = 100.0


def legendre(u: Tensor, order: int) -> Tensor:
    """P_0..P_order at ``u`` (any shape) by Bonnet's recursion -> (order + 1, *u.shape)."""
    polys = [torch.ones_like(u), u]
    for k in range(1, order):
        polys.append(((2 * k + 1) * u * polys[k] - k * polys[k - 1]) / (k + 1))
    return torch.stack(polys[: order + 1])


def axis_coordinates(n: int, spacing_mm: Tensor, radius_mm: float = REFERENCE_RADIUS_MM) -> Tensor:
    """Centred physical coordinates / radius of ``n`` voxels per case: ``spacing_mm (B,)`` -> (B, n)."""
    idx = torch.arange(n, device=spacing_mm.device, dtype=spacing_mm.dtype) - (n - 1) / 2
    return idx.unsqueeze(0) * spacing_mm.unsqueeze(1) / radius_mm


def log_field(shape: tuple[int, ...], spacing_mm: Tensor, coefficients: Tensor, order: int,
              radius_mm: float = REFERENCE_RADIUS_MM) -> Tensor:
    """Σ c_ijk P_i P_j P_k on a grid: ``spacing_mm (B, D)``, ``coefficients (B, (order+1)^D)`` -> (B, *shape).

    Coefficients index the full tensor-product grid in C order (terms above the wanted total order
    are simply zero).
    """
    b, d = spacing_mm.shape
    out = coefficients.reshape(b, *([order + 1] * d))
    for axis, n in enumerate(shape[:-1]):
        basis = legendre(axis_coordinates(n, spacing_mm[:, axis], radius_mm), order)  # (order+1, B, n)
        # contract the leading order axis (index 1 of out) with the basis; the new spatial axis
        # is appended last, so after D - 1 steps out is (B, order+1, n_0, ..., n_{D-2}) (small)
        out = torch.einsum("bi...,ibn->b...n", out, basis.to(out.dtype))
    # the last axis makes the full-size field: one batched matmul (B, n_0...n_{D-2}, order+1) @
    # (B, order+1, n_{D-1}) whose output is already contiguous in (B, n_0, ..., n_{D-1}) order
    basis = legendre(axis_coordinates(shape[-1], spacing_mm[:, -1], radius_mm), order).to(out.dtype)
    field = torch.bmm(out.reshape(b, order + 1, -1).transpose(1, 2), basis.transpose(0, 1))
    return field.view(b, *shape)


def log_bias_field(shape: tuple[int, ...], coefficients: Tensor, order: int) -> Tensor:
    """The field on [−1, 1] per axis (FOV-relative; used by the demo's site simulation) -> (B, *shape)."""
    b = coefficients.shape[0]
    # spacing chosen so that the end voxels sit at u = ±1 with radius 1
    sp = torch.tensor([2.0 / max(n - 1, 1) for n in shape], dtype=coefficients.dtype, device=coefficients.device)
    return log_field(shape, sp.expand(b, -1), coefficients, order, radius_mm=1.0)


def total_order_mask(order: int, dims: int) -> Tensor:
    """1 for tensor-product terms with 0 < i + j (+ k) <= order, in C order -> ((order+1)^dims,)."""
    grids = torch.meshgrid(*[torch.arange(order + 1)] * dims, indexing="ij")
    total = sum(grids)
    mask = (total <= order) & (total > 0)
    return mask.flatten().float()
