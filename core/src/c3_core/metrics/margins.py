"""Decision margins over a neighbourhood, and other per-unit failure signals, as functional kernels.

Signals built from them are "higher = more likely to fail".

A *unit* is what can fail: an exam for a multi-class task, an (exam, finding) pair for a
multi-label task (a finding flips on its own). Every function returns one value per unit,
``(B,)`` for multi-class, ``(B, F)`` for multi-label.

* :func:`decision_margin`: the signed distance of a prediction to the decision boundary of a
  *reference* prediction (positive: same decision). Multi-class: p[ref] - max_{c != ref} p_c;
  multi-label: (p_f - t) on the side of the reference decision.
* :func:`worst_margin`: the smallest decision margin over the clean image and its admitted
  counterfactuals (the neighbourhood's worst case; negative when an admitted counterfactual flips).
* :func:`admitted_flips`: how many admitted counterfactuals change the decision.
* :func:`severity_margin`: the smallest severity fraction (0 = identity, 1 = the operator's
  extreme) at which the decision changes, per operator, averaged over operators (never = 1.25).
* :func:`predictive_entropy`, :func:`spread`: the model's own uncertainty, and the variance of
  probabilities over TTA views or ensemble members.

Segmentation (binary lesion masks; the unit is the volume, every function returns ``(B,)``):

* :func:`mask_dice`: Dice of two binary masks (1 when both are empty), float64;
* :func:`pairwise_dice`: the mean Dice over the unordered pairs of M masks of one volume (the
  deep-ensemble / TTA agreement of Zenk et al. 2024);
* :func:`dice_drop_failure`: a volume fails when its lesion Dice drops by at least ``min_drop``
  from the clean exam to the shifted one;
* :func:`region_uncertainty`, :func:`region_entropy`: 1 - mean max(p, 1 - p) and the mean binary
  entropy (nats) of the voxel probabilities over a region (predicted lesion, or the head);
* :func:`foreground`: the head, roughly: voxels above a fraction of the volume's 99th percentile.

The worst self-consistency over a neighbourhood is :func:`worst_margin` with a clean value of 1
and the counterfactuals' Dice to the clean prediction (see
:mod:`c3_core.experiments.failure_segmentation`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

NEVER = 1.25  # severity fraction recorded when no scanned severity changes the decision


def reference_decision(task: str, probs: Tensor, threshold: float) -> Tensor:
    """The clean decision: class index ``(B,)`` or positive set ``(B, F)`` (bool)."""
    if task == "multiclass":
        return probs.argmax(1)
    if task == "multilabel":
        return probs >= threshold
    raise ValueError(f"failure signals: classification tasks only, got {task!r}")


def decision_margin(task: str, probs: Tensor, reference: Tensor, threshold: float) -> Tensor:
    """Signed margin of ``probs (N, C)`` to the boundary of ``reference`` (N rows of decisions)."""
    if task == "multiclass":
        own = probs.gather(1, reference.view(-1, 1)).squeeze(1)
        other = probs.scatter(1, reference.view(-1, 1), float("-inf")).amax(1)
        return own - other
    sign = reference.to(probs.dtype) * 2 - 1
    return sign * (probs - threshold)


def worst_margin(clean: Tensor, counterfactual: Tensor, admitted: Tensor) -> Tensor:
    """min over the clean margin ``(B, *U)`` and the admitted ``counterfactual`` margins ``(B, K, *U)``."""
    mask = admitted.view(*admitted.shape, *([1] * (counterfactual.ndim - 2)))
    cf = torch.where(mask, counterfactual, torch.full_like(counterfactual, math.inf))
    return torch.minimum(clean, cf.amin(1))


def admitted_flips(counterfactual: Tensor, admitted: Tensor) -> Tensor:
    """Number of admitted counterfactuals whose margin is negative (the decision changed)."""
    mask = admitted.view(*admitted.shape, *([1] * (counterfactual.ndim - 2)))
    return ((counterfactual < 0) & mask).sum(1).to(counterfactual.dtype)


def severity_margin(margins: Tensor, admitted: Tensor, fractions: Tensor) -> Tensor:
    """Mean over operators of the first severity fraction whose admitted counterfactual flips.

    ``margins (B, O, L, *U)``: decision margins at L severities per operator O, ordered from the
    mildest; ``admitted (B, O, L)``; ``fractions (O, L)`` in [0, 1]. A rejected counterfactual
    never counts as a flip. Returns ``(B, *U)``; :data:`NEVER` where nothing flips.
    """
    extra = margins.ndim - 3
    mask = admitted.view(*admitted.shape, *([1] * extra))
    flips = (margins < 0) & mask
    frac = fractions.to(margins.dtype).view(1, *fractions.shape, *([1] * extra)).expand_as(margins)
    first = torch.where(flips, frac, torch.full_like(frac, NEVER)).amin(2)
    return first.mean(1)


def predictive_entropy(task: str, probs: Tensor) -> Tensor:
    """Categorical entropy per exam (multi-class) or binary entropy per finding (multi-label), nats."""
    p = probs.double().clamp(1e-12, 1 - 1e-12)
    if task == "multiclass":
        return -(p * p.log()).sum(1).to(probs.dtype)
    return (-(p * p.log() + (1 - p) * (1 - p).log())).to(probs.dtype)


def spread(task: str, stack: Tensor) -> Tensor:
    """Variance over the first axis of ``stack (M, B, C)``: per finding, or summed over classes."""
    var = stack.double().var(0, unbiased=False)
    return (var.sum(1) if task == "multiclass" else var).to(stack.dtype)


# -- segmentation -------------------------------------------------------------------------------


def mask_dice(a: Tensor, b: Tensor, empty: float = 1.0) -> Tensor:
    """Dice 2|a & b| / (|a| + |b|) of binary masks ``(N, ...)`` per row, float64 (``empty`` when both are empty).

    Non-bool inputs are binarised as ``>= 0.5``. Voxel counts are exact integers, so a Dice
    difference is compared without float32 rounding.
    """
    if a.shape != b.shape or a.ndim < 2:
        raise ValueError(f"mask_dice: expected masks of the same shape (N, ...), got {tuple(a.shape)} and {tuple(b.shape)}")
    x = (a if a.dtype == torch.bool else a >= 0.5).flatten(1)
    y = (b if b.dtype == torch.bool else b >= 0.5).flatten(1)
    inter = (x & y).sum(1).double()
    total = (x.sum(1) + y.sum(1)).double()
    return torch.where(total > 0, 2 * inter / total.clamp_min(1), torch.full_like(total, float(empty)))


def pairwise_dice(masks: Tensor, empty: float = 1.0) -> Tensor:
    """Mean Dice over the M(M-1)/2 unordered pairs of ``masks (M, B, ...)`` -> ``(B,)`` float64 (1 for M = 1)."""
    m = masks.shape[0]
    if m < 2:
        return torch.ones(masks.shape[1], dtype=torch.float64)
    pairs = [mask_dice(masks[i], masks[j], empty) for i in range(m) for j in range(i + 1, m)]
    return torch.stack(pairs).mean(0)


def dice_drop_failure(dice_clean: Tensor, dice_shifted: Tensor, min_drop: float = 0.1, tol: float = 1e-9) -> Tensor:
    """1.0 where ``dice_clean - dice_shifted >= min_drop`` (Dice points; ``tol`` absorbs float rounding), else 0.0."""
    return ((dice_clean.double() - dice_shifted.double()) >= float(min_drop) - tol).double()


def region_uncertainty(probs: Tensor, region: Tensor, empty: float = 0.5) -> Tensor:
    """1 - mean over ``region`` of max(p, 1 - p), per volume: 0 = every voxel certain, 0.5 = all at p = 0.5.

    ``probs (B, 1, *sp)`` foreground probabilities, ``region`` bool of the same shape; ``empty``
    (default 0.5, the most uncertain value) where the region holds no voxel.
    """
    p = probs.double().flatten(1)
    r = region.flatten(1).to(torch.float64)
    n = r.sum(1)
    conf = (torch.maximum(p, 1 - p) * r).sum(1) / n.clamp_min(1)
    return torch.where(n > 0, 1 - conf, torch.full_like(n, float(empty)))


def region_entropy(probs: Tensor, region: Tensor, empty: float = math.log(2)) -> Tensor:
    """Mean binary entropy -p ln p - (1-p) ln(1-p) (nats) of the voxels in ``region``, per volume
    (``empty``, default ln 2 = the maximum, where the region holds no voxel)."""
    p = probs.double().clamp(1e-12, 1 - 1e-12).flatten(1)
    r = region.flatten(1).to(torch.float64)
    n = r.sum(1)
    h = -(p * p.log() + (1 - p) * (1 - p).log())
    return torch.where(n > 0, (h * r).sum(1) / n.clamp_min(1), torch.full_like(n, float(empty)))


def foreground(image: Tensor, fraction: float = 0.1, quantile: float = 0.99) -> Tensor:
    """Voxels of ``image (B, C, *sp)`` above ``fraction`` of the volume's ``quantile`` intensity
    (over every channel) -> bool ``(B, 1, *sp)``: the head in a magnitude MR volume, where the
    background is noise a few percent of tissue signal (FLAIR's nulled CSF may fall outside)."""
    flat = image.detach().float().flatten(1)
    q = torch.quantile(flat, quantile, dim=1) if flat.shape[1] <= 16_000_000 else flat.kthvalue(
        max(1, int(quantile * flat.shape[1])), dim=1).values
    level = (fraction * q).view(-1, *([1] * (image.ndim - 1)))
    return (image.detach().float() > level).any(1, keepdim=True)
