"""Consistency losses: L = L_sup + λ · E_{x' ∈ N(x)} D(f(x), f(x')) (C³ paper, Eq. 1–2)."""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F

Reduction = Literal["mean", "sum", "none"]


def categorical_kl(logits_ref: Tensor, logits_cf: Tensor) -> Tensor:
    """KL(p(x) || p(x')) per case with p = softmax over dim 1; logits (B, C) -> (B,)."""
    log_p = F.log_softmax(logits_ref, dim=1)
    log_q = F.log_softmax(logits_cf, dim=1)
    kl = (log_p.exp() * (log_p - log_q)).sum(1)
    return kl if kl.ndim == 1 else kl.flatten(1).mean(1)  # dense outputs: mean over positions


def bernoulli_kl(logits_ref: Tensor, logits_cf: Tensor) -> Tensor:
    """Sum over findings of KL(Bern(p) || Bern(p')); logits (B, F) -> (B,). Stable via logsigmoid."""
    lp, lnp = F.logsigmoid(logits_ref), F.logsigmoid(-logits_ref)
    lq, lnq = F.logsigmoid(logits_cf), F.logsigmoid(-logits_cf)
    kl = lp.exp() * (lp - lq) + lnp.exp() * (lnp - lnq)
    return kl.flatten(1).sum(1)


def soft_dice_distance(prob_ref: Tensor, prob_cf: Tensor, eps: float = 1.0) -> Tensor:
    """1 − (2<a, b> + eps) / (|a|₁ + |b|₁ + eps) over all non-batch dims; inputs in [0, 1] -> (B,)."""
    a, b = prob_ref.flatten(1), prob_cf.flatten(1)
    return 1.0 - (2.0 * (a * b).sum(1) + eps) / (a.sum(1) + b.sum(1) + eps)


def _reduce(values: Tensor, reduction: Reduction) -> Tensor:
    if reduction == "mean":
        return values.mean()
    if reduction == "sum":
        return values.sum()
    if reduction == "none":
        return values
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


class _Distance(nn.Module):
    def __init__(self, reduction: Reduction = "mean", detach_reference: bool = False) -> None:
        super().__init__()
        _reduce(torch.zeros(1), reduction)
        self.reduction = reduction
        self.detach_reference = detach_reference

    def _ref(self, x: Tensor) -> Tensor:
        return x.detach() if self.detach_reference else x


class CategoricalKL(_Distance):
    """KL(p(x) || p(x')) from logits (B, C). ``detach_reference`` stops the gradient through f(x)."""

    def forward(self, logits_ref: Tensor, logits_cf: Tensor) -> Tensor:
        return _reduce(categorical_kl(self._ref(logits_ref), logits_cf), self.reduction)


class BernoulliKL(_Distance):
    """Sum over findings of the Bernoulli KL, from logits (B, F)."""

    def forward(self, logits_ref: Tensor, logits_cf: Tensor) -> Tensor:
        return _reduce(bernoulli_kl(self._ref(logits_ref), logits_cf), self.reduction)


class SoftDiceDistance(_Distance):
    """Soft-Dice distance between two predicted masks (paper Eq. 2).

    With ``from_logits`` (default), 1-channel logits go through a sigmoid and multi-channel
    logits through a softmax whose foreground channels (1:) are compared.
    """

    def __init__(self, eps: float = 1.0, from_logits: bool = True, reduction: Reduction = "mean", detach_reference: bool = False) -> None:
        super().__init__(reduction, detach_reference)
        self.eps = float(eps)
        self.from_logits = from_logits

    def _prob(self, x: Tensor) -> Tensor:
        if not self.from_logits:
            return x
        return torch.sigmoid(x) if x.shape[1] == 1 else torch.softmax(x, 1)[:, 1:]

    def forward(self, out_ref: Tensor, out_cf: Tensor) -> Tensor:
        return _reduce(soft_dice_distance(self._prob(self._ref(out_ref)), self._prob(out_cf), self.eps), self.reduction)


def distance_for_task(task: str, **kwargs: object) -> nn.Module:
    """CategoricalKL (multiclass), BernoulliKL (multilabel) or SoftDiceDistance (segmentation)."""
    table = {"multiclass": CategoricalKL, "multilabel": BernoulliKL, "segmentation": SoftDiceDistance}
    if task not in table:
        raise ValueError(f"task must be one of {sorted(table)}, got {task!r}")
    return table[task](**kwargs)  # type: ignore[arg-type]


class ConsistencyTerms(NamedTuple):
    total: Tensor
    supervised: Tensor
    consistency: Tensor


class ConsistencyObjective(nn.Module):
    """L = L_sup(f(x), y) + λ · mean over admitted counterfactuals of D(f(x), f(x')).

    ``distance`` must use ``reduction="none"``. ``out_cf`` is (B, K, …); ``admitted`` (B, K)
    weights the pairs (rejected ones contribute nothing; none admitted -> consistency 0).
    """

    def __init__(self, supervised: nn.Module, distance: nn.Module, lam: float) -> None:
        super().__init__()
        if getattr(distance, "reduction", "none") != "none":
            raise ValueError("the distance module must use reduction='none'")
        if lam < 0:
            raise ValueError(f"lam must be >= 0, got {lam}")
        self.supervised, self.distance, self.lam = supervised, distance, float(lam)

    def forward(self, out_ref: Tensor, target: Tensor, out_cf: Tensor, admitted: Tensor | None = None) -> ConsistencyTerms:
        b, k = out_cf.shape[:2]
        sup = self.supervised(out_ref, target)
        ref = out_ref.repeat_interleave(k, 0)
        d = self.distance(ref, out_cf.reshape(b * k, *out_cf.shape[2:])).view(b, k)
        w = torch.ones_like(d) if admitted is None else admitted.to(d.dtype)
        cons = (d * w).sum() / w.sum().clamp_min(1.0)
        return ConsistencyTerms(sup + self.lam * cons, sup, cons)
