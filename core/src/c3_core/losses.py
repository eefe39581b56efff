"""Consistency losses (C³ paper §2.1, Eq. 1–2).

    L = L_sup(f(x), y) + λ · E_{x' ∈ N(x)} D(f(x), f(x'))

Three distances D, each first as a pure functional kernel returning one value per case ``(B,)``
and then as an ``nn.Module`` wrapper with a reduction:

- single-label classification: ``categorical_kl`` / :class:`CategoricalKL`, KL(p(x) ‖ p(x')) with
  p = softmax of the logits over dim 1;
- multi-label classification: ``bernoulli_kl`` / :class:`BernoulliKL`, the sum over findings of
  KL(Bern(p) ‖ Bern(p')) with p = sigmoid of the logits;
- segmentation: ``soft_dice_distance`` / :class:`SoftDiceDistance`, 1 − soft Dice (Eq. 2).

Direction: the *reference* (the original exam x) is always the first argument. The KLs are
therefore KL(p(x) ‖ p(x')), as in the paper; they are not symmetric. ``detach_reference=True``
stops the gradient through f(x), so the consistency term only pulls f(x') towards f(x) (the
"teacher on the original" variant); the default lets both sides move, as Eq. 1 is written.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F

Reduction = Literal["mean", "sum", "none"]
Average = Literal["pairs", "cases"]

_REDUCTIONS = ("mean", "sum", "none")


# -- functional kernels -------------------------------------------------------------------------
def _check_pair(name_a: str, a: Tensor, name_b: str, b: Tensor, min_ndim: int) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{name_a} {tuple(a.shape)} and {name_b} {tuple(b.shape)} must have the same shape")
    if a.ndim < min_ndim:
        raise ValueError(f"{name_a} must have at least {min_ndim} dims (B, C, ...), got {tuple(a.shape)}")


def categorical_kl(logits_ref: Tensor, logits_cf: Tensor) -> Tensor:
    """KL(p(x) ‖ p(x')) per case, p = softmax over dim 1, computed from log-softmax.

    Args:
        logits_ref: logits of the original, ``(B, C)`` (or dense ``(B, C, *spatial)``).
        logits_cf: logits of the counterfactual, same shape.

    Returns:
        ``(B,)``, non-negative; 0 iff the two distributions agree (logits equal up to a per-case
        constant). Dense inputs are averaged over positions.
    """
    _check_pair("logits_ref", logits_ref, "logits_cf", logits_cf, 2)
    log_p = F.log_softmax(logits_ref, dim=1)
    log_q = F.log_softmax(logits_cf, dim=1)
    kl = (log_p.exp() * (log_p - log_q)).sum(1)
    return kl.flatten(1).mean(1) if kl.ndim > 1 else kl


def bernoulli_kl(logits_ref: Tensor, logits_cf: Tensor) -> Tensor:
    """Sum over findings of KL(Bern(p) ‖ Bern(p')), p = sigmoid(logits), via ``logsigmoid``.

    Args:
        logits_ref: per-finding logits of the original, ``(B, F)`` (or ``(B, F, *spatial)``).
        logits_cf: logits of the counterfactual, same shape.

    Returns:
        ``(B,)``, non-negative, summed over every non-batch position. Stable for large |logits|
        (log p = logsigmoid(z), log(1 − p) = logsigmoid(−z); no log of a rounded probability).
    """
    _check_pair("logits_ref", logits_ref, "logits_cf", logits_cf, 2)
    log_p, log_not_p = F.logsigmoid(logits_ref), F.logsigmoid(-logits_ref)
    log_q, log_not_q = F.logsigmoid(logits_cf), F.logsigmoid(-logits_cf)
    kl = log_p.exp() * (log_p - log_q) + log_not_p.exp() * (log_not_p - log_not_q)
    return kl.flatten(1).sum(1)


def soft_dice_distance(prob_ref: Tensor, prob_cf: Tensor, eps: float = 1.0) -> Tensor:
    """Soft-Dice distance, paper Eq. 2: ``1 − (2⟨a, b⟩ + eps) / (‖a‖₁ + ‖b‖₁ + eps)``.

    Args:
        prob_ref: foreground probabilities of the original in [0, 1], ``(B, C, *spatial)``.
        prob_cf: the counterfactual's, same shape.
        eps: smoothing, >= 0. With ``eps > 0`` two empty predictions have distance 0; with
            ``eps == 0`` that case (0/0) is defined as 0 as well, never NaN.

    Returns:
        ``(B,)``, the sums running over all non-batch dims. Symmetric in its arguments; 0 for two
        identical binary masks (and, with eps > 0, close to but above 0 for identical soft maps).
    """
    _check_pair("prob_ref", prob_ref, "prob_cf", prob_cf, 2)
    if not eps >= 0.0:
        raise ValueError(f"eps must be >= 0, got {eps!r}")
    a, b = prob_ref.flatten(1), prob_cf.flatten(1)
    num = 2.0 * (a * b).sum(1) + eps
    den = a.sum(1) + b.sum(1) + eps
    safe = den > 0
    return torch.where(safe, 1.0 - num / torch.where(safe, den, torch.ones_like(den)), torch.zeros_like(den))


def reduce(values: Tensor, reduction: Reduction) -> Tensor:
    """Reduce per-case values ``(B,)``: ``"mean"``, ``"sum"`` or ``"none"`` (unchanged)."""
    if reduction == "mean":
        return values.mean()
    if reduction == "sum":
        return values.sum()
    if reduction == "none":
        return values
    raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")


# -- module wrappers ----------------------------------------------------------------------------
class _PairDistance(nn.Module):
    """Shared plumbing: reduction and the optional stop-gradient through the reference."""

    def __init__(self, reduction: Reduction = "mean", detach_reference: bool = False) -> None:
        super().__init__()
        if reduction not in _REDUCTIONS:
            raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
        self.reduction: Reduction = reduction
        self.detach_reference = bool(detach_reference)

    def _reference(self, out_ref: Tensor) -> Tensor:
        return out_ref.detach() if self.detach_reference else out_ref

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}, detach_reference={self.detach_reference}"


class CategoricalKL(_PairDistance):
    """KL(p(x) ‖ p(x')) from logits ``(B, C)``; see :func:`categorical_kl`.

    Args:
        reduction: ``"mean"`` | ``"sum"`` | ``"none"`` over the batch.
        detach_reference: stop the gradient through f(x) (the first argument).
    """

    def forward(self, logits_ref: Tensor, logits_cf: Tensor) -> Tensor:
        return reduce(categorical_kl(self._reference(logits_ref), logits_cf), self.reduction)


class BernoulliKL(_PairDistance):
    """Sum over findings of the Bernoulli KL, from logits ``(B, F)``; see :func:`bernoulli_kl`.

    Args:
        reduction: ``"mean"`` | ``"sum"`` | ``"none"`` over the batch.
        detach_reference: stop the gradient through f(x) (the first argument).
    """

    def forward(self, logits_ref: Tensor, logits_cf: Tensor) -> Tensor:
        return reduce(bernoulli_kl(self._reference(logits_ref), logits_cf), self.reduction)


class SoftDiceDistance(_PairDistance):
    """Soft-Dice distance between two predicted masks ``(B, C, *spatial)``; paper Eq. 2.

    Args:
        eps: smoothing of :func:`soft_dice_distance`.
        from_logits: if True (default) the inputs are logits: one channel goes through a sigmoid;
            several channels go through a softmax over dim 1 and the foreground channels
            ``1:`` (channel 0 = background) are compared. If False the inputs are already
            foreground probabilities in [0, 1] and are used as they are.
        reduction: ``"mean"`` | ``"sum"`` | ``"none"`` over the batch.
        detach_reference: stop the gradient through f(x) (the first argument).
    """

    def __init__(
        self,
        eps: float = 1.0,
        from_logits: bool = True,
        reduction: Reduction = "mean",
        detach_reference: bool = False,
    ) -> None:
        super().__init__(reduction, detach_reference)
        if not float(eps) >= 0.0:
            raise ValueError(f"eps must be >= 0, got {eps!r}")
        self.eps = float(eps)
        self.from_logits = bool(from_logits)

    def _foreground(self, out: Tensor) -> Tensor:
        if not self.from_logits:
            return out
        if out.ndim < 3:
            raise ValueError(f"expected segmentation output (B, C, *spatial), got {tuple(out.shape)}")
        return torch.sigmoid(out) if out.shape[1] == 1 else torch.softmax(out, dim=1)[:, 1:]

    def forward(self, out_ref: Tensor, out_cf: Tensor) -> Tensor:
        a = self._foreground(self._reference(out_ref))
        b = self._foreground(out_cf)
        return reduce(soft_dice_distance(a, b, self.eps), self.reduction)

    def extra_repr(self) -> str:
        return f"eps={self.eps}, from_logits={self.from_logits}, {super().extra_repr()}"


def distance_for_task(task: str, **kwargs: object) -> nn.Module:
    """The paper's distance for a task, built with ``kwargs`` (e.g. ``reduction="none"``).

    ``"multiclass"`` -> :class:`CategoricalKL`, ``"multilabel"`` -> :class:`BernoulliKL`,
    ``"segmentation"`` -> :class:`SoftDiceDistance` (sigmoid for one-channel logits, softmax
    foreground for several; pass ``from_logits=False`` for probabilities).
    """
    table: dict[str, type[nn.Module]] = {
        "multiclass": CategoricalKL,
        "multilabel": BernoulliKL,
        "segmentation": SoftDiceDistance,
    }
    if task not in table:
        raise ValueError(f"task must be one of {sorted(table)}, got {task!r}")
    return table[task](**kwargs)


# -- the objective ------------------------------------------------------------------------------
class ConsistencyTerms(NamedTuple):
    """The parts of Eq. 1 (scalars): ``total = supervised + lam * consistency``."""

    total: Tensor
    supervised: Tensor
    consistency: Tensor


def admitted_mean(
    distance: Tensor,
    weight: Tensor,
    case_index: Tensor,
    n_cases: int,
    average: Average = "pairs",
) -> Tensor:
    """Weighted mean of the distances of the admitted pairs.

    Args:
        distance: ``(N,)`` D of each admitted (case, counterfactual) pair.
        weight: ``(N,)`` positive weights (1 for a plain admission).
        case_index: ``(N,)`` long, the case each pair belongs to, in ``[0, n_cases)``.
        n_cases: B.
        average: ``"pairs"``: ``Σ w·d / Σ w``, every admitted pair weighs the same.
            ``"cases"``: a weighted mean per case, then the mean over all B cases; a case with no
            admitted counterfactual contributes 0 (its neighbourhood holds only x itself, and
            D(f(x), f(x)) = 0).

    Returns:
        A scalar; an exact 0 when ``N == 0``, still attached to ``distance``'s graph.
    """
    if average == "pairs":
        return (distance * weight).sum() / weight.sum().clamp_min(1e-12)
    if average == "cases":
        zeros = distance.new_zeros(n_cases)
        num = zeros.index_add(0, case_index, distance * weight)
        den = zeros.index_add(0, case_index, weight)
        return (num / den.clamp_min(1e-12)).sum() / max(n_cases, 1)
    raise ValueError(f"average must be 'pairs' or 'cases', got {average!r}")


class ConsistencyObjective(nn.Module):
    """L = L_sup(f(x), y) + λ · mean over admitted counterfactuals of D(f(x), f(x')).

    By default (``average="pairs"``) the consistency term is the mean of D over all admitted
    (case, counterfactual) pairs in the batch; ``average="cases"`` takes the mean per case first
    and then over the batch (see :func:`admitted_mean`). D is evaluated on admitted pairs only,
    so rejected counterfactuals contribute nothing, not even a gradient. If none is admitted the
    term is an exact 0 that is still attached to the graph (D of an empty batch), so
    ``backward()`` works and only L_sup drives the update.

    Args:
        supervised: loss module called as ``supervised(out_ref, target)`` -> scalar.
        distance: a per-case distance with ``reduction="none"`` (see :func:`distance_for_task`),
            called as ``distance(ref, cf)`` on the ``(N, ...)`` admitted pairs -> ``(N,)``; it must
            accept N = 0.
        lam: weight λ >= 0 of the consistency term.
        average: ``"pairs"`` (default) or ``"cases"``, how admitted pairs are averaged.
    """

    def __init__(self, supervised: nn.Module, distance: nn.Module, lam: float, average: Average = "pairs") -> None:
        super().__init__()
        if getattr(distance, "reduction", "none") != "none":
            raise ValueError("the distance module must use reduction='none' (one value per pair)")
        lam = float(lam)
        if not lam >= 0.0:
            raise ValueError(f"lam must be >= 0, got {lam!r}")
        self.supervised = supervised
        self.distance = distance
        self.lam = lam
        if average not in ("pairs", "cases"):
            raise ValueError(f"average must be 'pairs' or 'cases', got {average!r}")
        self.average: Average = average

    def forward(
        self,
        out_ref: Tensor,
        target: Tensor,
        out_cf: Tensor,
        admitted: Tensor | None = None,
    ) -> ConsistencyTerms:
        """Compute the three terms of Eq. 1 for one batch.

        Args:
            out_ref: model output on the originals, ``(B, ...)`` (logits).
            target: whatever ``supervised`` expects for the originals.
            out_cf: outputs on the counterfactuals, ``(B, K, ...)``.
            admitted: ``(B, K)`` bool (or non-negative weights) from the validity gate; ``None``
                admits all.
        """
        if (
            out_cf.ndim != out_ref.ndim + 1
            or out_cf.shape[0] != out_ref.shape[0]
            or out_cf.shape[2:] != out_ref.shape[1:]
        ):
            raise ValueError(
                f"expected out_ref (B, ...) and out_cf (B, K, ...), got {tuple(out_ref.shape)} and {tuple(out_cf.shape)}"
            )
        b, k = out_cf.shape[:2]
        if admitted is None:
            weight = torch.ones((b, k), dtype=out_cf.dtype, device=out_cf.device)
        else:
            if admitted.shape != (b, k):
                raise ValueError(f"admitted must be (B, K) = {(b, k)}, got {tuple(admitted.shape)}")
            weight = admitted.to(device=out_cf.device)
            if weight.dtype != torch.bool and not bool((weight >= 0).all()):
                raise ValueError("admitted weights must be >= 0 (and not NaN)")
        sup = self.supervised(out_ref, target)
        # D is evaluated on the admitted pairs only: rejected counterfactuals cost nothing and
        # cannot leak a non-finite value (or its gradient) into the loss.
        keep = weight > 0
        cases = keep.nonzero()[:, 0]
        ref = out_ref.unsqueeze(1).expand_as(out_cf)[keep]
        d = self.distance(ref, out_cf[keep]).reshape(-1)
        cons = admitted_mean(d, weight[keep].to(d.dtype), cases, b, self.average)
        return ConsistencyTerms(total=sup + self.lam * cons, supervised=sup, consistency=cons)
