"""Magnitude noise: Rician (one coil) and non-central chi (L coils, root-sum-of-squares).

SNR convention used throughout c3-mri: SNR = S_ref / σ, where σ is the standard deviation of
the Gaussian noise in each real and imaginary channel of each coil, and S_ref is

* the mean signal of white matter (voxels whose WM fraction ``tissue[2]`` exceeds 0.9) when a
  tissue map is given, otherwise
* the mean of the foreground: voxels at or above 20 % of the image's 99th percentile, both
  taken over a regular subsample of at most 2^18 voxels (exact for smaller images).
"""

from __future__ import annotations

import torch
from torch import Tensor

WM_THRESHOLD = 0.9
FOREGROUND_FRACTION = 0.2
_MAX_STAT_VOXELS = 1 << 18


def noncentral_chi_magnitude(signal: Tensor, sigma: float | Tensor, coils: int, generator: torch.Generator,
                              out: Tensor | None = None) -> Tensor:
    """|s + n| over L coils with complex Gaussian noise of std ``sigma`` per real channel.

    The true signal is put in coil 1's real part (equal coil sensitivities would only rescale):
    M = sqrt((s + n_1r)² + n_1i² + Σ_{l>1} (n_lr² + n_li²)). For L = 1 this is Rician; in
    general M/σ follows a non-central chi distribution with 2L degrees of freedom and
    non-centrality s/σ. ``out``: a tensor of ``signal``'s shape to write the magnitude into.

    Cost: the 2L normal draws (drawn with std σ, so no scaling pass), one add, one hypot (L = 1).
    """
    n = torch.empty((2 * coils, *signal.shape), device=signal.device, dtype=signal.dtype)
    n.normal_(0.0, float(sigma), generator=generator)  # the same values as randn(...) * sigma
    real = n[0].add_(signal)
    if coils == 1:
        return torch.hypot(real, n[1], out=out)  # Rician
    power = real.square_().add_(n[1:].square_().sum(0))
    return power.sqrt_() if out is None else torch.sqrt(power, out=out)


def _subsample(flat: Tensor) -> Tensor:
    step = max(1, flat.shape[1] // _MAX_STAT_VOXELS)
    return flat[:, ::step]


def reference_signal(image: Tensor, tissue: Tensor | None = None) -> Tensor:
    """S_ref per case (B,) for ``image (B, C, *sp)`` (first channel), see the module docstring."""
    x = image[:, 0].flatten(1)
    if tissue is not None:
        wm = tissue[:, 2].flatten(1) > WM_THRESHOLD
        n = wm.sum(1)
        mean_wm = (x * wm).sum(1) / n.clamp_min(1)
        if bool((n > 0).all()):
            return mean_wm
    sub = _subsample(x)
    p99 = torch.quantile(sub, 0.99, dim=1, keepdim=True)
    fg = sub >= FOREGROUND_FRACTION * p99
    mean_fg = (sub * fg).sum(1) / fg.sum(1).clamp_min(1)
    if tissue is not None:
        return torch.where(n > 0, mean_wm, mean_fg)
    return mean_fg
