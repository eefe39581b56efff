"""Branch-free sRGB transfer functions for the operators' hot path (IEC 61966-2-1).

Same curves as :func:`c3_fundus.colour.srgb_to_linear` / :func:`~c3_fundus.colour.linear_to_srgb`
(which stay the reference forms), written without ``torch.where`` and ``pow``: the toe and the
power law are evaluated on the input clamped to either side of the knee and added, so

    f(x) = power(max(x, knee)) + toe(min(x, knee)) − toe(knee),

which is the toe below the knee and the power law above it; the standard's two pieces meet to
3e-8 at the knee, below float32 resolution there. The power law is exp(γ · log(·)); results
are clamped to [0, 1] so that rounding never leaves the domain. Values agree with the reference
forms to a few float32 ulps, gradients too (each piece's clamp passes zero gradient outside its
side). Inputs are clipped to [0, 1] first, as in the reference forms, and never modified. When
no gradient is recorded, the work runs in place on two fresh buffers (a batch of 512² RGB
images is 25 MB a buffer, and fresh buffers cost page faults).
"""

from __future__ import annotations

import torch
from torch import Tensor

from c3_fundus.colour import LINEAR_KNEE, SRGB_KNEE

_INV_GAIN_POW = 1.055**-2.4  # ((x + 0.055) / 1.055)^2.4 = (x + 0.055)^2.4 · 1.055^-2.4


def records_grad(x: Tensor) -> bool:
    """Whether autograd records operations on ``x`` (then in-place shortcuts are not taken)."""
    return torch.is_grad_enabled() and x.requires_grad


def srgb_to_linear_fast(x: Tensor, overwrite: bool = False) -> Tensor:
    """sRGB-encoded values in [0, 1] -> linear relative radiance in [0, 1] (input clipped first).

    ``overwrite``: ``x`` is a buffer the caller owns and drops, and the power law runs in it (the
    same operations on the same values, so the same result bit for bit, without a fresh buffer of
    the batch's size); ignored when autograd records ``x``.
    """
    if records_grad(x):
        y = x.clamp(0.0, 1.0)
        power = torch.exp(torch.log(y.clamp_min(SRGB_KNEE).add_(0.055)).mul_(2.4)).mul(_INV_GAIN_POW)
        toe = y.clamp_max(SRGB_KNEE).sub_(SRGB_KNEE).mul_(1.0 / 12.92)  # 0 above the knee
        return power.add_(toe).clamp_(0.0, 1.0)
    toe = x.clamp(0.0, SRGB_KNEE).sub_(SRGB_KNEE).mul_(1.0 / 12.92)  # read before x may be overwritten
    base = x.clamp_(SRGB_KNEE, 1.0) if overwrite else x.clamp(SRGB_KNEE, 1.0)
    power = base.add_(0.055).log_().mul_(2.4).exp_().mul_(_INV_GAIN_POW)
    return power.add_(toe).clamp_(0.0, 1.0)


def linear_to_srgb_fast(x: Tensor, overwrite: bool = False) -> Tensor:
    """Linear relative radiance -> sRGB encoding in [0, 1]; light above 1 saturates (clipped).

    ``overwrite`` as in :func:`srgb_to_linear_fast`.
    """
    if records_grad(x):
        y = x.clamp(0.0, 1.0)
        power = torch.exp(torch.log(y.clamp_min(LINEAR_KNEE)).mul_(1.0 / 2.4)).mul(1.055).sub_(0.055)
        toe = y.clamp_max(LINEAR_KNEE).sub_(LINEAR_KNEE).mul_(12.92)  # 0 above the knee
        return power.add_(toe).clamp_(0.0, 1.0)
    toe = x.clamp(0.0, LINEAR_KNEE).sub_(LINEAR_KNEE).mul_(12.92)  # read before x may be overwritten
    base = x.clamp_(LINEAR_KNEE, 1.0) if overwrite else x.clamp(LINEAR_KNEE, 1.0)
    power = base.log_().mul_(1.0 / 2.4).exp_().mul_(1.055).sub_(0.055)
    return power.add_(toe).clamp_(0.0, 1.0)


def srgb_to_linear_(x: Tensor) -> Tensor:
    """:func:`srgb_to_linear_fast` that may overwrite ``x`` (a buffer the caller owns and drops)."""
    return srgb_to_linear_fast(x, overwrite=True)


def linear_to_srgb_(x: Tensor) -> Tensor:
    """:func:`linear_to_srgb_fast` that may overwrite ``x`` (a buffer the caller owns and drops)."""
    return linear_to_srgb_fast(x, overwrite=True)


def power_law(x: Tensor, exponent: Tensor, overwrite: bool = False) -> Tensor:
    """``x.clamp(0, 1) ** exponent`` for exponents > 0 (broadcast), as exp(exponent · log x).

    Inputs are clamped below at the smallest normal float, so 0 maps to tiny ** exponent (below
    1e-30 for exponents >= 0.8) with a zero gradient there, not pow's infinite one below 1.
    ``overwrite`` as in :func:`srgb_to_linear_fast`.
    """
    if records_grad(x):
        return torch.exp(torch.log(x.clamp(torch.finfo(x.dtype).tiny, 1.0)).mul_(exponent))
    y = x.clamp_(torch.finfo(x.dtype).tiny, 1.0) if overwrite else x.clamp(torch.finfo(x.dtype).tiny, 1.0)
    return y.log_().mul_(exponent).exp_()


def power_law_(x: Tensor, exponent: Tensor) -> Tensor:
    """:func:`power_law` in place on ``x`` (a buffer the caller owns), bit for bit the same values."""
    return power_law(x, exponent, overwrite=True)
