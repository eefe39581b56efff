"""Concept directions in latent space: class-mean difference, logistic probe, ridge, projection, spread."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def mean_difference_direction(z: Tensor, positive: Tensor) -> Tensor:
    """``mu_1 - mu_0`` of latent codes ``z (N, D)`` split by boolean ``positive (N,)``, unit norm."""
    pos = positive.bool()
    if pos.all() or not pos.any():
        raise ValueError("a concept direction needs positive and negative cases")
    v = z[pos].double().mean(0) - z[~pos].double().mean(0)
    return (v / v.norm()).to(z.dtype)


def probe_direction(z: Tensor, positive: Tensor, l2: float = 1e-2, steps: int = 50) -> Tensor:
    """Unit normal (in ``z``'s coordinates) of an L2-regularised logistic probe on standardised codes.

    Minimises ``mean BCE(xs @ w + b, y) + l2 * |w|^2`` by Newton's method (the bias is not
    penalised) in float64, so the result is deterministic.
    """
    pos = positive.bool()
    if pos.all() or not pos.any():
        raise ValueError("a concept direction needs positive and negative cases")
    x = z.double()
    mean, std = x.mean(0), x.std(0).clamp_min(1e-8)
    n, d = x.shape
    xs = torch.cat([(x - mean) / std, torch.ones((n, 1), dtype=torch.float64)], 1)
    y = pos.double()
    penalty = torch.full((d + 1,), 2.0 * l2, dtype=torch.float64)
    penalty[-1] = 0.0
    theta = torch.zeros(d + 1, dtype=torch.float64)
    for _ in range(steps):
        p = torch.sigmoid(xs @ theta)
        grad = xs.T @ (p - y) / n + penalty * theta
        hess = (xs.T * (p * (1 - p))) @ xs / n + torch.diag(penalty) + 1e-12 * torch.eye(d + 1, dtype=torch.float64)
        step = torch.linalg.solve(hess, grad)
        theta = theta - step
        if float(step.abs().max()) < 1e-12:
            break
    v = theta[:d] / std  # d(score)/dz
    return (v / v.norm()).to(z.dtype)


def ridge_direction(z: Tensor, target: Tensor, ridge: float) -> Tensor:
    """Unit direction in ``z`` along which a ridge regression predicts ``target (N,)`` to grow."""
    x = z.double()
    mean, std = x.mean(0), x.std(0).clamp_min(1e-8)
    xs = (x - mean) / std
    t = target.double() - target.double().mean()
    a = xs.T @ xs + ridge * torch.eye(x.shape[1], dtype=torch.float64)
    coef = torch.linalg.solve(a, xs.T @ t) / std
    n = coef.norm()
    if n == 0:
        raise ValueError("the regression target does not vary: no direction")
    return (coef / n).to(z.dtype)


def project_out(v: Tensor, basis: Sequence[Tensor]) -> Tensor:
    """``v`` with its components along ``basis`` (any vectors) removed, renormalised to unit length."""
    if not basis:
        return v / v.norm()
    q, _ = torch.linalg.qr(torch.stack([b.double() for b in basis], 1))
    r = v.double() - q @ (q.T @ v.double())
    n = r.norm()
    if n < 1e-6 * v.double().norm():
        raise ValueError("the concept direction lies in the span of the protected anatomy directions")
    return (r / n).to(v.dtype)


def within_class_std(z: Tensor, positive: Tensor, v: Tensor) -> float:
    """Pooled within-class standard deviation of the projections ``z @ v``."""
    s = (z.double() @ v.double())
    pos = positive.bool()
    resid = torch.cat([s[pos] - s[pos].mean(), s[~pos] - s[~pos].mean()])
    return float(torch.sqrt((resid**2).sum() / max(1, s.numel() - 2)))
