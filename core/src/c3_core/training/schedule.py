"""Step-indexed schedules for the learning rate and the consistency weight λ.

Both are pure functions of the global optimiser step, so a resumed run continues on exactly the
curve an uninterrupted one follows (no scheduler state to save).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

LambdaShape = Literal["constant", "linear", "cosine"]
LAMBDA_SHAPES: tuple[str, ...] = ("constant", "linear", "cosine")


@dataclass(frozen=True)
class LambdaSchedule:
    """λ(step) for Eq. 1: ``constant`` λ, or a ramp from 0 to λ over ``warmup_steps``.

    ``linear`` rises linearly; ``cosine`` follows ``λ·(1 − cos(π·t))/2`` (gentle start and end).
    After the warm-up λ stays at its final value. ``warmup_steps = 0`` is the constant schedule.
    """

    lam: float
    shape: LambdaShape = "constant"
    warmup_steps: int = 0

    def __post_init__(self) -> None:
        if not float(self.lam) >= 0.0 or not math.isfinite(float(self.lam)):
            raise ValueError(f"lambda must be a finite number >= 0, got {self.lam!r}")
        if self.shape not in LAMBDA_SHAPES:
            raise ValueError(f"lambda schedule must be one of {LAMBDA_SHAPES}, got {self.shape!r}")
        if int(self.warmup_steps) < 0:
            raise ValueError(f"warm-up steps must be >= 0, got {self.warmup_steps!r}")

    def __call__(self, step: int) -> float:
        if self.shape == "constant" or self.warmup_steps == 0 or step >= self.warmup_steps:
            return float(self.lam)
        t = max(step, 0) / self.warmup_steps
        ramp = t if self.shape == "linear" else 0.5 * (1.0 - math.cos(math.pi * t))
        return float(self.lam) * ramp


def warmup_cosine_lr(step: int, total_steps: int, peak: float, warmup_fraction: float = 0.1, floor: float = 0.01) -> float:
    """Learning rate at ``step``: linear warm-up to ``peak`` over ``warmup_fraction`` of the run,
    then cosine decay to ``floor·peak`` at ``total_steps``."""
    if total_steps <= 0:
        raise ValueError(f"total_steps must be > 0, got {total_steps}")
    warm = max(1, round(warmup_fraction * total_steps))
    if step < warm:
        return peak * (step + 1) / warm
    t = min(1.0, (step - warm) / max(1, total_steps - warm))
    return peak * (floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * t)))
