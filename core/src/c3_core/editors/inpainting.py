"""Mask-guided inpainting kernels: dilation in mm, 2-D Navier–Stokes, n-D harmonic fill, control placement.

Pure functions on one case (no batch axis): ``image (C, *spatial)``, boolean ``region (*spatial)``.
Every kernel returns a new tensor that is **bit-identical to the input outside ``region``** (the
fill is composited with ``torch.where``), so a mask-guided edit never touches a pixel it was not
asked to.

* :func:`inpaint_ns` — OpenCV's Navier–Stokes inpainting (Bertalmío, Bertozzi & Sapiro 2001),
  ``cv2.inpaint(..., cv2.INPAINT_NS)``, per channel. OpenCV takes 8-bit, 16-bit unsigned or 32-bit
  float single-channel images; we hand it **float32** directly, so physical intensities (counts,
  log attenuation, HU, magnitude, [0, 1] colour) need no rescaling and lose only float32 rounding
  inside the region. Needs ``opencv-python-headless`` (extra ``c3-core[interventions]``).
* :func:`harmonic_fill` — the harmonic (Laplace) interpolant of the surrounding values in 2-D or
  3-D: ``Δu = 0`` inside the region with Dirichlet boundary = the voxels around it and zero flux
  across the image border, discretised with the 2·n+1-point Laplacian weighted by ``1/h²`` per axis
  (``h`` the spacing in mm, so anisotropic voxels are handled) and solved by Jacobi-preconditioned
  conjugate gradients in float64 to a relative residual ``||b − A u|| / ||b|| <= tol`` (default
  1e-8) per channel. Pure torch, runs on any device.
* :func:`dilate_mm` — binary dilation by an ellipsoid of radius ``radius_mm`` in physical units.
* :func:`control_offset` — a translation that moves a region to a same-shape, same-size place
  inside an allowed area (body / field of view) and away from the region itself, drawn uniformly
  among all valid translations with an explicit ``torch.Generator``; :func:`place_control` falls
  back to moving each connected component on its own when the whole region does not fit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor
from torch.nn import functional as F

INSTALL_HINT = "pip install 'c3-core[interventions]' (opencv-python-headless)"


class ConvergenceError(RuntimeError):
    """The harmonic fill did not reach its tolerance within ``max_iter`` iterations."""


def _check_case(image: Tensor, region: Tensor, where: str) -> None:
    if image.ndim not in (3, 4):
        raise ValueError(f"{where}: image must be (C, H, W) or (C, D, H, W), got shape {tuple(image.shape)}")
    if region.dtype != torch.bool:
        raise ValueError(f"{where}: region must be a bool tensor, got {region.dtype}")
    if tuple(region.shape) != tuple(image.shape[1:]):
        raise ValueError(f"{where}: region shape {tuple(region.shape)} does not match image {tuple(image.shape)}")
    if not image.is_floating_point():
        raise ValueError(f"{where}: image must be floating point, got {image.dtype}")


# -- dilation -----------------------------------------------------------------------------------
def ellipsoid_kernel(radius_mm: float, spacing: Sequence[float]) -> Tensor:
    """Boolean structuring element: offsets ``o`` (voxels) with ``sum((o_a h_a)^2) <= r^2``."""
    if not math.isfinite(radius_mm) or radius_mm < 0:
        raise ValueError(f"dilation radius must be a finite number >= 0 mm, got {radius_mm!r}")
    half = [int(math.floor(radius_mm / h + 1e-9)) for h in spacing]
    axes = [torch.arange(-r, r + 1, dtype=torch.float64) * h for r, h in zip(half, spacing)]
    grids = torch.meshgrid(*axes, indexing="ij")
    return sum(g**2 for g in grids) <= radius_mm**2 + 1e-9  # type: ignore[return-value]


def dilate_mm(mask: Tensor, radius_mm: float, spacing: Sequence[float]) -> Tensor:
    """``mask (*spatial)`` bool dilated by an ellipsoid of ``radius_mm`` (physical units).

    Radius 0 (or smaller than every voxel) returns a copy. Implemented as a convolution with the
    structuring element (exact: the sums are small integers).
    """
    if mask.dtype != torch.bool:
        raise ValueError(f"mask must be bool, got {mask.dtype}")
    if len(spacing) != mask.ndim or not all(math.isfinite(h) and h > 0 for h in spacing):
        raise ValueError(f"spacing {tuple(spacing)} must have {mask.ndim} positive values (mm)")
    kernel = ellipsoid_kernel(radius_mm, spacing)
    if kernel.numel() == 1:
        return mask.clone()
    conv = F.conv2d if mask.ndim == 2 else F.conv3d
    weight = kernel.to(device=mask.device, dtype=torch.float32)[None, None]
    pad = tuple(s // 2 for s in kernel.shape)
    out = conv(mask.to(torch.float32)[None, None], weight, padding=pad)[0, 0]
    return out > 0.5


def dilate_box(mask: Tensor, steps: int) -> Tensor:
    """``mask`` grown by ``steps`` voxels along every axis and diagonal (a (2s+1)^n box)."""
    if steps <= 0:
        return mask.clone()
    pool = F.max_pool2d if mask.ndim == 2 else F.max_pool3d
    return pool(mask.to(torch.float32)[None, None], 2 * steps + 1, 1, steps)[0, 0] > 0.5


# -- Navier–Stokes (OpenCV) ---------------------------------------------------------------------
def inpaint_ns(image: Tensor, region: Tensor, radius_px: float = 3.0) -> Tensor:
    """Navier–Stokes inpainting of ``region`` in a 2-D ``image (C, H, W)``, channel by channel.

    ``radius_px`` is OpenCV's ``inpaintRadius`` (pixels considered around each filled pixel). Each
    channel goes to OpenCV as float32 (OpenCV's NS takes float32 single-channel images; no
    rescaling to 8 or 16 bit is needed, so the physical intensity scale is kept); the result is
    cast back to the input dtype and device and used only inside ``region``.
    """
    _check_case(image, region, "inpaint_ns")
    if image.ndim != 3:
        raise ValueError(f"inpaint_ns is 2-D; got a {image.ndim - 1}-D image (use harmonic_fill for volumes)")
    if not math.isfinite(radius_px) or radius_px <= 0:
        raise ValueError(f"inpaint_ns: radius_px must be > 0, got {radius_px!r}")
    if not bool(region.any()):
        return image.clone()
    if bool(region.all()):
        raise ValueError("inpaint_ns: the region covers the whole image; there is nothing to inpaint from")
    try:
        import cv2
    except ImportError:
        raise ImportError(f"Navier–Stokes inpainting needs OpenCV: {INSTALL_HINT}") from None
    import numpy as np

    mask_u8 = np.ascontiguousarray(region.detach().cpu().numpy().astype(np.uint8))
    channels = image.detach().cpu().to(torch.float32).numpy()
    filled = [cv2.inpaint(np.ascontiguousarray(ch), mask_u8, float(radius_px), cv2.INPAINT_NS) for ch in channels]
    out = torch.from_numpy(np.stack(filled)).to(device=image.device, dtype=image.dtype)
    return torch.where(region.to(image.device), out, image)


# -- harmonic fill (pure torch, 2-D and 3-D) ----------------------------------------------------
def face_dilate(mask: Tensor) -> Tensor:
    """``mask`` grown by one voxel along each axis (the Laplacian stencil's reach)."""
    out = mask.clone()
    for a in range(mask.ndim):
        n = mask.shape[a]
        if n < 2:
            continue
        out.narrow(a, 1, n - 1).logical_or_(mask.narrow(a, 0, n - 1))
        out.narrow(a, 0, n - 1).logical_or_(mask.narrow(a, 1, n - 1))
    return out


def _effective_sources(region: Tensor, sources: Tensor | None) -> Tensor:
    """Voxels that give boundary values: ``sources`` outside the region, plus every outside
    neighbour of a region component that touches no source (so each component has boundary data)."""
    outside = ~region
    if sources is None:
        return outside
    eff = sources.to(region.device) & outside
    ring = face_dilate(region) & outside
    if bool((ring <= eff).all()):  # every boundary voxel is a source: nothing can starve
        return eff
    labels = connected_components(region)
    touching = []
    for a in range(region.ndim):
        n = region.shape[a]
        if n < 2:
            continue
        for lab, src in ((labels.narrow(a, 0, n - 1), eff.narrow(a, 1, n - 1)), (labels.narrow(a, 1, n - 1), eff.narrow(a, 0, n - 1))):
            touching.append(lab[src & (lab > 0)])
    fed = torch.unique(torch.cat(touching)) if touching else labels.new_zeros(0)
    starved = (labels > 0) & ~torch.isin(labels, fed)
    if bool(starved.any()):
        eff |= face_dilate(starved) & outside
    return eff


def _stencil(region: Tensor, weights: Sequence[float]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The region's unknowns and their neighbour lists for the weighted 2n+1-point Laplacian.

    Returns ``(flat index of each unknown, neighbour index (2n, N) into [unknowns, sentinel],
    neighbour flat index (2n, N) or -1 outside the image, weight (2n,))``.
    """
    shape = region.shape
    dev = region.device
    flat = region.flatten().nonzero().squeeze(1)
    strides = [math.prod(shape[a + 1 :]) for a in range(len(shape))]
    coords = torch.stack([(flat // st) % n for st, n in zip(strides, shape)], 0)  # (n_axes, N)
    slot = torch.full((region.numel(),), flat.numel(), dtype=torch.long, device=dev)
    slot[flat] = torch.arange(flat.numel(), device=dev)
    nb_slot, nb_flat, w = [], [], []
    for a, wa in enumerate(weights):
        for step in (1, -1):
            c = coords[a] + step
            inside = (c >= 0) & (c < shape[a])
            nf = torch.where(inside, flat + step * strides[a], torch.full_like(flat, -1))
            nb_flat.append(nf)
            nb_slot.append(torch.where(inside, slot[nf.clamp_min(0)], torch.full_like(flat, flat.numel())))
            w.append(wa)
    return flat, torch.stack(nb_slot), torch.stack(nb_flat), torch.tensor(w, dtype=torch.float64, device=dev)


def harmonic_fill(
    image: Tensor,
    region: Tensor,
    spacing: Sequence[float],
    *,
    tol: float = 1e-8,
    max_iter: int | None = None,
    sources: Tensor | None = None,
) -> Tensor:
    """Fill ``region`` of ``image (C, *spatial)`` with the harmonic interpolant of its surroundings.

    Solves, per channel, ``sum_a (u[i+e_a] - 2 u[i] + u[i-e_a]) / h_a^2 = 0`` for every voxel
    ``i`` of the region, with the voxels outside the region fixed (Dirichlet) and no flux across
    the image border (Neumann), by Jacobi-preconditioned conjugate gradients in float64 on the
    region's voxels only, until ``||r|| <= tol * ||b||``. ``sources`` (bool, optional) limits the
    boundary values to those voxels (e.g. the lungs, so a finding next to the heart is filled
    with lung, not heart): edges to other outside voxels carry no flux (Neumann); a region
    component touching no source keeps all its neighbours. The system is symmetric positive
    definite whenever every component has a boundary value. ``max_iter`` defaults to
    ``50 * (largest bounding-box side) + 100``; raises :class:`ConvergenceError` if not met.
    """
    _check_case(image, region, "harmonic_fill")
    n = image.ndim - 1
    if len(spacing) != n or not all(math.isfinite(h) and h > 0 for h in spacing):
        raise ValueError(f"harmonic_fill: spacing {tuple(spacing)} must have {n} positive values (mm)")
    if not (math.isfinite(tol) and tol > 0):
        raise ValueError(f"harmonic_fill: tol must be > 0, got {tol!r}")
    region = region.to(image.device)
    if not bool(region.any()):
        return image.clone()
    if bool(region.all()):
        raise ValueError("harmonic_fill: the region covers the whole image; there are no boundary values")
    # work in the region's bounding box plus one voxel: the stencil reaches no further, and the
    # crop's sides are either the image border (Neumann, as in the full image) or known voxels
    idx = region.nonzero()
    box = tuple(
        slice(max(int(lo) - 1, 0), min(int(hi) + 2, n))
        for lo, hi, n in zip(idx.min(0).values.tolist(), idx.max(0).values.tolist(), region.shape)
    )
    full, image, region = image, image[(slice(None), *box)], region[box]
    sources = None if sources is None else sources.to(region.device)[box]
    h2 = [1.0 / h**2 for h in spacing]
    weights = [v / max(h2) for v in h2]  # scaled: the same solution, tidier numbers
    flat, nb_slot, nb_flat, w = _stencil(region, weights)
    values = image.reshape(image.shape[0], -1).to(torch.float64)  # (C, V)
    source = _effective_sources(region, sources).flatten()
    in_image = nb_flat >= 0
    known = in_image & (nb_slot == flat.numel()) & source[nb_flat.clamp_min(0)]  # a boundary value
    linked = known | (nb_slot < flat.numel())  # flux only to unknowns and boundary values
    diag = (w[:, None] * linked).sum(0)  # (N,)
    b = (w[:, None, None] * known.unsqueeze(1) * values[:, nb_flat.clamp_min(0)].transpose(0, 1)).sum(0)  # (C, N)
    wn = w[:, None].expand_as(nb_slot)

    def apply_a(x: Tensor) -> Tensor:
        ext = torch.cat([x, torch.zeros_like(x[:, :1])], 1)  # sentinel column: neighbours that are not unknowns
        return diag * x - (wn.unsqueeze(1) * ext[:, nb_slot].transpose(0, 1)).sum(0)

    inv_d = 1.0 / diag
    x = torch.zeros_like(b)
    r = b.clone()
    z = r * inv_d
    p = z.clone()
    rz = (r * z).sum(1)
    b_norm = b.norm(dim=1)
    target = tol * b_norm
    coords = region.nonzero()
    extent = int((coords.max(0).values - coords.min(0).values).max()) + 1
    limit = max_iter if max_iter is not None else 50 * extent + 100
    res = r.norm(dim=1)
    it = 0
    while bool((res > target).any()):
        if it >= limit:
            worst = float((res / b_norm.clamp_min(1e-300)).max())
            raise ConvergenceError(
                f"harmonic_fill: relative residual {worst:.3g} > tol {tol:g} after {it} iterations ({flat.numel()} voxels)"
            )
        ap = apply_a(p)
        pap = (p * ap).sum(1)
        alpha = torch.where(pap > 0, rz / pap.clamp_min(1e-300), torch.zeros_like(pap))
        x = x + alpha[:, None] * p
        r = r - alpha[:, None] * ap
        z = r * inv_d
        rz_new = (r * z).sum(1)
        beta = torch.where(rz > 0, rz_new / rz.clamp_min(1e-300), torch.zeros_like(rz))
        p = z + beta[:, None] * p
        rz = rz_new
        res = r.norm(dim=1)
        it += 1
    patch = image.reshape(image.shape[0], -1).clone()
    patch[:, flat] = x.to(image.dtype)
    out = full.clone()
    out[(slice(None), *box)] = patch.view_as(image)
    return out


# -- control placement --------------------------------------------------------------------------
def _valid_corners(region: Tensor, forbidden: Tensor) -> tuple[Tensor, list[int]]:
    """Bounding-box corners ``p`` where the cropped region overlaps no forbidden voxel (FFT correlation)."""
    idx = region.nonzero()
    lo = idx.min(0).values.tolist()
    hi = (idx.max(0).values + 1).tolist()
    crop = region[tuple(slice(a, b) for a, b in zip(lo, hi))].to(torch.float64)
    size = list(region.shape)
    dims = tuple(range(region.ndim))
    kernel = torch.zeros(size, dtype=torch.float64, device=region.device)
    kernel[tuple(slice(0, s) for s in crop.shape)] = crop
    f = torch.fft.rfftn(forbidden.to(torch.float64), s=size, dim=dims)
    k = torch.fft.rfftn(kernel, s=size, dim=dims)
    overlap = torch.fft.irfftn(f * k.conj(), s=size, dim=dims)  # sum_y R(y) F(p + y), circular
    valid_extent = tuple(slice(0, n - s + 1) for n, s in zip(size, crop.shape))  # no wrap-around here
    return overlap[valid_extent] < 0.5, lo


def control_offset(
    region: Tensor, allowed: Tensor, generator: torch.Generator, guard_px: int = 1
) -> tuple[int, ...] | None:
    """A translation (voxels per axis) that moves ``region`` inside ``allowed`` without touching it.

    Valid translations keep every voxel of the moved region inside the image and inside
    ``allowed``, and at least ``guard_px + 1`` voxels (box distance) away from ``region``, so the
    control's fill never reads the lesion. One is drawn uniformly from all valid ones (listed in
    row-major order) with ``generator``; ``None`` when none exists (or ``region`` is empty).
    """
    if region.dtype != torch.bool or allowed.dtype != torch.bool:
        raise ValueError("control_offset: region and allowed must be bool tensors")
    if region.shape != allowed.shape:
        raise ValueError(f"control_offset: region {tuple(region.shape)} and allowed {tuple(allowed.shape)} differ")
    if not bool(region.any()):
        return None
    forbidden = (~allowed.to(region.device)) | dilate_box(region, guard_px)
    ok, lo = _valid_corners(region, forbidden)
    corners = ok.nonzero().cpu()
    if corners.shape[0] == 0:
        return None
    pick = int(torch.randint(0, corners.shape[0], (1,), generator=generator, device=generator.device).item())
    return tuple(int(c) - base for c, base in zip(corners[pick].tolist(), lo))


def translate(mask: Tensor, offset: Sequence[int]) -> Tensor:
    """``mask`` moved by ``offset`` voxels (what leaves the grid is dropped, nothing wraps)."""
    if len(offset) != mask.ndim:
        raise ValueError(f"offset {tuple(offset)} must have {mask.ndim} entries")
    out = torch.zeros_like(mask)
    src, dst = [], []
    for o, n in zip(offset, mask.shape):
        o = int(o)
        if abs(o) >= n:
            return out
        src.append(slice(max(0, -o), n - max(0, o)))
        dst.append(slice(max(0, o), n - max(0, -o)))
    out[tuple(dst)] = mask[tuple(src)]
    return out


def connected_components(mask: Tensor) -> Tensor:
    """Labels ``1..n`` of the 8- (2-D) or 26-connected (3-D) components of ``mask``, 0 outside.

    Each component's label is the largest row-major index + 1 of its voxels, found by max
    propagation (iterations = the longest path inside a component); they are then renumbered
    ``1..n`` in order of first appearance.
    """
    if mask.dtype != torch.bool:
        raise ValueError(f"mask must be bool, got {mask.dtype}")
    pool = F.max_pool2d if mask.ndim == 2 else F.max_pool3d
    labels = torch.where(mask, torch.arange(1, mask.numel() + 1, device=mask.device).view(mask.shape), 0).to(torch.float64)
    while True:
        grown = torch.where(mask, pool(labels[None, None], 3, 1, 1)[0, 0], 0.0)
        if torch.equal(grown, labels):
            break
        labels = grown
    flat = labels.flatten().long()
    values = flat[flat > 0]
    if values.numel() == 0:
        return torch.zeros_like(mask, dtype=torch.long)
    uniq, first = torch.unique(values, return_inverse=True)
    order = torch.full((uniq.numel(),), values.numel(), dtype=torch.long, device=mask.device)
    order.scatter_reduce_(0, first, torch.arange(values.numel(), device=mask.device), reduce="amin")
    rank = torch.empty_like(order)
    rank[order.argsort()] = torch.arange(1, uniq.numel() + 1, device=mask.device)
    out = torch.zeros_like(flat)
    out[flat > 0] = rank[first]
    return out.view(mask.shape)


def place_control(
    region: Tensor, areas: Sequence[Tensor], generator: torch.Generator, guard_px: int = 1
) -> tuple[Tensor, int] | None:
    """A healthy control region with exactly ``region``'s voxel count and the index of the area
    it lies in, or None.

    Tries, for each allowed area in order, one translation of the whole region
    (:func:`control_offset`: same shape); then, for each area, each connected component on its
    own, largest first, each kept ``guard_px`` away from the lesion and from the components
    already placed (same component shapes and total size). Draws only from ``generator``.
    """
    if not bool(region.any()):
        return None
    for a, area in enumerate(areas):
        offset = control_offset(region, area & ~region, generator, guard_px)
        if offset is not None:
            return translate(region, offset), a
    labels = connected_components(region)
    n = int(labels.max())
    if n < 2:
        return None
    sizes = torch.bincount(labels.flatten(), minlength=n + 1)[1:]
    order = sorted(range(n), key=lambda c: (-int(sizes[c]), c))
    for a, area in enumerate(areas):
        placed = torch.zeros_like(region)
        for c in order:
            part = labels == c + 1
            free = area & ~region & ~dilate_box(placed, guard_px)
            offset = control_offset(part, free, generator, guard_px)
            if offset is None:
                break
            placed |= translate(part, offset)
        else:
            return placed, a
    return None
