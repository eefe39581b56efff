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
