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


def field_factors(shape: tuple[int, ...], spacing_mm: Tensor, coefficients: Tensor, order: int,
                  radius_mm: float = REFERENCE_RADIUS_MM) -> tuple[Tensor, Tensor]:
    """The log field as a product of two small factors: ``(B, R, order+1) @ (B, order+1, n_last)``
    is ``(B, R, n_last)``, the field with its leading spatial axes flattened (R = n_0 ⋯ n_{D-2}).

    ``spacing_mm (B, D)``, ``coefficients (B, (order+1)^D)`` in C order over the tensor-product
    grid (terms above the wanted total order are simply zero).
    """
    b, d = spacing_mm.shape
    out = coefficients.reshape(b, *([order + 1] * d))
    # the 1-D bases of all axes from one recursion over their concatenated coordinates (element-wise:
    # the same values as one axis at a time, in a third of the small operations)
    coords = torch.cat([axis_coordinates(n, spacing_mm[:, axis], radius_mm) for axis, n in enumerate(shape)], 1)
    bases = legendre(coords, order).to(out.dtype).split(list(shape), dim=2)  # each (order+1, B, n)
    for basis in bases[:-1]:
        # contract the leading order axis (index 1 of out) with the basis; the new spatial axis
        # is appended last, so after D - 1 steps out is (B, order+1, n_0, ..., n_{D-2}) (small)
        out = torch.einsum("bi...,ibn->b...n", out, basis)
    return out.reshape(b, order + 1, -1).transpose(1, 2), bases[-1].transpose(0, 1)


def log_field(shape: tuple[int, ...], spacing_mm: Tensor, coefficients: Tensor, order: int,
              radius_mm: float = REFERENCE_RADIUS_MM) -> Tensor:
    """Σ c_ijk P_i P_j P_k on a grid: ``spacing_mm (B, D)``, ``coefficients (B, (order+1)^D)`` -> (B, *shape).

    Coefficients index the full tensor-product grid in C order (terms above the wanted total order
    are simply zero).
    """
    lead, last = field_factors(shape, spacing_mm, coefficients, order, radius_mm)
    # the last axis makes the full-size field: one batched matmul (B, n_0...n_{D-2}, order+1) @
    # (B, order+1, n_{D-1}) whose output is already contiguous in (B, n_0, ..., n_{D-1}) order
    return torch.bmm(lead, last).view(lead.shape[0], *shape)


SLAB_ELEMENTS = 1 << 19  # voxels per slab of apply_gain's loop on the CPU (2 MiB of float32)


def apply_gain(x: Tensor, spacing_mm: Tensor, coefficients: Tensor, order: int,
               radius_mm: float = REFERENCE_RADIUS_MM) -> Tensor:
    """``x (B, C, *sp)`` times the multiplicative field exp(Σ c_ijk P_i P_j P_k) (one per case, shared
    by its channels): ``x · exp(log_field(...))``, the field computed in ``coefficients``' dtype and
    cast to ``x``'s.

    On the CPU the field is never held whole: slab by slab (rows of the last axis, one case at a
    time, each slab small enough to stay in cache) its log is one small matmul, written where the
    output goes, then the exp and the product with the image in place; so the volume is read once
    and the output written once. Elsewhere (or when ``x`` needs a gradient) the same three steps
    on the whole volume.
    """
    b, c = x.shape[:2]
    sp = tuple(x.shape[2:])
    lead, last = field_factors(sp, spacing_mm, coefficients, order, radius_mm)
    if x.device.type != "cpu" or (torch.is_grad_enabled() and x.requires_grad):
        field = torch.bmm(lead, last).exp_().view(b, 1, *sp)
        return x * field.to(x.dtype)
    n = sp[-1]
    rows = lead.shape[1]
    step = max(1, SLAB_ELEMENTS // n)
    out = torch.empty((b, c, *sp), dtype=x.dtype, device=x.device)
    flat_x, flat_out = x.reshape(b, c, rows, n), out.view(b, c, rows, n)
    direct = c == 1 and lead.dtype == x.dtype  # the field slab is made in the output slab itself
    scratch = None if direct else torch.empty((min(step, rows), n), dtype=lead.dtype, device=x.device)
    for i in range(b):
        for r0 in range(0, rows, step):
            r1 = min(rows, r0 + step)
            if direct:
                torch.mm(lead[i, r0:r1], last[i], out=flat_out[i, 0, r0:r1]).exp_().mul_(flat_x[i, 0, r0:r1])
                continue
            field = torch.mm(lead[i, r0:r1], last[i], out=scratch[: r1 - r0]).exp_().to(x.dtype)
            for ch in range(c):
                torch.mul(field, flat_x[i, ch, r0:r1], out=flat_out[i, ch, r0:r1])
    return out


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
