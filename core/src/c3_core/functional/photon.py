"""Photon-counting statistics at about the cost of one normal draw per element.

Detected quanta (X-ray photons on a detector pixel, photo-electrons in a sensor well, photons on a
CT detector ray) are Poisson: N ~ Poisson(λ), with mean and variance λ and third central moment λ
(skewness 1/√λ). ``torch.poisson`` draws them exactly, but on a CPU it costs 7–25× a standard
normal draw per element (PyTorch uses the multiplication method below λ = 10 and transformed
rejection above). :func:`photon_counts` keeps the exact draw only where λ < :data:`EXACT_BELOW`
and elsewhere maps one standard normal z per element through a Cornish–Fisher expansion that
matches the first three moments of the Poisson law::

    N = round(λ + S z + (z² − 1) / 6),   S² = λ − 5/36,   clamped at 0

* mean: λ (E[z² − 1] = 0);
* variance: S² + 2/36 (the z² term) + 1/12 (rounding to integers, Sheppard) = λ;
* third cumulant: S² + 8/216 = λ − 0.10 (a plain normal has none; Poisson has λ).

This is the moment-matched normal N(λ, λ) rounded to integers and clamped at zero, plus the one
term that gives it Poisson's skewness; it costs a few element-wise passes over the normal draw.

Switch-over, :data:`EXACT_BELOW` = 20 counts: at λ = 20 the mapped normal's total-variation
distance from Poisson(λ) is 1.0e-3 (it falls as ≈ 0.021/λ: 6.7e-4 at 30, 4.0e-4 at 50, 2.0e-4 at
100), i.e. under an optimal coupling at most 0.1 % of pixels would read one count differently;
its χ² divergence from the Poisson pmf is 2.2e-5, which a goodness-of-fit test cannot resolve
below ~10⁵ draws. Below 20 counts the error grows quickly (2.2e-3 at λ = 10, where P(N < 0) of
the continuous map is 1e-4), so those pixels get the exact draw. Without the skewness term a
rounded N(λ, λ) has total-variation distance 2.8e-2 at λ = 20 and needs λ ≈ 16 000 to reach
1e-3 (≈ 0.126/√λ), which would leave most pixels of a low-dose radiograph or a fundus sensor on
the exact (slow) path.

Read noise (Gaussian, std σ in the same units) is often added to the counts. For σ ≥
:data:`FOLD_READ_SIGMA` = 1 it is folded into the same normal draw: the sum of integer counts and
N(0, σ²) is then a smooth density (its lattice ripple is below 2·exp(−2π²σ²) ≈ 5e-9), matched in
three moments by ``λ + S z + c (z² − 1)`` with v = λ + σ², c = λ / (6 v) and S² = v − 2c² (mean λ,
variance v, third cumulant λ − 4c³); it is not rounded (the sum is continuous). Below σ = 1 the
counts are drawn as above and the read noise is a second normal draw.

Exactness limits: counts are exact integers in float32 up to 2²⁴ (16.7 million) per element.

Randomness: one generator for the whole tensor, or one per case (the leading axis), so that a
batch gives each case exactly what that case alone would get; generators live on ``expected``'s
device. Per generator, in this order: one normal draw over its elements, ``torch.poisson`` over
those below the switch-over (flat index order), then for those their read noise when it is
folded (σ ≥ 1), else one more normal draw over its elements when 0 < σ < 1. The element-wise
map runs once over the whole batch (both CPU threads), not per case.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

EXACT_BELOW = 20.0  # counts: exact Poisson below, the three-moment normal map at and above
FOLD_READ_SIGMA = 1.0  # read-noise std (counts) from which it shares the counts' normal draw

_SHEPPARD_AND_SKEW = 5.0 / 36.0  # 1/12 (rounding) + 2/36 (variance of (z² − 1)/6)


def photon_counts(
    expected: Tensor,
    generator: torch.Generator | Sequence[torch.Generator],
    *,
    read_sigma: float | Sequence[float] = 0.0,
    exact_below: float = EXACT_BELOW,
    out: Tensor | None = None,
) -> Tensor:
    """Detected counts ~ Poisson(``expected``) (+ N(0, ``read_sigma``²)), of ``expected``'s shape and dtype.

    ``expected``: mean counts per element (photons or electrons, ≥ 0, floating point, any shape).
    ``generator``: one generator, or one per case along the leading axis. ``read_sigma``: std of
    additive Gaussian read noise in counts, one value or one per case (0: integer counts, clamped
    at 0). ``exact_below``: λ below which ``torch.poisson`` draws exactly (0: never, ``inf``:
    always; see the module docstring for why the default is 20 counts). ``out``: a contiguous
    tensor of the same shape and dtype to write into (it may be ``expected`` itself, which saves a
    buffer); by default a new tensor.
    """
    if not expected.is_floating_point():
        raise TypeError(f"photon_counts: expected must be floating point, got {expected.dtype}")
    gens = [generator] if isinstance(generator, torch.Generator) else list(generator)
    if not isinstance(generator, torch.Generator) and (expected.ndim == 0 or len(gens) != expected.shape[0]):
        raise ValueError(f"photon_counts: {len(gens)} generators for leading axis {tuple(expected.shape)[:1]}")
    n = len(gens)
    sigmas = [float(read_sigma)] * n if isinstance(read_sigma, (int, float)) else [float(v) for v in read_sigma]
    if len(sigmas) != n or not all(v >= 0.0 for v in sigmas):
        raise ValueError(f"photon_counts: read_sigma must be >= 0, one value or one per generator; got {read_sigma}")
    if out is not None and (out.shape != expected.shape or out.dtype != expected.dtype or not out.is_contiguous()):
        raise ValueError("photon_counts: out must be contiguous, with the shape and dtype of expected")
    lam = expected.contiguous().view(n, -1)
    z = torch.empty_like(lam)
    for b, g in enumerate(gens):
        z[b].normal_(generator=g)  # the same values as torch.randn over that case's elements
    # the rates of the exact pixels are read before the map (which may write over ``expected``)
    low: list[tuple[Tensor, Tensor] | None] = [None] * n
    if exact_below > 0.0 and lam.numel():
        for b, m in enumerate(lam.amin(dim=1).tolist()):  # a min is 5x cheaper than a compare
            if m < exact_below:
                index = (lam[b] < exact_below).nonzero().view(-1)
                low[b] = (index, lam[b].index_select(0, index))
    fold = [v >= FOLD_READ_SIGMA for v in sigmas]
    res2 = None if out is None else out.view(n, -1)
    if all(fold) or not any(fold):
        res2 = _map(lam, z, sigmas, all(fold), exact_below, res2)
    else:  # mixed settings in one batch: map each case alone
        res2 = torch.empty_like(lam) if res2 is None else res2
        for b in range(n):
            _map(lam[b : b + 1], z[b : b + 1], sigmas[b : b + 1], fold[b], exact_below, res2[b : b + 1])
    for b, g in enumerate(gens):
        if low[b] is not None:
            index, rates = low[b]
            draws = torch.poisson(rates, generator=g)
            if fold[b]:
                draws.add_(torch.randn(draws.shape, generator=g, device=draws.device, dtype=draws.dtype), alpha=sigmas[b])
            res2[b].index_copy_(0, index, draws)
        if 0.0 < sigmas[b] < FOLD_READ_SIGMA:
            res2[b].add_(torch.randn(res2[b].shape, generator=g, device=lam.device, dtype=lam.dtype), alpha=sigmas[b])
    return res2.view(expected.shape) if out is None else out


def _map(lam: Tensor, z: Tensor, sigmas: list[float], fold: bool, exact_below: float, out: Tensor | None) -> Tensor:
    """The moment-matched map of ``z`` for cases ``(n, elements)``, all folded or all rounded."""
    if not fold:
        return _rounded(lam, z, exact_below < _SHEPPARD_AND_SKEW, out)
    if all(v == sigmas[0] for v in sigmas):
        return _folded(lam, z, sigmas[0] ** 2, out)
    return _folded(lam, z, torch.tensor(sigmas, dtype=lam.dtype).square_().to(lam.device).view(-1, 1), out)


def _rounded(lam: Tensor, z: Tensor, clamp_root: bool, out: Tensor | None) -> Tensor:
    """round(λ + S z + (z² − 1)/6) clamped at 0, with S = √(λ − 5/36); ``z`` is left unchanged.

    Where λ < 5/36 the root is NaN unless ``clamp_root``; callers leave it off only when the
    exact draw overwrites those elements. Seven element-wise passes.
    """
    root = torch.sub(lam, _SHEPPARD_AND_SKEW)
    if clamp_root:
        root.clamp_min_(0.0)
    res = torch.addcmul(lam, root.sqrt_(), z, out=root if out is None else out)  # λ + S z
    res.addcmul_(z, z, value=1.0 / 6.0).sub_(1.0 / 6.0)
    return res.round_().clamp_min_(0.0)


def _folded(lam: Tensor, z: Tensor, variance: float | Tensor, out: Tensor | None) -> Tensor:
    """λ + S z + c (z² − 1) with v = λ + σ², c = λ / (6 v), S = √(v − 2c²); overwrites ``z``. Eight passes.

    ``variance``: σ², one value or one per case ``(n, 1)``.
    """
    v = torch.add(lam, variance)
    r = torch.div(lam, v)  # 6 c
    root = v.addcmul_(r, r, value=-2.0 / 36.0).sqrt_()
    res = torch.addcmul(lam, root, z, out=root if out is None else out)  # λ + S z
    return res.addcmul_(r, z.square_().sub_(1.0), value=1.0 / 6.0)
