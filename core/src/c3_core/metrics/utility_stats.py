"""Summaries of per-case utility U(x) with percentile-bootstrap confidence intervals.

Bootstrap: B replicates, each resampling the N cases with replacement (indices drawn with
``torch.randint`` from the caller's ``torch.Generator`` — no global RNG); the CI is the
((1 − ci)/2, (1 + ci)/2) quantile pair of the replicate statistics, linear interpolation.
Percentiles use linear interpolation between order statistics (NumPy's default ``"linear"``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import torch
from torch import Tensor

__all__ = ["bootstrap_ci", "percentile", "utility_summary"]

_MAX_ELEMENTS_PER_CHUNK = 1 << 22  # replicates per chunk: max(1, this // N); the chunks fix the arithmetic
_MAX_ELEMENTS_PER_PIECE = 1 << 18  # bounds the (replicates x cases) matrices held at once (see _pieces)


def percentile(values: Tensor, q: float) -> Tensor:
    """The q-th percentile (q in [0, 100]) along the last axis, linear interpolation (NumPy default)."""
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"q must be in [0, 100], got {q}")
    return torch.quantile(values.double(), q / 100.0, dim=-1)


def _validated(values: Tensor) -> Tensor:
    v = values.detach().double().flatten()
    if v.numel() == 0:
        raise ValueError("bootstrap of zero cases")
    if not bool(torch.isfinite(v).all()):
        raise ValueError("values must be finite (NaN/inf found)")
    return v


def _pieces(start: int, stop: int, n: int, generator: torch.Generator) -> Iterator[tuple[int, int]]:
    """Replicate ranges ``[a, b)`` that cut the chunk ``[start, stop)`` of ``n`` cases so that
    about ``_MAX_ELEMENTS_PER_PIECE`` indices (8 bytes each, and as many values) are held at once,
    with the numbers of the whole chunk.

    Same numbers: a CPU generator draws the indices one after another whatever the shape, and a
    statistic reduces each row the same way in any batch of two or more rows, whereas a batch of
    a single row is reduced in another order when threads split it (a mean's last bits differ).
    So a piece has at least two rows unless its chunk has one, and a CUDA generator (whose draws
    depend on the shape) keeps whole chunks."""
    size = max(2, _MAX_ELEMENTS_PER_PIECE // n)
    if stop - start <= size or generator.device.type != "cpu":
        yield start, stop
        return
    bounds = [*range(start, stop, size), stop]
    if bounds[-1] - bounds[-2] == 1:
        del bounds[-2]  # a lone last row joins the piece before it
    yield from zip(bounds[:-1], bounds[1:])


def _replicates(
    v: Tensor, statistics: Sequence[Callable[[Tensor], Tensor]], generator: torch.Generator, n_boot: int
) -> Tensor:
    """(len(statistics), n_boot) replicate values; every statistic sees the same resamples."""
    if n_boot < 1:
        raise ValueError("n_boot must be >= 1")
    n = v.numel()
    chunk = max(1, _MAX_ELEMENTS_PER_CHUNK // n)
    out = torch.empty((len(statistics), n_boot), dtype=torch.float64, device=v.device)
    for first in range(0, n_boot, chunk):
        for start, stop in _pieces(first, min(n_boot, first + chunk), n, generator):
            idx = torch.randint(0, n, (stop - start, n), generator=generator, device=generator.device)
            sample = v.index_select(0, idx.to(v.device).flatten()).view(stop - start, n)  # faster than v[idx] on CPU
            del idx
            for s, stat in enumerate(statistics):
                r = torch.as_tensor(stat(sample), dtype=torch.float64, device=v.device)
                if r.shape != (stop - start,):
                    raise ValueError("statistic must reduce the last axis: (B, N) -> (B,)")
                out[s, start:stop] = r
    return out


def _interval(replicates: Tensor, ci: float) -> tuple[float, float]:
    if not 0.0 < ci < 1.0:
        raise ValueError(f"ci must be in (0, 1), got {ci}")
    alpha = (1.0 - ci) / 2.0
    q = torch.tensor([alpha, 1.0 - alpha], dtype=torch.float64, device=replicates.device)
    lo, hi = torch.quantile(replicates, q)
    return float(lo), float(hi)


def bootstrap_ci(
    values: Tensor,
    statistic: Callable[[Tensor], Tensor],
    generator: torch.Generator,
    n_boot: int = 1000,
    ci: float = 0.95,
) -> tuple[float, float]:
    """Percentile-bootstrap CI ``(lower, upper)`` of ``statistic`` over cases.

    ``values``: per-case values (flattened to (N,)). ``statistic`` must be vectorised over
    replicates: it receives a (B, N) float64 tensor and returns (B,) — e.g.
    ``lambda x: x.mean(-1)``. The same generator state gives the same interval.
    """
    v = _validated(values)
    return _interval(_replicates(v, [statistic], generator, n_boot)[0], ci)


def _mean(x: Tensor) -> Tensor:
    return x.mean(-1)


def _p10(x: Tensor) -> Tensor:
    return percentile(x, 10.0)


def utility_summary(
    u: Tensor, generator: torch.Generator, n_boot: int = 1000, ci: float = 0.95
) -> dict[str, float | list[float] | int | str]:
    """Mean and 10th percentile of per-case utility, each with a percentile-bootstrap CI.

    Both CIs come from the same B resamples of the cases. Returns ``n``, ``mean``, ``mean_ci``
    ``[lo, hi]``, ``p10``, ``p10_ci``, ``ci_level``, ``n_boot`` and ``ci_method``.
    """
    v = _validated(u)
    reps = _replicates(v, [_mean, _p10], generator, n_boot)
    return {
        "n": int(v.numel()),
        "mean": float(v.mean()),
        "mean_ci": list(_interval(reps[0], ci)),
        "p10": float(percentile(v, 10.0)),
        "p10_ci": list(_interval(reps[1], ci)),
        "ci_level": ci,
        "n_boot": n_boot,
        "ci_method": "percentile bootstrap over cases",
    }
