"""Shift-stable utility (C³ paper §2.1, Eq. 3): ``U(x) = min over x' ∈ N(x) of s(f(x'), y)``.

N(x) is the original x itself (the identity transform) together with its *admitted*
counterfactuals; rejected ones are not in the neighbourhood. Hence ``U(x) <= s(x)`` always, and U
is defined (= s(x)) even when the gate rejects every counterfactual.

Per-case scores ``s`` are pure, batched functions returning ``(B,)`` in [0, 1], higher is better:
:func:`true_class_probability`, :func:`one_minus_brier` (multiclass and multi-label) and
:func:`dice_score`. :func:`builtin_score_functions` returns a fresh name -> function mapping;
there is no module-level registry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor
from torch.nn import functional as F


class ScoreFunction(Protocol):
    """A per-case score: ``(prediction (B, ...), target (B, ...)) -> (B,)`` in [0, 1], higher is better."""

    def __call__(self, prediction: Tensor, target: Tensor, /) -> Tensor: ...


def _check_class_targets(probs: Tensor, target: Tensor) -> Tensor:
    if probs.ndim != 2 or target.shape != probs.shape[:1]:
        raise ValueError(f"expected probs (B, C) and target (B,), got {tuple(probs.shape)} and {tuple(target.shape)}")
    if target.is_floating_point() and target.numel() and not bool((target == target.round()).all()):
        raise ValueError("multiclass target must hold class indices")
    idx = target.long()
    if idx.numel() and not bool(((idx >= 0) & (idx < probs.shape[1])).all()):
        raise ValueError(f"class index out of range [0, {probs.shape[1]})")
    return idx


def true_class_probability(probs: Tensor, target: Tensor) -> Tensor:
    """``p(y | x)`` per case.

    Args:
        probs: ``(B, C)`` class probabilities (softmax output, rows summing to 1).
        target: ``(B,)`` class indices.

    Returns:
        ``(B,)`` in [0, 1].
    """
    idx = _check_class_targets(probs, target)
    return probs.gather(1, idx.unsqueeze(1)).squeeze(1)


def one_minus_brier(probs: Tensor, target: Tensor, unlabelled_score: float = 1.0) -> Tensor:
    """``1 − Brier`` per case, in [0, 1].

    Multiclass (``target`` ``(B,)`` class indices, ``probs`` ``(B, C)`` on the simplex):
    ``1 − Σ_c (p_c − onehot_c)² / 2``. The sum is at most 2 (all mass on a wrong class), so
    halving it maps the score onto [0, 1]: 1 for a confident correct prediction, 0 for a
    confident wrong one.

    Multi-label (``target`` ``(B, F)`` in [0, 1] or NaN, ``probs`` ``(B, F)`` sigmoid
    outputs): ``1 − mean over labelled findings of (p − y)²``; NaN targets (unlabelled or
    uncertain findings) are ignored. A case with no labelled finding scores
    ``unlabelled_score`` (default 1.0: nothing to get wrong).
    """
    if target.ndim == 1:
        idx = _check_class_targets(probs, target)
        onehot = F.one_hot(idx, probs.shape[1]).to(probs.dtype)
        return 1.0 - ((probs - onehot) ** 2).sum(1) / 2.0
    if probs.ndim != 2 or target.shape != probs.shape:
        raise ValueError(
            f"multi-label: expected probs (B, F) and target (B, F), got {tuple(probs.shape)} and {tuple(target.shape)}"
        )
    y = target.to(probs.dtype)
    known = ~torch.isnan(y)
    if not bool(((y[known] >= 0) & (y[known] <= 1)).all()):
        raise ValueError("multi-label targets must be in [0, 1] or NaN")
    sq = torch.where(known, (probs - torch.nan_to_num(y)) ** 2, torch.zeros_like(probs))
    n = known.sum(1)
    score = 1.0 - sq.sum(1) / n.clamp_min(1).to(probs.dtype)
    return torch.where(n > 0, score, torch.full_like(score, unlabelled_score))


def dice_score(pred_mask: Tensor, true_mask: Tensor, empty_score: float = 1.0, threshold: float = 0.5) -> Tensor:
    """Dice of two binary masks per case, over all non-batch dims.

    Args:
        pred_mask: ``(B, ...)`` bool mask, or numbers binarised as ``>= threshold``.
        true_mask: same shape.
        empty_score: Dice when both masks are empty (explicit rule, default 1.0); one empty and
            the other not gives 0.
        threshold: binarisation of non-bool inputs.

    Returns:
        ``(B,)`` float32 in [0, 1]; voxel counts are exact.
    """
    if pred_mask.shape != true_mask.shape or pred_mask.ndim < 2:
        raise ValueError(
            f"expected masks of the same shape (B, ...), got {tuple(pred_mask.shape)} and {tuple(true_mask.shape)}"
        )
    p = (pred_mask if pred_mask.dtype == torch.bool else pred_mask >= threshold).flatten(1)
    t = (true_mask if true_mask.dtype == torch.bool else true_mask >= threshold).flatten(1)
    inter = (p & t).sum(1)
    total = p.sum(1) + t.sum(1)
    dice = 2.0 * inter.double() / total.clamp_min(1).double()
    return torch.where(total > 0, dice, torch.full_like(dice, empty_score)).float()


def builtin_score_functions() -> dict[str, ScoreFunction]:
    """A fresh mapping of the built-in per-case scores (callers may add to it freely).

    Keys: ``"true_class_probability"``, ``"one_minus_brier"``, ``"dice"``.
    """
    return {
        "true_class_probability": true_class_probability,
        "one_minus_brier": one_minus_brier,
        "dice": dice_score,
    }


@dataclass(frozen=True)
class UtilityResult:
    """Per-case shift-stable utility.

    Attributes:
        utility: ``(B,)`` U(x) = min(s(x), min over admitted k of s(x'_k)).
        argmin: ``(B,)`` long, the index k of the worst admitted counterfactual, or −1 when the
            original is the worst case (ties go to the original, then to the lowest k).
    """

    utility: Tensor
    argmin: Tensor


def shift_stable_utility(score_orig: Tensor, score_cf: Tensor, admitted: Tensor) -> UtilityResult:
    """U over N(x) = {x} ∪ {admitted counterfactuals}.

    Args:
        score_orig: ``(B,)`` scores of the originals.
        score_cf: ``(B, K)`` scores of the counterfactuals (K may be 0).
        admitted: ``(B, K)`` bool from the validity gate; rejected scores are ignored, even NaN.

    Raises:
        ValueError: on shape mismatch, or a NaN score among the original or admitted ones.
    """
    if (
        score_orig.ndim != 1
        or score_cf.ndim != 2
        or score_cf.shape[0] != score_orig.shape[0]
        or admitted.shape != score_cf.shape
    ):
        raise ValueError(
            f"expected score_orig (B,), score_cf (B, K), admitted (B, K); got {tuple(score_orig.shape)}, "
            f"{tuple(score_cf.shape)}, {tuple(admitted.shape)}"
        )
    adm = admitted.to(device=score_cf.device, dtype=torch.bool)
    if bool(torch.isnan(score_orig).any()) or bool((torch.isnan(score_cf) & adm).any()):
        raise ValueError("NaN score for an original or an admitted counterfactual")
    # Column 0 is the original; columns 1..K the counterfactuals, rejected ones at +inf.
    inf = torch.full_like(score_cf, float("inf"))
    table = torch.cat([score_orig.unsqueeze(1).to(score_cf.dtype), torch.where(adm, score_cf, inf)], dim=1)
    worst = table.min(dim=1).values
    # First column reaching the minimum: the original wins ties, then the lowest k.
    first = (table == worst.unsqueeze(1)).to(torch.uint8).argmax(dim=1)
    return UtilityResult(utility=worst, argmin=first - 1)
