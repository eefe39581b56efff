"""Sinogram-domain CT effects on reconstructed HU images.

Each effect is computed as a *difference*: the image is forward-projected, the projections are
changed (noise, kernel, polychromatic attenuation), and the filtered back-projection of the change
is added to the original slice. So the identity setting returns the input exactly, and the
discretisation error of re-projecting a reconstructed image never enters the result.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from c3_core.functional.photon import photon_counts
from c3_cxr.domains import delta_mu_to_hu, hu_to_mu
from c3_cxr.functional.tomography import default_angles, fbp, radon

SinogramChange = Callable[[Tensor, Tensor], Tensor]  # (sinogram (S,1,A,D), angles) -> change


def as_slices(image: Tensor) -> tuple[Tensor, int]:
    """``(B, 1, H, W)`` or ``(B, 1, D, H, W)`` → ``(B·D, 1, H, W)`` and the slices per case."""
    if image.ndim == 4:
        return image, 1
    b, c, d, h, w = image.shape
    return image.permute(0, 2, 1, 3, 4).reshape(b * d, c, h, w), d


def from_slices(slices: Tensor, like: Tensor) -> Tensor:
    if like.ndim == 4:
        return slices
    b, c, d, h, w = like.shape
    return slices.reshape(b, d, c, h, w).permute(0, 2, 1, 3, 4).contiguous()


def pixel_mm(spacing: tuple[tuple[float, ...], ...], per_case: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """In-plane pixel size (mm) per slice, ``(B·D, 1, 1, 1)``."""
    px = torch.tensor([0.5 * (s[-1] + s[-2]) for s in spacing], device=device, dtype=dtype)
    return px.repeat_interleave(per_case).view(-1, 1, 1, 1)


def project_hu(hu_slices: Tensor, px_mm: Tensor) -> tuple[Tensor, Tensor]:
    """Sinogram of line integrals (dimensionless) of HU slices ``(S, 1, H, W)`` and its angles."""
    h, w = hu_slices.shape[-2:]
    angles = default_angles(h, w, hu_slices.device, hu_slices.dtype)
    return radon(hu_to_mu(hu_slices) * px_mm, angles), angles


def hu_change(delta_sinogram: Tensor, angles: Tensor, px_mm: Tensor, height: int, width: int, window: Tensor | None = None) -> Tensor:
    """FBP of a sinogram change, in HU, ``(S, 1, H, W)``."""
    return delta_mu_to_hu(fbp(delta_sinogram, angles, height, width, window) / px_mm)


def poisson_thinning(line_integrals: Tensor, i0: float, fraction: float, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Reference and reduced-dose line integrals of one case (noise insertion by binomial thinning).

    The reference scan detects N ~ Poisson(I0 e^(−p)) photons per ray; keeping each photon with
    probability ``fraction`` f gives the reduced-dose scan of the same patient. Thinning splits N
    into independent kept ~ Poisson(f λ) and discarded ~ Poisson((1 − f) λ) photons, so both are
    drawn directly (:func:`c3_core.functional.photon.photon_counts`, in that order) and N = kept +
    discarded: the same joint law as Binomial(N, f) thinning, at the cost of two normal draws.
    Counts below 0.5 are clipped (no infinite line integrals).
    """
    expected = torch.neg(line_integrals).exp_().mul_(i0)
    if fraction < 1.0:
        kept = photon_counts(expected * fraction, generator)
        reference = photon_counts(expected.mul_(1.0 - fraction), generator, out=expected).add_(kept)
    else:
        reference = kept = photon_counts(expected, generator, out=expected)
    p_ref = torch.log(reference.clamp_min(0.5) / i0).neg_()
    p_low = p_ref if kept is reference else torch.log(kept.clamp_min_(0.5).div_(fraction * i0)).neg_()
    return p_ref, p_low


def beam_hardening_change(line_integrals: Tensor, beta: Tensor) -> Tensor:
    """Polychromatic minus monochromatic line integral: −β p² (per case β, ``(S, 1, 1, 1)``),
    flattened beyond p = 1/(2β) so the mapping stays monotone."""
    p_max = 1.0 / (2.0 * beta.clamp_min(1e-9))
    p = torch.minimum(line_integrals, p_max)
    return torch.where(beta > 0, -beta * p**2, torch.zeros_like(p))


def slab_weights(ratio: Tensor, max_half: int) -> Tensor:
    """Slice-sensitivity weights along z, ``(B, 2·max_half + 1)``.

    A thick slice of ``ratio`` × the native thickness is the native slices averaged under a box of
    that width (in slice units): slice k gets the overlap of [k − ½, k + ½] with [−r/2, r/2].
    ratio 1 gives a unit impulse (identity).
    """
    k = torch.arange(-max_half, max_half + 1, device=ratio.device, dtype=ratio.dtype).view(1, -1)
    half = ratio.view(-1, 1) / 2
    w = (torch.minimum(k + 0.5, half) - torch.maximum(k - 0.5, -half)).clamp_min(0)
    return w / w.sum(dim=1, keepdim=True)


def thicken_slices(volume: Tensor, ratio: Tensor) -> Tensor:
    """Partial-volume averaging along z of ``(B, C, D, H, W)`` (replicate padding at the ends).

    Output slice z is ``sum_t w_t · volume[clamp(z + t)]`` over the taps t of :func:`slab_weights`:
    one multiply-add of the whole volume per tap, read from shifted slabs of the input (the slices
    beyond either end read the end slice), so no padded copy of the volume is made.
    """
    b, c, d, h, w = volume.shape
    max_half = int(torch.ceil((ratio.max() - 1) / 2).item()) if ratio.numel() else 0
    if max_half == 0:
        return volume
    weights = slab_weights(ratio.to(volume.dtype), max_half)  # (B, L)
    out = volume * weights[:, max_half].view(b, 1, 1, 1, 1)
    for offset in (o for o in range(-max_half, max_half + 1) if o != 0):
        tap = weights[:, max_half + offset].view(b, 1, 1, 1, 1)
        inner = max(d - abs(offset), 0)  # output slices whose source slice z + offset is inside the volume
        edge = d - inner  # the rest read the first (offset < 0) or last (offset > 0) slice
        if offset > 0:
            if inner:
                out.narrow(2, 0, inner).addcmul_(volume.narrow(2, offset, inner), tap)
            out.narrow(2, inner, edge).addcmul_(volume.narrow(2, d - 1, 1), tap)
        else:
            if inner:
                out.narrow(2, edge, inner).addcmul_(volume.narrow(2, 0, inner), tap)
            out.narrow(2, 0, edge).addcmul_(volume.narrow(2, 0, 1), tap)
    return out
