"""Shift-stable utility: U(x) = min over x' in N(x) of the case score s(f(x'), y).

N(x) is the original x (the identity transform) plus its *admitted* counterfactuals, so
U(x) <= s(x) and U is defined even when every counterfactual is rejected. Scores are per case,
in [0, 1], higher is better.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

ScoreFunction = Callable[[Tensor, Tensor], Tensor]


def true_class_probability(probs: Tensor, target: Tensor) -> Tensor:
    """p(y | x) for class-index targets: probs (B, C), target (B,) -> (B,)."""
    if probs.ndim != 2 or target.shape != probs.shape[:1]:
        raise ValueError(f"expected probs (B, C) and target (B,), got {tuple(probs.shape)} and {tuple(target.shape)}")
    return probs.gather(1, target.long().view(-1, 1)).squeeze(1)


def one_minus_brier(probs: Tensor, target: Tensor) -> Tensor:
    """1 − Brier per case, in [0, 1].

    Multiclass (target (B,) class indices): 1 − sum_c (p_c − onehot_c)² / 2 (the sum is at most 2).
    Multi-label (target (B, F) in {0, 1, NaN}): 1 − mean over labelled findings of (p − y)²;
    a case with no labelled finding scores 1.
    """
    if target.ndim == 1:
        onehot = torch.nn.functional.one_hot(target.long(), probs.shape[1]).to(probs.dtype)
        return 1.0 - ((probs - onehot) ** 2).sum(1) / 2.0
    if target.shape != probs.shape:
        raise ValueError(f"multi-label target {tuple(target.shape)} does not match probs {tuple(probs.shape)}")
    known = torch.isfinite(target)
    sq = torch.where(known, (probs - torch.nan_to_num(target.to(probs.dtype))) ** 2, torch.zeros_like(probs))
    n = known.sum(1)
    return torch.where(n > 0, 1.0 - sq.sum(1) / n.clamp_min(1), torch.ones_like(sq[:, 0]))


def dice_score(pred_mask: Tensor, true_mask: Tensor, empty_score: float = 1.0) -> Tensor:
    """Dice of binary masks per case (B, …) -> (B,); both empty -> ``empty_score``, one empty -> 0."""
    p = pred_mask.bool().flatten(1)
    t = true_mask.bool().flatten(1)
    inter = (p & t).sum(1).double()
    total = p.sum(1).double() + t.sum(1).double()
    return torch.where(total > 0, 2 * inter / total.clamp_min(1), torch.full_like(total, empty_score)).float()


def builtin_score_functions() -> dict[str, ScoreFunction]:
    """A fresh mapping of the built-in per-case scores."""
    return {
        "true_class_probability": true_class_probability,
        "one_minus_brier": one_minus_brier,
        "dice": lambda pred, true: dice_score(pred, true),
    }


@dataclass(frozen=True)
class UtilityResult:
    """``utility`` (B,); ``argmin`` (B,) = index k of the worst admitted counterfactual, −1 = original."""

    utility: Tensor
    argmin: Tensor


def shift_stable_utility(score_orig: Tensor, score_cf: Tensor, admitted: Tensor) -> UtilityResult:
    """U = min(score_orig, min over admitted k of score_cf[:, k]); rejected counterfactuals ignored."""
    if score_cf.ndim != 2 or score_cf.shape != admitted.shape or score_cf.shape[0] != score_orig.shape[0]:
        raise ValueError(
            f"expected score_orig (B,), score_cf (B, K), admitted (B, K); got {tuple(score_orig.shape)}, "
            f"{tuple(score_cf.shape)}, {tuple(admitted.shape)}"
        )
    masked = torch.where(admitted.bool(), score_cf, torch.full_like(score_cf, float("inf")))
    worst_cf, k = masked.min(1) if masked.shape[1] else (torch.full_like(score_orig, float("inf")), torch.zeros_like(score_orig, dtype=torch.long))
    use_cf = worst_cf < score_orig
    return UtilityResult(
        utility=torch.where(use_cf, worst_cf, score_orig),
        argmin=torch.where(use_cf, k, torch.full_like(k, -1)),
    )
