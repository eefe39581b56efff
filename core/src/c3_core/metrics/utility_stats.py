"""Summaries of per-case utility with percentile-bootstrap confidence intervals."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


def percentile(values: Tensor, q: float) -> Tensor:
    """The q-th percentile (0–100) with linear interpolation (NumPy's default), along the last axis."""
    return torch.quantile(values.double(), q / 100.0, dim=-1)


def bootstrap_ci(
    values: Tensor,
    statistic: Callable[[Tensor], Tensor],
    generator: torch.Generator,
    n_boot: int = 1000,
    ci: float = 0.95,
) -> tuple[float, float]:
    """Percentile-bootstrap CI of ``statistic`` (applied along the last axis) over resampled cases."""
    v = values.double().flatten()
    if v.numel() == 0:
        raise ValueError("bootstrap of zero cases")
    idx = torch.randint(0, v.numel(), (n_boot, v.numel()), generator=generator)
    stats = statistic(v[idx])
    lo, hi = torch.quantile(stats, torch.tensor([(1 - ci) / 2, 1 - (1 - ci) / 2], dtype=torch.float64))
    return float(lo), float(hi)


def utility_summary(u: Tensor, generator: torch.Generator, n_boot: int = 1000, ci: float = 0.95) -> dict[str, float | list[float] | int]:
    """Mean and 10th percentile of per-case utility with percentile-bootstrap CIs."""
    v = u.double().flatten()
    return {
        "n": int(v.numel()),
        "mean": float(v.mean()),
        "mean_ci": list(bootstrap_ci(v, lambda x: x.mean(-1), generator, n_boot, ci)),
        "p10": float(percentile(v, 10)),
        "p10_ci": list(bootstrap_ci(v, lambda x: percentile(x, 10), generator, n_boot, ci)),
        "ci_level": ci,
        "n_boot": n_boot,
    }
